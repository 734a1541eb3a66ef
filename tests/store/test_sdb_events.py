"""A container's events in its SimpleDB record item: written in the record's own conditional put, moved to the
task's event log when they cannot go there, read from both."""

from __future__ import annotations

import pytest

from server.store.sdb import items
from testkit.simpledb import moto_items
from tests.store.conftest import Requests
from tests.store.samples import OTHER_TASK, TASK, at, cid, event, record


def item_of(store, container_id: str) -> dict[str, str]:
    (attrs,) = [
        a for domain, name, a in moto_items() if domain == store.domains["containers"] and name == container_id[:12]
    ]
    return {a["Name"]: a["Value"] for a in attrs}


def puts_of(store) -> list[dict]:
    sent: list[dict] = []
    store.client.meta.events.register(
        "before-parameter-build.sdb.PutAttributes", lambda params, **_: sent.append(params)
    )
    return sent


# Starting and stopping to run each move the discovery generation too (one more write); the last event does not.
@pytest.mark.parametrize(("cache_size", "later"), [(10_000, (0, 2)), (0, (1, 2))])
def test_a_containers_life_with_its_events_goes_out_in_its_record_puts(sdb_mock, cache_size, later):
    store = sdb_mock(cache_size=cache_size)
    requests, sent = Requests(store.client), puts_of(store)
    appeared = event("appeared", event="appeared", to="PENDING", **{"from": ""})
    assert store.record_report([record(1, status="PENDING")], [appeared], at(0)) == (
        [store.get_container(cid(1))],
        1,
    )
    requests.reset()
    record_put = sent[-1]
    assert record_put["Expected"] == {"Name": items.REVISION, "Exists": False}
    assert {a["Name"] for a in record_put["Attributes"]} >= {items.RECORD_COUNT, items.EVENT + "appeared"}
    for before, status, minute in (("PENDING", "RUNNING", 1), ("RUNNING", "STOPPED", 60)):
        named = event(status, timestamp=minute, to=status, **{"from": before})  # the transition the record makes
        report = store.record_report([record(1, status=status, sample=minute)], [named], at(minute))
        assert report == ([], 1)
        assert (requests.reads, requests.writes) == later
        requests.reset()
    assert store.record_report([], [event("vanished", timestamp=61, to="")], at(61)) == ([], 1)
    assert (requests.reads, requests.writes) == (later[0], 1)
    assert [e["event_id"] for e in store.events_of_container(cid(1))] == ["appeared", "RUNNING", "STOPPED", "vanished"]
    assert [e["event_id"] for e in store.events_of_task(TASK)] == ["appeared", "RUNNING", "STOPPED", "vanished"]
    assert not [name for domain, name, a in moto_items() if domain == store.domains["events"] and a]


def test_events_past_the_items_share_go_to_the_task_log_each_once(sdb_mock):
    store = sdb_mock()
    other = sdb_mock(store.domains["containers"].removesuffix(".containers"))  # a replica: nothing cached
    store.upsert_containers([record(1)], at(0))
    total = items.EVENT_PAIRS + 8
    for n in range(total):
        assert store.add_events([event(f"e{n:02}", timestamp=n)]) == 1
    kept = item_of(store, cid(1))
    assert items.event_pairs(kept) == items.EVENT_PAIRS and items.EVENTS_LOGGED in kept
    # Each resend meets its first copy, in the item or in the log, on either replica; new ones go to the log.
    for handle in (store, other):
        assert handle.add_events([event("e00"), event(f"e{items.EVENT_PAIRS:02}"), event(f"e{total - 1:02}")]) == 0
    assert other.add_events([event("late", timestamp=total)]) == 1
    expected = [f"e{n:02}" for n in range(total)] + ["late"]
    assert [e["event_id"] for e in other.events_of_container(cid(1))] == expected
    assert [e["event_id"] for e in other.events_of_task(TASK)] == expected


def test_several_events_of_one_report_that_do_not_fit_go_to_the_log_together(sdb_mock):
    store = sdb_mock()
    store.upsert_containers([record(1)], at(0))
    store.add_events([event(f"a{n}") for n in range(items.EVENT_PAIRS - 2)])
    assert store.add_events([event(f"b{n}", timestamp=1) for n in range(5)]) == 5
    assert items.event_pairs(item_of(store, cid(1))) == items.EVENT_PAIRS - 2
    assert store.add_events([event("b0", timestamp=1)]) == 0  # the item is marked: this resend finds the log
    assert len(store.events_of_container(cid(1))) == items.EVENT_PAIRS + 3


def test_events_of_a_container_not_on_record_or_naming_another_task_go_to_that_tasks_log(sdb_mock):
    store = sdb_mock()
    store.upsert_containers([record(1)], at(0))
    assert store.add_events([event("early", n=2), event("elsewhere", task=OTHER_TASK), event("own")]) == 3
    assert items.events_in(item_of(store, cid(1))).keys() == {"own"}
    store.upsert_containers([record(2)], at(1))
    assert [e["event_id"] for e in store.events_of_container(cid(2))] == ["early"]
    assert [e["event_id"] for e in store.events_of_container(cid(1))] == ["own"]
    assert [e["event_id"] for e in store.events_of_task(TASK)] == ["early", "own"]
    assert [e["event_id"] for e in store.events_of_task(OTHER_TASK)] == ["elsewhere"]


def test_events_kept_in_the_task_log_by_earlier_versions_are_still_read(sdb_mock):
    store = sdb_mock()
    store.upsert_containers([record(1)], at(0))
    store._log_events([event("old", timestamp=0)], {"old": 1})  # where every event lived before they moved into records
    store.add_events([event("new", timestamp=1), event("old", timestamp=0)])
    assert [e["event_id"] for e in store.events_of_container(cid(1))] == ["old", "new"]
    assert [e["event_id"] for e in store.events_of_task(TASK)] == ["old", "new"]


def test_a_large_record_leaves_its_events_to_the_log_and_its_item_within_256_pairs(sdb_mock):
    store = sdb_mock()
    big = record(1, **{f"field{n:03}": "x" * 1000 for n in range(232)})
    assert store.record_report([big], [event(f"e{n}") for n in range(10)], at(0))[1] == 10
    kept = item_of(store, cid(1))
    assert len(kept) <= 256 and items.event_pairs(kept) == 0 and items.EVENTS_LOGGED in kept
    assert len(store.events_of_container(cid(1))) == 10 + 1  # and its appearance, which the server records


def test_a_put_refused_for_too_many_pairs_is_planned_again_after_a_read(sdb_mock):
    store = sdb_mock()
    store.upsert_containers([record(1)], at(0))
    # Chunks a longer version of the record left behind, written by another replica: this one does not know.
    store._put("containers", cid(1)[:12], {f"record.{n}": "x" for n in range(10, 245)})
    requests = Requests(store.client)
    assert store.add_events([event(f"e{n}") for n in range(20)]) == 20
    assert requests.counts["PutAttributes"] == 3  # refused; after a read, the item marked and the log written
    assert len(item_of(store, cid(1))) <= 256
    assert len(store.events_of_container(cid(1))) == 20


def test_replicas_adding_events_to_one_record_at_once_lose_none(sdb_mock):
    one = sdb_mock()
    two = sdb_mock(one.domains["containers"].removesuffix(".containers"))
    one.upsert_containers([record(1)], at(0))
    two.get_container(cid(1))  # both now hold revision 1
    assert one.add_events([event("e1")]) == 1
    assert two.add_events([event("e2", timestamp=1), event("e1")]) == 1  # stale: refused, read again, merged
    assert [e["event_id"] for e in one.events_of_container(cid(1))] == ["e1", "e2"]


def test_pruning_a_record_takes_its_events_along(sdb_mock):
    store = sdb_mock(retention_days=1, clock=lambda: 10**10)
    store.record_report([record(1, status="STOPPED")], [event("e1")], at(0))
    assert store.prune(10) == 1
    assert store.events_of_task(TASK) == [] and store.events_of_container(cid(1)) == []
    assert not [name for domain, name, a in moto_items() if domain.startswith(store.domains["events"]) and a]
