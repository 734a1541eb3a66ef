"""The store contract for what "running" means: host leases, full-snapshot reconciliation, one event per change.
Written once, run against every backend (see ``make_store`` in conftest)."""

from __future__ import annotations

from server import liveness
from server.records import event_id
from tests.store.samples import at, cid, record

HOST = {"cluster_name": "default", "instance_id": "i-0aaa", "host_name": "ip-10-0-1-7", "container_instance_arn": ""}
OTHER_HOST = {**HOST, "instance_id": "i-0bbb", "host_name": "ip-10-0-1-8"}
LEASE = 540.0  # seconds: renewals are written once 4.5 minutes (half the lease) have passed


def on(host: dict, n: int, **fields) -> dict:
    return record(n, **{**host, **fields})


def history(store, n: int) -> list[tuple[str, str, str]]:
    return [(e["event"], e["from"], e["to"]) for e in store.events_of_container(cid(n))]


# --- leases -------------------------------------------------------------------------------------------------


def test_a_report_renews_its_hosts_lease_and_every_handle_reads_it(make_store):
    one, replica = make_store(), make_store()
    one.lease = replica.lease = LEASE
    one.record_report([on(HOST, 1)], [], at(0), full=True, host=HOST)
    assert one.host_leases() == replica.host_leases() == {liveness.host_key(HOST): at(0)}


def test_a_keepalive_with_no_containers_renews_the_lease(store):
    store.lease = LEASE
    store.record_report([], [], at(0), host=HOST)
    store.record_report([], [], at(5), host=HOST)
    assert store.host_leases() == {liveness.host_key(HOST): at(5)}


def test_a_renewal_is_written_at_most_once_per_half_lease(store):
    store.lease = LEASE
    key = liveness.host_key(HOST)
    store.record_report([on(HOST, 1)], [], at(0), full=True, host=HOST)
    store.record_report([], [], at(4), host=HOST)
    assert store.host_leases()[key] == at(0)
    store.record_report([], [], at(4.5), host=HOST)
    assert store.host_leases()[key] == at(4.5)


def test_a_report_naming_no_host_renews_nothing(store):
    store.lease = LEASE
    store.record_report([record(1)], [], at(0), host={"cluster_name": "default"})
    store.record_report([record(2)], [], at(0))
    assert store.host_leases() == {}


def test_a_silent_host_is_lost_for_every_replica_and_revived_when_it_reports(make_store):
    one, replica = make_store(), make_store()
    one.lease = replica.lease = LEASE
    one.record_report([on(HOST, 1), on(OTHER_HOST, 2)], [], at(0), host=HOST)
    one.record_report([], [], at(8), host=OTHER_HOST)  # only the other host keeps reporting

    def lost(store, now):
        shown = liveness.annotate(store.running_containers(), store.host_leases(), LEASE, now)
        return sorted(r["container_id"] for r in shown if "lost_since" in r)

    assert lost(one, at(9)) == lost(replica, at(9)) == [cid(1)]
    one.record_report([], [], at(10), host=HOST)
    assert lost(replica, at(10)) == []


# --- reconciliation of full snapshots -----------------------------------------------------------------------


def test_a_container_missing_from_its_hosts_full_snapshot_stops_once(store):
    store.lease = LEASE
    store.record_report([on(HOST, 1), on(HOST, 2), on(OTHER_HOST, 3)], [], at(0), full=True, host=HOST)
    store.record_report([on(HOST, 1, sample=10)], [], at(10), full=True, host=HOST)
    gone = store.get_container(cid(2))
    assert gone["known_status"] == "STOPPED"
    assert gone["stopped_at"] == at(10)
    assert gone["stopped_reason"].startswith("vanished")
    assert store.get_container(cid(1))["known_status"] == "RUNNING"
    assert store.get_container(cid(3))["known_status"] == "RUNNING"  # another host's container
    running = {r["container_id"] for r in store.running_containers()}
    assert cid(2) not in running
    store.record_report([on(HOST, 1, sample=20)], [], at(20), full=True, host=HOST)
    shown = history(store, 2)  # the vanishing and the stop share a moment: their order is the store's
    assert shown[0] == ("appeared", "", "RUNNING")
    assert sorted(shown[1:]) == [("known_status", "RUNNING", "STOPPED"), ("vanished", "RUNNING", "")]


def test_a_partial_report_reconciles_nothing(store):
    store.record_report([on(HOST, 1), on(HOST, 2)], [], at(0), full=True, host=HOST)
    store.record_report([on(HOST, 1, sample=10)], [], at(10), host=HOST)
    assert store.get_container(cid(2))["known_status"] == "RUNNING"


def test_a_stopped_container_missing_from_a_snapshot_keeps_its_stop(store):
    store.record_report([on(HOST, 1), on(HOST, 2, status="STOPPED")], [], at(0), full=True, host=HOST)
    before = store.get_container(cid(2))
    store.record_report([on(HOST, 1, sample=10)], [], at(10), full=True, host=HOST)
    assert store.get_container(cid(2))["stopped_at"] == before["stopped_at"]
    assert "vanished" not in [e for e, _, _ in history(store, 2)]


# --- one event per change -----------------------------------------------------------------------------------


def test_the_server_records_transitions_the_sender_did_not_name(store):
    store.record_report([on(HOST, 1, status="PENDING")], [], at(0), host=HOST)
    store.record_report([on(HOST, 1, status="RUNNING", sample=1)], [], at(1), host=HOST)
    store.record_report([on(HOST, 1, status="STOPPED", desired_status="STOPPED", sample=2)], [], at(2), host=HOST)
    events = [(e["event"], e["from"], e["to"], e["timestamp"]) for e in store.events_of_container(cid(1))]
    assert events[:2] == [("appeared", "", "PENDING", at(0)), ("known_status", "PENDING", "RUNNING", at(1))]
    assert sorted(events[2:]) == [
        ("desired_status", "RUNNING", "STOPPED", at(2)),
        ("known_status", "RUNNING", "STOPPED", at(2)),
    ]


def test_a_transition_named_by_two_senders_is_recorded_once(store):
    store.record_report([on(HOST, 1)], [], at(0), host=HOST)
    stop = on(HOST, 1, status="STOPPED", desired_status="STOPPED", sample=3)
    agents = [
        {"event_id": event_id(cid(1), kind, "RUNNING", "STOPPED"), "container_id": cid(1), "task_id": stop["task_id"],
         "event": kind, "from": "RUNNING", "to": "STOPPED", "timestamp": at(3)}
        for kind in ("desired_status", "known_status")
    ]  # fmt: skip
    store.record_report([stop], agents, at(3), host=HOST)
    store.record_report([{**stop, "sample_time": at(4)}], agents, at(4), host=HOST)  # the feed's copy, a resend
    assert sorted(history(store, 1)) == [
        ("appeared", "", "RUNNING"),
        ("desired_status", "RUNNING", "STOPPED"),
        ("known_status", "RUNNING", "STOPPED"),
    ]


def test_a_transition_the_report_named_under_its_own_id_is_not_doubled(store):
    store.record_report([on(HOST, 1, status="PENDING")], [], at(0), host=HOST)
    named = {"event_id": "agent-1", "container_id": cid(1), "task_id": record(1)["task_id"],
             "event": "known_status", "from": "PENDING", "to": "RUNNING", "timestamp": at(1)}  # fmt: skip
    store.record_report([on(HOST, 1, sample=1)], [named], at(1), host=HOST)
    assert history(store, 1) == [("appeared", "", "PENDING"), ("known_status", "PENDING", "RUNNING")]


# --- notes (what the server learnt once and keeps for every replica) ----------------------------------------


def test_a_note_is_kept_by_key_for_every_handle(make_store):
    one, replica = make_store(), make_store()
    assert one.get_note("taskdef/arn:aws:ecs:eu-central-1:1:task-definition/api:3") is None
    one.put_note("taskdef/arn:aws:ecs:eu-central-1:1:task-definition/api:3", '{"ports": [8000]}' + " " * 3000)
    assert replica.get_note("taskdef/arn:aws:ecs:eu-central-1:1:task-definition/api:3") == '{"ports": [8000]}' + (
        " " * 3000
    )


def test_a_late_full_snapshot_leaves_what_was_seen_after_it(store):
    store.lease = LEASE
    store.record_report([on(HOST, 1)], [], at(0), full=True, host=HOST)
    store.record_report([on(HOST, 1, sample=10), on(HOST, 2, sample=10)], [], at(10), full=True, host=HOST)
    store.record_report([on(HOST, 1, sample=5)], [], at(11), full=True, host=HOST)  # a slow report, overtaken
    assert store.get_container(cid(2))["known_status"] == "RUNNING"
    assert "vanished" not in [e for e, _, _ in history(store, 2)]


def test_the_feeds_desired_stop_is_not_taken_back_by_a_lagging_agent(store):
    store.lease = LEASE
    store.record_report([on(HOST, 3, sample=19)], [], at(19), host=HOST)
    feed = {**record(3, sample=20), "state_version": "5", "desired_status": "STOPPED", "ecs_status": "RUNNING"}
    store.record_report([feed], [], at(20))
    store.record_report([on(HOST, 3, sample=21)], [], at(21), host=HOST)
    assert store.get_container(cid(3))["desired_status"] == "STOPPED"
    assert ("desired_status", "STOPPED", "RUNNING") not in history(store, 3)
