"""Retention on every store: containers nobody reported for longer than the retention period go, with their events.

SQLite and SimpleDB remove them when ``prune`` runs (the server's background pruner); DynamoDB's TTL removes them
some time later, and its reads skip them from the moment they expire (moto, like DynamoDB within the lag, never
deletes them here).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

import pytest
from botocore.stub import Stubber

from server.records import format_time
from server.retention import Pruner
from server.state import state
from server.store import StoreUnavailable
from server.store.base import Store
from server.store.sdb import items
from testkit.simpledb import moto_items
from tests.store.samples import OTHER_TASK, T0, TASK, at, cid, event, record

DAY = 86_400
MINUTES_A_DAY = 24 * 60


def clock(days: float) -> Callable[[], float]:
    return lambda: T0.timestamp() + days * DAY


def day(n: float) -> str:
    return format_time(T0 + timedelta(days=n))


def prune_all(store: Store) -> None:
    """What the background pruner does over time."""
    while store.prune(100):
        pass


def test_a_container_gone_longer_than_the_retention_goes_with_its_events(make_store):
    store = make_store(retention_days=30, clock=clock(31))
    store.upsert_containers([record(1, status="STOPPED"), record(2, task=OTHER_TASK)], at(0))
    store.add_events([event("e1"), event("e2", n=2, task=OTHER_TASK)])
    store.upsert_containers([record(2, task=OTHER_TASK, sample=31 * MINUTES_A_DAY)], day(31))  # still reported
    prune_all(store)
    assert store.get_container(cid(1)) is None
    assert store.find_containers(cid(1)[:12], 10) == []
    assert store.containers_of_task(TASK) == []
    assert (store.events_of_task(TASK), store.events_of_container(cid(1))) == ([], [])
    assert store.get_container(cid(2))["first_seen"] == at(0)
    # A running container keeps its events (on DynamoDB they are in its record's item and expire with it).
    assert [e["event_id"] for e in store.events_of_task(OTHER_TASK)] == ["e2"]


def test_running_containers_are_never_pruned_however_old(make_store):
    store = make_store(retention_days=30, clock=clock(365))
    for n in range(0, 366, 10):  # reported at every resync for a year (here: every ten days)
        store.upsert_containers([record(1, sample=n * MINUTES_A_DAY)], day(n))
    store.upsert_containers([record(1, sample=365 * MINUTES_A_DAY)], day(365))
    prune_all(store)
    assert store.get_container(cid(1))["first_seen"] == at(0)
    assert [r["container_id"] for r in store.containers_of_task(TASK)] == [cid(1)]


def test_a_container_reported_again_after_it_expired_is_on_record(make_store):
    store = make_store(retention_days=30, clock=clock(31))
    store.upsert_containers([record(1)], at(0))
    store.upsert_containers([record(1, sample=31 * MINUTES_A_DAY)], day(31))
    prune_all(store)
    assert store.get_container(cid(1))["last_seen"] == day(31)


def test_zero_keeps_everything(make_store):
    store = make_store(retention_days=0, clock=clock(4000))
    store.upsert_containers([record(1, status="STOPPED")], at(0))
    store.add_events([event("e1")])
    assert store.prune(100) == 0
    assert store.get_container(cid(1)) is not None
    assert [e["event_id"] for e in store.events_of_container(cid(1))] == ["e1"]


def test_one_prune_removes_at_most_its_limit(make_store):
    store = make_store(retention_days=1, clock=clock(2))
    store.upsert_containers([record(n) for n in range(5)], at(0))
    if store.expires_itself:
        assert store.prune(2) == 0 and store.containers_of_task(TASK) == []
        return
    assert store.prune(2) == 2
    assert len(store.containers_of_task(TASK)) == 3
    assert store.prune(10) == 3
    assert store.prune(10) == 0


# --- SQLite ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("make_store", ["sqlite"], indirect=True)
def test_sqlite_removes_old_events_of_containers_never_on_record(make_store):
    store = make_store(retention_days=30, clock=clock(31))
    store.add_events([event("old", n=7), event("new", n=7, timestamp=31 * MINUTES_A_DAY)])
    prune_all(store)
    assert [e["event_id"] for e in store.events_of_task(TASK)] == ["new"]


# --- SimpleDB ----------------------------------------------------------------------------------------------


def test_simpledb_finds_expired_records_by_one_consistent_select(sdb_mock):
    store = sdb_mock(retention_days=30, clock=clock(31))
    store.upsert_containers([record(1)], at(0))
    cutoff = day(1)
    query = f"select itemName() from `{store.domains['containers']}` where last_seen < '{cutoff}' limit 100"
    with Stubber(store.client) as stub:
        stub.add_response("select", {"Items": []}, {"SelectExpression": query, "ConsistentRead": True})
        assert store.prune(100) == 0
        stub.assert_no_pending_responses()


def test_simpledb_deletes_a_record_on_its_revision_and_a_gone_task_entirely(sdb_mock):
    store = sdb_mock(retention_days=30, clock=clock(31))
    store.upsert_containers([record(1, status="STOPPED")], at(0))
    store.update_task(TASK, {"service_name": "api"})
    store.add_events([event("e1")])
    sent = []
    store.client.meta.events.register(
        "before-parameter-build.sdb.DeleteAttributes", lambda params, **_: sent.append(dict(params))
    )
    assert store.prune(100) == 1
    record_delete = sent[0]
    # Revision 3: the record, its service name, its event (which lives in the record item and goes with it).
    assert (record_delete["ItemName"], record_delete["Expected"]) == (cid(1)[:12], {"Name": "!rev", "Value": "3"})
    assert any(a["Name"].startswith(items.EVENT) for a in record_delete["Attributes"])
    # Gone: the record, the task index, the event log and the service's only task (moto keeps an empty item
    # wherever it was asked for one; SimpleDB holds no empty items).
    prefix = store.domains["containers"].removesuffix("containers")
    assert [(domain, name) for domain, name, attrs in moto_items() if domain.startswith(prefix) and attrs] == []
    assert store.containers_of_service("default", "api") == []


def test_simpledb_keeps_a_record_written_between_the_select_and_the_delete(sdb_mock):
    store = sdb_mock(retention_days=30, clock=clock(31))
    store.upsert_containers([record(1)], at(0))
    other = sdb_mock(store.domains["containers"].removesuffix(".containers"), retention_days=30, clock=clock(31))

    def report_meanwhile(params, **_):  # another replica hears of the container just before the delete
        if params.get("ItemName") == cid(1)[:12] and not report_meanwhile.done:
            report_meanwhile.done = True
            other.upsert_containers([record(1, sample=31 * MINUTES_A_DAY)], day(31))

    report_meanwhile.done = False
    store.client.meta.events.register("before-parameter-build.sdb.DeleteAttributes", report_meanwhile)
    assert store.prune(100) == 0
    assert store.get_container(cid(1))["last_seen"] == day(31)


def test_simpledb_keeps_the_task_while_one_of_its_containers_is_on_record(sdb_mock):
    store = sdb_mock(retention_days=30, clock=clock(31))
    store.upsert_containers([record(1), record(2)], at(0))
    store.upsert_containers([record(2, sample=31 * MINUTES_A_DAY)], day(31))
    store.add_events([event("e1"), event("e2", n=2), event("e3", n=3)])  # container 3 never on record
    assert store.prune(100) == 1
    assert [r["container_id"] for r in store.containers_of_task(TASK)] == [cid(2)]
    # e1 lived in the pruned record's item; e3 in the task's log, which stays while the task has a record.
    assert [e["event_id"] for e in store.events_of_task(TASK)] == ["e2", "e3"]


def test_simpledb_record_items_carry_last_seen_plain():
    attrs = items.record_attributes({"container_id": cid(1), "last_seen": at(5)})
    assert attrs[items.LAST_SEEN] == at(5)


# --- DynamoDB ----------------------------------------------------------------------------------------------


def test_dynamodb_items_expire_by_ttl_after_last_seen_and_event_time(dynamodb_mock):
    store = dynamodb_mock(retention_days=30, clock=clock(0))
    store.upsert_containers([record(1)], at(10))
    store.add_events([event("e1", timestamp=5), event("e2", n=2, timestamp=5)])  # container 2 has no record
    found = store.client.scan(TableName=store.table)["Items"]
    expiry = {item["sk"]["S"]: int(item["expires_at"]["N"]) for item in found if not item["pk"]["S"].startswith("G#")}
    month = 30 * DAY
    # e1 is in its record's item and goes with it; e2, kept apart, expires that long after its own time.
    assert expiry == {cid(1): int(T0.timestamp()) + 600 + month, f"{cid(2)}#e2": int(T0.timestamp()) + 300 + month}
    assert store.prune(100) == 0  # TTL does it


# --- the background pruner ---------------------------------------------------------------------------------


class Counting(Store):
    """A store whose prune answers from a script."""

    kind = "counting"

    def __init__(self, answers: list[int | Exception]):
        self.answers = answers
        self.calls: list[int] = []

    def prune(self, limit: int) -> int:
        self.calls.append(limit)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    upsert_containers = add_events = get_container = find_containers = containers_of_task = None  # type: ignore
    containers_of_service = update_container = update_task = events_of_container = events_of_task = None  # type: ignore
    ping = None  # type: ignore


Counting.__abstractmethods__ = frozenset()


def test_the_pruner_takes_batches_until_one_is_short_and_at_most_its_number():
    store = Counting([5, 5, 2])
    assert Pruner(store, batch=5, batches=10).run_once() == 12
    assert store.calls == [5, 5, 5]
    store = Counting([5, 5, 5, 5])
    assert Pruner(store, batch=5, batches=3).run_once() == 15


def test_the_pruner_thread_survives_a_store_that_does_not_answer(caplog):
    caplog.set_level(logging.WARNING)
    store = Counting([StoreUnavailable("down"), 0, 0, 0, 0, 0, 0, 0, 0, 0])
    pruner = Pruner(store, interval=0.01)
    pruner.start()
    try:
        for _ in range(200):
            if len(store.calls) >= 2:
                break
            __import__("time").sleep(0.01)
    finally:
        pruner.stop()
    assert len(store.calls) >= 2
    assert "prune failed" in caplog.text


def test_the_app_prunes_in_the_background_only_where_the_store_needs_it(tmp_path, dynamodb_mock, make_app):
    url = f"sqlite:///{tmp_path}/db.sqlite3"
    assert state(make_app({"store": url})).pruner is not None
    assert state(make_app({"store": url, "retention_days": "0"})).pruner is None
    dynamo = state(make_app({"store": f"dynamodb://{dynamodb_mock().table}?region=us-west-2"}))
    assert (dynamo.pruner, dynamo.store.retention) == (None, 30 * DAY)
