"""Leases and lost hosts, derived at read time; the transitions a stored change makes."""

from __future__ import annotations

from server import liveness, records

HOST = {"cluster_name": "prod", "instance_id": "i-0abc", "container_instance_arn": "", "host_name": "ip-10-0-1-7"}
RUNNING = {**HOST, "container_id": "a" * 64, "task_id": "t1", "known_status": "RUNNING",
           "last_seen": "2026-12-01T10:00:00.000Z"}  # fmt: skip
LEASE = 540.0


def at(minutes: int, seconds: int = 0) -> str:
    return f"2026-12-01T10:{minutes:02d}:{seconds:02d}.000Z"


def test_a_host_key_needs_more_than_the_cluster():
    assert liveness.host_key({"cluster_name": "prod"}) == ""
    # What the ECS feed knows of an EC2 task's host: no lease keeps it alive, ECS's STOPPED ends it.
    assert liveness.host_key({"cluster_name": "prod", "container_instance_arn": "arn:aws:ecs:x"}) == ""
    assert liveness.host_key(HOST) == liveness.host_key({**HOST, "other": "x"}) != ""
    assert liveness.host_key(HOST) != liveness.host_key({**HOST, "instance_id": "i-0def"})
    # The feed rewrites an agent's record with its own spelling of the cluster: the host stays the same.
    assert liveness.host_key(HOST) == liveness.host_key({**HOST, "cluster_name": "arn:aws:ecs:x:1:cluster/prod"})


def test_a_container_is_lost_once_its_hosts_lease_lapsed():
    leases = {liveness.host_key(HOST): at(5)}
    assert liveness.lost_since(RUNNING, leases, LEASE, at(13, 59)) is None
    assert liveness.lost_since(RUNNING, leases, LEASE, at(14)) == at(14)


def test_a_renewal_revives_and_stopped_or_hostless_containers_are_never_lost():
    assert liveness.lost_since(RUNNING, {liveness.host_key(HOST): at(30)}, LEASE, at(31)) is None
    stopped = {**RUNNING, "known_status": "STOPPED"}
    assert liveness.lost_since(stopped, {}, LEASE, at(59)) is None
    fargate = {"container_id": "b" * 64, "known_status": "RUNNING", "cluster_name": "prod", "last_seen": at(0)}
    assert liveness.lost_since(fargate, {}, LEASE, at(59)) is None


def test_without_a_lease_on_record_the_containers_own_sighting_counts():
    assert liveness.lost_since(RUNNING, {}, LEASE, at(8, 59)) is None
    assert liveness.lost_since(RUNNING, {}, LEASE, at(9)) == at(9)


def test_annotate_says_since_when_and_why():
    (shown,) = liveness.annotate([RUNNING], {liveness.host_key(HOST): at(1)}, LEASE, at(20))
    assert shown["lost_since"] == at(10)
    assert shown["lost_reason"] == f"its host stopped reporting: lease last renewed {at(1)}"
    assert not liveness.is_running(shown)
    assert liveness.is_running(liveness.annotate([RUNNING], {}, LEASE, at(1))[0])


def test_a_renewal_is_written_once_half_the_lease_passed():
    assert liveness.renewal_due(None, at(0), LEASE)
    assert not liveness.renewal_due(at(0), at(4, 29), LEASE)
    assert liveness.renewal_due(at(0), at(4, 30), LEASE)


def test_the_leases_are_read_at_most_once_per_interval():
    reads = []
    now = [0.0]
    cache = liveness.Leases(lambda: reads.append(1) or {}, LEASE, interval=5.0, clock=lambda: now[0])
    cache.current()
    cache.current()
    now[0] = 5.0
    cache.current()
    assert len(reads) == 2


def test_transitions_of_a_new_record_and_of_a_change():
    cid = "c" * 64
    new = {"container_id": cid, "task_id": "t", "known_status": "PENDING", "first_seen": at(0), "sample_time": at(1)}
    (appeared,) = records.transitions(None, new)
    assert (appeared["event"], appeared["from"], appeared["to"], appeared["timestamp"]) == (
        "appeared",
        "",
        "PENDING",
        at(0),
    )
    assert appeared["event_id"] == records.event_id(cid, "appeared", "", "PENDING")
    old = {"container_id": cid, "task_id": "t", "known_status": "RUNNING", "desired_status": "RUNNING"}
    stop = {**old, "known_status": "STOPPED", "desired_status": "STOPPED", "sample_time": at(4), "stopped_at": at(3)}
    found = records.transitions(old, stop)
    assert [(e["event"], e["from"], e["to"], e["timestamp"]) for e in found] == [
        ("known_status", "RUNNING", "STOPPED", at(3)),
        ("desired_status", "RUNNING", "STOPPED", at(4)),
    ]
    assert found[0]["event_id"] == records.event_id(cid, "known_status", "RUNNING", "STOPPED")
    assert records.transitions(old, dict(old)) == []


def test_untold_leaves_out_what_the_report_named_under_any_id():
    cid = "c" * 64
    old = {"container_id": cid, "task_id": "t", "known_status": "PENDING"}
    new = {**old, "known_status": "RUNNING", "sample_time": at(1)}
    told = [{"event_id": "mine", "container_id": cid, "event": "known_status", "from": "PENDING", "to": "RUNNING"}]
    assert records.untold([(old, new)], told) == []
    assert [e["event"] for e in records.untold([(old, new), (None, new)], [])] == ["known_status", "appeared"]
    stop = {**old, "known_status": "STOPPED", "sample_time": at(2)}
    by_way_of_running = [
        {**told[0], "event_id": "f1"},
        {**told[0], "event_id": "f2", "from": "RUNNING", "to": "STOPPED"},
    ]
    assert records.untold([(old, stop)], by_way_of_running) == []


def test_a_vanished_container_stops_with_its_reason_and_events():
    cid = "d" * 64
    stopped, events = records.vanished({"container_id": cid, "task_id": "t", "known_status": "RUNNING"}, at(7))
    assert (stopped["known_status"], stopped["stopped_at"]) == ("STOPPED", at(7))
    assert stopped["stopped_reason"] == records.VANISHED_REASON
    assert [(e["event"], e["from"], e["to"], e["timestamp"]) for e in events] == [
        ("vanished", "RUNNING", "", at(7)),
        ("known_status", "RUNNING", "STOPPED", at(7)),
    ]


def test_a_lease_read_that_fails_keeps_the_last_and_marks_nothing_lost_before_any():
    from server.store import StoreUnavailable

    answers: list = [StoreUnavailable("down"), {liveness.host_key(HOST): at(1)}, StoreUnavailable("down again")]
    now = [0.0]

    def read():
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    cache = liveness.Leases(read, LEASE, interval=5.0, clock=lambda: now[0], failures=(StoreUnavailable,))
    assert cache.annotate([RUNNING], at(30)) == [RUNNING]  # nothing read yet: nobody is shown lost
    now[0] = 5.0
    assert "lost_since" in cache.annotate([RUNNING], at(30))[0]
    now[0] = 10.0
    assert cache.current() == {liveness.host_key(HOST): at(1)}  # kept through the failure
