"""Each store's own side of the address index: how it is laid out, what it costs to write, how older data gains it."""

from __future__ import annotations

import json
import sqlite3

import boto3

from server import addresses
from server.store.sdb.addresses import IPV4, IPV6
from server.store.sqlite import SCHEMA_VERSION, SQLiteStore
from testkit.simpledb import REGION, moto_items
from tests.store.conftest import Requests
from tests.store.samples import OTHER_TASK, T0, TASK, at, cid, record

HOST = {"cluster_name": "default", "instance_id": "i-0aaa", "host_name": "ip-10-0-1-7", "instance_ip": "10.0.1.7"}


def awsvpc(n: int, address: str, sample: float, **fields) -> dict:
    networks = [{"network_mode": "awsvpc", "ipv4_addresses": [address], "ipv6_addresses": ["2001:db8::17"]}]
    return record(n, sample=sample, networks=json.dumps(networks), **{**HOST, "started_at": at(0), **fields})


def a_life(store, n: int = 1, reports: int = 6) -> None:
    """A container reported every 10 minutes for an hour (``reports`` reports), then stopped."""
    for minute in range(0, reports * 10, 10):
        store.record_report([awsvpc(n, "10.0.3.17", minute)], [], at(minute), full=True, host=HOST)
    store.record_report([awsvpc(n, "10.0.3.17", reports * 10, known_status="STOPPED")], [], at(reports * 10))


# --- SQLite ------------------------------------------------------------------------------------------------


def test_sqlite_a_file_of_layout_5_gains_the_index_filled_from_its_records(tmp_path):
    path = tmp_path / "v5.sqlite3"
    store = SQLiteStore(str(path))
    store.record_report([awsvpc(1, "10.0.3.17", 0), record(2, task=OTHER_TASK, started_at=at(1), **HOST)], [], at(1))
    store.close()
    old = sqlite3.connect(path)
    old.executescript("DROP TABLE addresses; PRAGMA user_version = 5;")
    old.close()

    store = SQLiteStore(str(path))
    assert store._query("PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert [h.record["container_id"] for h in addresses.holdings(store, "10.0.3.17")] == [cid(1)]
    assert [h.record["container_id"] for h in addresses.on_host(store, "i-0aaa")] == [cid(2), cid(1)]
    store.close()


def test_sqlite_a_question_is_one_range_of_the_index_and_a_life_writes_its_entries_once(tmp_path):
    store = SQLiteStore(str(tmp_path / "s.sqlite3"))
    statements: list[str] = []
    a_life(store)
    conn = store._connection()
    conn.set_trace_callback(statements.append)
    store.address_holders("10.0.3.17", at(5), 10)
    conn.set_trace_callback(None)
    (question,) = [s for s in statements if s.lstrip().startswith("SELECT")]  # the range and its records at once
    plan = [row[-1] for row in store._query(f"EXPLAIN QUERY PLAN {question}")]
    assert plan[0] == "SEARCH addresses USING PRIMARY KEY (key=? AND since<?)"
    assert plan[1].startswith("SEARCH containers USING INDEX") and plan[1].endswith("(container_id=?)")
    assert len(plan) == 2  # no scan, no sort: the index's order is the answer's
    # IPv4, IPv6 and the instance: three entries for the whole life, however many reports.
    assert store._query("SELECT key, container_id FROM addresses ORDER BY key") == [
        ("10.0.3.17", cid(1)),
        ("2001:db8::17", cid(1)),
        ("instance:i-0aaa", cid(1)),
    ]
    store.close()


def test_sqlite_prune_takes_the_entries_with_their_record(tmp_path):
    now = [T0.timestamp()]
    store = SQLiteStore(str(tmp_path / "s.sqlite3"), retention_days=1, clock=lambda: now[0])
    a_life(store)
    store.record_report([awsvpc(2, "10.0.3.18", 0)], [], at(5 * 24 * 60), full=True, host=HOST)
    now[0] += 3 * 86_400
    assert store.prune(100) == 1
    assert {key for (key,) in store._query("SELECT key FROM addresses")} == {
        "10.0.3.18",
        "2001:db8::17",
        "instance:i-0aaa",
    }
    assert store._query("SELECT DISTINCT container_id FROM addresses") == [(cid(2),)]
    store.close()


# --- DynamoDB ----------------------------------------------------------------------------------------------


def index_items(store) -> list[dict]:
    client = boto3.client("dynamodb", region_name=REGION)
    items = client.scan(TableName=store.table)["Items"]
    return sorted((i for i in items if i["pk"]["S"].startswith("A#")), key=lambda i: i["pk"]["S"])


def test_dynamodb_a_life_writes_each_index_item_once_in_one_request(dynamodb_mock):
    store = dynamodb_mock(retention_days=30)
    requests = Requests(store.client, "dynamodb")
    a_life(store)
    assert requests.counts["BatchWriteItem"] == 1  # three items, one write unit each, once
    found = index_items(store)
    assert [i["pk"]["S"] for i in found] == ["A#10.0.3.17", "A#2001:db8::17", "A#instance:i-0aaa"]
    assert {i["sk"]["S"] for i in found} == {f"{at(0)}#{cid(1)}"}
    assert all(int(i["expires_at"]["N"]) >= int(T0.timestamp()) + 30 * 86_400 for i in found)


def test_dynamodb_index_items_of_a_long_life_are_written_again_before_they_expire(dynamodb_mock):
    store = dynamodb_mock(retention_days=2, last_seen_resolution=0)
    store.record_report([awsvpc(1, "10.0.3.17", 0)], [], at(0), host=HOST)
    first = {i["pk"]["S"]: int(i["expires_at"]["N"]) for i in index_items(store)}
    store.record_report([awsvpc(1, "10.0.3.17", 60)], [], at(60), host=HOST)  # an hour on: nothing due
    assert {i["pk"]["S"]: int(i["expires_at"]["N"]) for i in index_items(store)} == first
    store.record_report([awsvpc(1, "10.0.3.17", 25 * 60)], [], at(25 * 60), host=HOST)  # past half the retention
    renewed = {i["pk"]["S"]: int(i["expires_at"]["N"]) for i in index_items(store)}
    assert all(renewed[key] == first[key] + 25 * 3600 for key in first)


def test_dynamodb_an_earlier_start_replaces_the_entry(dynamodb_mock):
    store = dynamodb_mock()
    store.record_report([awsvpc(1, "10.0.3.17", 10, started_at=at(10))], [], at(10))
    store.record_report([awsvpc(1, "10.0.3.17", 11, started_at=at(2))], [], at(11))
    assert {i["sk"]["S"] for i in index_items(store)} == {f"{at(2)}#{cid(1)}"}


# --- SimpleDB ----------------------------------------------------------------------------------------------


def test_sdb_the_index_rides_in_the_records_own_put(sdb_mock):
    store = sdb_mock()
    store.record_report([record(3, task=TASK, **HOST)], [], at(0), host=HOST)  # the host's own items first
    requests = Requests(store.client)
    store.record_report([awsvpc(1, "10.0.3.17", 0)], [], at(0), host=HOST)
    with_index = dict(requests.counts)
    requests.reset()
    store.record_report([record(2, task=OTHER_TASK, **{**HOST, "instance_id": ""})], [], at(0), host=HOST)
    assert dict(requests.counts) == with_index  # the same requests with or without addresses
    (attrs,) = [dict((a["Name"], a["Value"]) for a in held) for _, name, held in moto_items() if name == cid(1)[:12]]
    assert attrs[IPV4] == f"10.0.3.17 {at(0)}"
    assert attrs[IPV6] == f"2001:db8::17 {at(0)}"
    assert attrs["on_ec2"] == f"instance:i-0aaa {at(0)}"
    assert [h.record["container_id"] for h in addresses.holdings(store, "10.0.3.17", at(1))] == [cid(1)]
    assert [h.record["container_id"] for h in addresses.holdings(store, "10.0.3.1")] == []  # no prefix match


def test_a_task_with_two_containers_shares_its_address_without_an_overlap(store):
    for n, name in ((1, "api"), (2, "sidecar")):
        store.record_report([awsvpc(n, "10.0.3.17", 0, name=name, task=TASK)], [], at(0))
    found = addresses.holdings(store, "10.0.3.17", at(1), now=at(2))
    assert sorted(h.record["container_id"] for h in found) == [cid(1), cid(2)]
    assert not any(h.overlap for h in found)
