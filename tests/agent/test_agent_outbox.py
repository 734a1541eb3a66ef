"""The outbox: latest state wins per container, events keep their order, bounds hold, batches fit a request."""

from __future__ import annotations

import json

from agent.outbox import Outbox
from agent.wire import MAX_BODY_BYTES, MAX_ITEMS
from tests.agent.fakes import container_id

HOST = {"instance_id": "i-1"}


def record(n: int, status: str = "RUNNING", **extra) -> dict:
    return {"container_id": container_id(n), "known_status": status, **extra}


def event(n: int) -> dict:
    return {"event_id": f"e{n}", "container_id": container_id(n)}


def test_latest_state_wins_and_events_keep_their_order():
    outbox = Outbox()
    outbox.put([record(1, "PENDING"), record(2)], [event(1), event(2)])
    outbox.put([record(1, "RUNNING")], [event(3)])
    body = json.loads(outbox.take(HOST).body)
    assert body["host"] == HOST
    assert [(c["container_id"], c["known_status"]) for c in body["containers"]] == [
        (container_id(1), "RUNNING"),
        (container_id(2), "RUNNING"),
    ]
    assert [e["event_id"] for e in body["events"]] == ["e1", "e2", "e3"]
    assert body["full"] is False


def test_remove_keeps_a_state_newer_than_the_batch():
    outbox = Outbox()
    outbox.put([record(1, "PENDING")], [event(1)])
    batch = outbox.take(HOST)
    outbox.put([record(1, "RUNNING")], [event(2)])
    outbox.remove(batch)
    body = json.loads(outbox.take(HOST).body)
    assert [c["known_status"] for c in body["containers"]] == ["RUNNING"]
    assert [e["event_id"] for e in body["events"]] == ["e2"]


def test_bounds_drop_the_oldest_and_count():
    outbox = Outbox(max_containers=2, max_events=2)
    outbox.put([record(1), record(2), record(3)], [event(1), event(2), event(3)], full=True)
    body = json.loads(outbox.take(HOST).body)
    assert [c["container_id"] for c in body["containers"]] == [container_id(2), container_id(3)]
    assert [e["event_id"] for e in body["events"]] == ["e2", "e3"]
    assert body["full"] is False  # a snapshot missing containers is not the whole snapshot
    assert (outbox.dropped_containers, outbox.dropped_events) == (1, 1)


def test_a_batch_carries_at_most_what_one_request_may():
    outbox = Outbox(max_containers=5000, max_events=5000)
    outbox.put([record(n) for n in range(1500)], [event(n) for n in range(1200)], full=True)
    first = outbox.take(HOST)
    assert (len(first.containers), len(first.events), first.full) == (MAX_ITEMS, MAX_ITEMS, False)
    outbox.remove(first)
    second = outbox.take(HOST)
    assert (len(second.containers), len(second.events), second.full) == (500, 200, False)


def test_a_batch_stays_under_the_body_limit():
    outbox = Outbox()
    outbox.put([record(n, image="x" * 20_000) for n in range(400)], [event(1)])
    batch = outbox.take(HOST)
    assert len(batch.body) <= MAX_BODY_BYTES
    assert 0 < len(batch.containers) < 400
    assert json.loads(batch.body)["containers"][0]["container_id"] == container_id(1)  # with its event


def test_a_full_snapshot_of_nothing_is_still_a_report():
    outbox = Outbox()
    assert not outbox.pending()
    outbox.put([], [], full=True)
    assert outbox.pending()
    batch = outbox.take(HOST)
    assert json.loads(batch.body) == {"host": HOST, "containers": [], "events": [], "full": True}
    outbox.remove(batch)
    assert not outbox.pending()


def test_state_survives_a_round_trip():
    saved = Outbox()
    saved.put([record(1, "PENDING"), record(2)], [event(1), event(2)], full=True)
    saved.put([record(1, "STOPPED")], [])
    restored = Outbox()
    restored.restore(json.loads(json.dumps(saved.state())))
    assert restored.take(HOST).body == saved.take(HOST).body


def test_restore_ignores_what_it_cannot_read():
    outbox = Outbox()
    for junk in (None, [], {"containers": 5}, {"containers": [1, {"x": 1}], "events": ["e"]}):
        outbox.restore(junk)
    assert not outbox.pending()


def test_a_record_travels_with_every_pending_event_of_its_container():
    """Split over several reports, a container's record never arrives without its earlier events (first_seen)."""
    outbox = Outbox(max_containers=5000, max_events=5000)
    outbox.put([record(n) for n in range(1237)], [event(n) for n in range(1237)], full=True)
    outbox.put([record(n, "STOPPED") for n in range(0, 1237, 3)], [event(n) for n in range(0, 1237, 3)])
    sent: list[str] = []
    events = 0
    while outbox.pending():
        pending = list(outbox.state()["events"])
        batch = outbox.take(HOST)
        carried = [id(e) for e in batch.events]
        for cid, _ in batch.containers:
            assert all(id(e) in carried for e in pending if e["container_id"] == cid), cid
        sent += [cid for cid, _ in batch.containers]
        events += len(batch.events)
        outbox.remove(batch)
    assert sorted(sent) == sorted(container_id(n) for n in range(1237))
    assert events == 1237 + 413
