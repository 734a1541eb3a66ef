"""The SimpleDB store under concurrent writers: conditional record writes, the record cache, blind puts.

Stubber tests pin the exact requests, ``Expected`` clause included, since a lost race cannot be staged on moto
by timing; the moto tests run on the strict moto of conftest, which honours ``Expected`` as SimpleDB does.
"""

from __future__ import annotations

import pytest
from botocore.stub import Stubber

from server import records
from server.store import StoreUnavailable
from server.store.sdb import SimpleDBStore, items
from tests.store.conftest import Requests
from tests.store.samples import TASK, at, cid, event, record

CONFLICT = {"service_error_code": "ConditionalCheckFailed", "service_message": "Conditional check failed.",
            "http_status_code": 409}  # fmt: skip
FULL = {"service_error_code": "NumberItemAttributesExceeded", "service_message": "Too many attributes in this item",
        "http_status_code": 409}  # fmt: skip


def stored(record_: dict, revision: str) -> dict:
    """A GetAttributes answer for a slot item holding ``record_`` at ``revision``."""
    attrs = {**items.record_attributes(record_), items.REVISION: revision}
    return {"Attributes": [{"Name": n, "Value": v} for n, v in attrs.items()]}


def put_record(store, record_: dict, revision: str, expected: dict) -> dict:
    attrs = {**items.record_attributes(record_), items.REVISION: revision}
    return {
        "DomainName": store.domains["containers"],
        "ItemName": cid(1)[:12],
        "Attributes": [{"Name": n, "Value": v, "Replace": True} for n, v in attrs.items()],
        "Expected": expected,
    }


def get(store, domain: str, item: str) -> dict:
    return {"DomainName": store.domains[domain], "ItemName": item, "ConsistentRead": True}


# --- records: conditional on the revision read ---------------------------------------------------------------


def test_a_write_from_a_stale_cache_is_refused_then_read_again_and_merged(sdb_mock):
    store = sdb_mock()
    store.upsert_containers([record(1, status="PENDING")], at(0))  # cached at revision 1
    mine = store.get_container(cid(1))
    # Meanwhile another replica set a cached lookup and wrote revision 2.
    theirs = {**mine, "newrelic_url": "https://nr.example/1"}
    report = record(1, status="RUNNING", sample=1)
    with Stubber(store.client) as stub:
        stale = records.merge(mine, report, at(1))
        stub.add_client_error("put_attributes", expected_params=put_record(store, stale, "2", _rev("1")), **CONFLICT)
        stub.add_response("get_attributes", stored(theirs, "2"), get(store, "containers", cid(1)[:12]))
        merged = records.merge(theirs, report, at(1))
        stub.add_response("put_attributes", {}, put_record(store, merged, "3", _rev("2")))
        stub.add_response("put_attributes", {})  # it now runs: the discovery generation moves
        assert store.upsert_containers([report], at(1)) == []
        stub.assert_no_pending_responses()
    assert merged["newrelic_url"] == "https://nr.example/1" and merged["known_status"] == "RUNNING"


def test_a_create_that_loses_the_race_merges_into_the_winners_record(sdb_mock):
    store = sdb_mock()
    winner = records.merge(None, record(1, status="PENDING"), at(0))
    report = record(1, status="RUNNING", sample=1)
    with Stubber(store.client) as stub:
        stub.add_response("get_attributes", {}, get(store, "containers", cid(1)[:12]))
        index = [
            {"Name": items.SHARDS, "Value": "1", "Replace": True},
            {"Name": items.key(cid(1)), "Value": items.dumps(cid(1)), "Replace": True},
        ]
        first_count = {"Name": items.SHARDS, "Exists": False}
        stub.add_response(
            "put_attributes",
            {},
            {"DomainName": store.domains["indexes"], "ItemName": f"task/{TASK}", "Attributes": index,
             "Expected": first_count},
        )  # fmt: skip
        mine = records.merge(None, report, at(1))
        no_rev = {"Name": items.REVISION, "Exists": False}
        stub.add_client_error("put_attributes", expected_params=put_record(store, mine, "1", no_rev), **CONFLICT)
        stub.add_response("get_attributes", stored(winner, "1"), get(store, "containers", cid(1)[:12]))
        merged = records.merge(winner, report, at(1))
        stub.add_response("put_attributes", {}, put_record(store, merged, "2", _rev("1")))
        stub.add_response("put_attributes", {})  # it now runs: the discovery generation moves
        assert store.upsert_containers([report], at(1)) == []  # the winner created it
        stub.assert_no_pending_responses()
    assert merged["first_seen"] == at(0)


def test_a_record_that_keeps_changing_fails_the_report_after_bounded_tries(sdb_mock):
    store = sdb_mock()
    store.upsert_containers([record(1)], at(0))
    original = store.get_container(cid(1))
    with Stubber(store.client) as stub:
        for attempt in range(SimpleDBStore.MERGE_TRIES):
            if attempt:
                stub.add_response("get_attributes", stored(original, str(attempt + 5)))
            stub.add_client_error("put_attributes", **CONFLICT)
        with pytest.raises(StoreUnavailable, match="kept changing"):
            store.upsert_containers([record(1, status="STOPPED", sample=1)], at(1))
        stub.assert_no_pending_responses()


def test_update_task_re_reads_a_record_written_meanwhile(sdb_mock):
    store = sdb_mock()
    store.upsert_containers([record(1)], at(0))
    original = store.get_container(cid(1))
    newer = records.merge(original, record(1, status="STOPPED", sample=1), at(1))
    members = {"Attributes": [{"Name": items.key(cid(1)), "Value": items.dumps(cid(1))}]}
    with Stubber(store.client) as stub:
        for held, revision in ((original, "1"), (newer, "2")):
            stub.add_response("get_attributes", members, get(store, "indexes", f"task/{TASK}"))
            stub.add_response("get_attributes", stored(held, revision))
            stub.add_response("get_attributes", {})  # the service's index, read to add the task
            stub.add_response("put_attributes", {})
            named = put_record(store, {**held, "service_name": "api"}, str(int(revision) + 1), _rev(revision))
            if held is original:
                stub.add_client_error("put_attributes", expected_params=named, **CONFLICT)
            else:
                stub.add_response("put_attributes", {}, named)
        store.update_task(TASK, {"service_name": "api"})
        stub.assert_no_pending_responses()


def _rev(value: str) -> dict:
    return {"Name": items.REVISION, "Value": value}


# --- the same races on (strict) moto --------------------------------------------------------------------------


def test_two_replicas_with_stale_caches_lose_no_change(sdb_mock):
    one, two = sdb_mock("race"), sdb_mock("race")
    one.upsert_containers([record(1, status="PENDING")], at(0))
    two.upsert_containers([record(1, status="STOPPED", sample=2)], at(2))  # two read it: the newer report
    two.update_container(cid(1), {"newrelic_url": "u"})
    # One still remembers PENDING: its late RUNNING report is refused, re-read, and does not roll back.
    requests = Requests(one.client)
    one.upsert_containers([record(1, status="RUNNING", sample=1)], at(3))
    assert (requests.reads, requests.writes) == (1, 1)  # the refused put, the re-read; then nothing to write
    final = two.get_container(cid(1))
    assert (final["known_status"], final["newrelic_url"], final["sample_time"]) == ("STOPPED", "u", at(2))


def test_a_record_written_before_revisions_existed_is_updated_conditionally(sdb_mock):
    store = sdb_mock(cache_size=0)
    legacy = records.merge(None, record(1), at(0))
    store._put("containers", cid(1)[:12], items.record_attributes(legacy))  # as the store wrote it before
    store._put("indexes", f"task/{TASK}", {items.key(cid(1)): items.dumps(cid(1))})
    store.upsert_containers([record(1, status="STOPPED", sample=1)], at(1))
    assert store.get_container(cid(1))["known_status"] == "STOPPED"


# --- the task index: blind into shard 0, read and sharded only when full -------------------------------------


def test_a_full_task_index_shard_falls_back_to_reading_and_sharding(sdb_mock):
    store = sdb_mock()
    # Shard 0 as blind puts leave it at its fullest: 255 entries and the count 1.
    full = {"Attributes": [{"Name": f"c{n:03}", "Value": items.dumps(f"c{n:03}")} for n in range(255)]}
    full["Attributes"].append({"Name": items.SHARDS, "Value": "1"})
    entry = {items.key(cid(1)): items.dumps(cid(1))}
    index = store.domains["indexes"]
    with Stubber(store.client) as stub:
        stub.add_response("get_attributes", {}, get(store, "containers", cid(1)[:12]))
        moved = [{"Name": n, "Value": v, "Replace": True} for n, v in entry.items()]
        blind = [{"Name": items.SHARDS, "Value": "1", "Replace": True}, *moved]
        stub.add_client_error(
            "put_attributes",
            expected_params={"DomainName": index, "ItemName": f"task/{TASK}", "Attributes": blind,
                             "Expected": {"Name": items.SHARDS, "Exists": False}},
            **FULL,
        )  # fmt: skip
        stub.add_response("get_attributes", full, get(store, "indexes", f"task/{TASK}"))
        stub.add_response(
            "put_attributes", {}, {"DomainName": index, "ItemName": f"task/{TASK}/1", "Attributes": moved}
        )
        shards = [{"Name": items.SHARDS, "Value": "2", "Replace": True}]
        stub.add_response("put_attributes", {}, {"DomainName": index, "ItemName": f"task/{TASK}", "Attributes": shards})
        stub.add_response("put_attributes", {})  # the record
        stub.add_response("put_attributes", {})  # a new running container: the discovery generation moves
        assert len(store.upsert_containers([record(1)], at(0))) == 1
        stub.assert_no_pending_responses()
    requests = Requests(store.client)
    store.upsert_containers([record(2)], at(0))  # the same task: known full, so no blind put is tried
    assert (requests.reads, requests.writes) == (2, 3)  # the index, the record, the discovery generation


def test_a_task_index_filled_past_256_blind_entries_is_sharded_and_fully_read(sdb_mock):
    store = sdb_mock()
    for n in range(270):  # one container per report: every entry goes blind until shard 0 is full
        store.upsert_containers([record(n)], at(0))
    assert len(store.containers_of_task(TASK)) == 270
    # conftest checks that no item ended above 256 pairs


# --- events: deduplicated by reading the log ---------------------------------------------------------------


def test_resent_events_are_neither_doubled_nor_reordered(sdb_mock):
    store = sdb_mock()
    store.add_events([event("e1")])
    store.add_events([event("e2")])  # the same timestamp: arrival orders them
    store.add_events([event("e3", timestamp=-1)])
    assert store.add_events([event("e1")]) + store.add_events([event("e2"), event("e1")]) == 0
    assert [e["event_id"] for e in store.events_of_task(TASK)] == ["e3", "e1", "e2"]
