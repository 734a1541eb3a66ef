"""The pure diff of two snapshots, and the events its changes make."""

from __future__ import annotations

from agent.diff import Change, diff, event_id
from agent.ecs import Snapshot, parse_tasks
from agent.wire import EVENT_ID
from tests.agent.fakes import container, container_id, long_arn, task, tasks

A = container_id(1)
B = container_id(2)


def snapshot(*entries) -> Snapshot:
    return parse_tasks(tasks(*entries))


def kinds(changes, timestamp="2026-11-25T15:00:00.000Z"):
    return [(e["container_id"], e["event"], e["from"], e["to"]) for c in changes for e in c.events(timestamp)]


def test_nothing_changed_is_no_change_and_keeps_the_snapshot_object():
    old = snapshot(task(long_arn(1), "RUNNING", container(1), container(2, name="side")))
    new = snapshot(task(long_arn(1), "RUNNING", container(2, name="side"), container(1)))
    changes, kept = diff(old, new)
    assert changes == []
    assert kept is new


def test_appeared_status_changes_and_vanished():
    old = snapshot(task(long_arn(1), "PENDING", container(1)), task(long_arn(2), "RUNNING", container(2)))
    new = snapshot(
        task(long_arn(1), "RUNNING", container(1), desired="STOPPED"), task(long_arn(3), "PENDING", container(3))
    )
    changes, _ = diff(old, new)
    assert kinds(changes) == [
        (A, "desired_status", "RUNNING", "STOPPED"),
        (A, "known_status", "PENDING", "RUNNING"),
        (container_id(3), "appeared", "", "PENDING"),
        (B, "vanished", "RUNNING", ""),
    ]
    assert [c.new is None for c in changes] == [False, False, True]


def test_a_change_of_other_fields_is_a_change_without_events():
    old = snapshot(task(long_arn(1), "RUNNING", container(1, Ports=[])))
    new = snapshot(task(long_arn(1), "RUNNING", container(1)))
    (change,) = diff(old, new)[0]
    assert change.old["ports"] == [] and change.new["ports"]
    assert change.events("2026-11-25T15:00:00.000Z") == []


def test_an_unreadable_task_entry_keeps_every_missing_container_and_reports_new_ones():
    old = snapshot(task(long_arn(1), "RUNNING", container(1)), task(long_arn(2), "RUNNING", container(2)))
    payload = tasks(task(long_arn(1), "RUNNING", container(1)), task(long_arn(3), "PENDING", container(3)))
    payload["Tasks"].append(None)  # task 2's entry, unreadable this time

    changes, kept = diff(old, parse_tasks(payload))

    assert kinds(changes) == [(container_id(3), "appeared", "", "PENDING")]
    assert set(kept.containers) == {A, B, container_id(3)}
    # Once the entry reads again and task 2 is really gone, it vanishes.
    changes, _ = diff(
        kept, snapshot(task(long_arn(1), "RUNNING", container(1)), task(long_arn(3), "PENDING", container(3)))
    )
    assert kinds(changes) == [(B, "vanished", "RUNNING", "")]


def test_held_containers_and_tasks_keep_their_last_state():
    old = snapshot(task(long_arn(1), "RUNNING", container(1)), task(long_arn(2), "RUNNING", container(2)))
    new = Snapshot({}, held=frozenset({A}), held_tasks=frozenset({long_arn(2)}))
    changes, kept = diff(old, new)
    assert changes == []
    assert kept.containers == old.containers


def test_event_ids_are_stable_distinct_and_in_the_servers_alphabet():
    first = event_id(A, "known_status", "PENDING", "RUNNING")
    assert first == event_id(A, "known_status", "PENDING", "RUNNING")
    others = {
        event_id(B, "known_status", "PENDING", "RUNNING"),
        event_id(A, "known_status", "RUNNING", "STOPPED"),
        event_id(A, "desired_status", "PENDING", "RUNNING"),
        event_id(A, "appeared", "", "RUNNING"),
    }
    assert first not in others and len(others) == 4
    assert EVENT_ID.fullmatch(first)


def test_an_event_carries_the_task_and_the_poll_time():
    record = snapshot(task(long_arn(1), "RUNNING", container(1))).containers[A]
    (event,) = Change(A, None, record).events("2026-11-25T15:00:00.000Z")
    assert event["task_id"] == long_arn(1).rsplit("/", 1)[1]
    assert event["timestamp"] == "2026-11-25T15:00:00.000Z"
