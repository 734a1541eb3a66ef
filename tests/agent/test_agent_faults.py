"""The ECS agent, the server or the agent itself failing: nothing lost, nothing doubled, nothing removed."""

from __future__ import annotations

import logging
import threading

import pytest
import requests

from tests.agent.fakes import ECS, METADATA, SERVER, container, container_id, long_arn, task, tasks

A = container_id(1)
B = container_id(2)
RUNNING = tasks(task(long_arn(1), "RUNNING", container(1)), task(long_arn(2), "RUNNING", container(2)))


def _ecs_fails(script, kind):
    """One poll on which the ECS agent fails in the way `kind` names (once down, /v1/metadata is asked first)."""
    rsps = script.rsps
    if script.metadata_due:
        if kind == "down":
            rsps.get(f"{ECS}/v1/metadata", body=requests.ConnectionError("refused"))
            return
        if kind == "metadata 500":
            rsps.get(f"{ECS}/v1/metadata", status=500, body="oops")
            return
        rsps.get(f"{ECS}/v1/metadata", json=METADATA)
    script.metadata_due = True
    answers = {
        "down": {"body": requests.ConnectionError("refused")},
        "metadata 500": {"status": 500, "body": "oops"},
        "tasks 503": {"status": 503},
        "garbage": {"body": "<html>502 Bad Gateway</html>"},
        "truncated": {"body": '{"Tasks": [{"Arn": "arn:aws:ecs:eu-central-1:2109876'},
        "no Tasks": {"json": {"Message": "agent starting"}},
        "Tasks null": {"json": {"Tasks": None}},
    }
    rsps.get(f"{ECS}/v1/tasks", **answers[kind])


OUTAGES = [
    "down",
    "metadata 500",
    "tasks 503",
    "garbage",
    "truncated",
    "no Tasks",
    "Tasks null",
]  # a task entry that is not an object is no outage: the rest of the list is read (test_agent_ecs, test_agent_diff)


@pytest.mark.parametrize("kind", OUTAGES)
def test_ecs_agent_outage_reports_nothing_removed_and_logs_once(make_agent, script, reports, caplog, kind):
    agent = make_agent()
    script.imds()
    script.poll(RUNNING)
    script.report()
    _ecs_fails(script, kind)
    _ecs_fails(script, kind)
    _ecs_fails(script, kind)
    script.poll(RUNNING)
    with caplog.at_level(logging.INFO, logger="agent"):
        for _ in range(5):
            agent.poll_once()

    assert len(reports.bodies) == 1
    assert [e[1] for e in reports.events] == ["appeared", "appeared"]
    assert set(agent.snapshot.containers) == {A, B}
    outage_logs = [r for r in caplog.records if "cannot read the ECS agent" in r.getMessage()]
    assert len(outage_logs) == 1
    assert outage_logs[0].levelno == logging.WARNING
    assert any("readable again" in r.getMessage() for r in caplog.records)


def test_a_task_with_a_malformed_container_list_keeps_its_containers(make_agent, script, reports):
    agent = make_agent()
    script.imds()
    script.poll(RUNNING)
    script.report()
    broken = {"Arn": long_arn(1), "KnownStatus": "RUNNING", "Containers": {"DockerId": A}}
    script.poll(tasks(broken, task(long_arn(2), "STOPPED", container(2))))
    script.report()
    agent.poll_once()
    agent.poll_once()

    assert reports.events[2:] == [(B, "known_status", "RUNNING", "STOPPED")]
    assert set(agent.snapshot.containers) == {A, B}


def test_a_container_with_an_unknown_status_is_held_not_vanished(make_agent, script, reports):
    agent = make_agent()
    script.imds()
    script.poll(RUNNING)
    script.report()
    script.poll(tasks(task(long_arn(1), "HIBERNATING", container(1)), task(long_arn(2), "RUNNING", container(2))))
    script.poll(RUNNING)
    agent.poll_once()
    agent.poll_once()
    agent.poll_once()

    assert len(reports.bodies) == 1


def test_server_down_for_several_polls_then_every_change_arrives_once_in_order(make_agent, script, reports):
    agent = make_agent()
    arn = long_arn(1)
    script.imds()
    script.poll(tasks(task(arn, "PENDING", container(1))))
    script.rsps.post(f"{SERVER}/report/map", body=requests.ConnectionError("refused"))
    script.poll(tasks(task(arn, "RUNNING", container(1))))
    script.report(status=503)
    script.poll(tasks(task(arn, "STOPPED", container(1), desired="STOPPED")))
    script.report(status=502)
    script.poll(
        tasks(task(arn, "STOPPED", container(1), desired="STOPPED"), task(long_arn(2), "PENDING", container(2)))
    )
    script.report()
    script.poll(tasks(task(long_arn(2), "RUNNING", container(2))))
    script.report()
    for _ in range(5):
        agent.poll_once()

    back, after = reports.bodies
    assert back["full"] is True
    assert reports.statuses(0) == {A: ("STOPPED", "STOPPED"), B: ("RUNNING", "PENDING")}
    assert reports.events == [
        (A, "appeared", "", "PENDING"),
        (A, "known_status", "PENDING", "RUNNING"),
        (A, "desired_status", "RUNNING", "STOPPED"),
        (A, "known_status", "RUNNING", "STOPPED"),
        (B, "appeared", "", "PENDING"),
        (B, "known_status", "PENDING", "RUNNING"),
        (A, "vanished", "STOPPED", ""),
    ]
    assert len(set(reports.event_ids)) == len(reports.event_ids)
    assert after["full"] is False
    assert not agent.outbox.pending()


def test_wrong_token_is_logged_as_misconfiguration_and_nothing_is_lost(make_agent, script, reports, caplog):
    agent = make_agent()
    script.imds()
    script.poll(RUNNING)
    script.report(status=401)
    script.poll(RUNNING)
    script.report(status=403)
    script.poll(RUNNING)
    script.report()
    with caplog.at_level(logging.ERROR, logger="agent"):
        for _ in range(3):
            agent.poll_once()

    refusals = [r for r in caplog.records if "ECS_ID_MAPPER_TOKEN" in r.getMessage()]
    assert len(refusals) == 2
    assert all(r.levelno == logging.ERROR for r in refusals)
    assert {c["container_id"] for c in reports.bodies[0]["containers"]} == {A, B}
    assert len(reports.events) == 2


def test_a_body_the_server_refuses_is_dropped_not_retried(make_agent, script, reports, caplog):
    agent = make_agent()
    script.imds()
    script.poll(RUNNING)
    script.report(status=400)
    script.poll(tasks(task(long_arn(1), "STOPPED", container(1)), task(long_arn(2), "RUNNING", container(2))))
    script.report()
    with caplog.at_level(logging.ERROR, logger="agent"):
        agent.poll_once()
        agent.poll_once()

    assert reports.events == [(A, "known_status", "RUNNING", "STOPPED")]
    assert any("dropping 2 container states and 2 events" in r.getMessage() for r in caplog.records)


def test_restart_with_a_spool_loses_and_doubles_nothing(make_agent, script, reports, tmp_path):
    arn = long_arn(1)
    first = make_agent(spool_dir=tmp_path)
    script.imds()
    script.poll(tasks(task(arn, "PENDING", container(1)), task(long_arn(2), "RUNNING", container(2))))
    script.report(status=503)
    script.poll(tasks(task(arn, "RUNNING", container(1)), task(long_arn(2), "RUNNING", container(2))))
    script.report(status=503)
    script.report(status=503)  # the flush on stop
    first.poll_once()
    first.poll_once()
    first.flush(timeout=5)

    second = make_agent(spool_dir=tmp_path)
    script.metadata_due = True  # a new process reads the host fields first
    script.imds()
    script.poll(tasks(task(arn, "STOPPED", container(1))))  # B vanished while no agent was running
    script.report()
    second.poll_once()

    assert reports.events == [  # each container's events in order, sent together with its record
        (A, "appeared", "", "PENDING"),
        (A, "known_status", "PENDING", "RUNNING"),
        (A, "known_status", "RUNNING", "STOPPED"),
        (B, "appeared", "", "RUNNING"),
        (B, "vanished", "RUNNING", ""),
    ]
    assert reports.bodies[0]["full"] is True
    assert reports.statuses(0) == {A: ("RUNNING", "STOPPED"), B: ("RUNNING", "RUNNING")}


def test_restart_after_everything_was_delivered_sends_a_snapshot_and_no_event(make_agent, script, reports, tmp_path):
    first = make_agent(spool_dir=tmp_path)
    script.imds()
    script.poll(RUNNING)
    script.report()
    first.poll_once()
    first.flush(timeout=5)

    second = make_agent(spool_dir=tmp_path)
    script.metadata_due = True  # a new process reads the host fields first
    script.imds()
    script.poll(RUNNING)
    script.report()
    second.poll_once()

    assert len(reports.events) == 2
    assert reports.bodies[1]["full"] is True
    assert reports.bodies[1]["events"] == []


def test_an_unreadable_spool_is_set_aside_with_a_warning(make_agent, script, reports, tmp_path, caplog):
    (tmp_path / "agent-state.json").write_text('{"version": 1, "outbox": {"containers": [')
    with caplog.at_level(logging.WARNING, logger="agent"):
        agent = make_agent(spool_dir=tmp_path)
    script.imds()
    script.poll(RUNNING)
    script.report()
    agent.poll_once()

    assert any("unreadable" in r.getMessage() for r in caplog.records)
    assert len(reports.events) == 2


def test_stop_finishes_the_cycle_flushes_and_returns(make_agent, script, reports, tmp_path):
    agent = make_agent(spool_dir=tmp_path, poll_interval=3600)
    script.imds()
    script.poll(RUNNING)
    script.report(status=503)
    script.report()  # the flush: one more try, now, despite the backoff
    stop = threading.Event()
    stop.set()
    agent.run(stop)

    assert len(reports.events) == 2
    assert not agent.outbox.pending()


def test_the_outbox_bound_drops_the_oldest_and_says_so(make_agent, script, reports, caplog):
    agent = make_agent(max_events=3)
    script.imds()
    script.poll(tasks(*(task(long_arn(n), "RUNNING", container(n)) for n in range(1, 6))))
    script.report(status=503)
    script.poll(tasks(*(task(long_arn(n), "RUNNING", container(n)) for n in range(1, 6))))
    script.report()
    with caplog.at_level(logging.WARNING, logger="agent"):
        agent.poll_once()
        agent.poll_once()

    assert [e[0] for e in reports.events] == [container_id(n) for n in (3, 4, 5)]
    assert agent.outbox.dropped_events == 2
    assert any("dropped 0 container states and 2 events" in r.getMessage() for r in caplog.records)


def test_restart_without_a_spool_makes_no_second_appearance(make_agent, script, reports):
    """A container seen again by a restarted agent, in a later status, is the same appearance (one event ID)."""
    arn = long_arn(1)
    first = make_agent()
    script.imds()
    script.poll(tasks(task(arn, "PENDING", container(1))))
    script.report()
    first.poll_once()

    second = make_agent()  # no spool: it knows nothing of the first
    script.metadata_due = True
    script.imds()
    script.poll(tasks(task(arn, "RUNNING", container(1))))
    script.report()
    second.poll_once()

    appeared = [e for b in reports.bodies for e in b["events"] if e["event"] == "appeared"]
    assert [e["to"] for e in appeared] == ["PENDING", "RUNNING"]
    assert appeared[0]["event_id"] == appeared[1]["event_id"]


def test_a_resync_while_the_server_is_down_keeps_the_time_a_container_stopped(make_agent, script, reports, clock):
    """The pending STOPPED state keeps the sample time of the poll that saw it, not of a later resync."""
    arn = long_arn(1)
    agent = make_agent(resync_interval=10)
    script.imds()
    script.poll(tasks(task(arn, "RUNNING", container(1))))
    script.report()
    agent.poll_once()
    clock.advance(5)
    stopped_at = clock.now()
    script.poll(tasks(task(arn, "STOPPED", container(1), desired="STOPPED")))
    script.report(status=503)
    agent.poll_once()
    clock.advance(7)  # past the resync interval: the whole snapshot is queued again
    script.metadata_due = True
    script.poll(tasks(task(arn, "STOPPED", container(1), desired="STOPPED")))
    script.report()
    agent.poll_once()

    (record,) = reports.bodies[-1]["containers"]
    assert reports.bodies[-1]["full"] is True
    assert (record["known_status"], record["sample_time"]) == ("STOPPED", stopped_at)


def test_a_restart_with_a_spool_keeps_the_time_a_container_stopped(make_agent, script, reports, clock, tmp_path):
    arn = long_arn(1)
    first = make_agent(spool_dir=tmp_path)
    script.imds()
    script.poll(tasks(task(arn, "STOPPED", container(1), desired="STOPPED")))
    script.report(status=503)
    script.report(status=503)  # the flush on stop
    first.poll_once()
    stopped_at = clock.now()
    first.flush(timeout=5)
    clock.advance(11)

    second = make_agent(spool_dir=tmp_path)
    script.metadata_due = True
    script.imds()
    script.poll(tasks(task(arn, "STOPPED", container(1), desired="STOPPED")))
    script.report()
    second.poll_once()

    (record,) = reports.bodies[-1]["containers"]
    assert record["sample_time"] == stopped_at
