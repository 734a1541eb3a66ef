"""What only the DynamoDB store has: its URL, the table check at start, conditional writes, throttling, cost."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
import zlib

import pytest
from botocore.awsrequest import AWSResponse
from botocore.stub import Stubber
from moto import mock_aws

from server import liveness, records
from server.store import StoreUnavailable, dynamodb, open_store
from server.store.dynamodb import DynamoDBStore
from server.store.dynamodb.client import StoreMissing
from server.store.dynamodb.items import RUNNING_SHARDS, encode, record_key
from tests.store.conftest import REGION, RawBody, Requests
from tests.store.samples import TASK, at, cid, event, record
from tests.support import ROOT, free_port

# --- configuration and the table ---------------------------------------------------------------------------


def test_opened_from_a_url_with_options():
    with mock_aws():
        store = open_store(
            f"dynamodb://mapper-prod?region={REGION}&create=true&last_seen_resolution=60&max_attempts=2&cache_size=5"
        )
        assert isinstance(store, DynamoDBStore)
        assert (store.table, store.region, store.last_seen_resolution, store.create) == (
            "mapper-prod",
            REGION,
            60.0,
            True,
        )
        assert store.config.retries == {"mode": "standard", "total_max_attempts": 2}
        table = store.client.describe_table(TableName="mapper-prod")["Table"]
        assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
        assert {i["IndexName"]: i["Projection"]["ProjectionType"] for i in table["GlobalSecondaryIndexes"]} == {
            "by_task": "KEYS_ONLY",
            "by_service": "KEYS_ONLY",
            "running": "INCLUDE",
            "by_host": "KEYS_ONLY",
        }
        ttl = store.client.describe_time_to_live(TableName="mapper-prod")["TimeToLiveDescription"]
        assert (ttl["TimeToLiveStatus"], ttl["AttributeName"]) == ("ENABLED", "expires_at")
        store.close()


@pytest.mark.parametrize(
    ("table", "options", "message"),
    [
        ("ok-table", {"colour": "blue"}, "unknown dynamodb store option"),
        ("ok-table", {"read_timeout": "soon"}, "read_timeout='soon' is not a number"),
        ("ok-table", {"cache_size": "-1"}, "must not be negative"),
        ("ok-table", {"create": "maybe"}, "create"),
        ("bad table", {}, "invalid DynamoDB table name"),
        ("x" * 256, {}, "invalid DynamoDB table name"),
    ],
)
def test_bad_options_stop_at_once(table, options, message):
    with pytest.raises(ValueError, match=message):
        DynamoDBStore(table, region=REGION, **options)


def test_retention_is_not_a_url_option():
    with pytest.raises(ValueError, match="ECS_ID_MAPPER_RETENTION_DAYS"):
        open_store(f"dynamodb://t-retain?region={REGION}&retention_days=3")


def test_a_missing_table_stops_the_store_naming_the_table_and_the_deploy_file():
    with mock_aws(), pytest.raises(StoreMissing, match=r"'absent'.*deploy/cloudformation.yaml.*create=true"):
        DynamoDBStore("absent", region=REGION)


def test_a_missing_table_stops_the_server(moto_server):
    env = {"PATH": "/usr/bin:/bin", "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", "NO_PROXY": "127.0.0.1",
           "ECS_ID_MAPPER_STORE": f"dynamodb://nowhere?region={REGION}&endpoint_url={moto_server}"}  # fmt: skip
    result = subprocess.run([sys.executable, "-m", "server"], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=60)  # fmt: skip
    assert result.returncode != 0
    assert "ECS_ID_MAPPER_STORE" in result.stderr and "'nowhere'" in result.stderr
    assert "deploy/cloudformation.yaml" in result.stderr and "Traceback" not in result.stderr


def test_a_table_with_other_keys_is_refused():
    with mock_aws():
        store = DynamoDBStore("t-keys", region=REGION, create=True)
        store.client.create_table(
            TableName="other",
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        )
        with pytest.raises(StoreMissing, match=r"'other' does not have the expected keys \(table, by_task, by_service"):
            DynamoDBStore("other", region=REGION)


def test_the_endpoint_comes_from_boto3s_own_variable(monkeypatch, moto_server):
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", moto_server)
    store = open_store(f"dynamodb://t-env?region={REGION}&create=true")
    store.upsert_containers([record(1)], at(1))
    assert DynamoDBStore("t-env", region=REGION, endpoint_url=moto_server).get_container(cid(1))["task_id"] == TASK


def test_a_store_started_while_dynamodb_is_down_works_once_it_is_up(caplog):
    port = free_port()
    store = DynamoDBStore("t-late", region=REGION, endpoint_url=f"http://127.0.0.1:{port}", create=True,
                          max_attempts=1, connect_timeout=0.5)  # fmt: skip
    assert "not reachable at start" in caplog.text
    with pytest.raises(StoreUnavailable):
        store.ping()
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        store.ping()  # creates the table now
        store.upsert_containers([record(1)], at(1))
        assert store.get_container(cid(1)) is not None
    finally:
        store.close()
        server.stop()


# --- keys --------------------------------------------------------------------------------------------------


def test_a_record_is_one_item_under_its_short_id(dynamodb_mock):
    store = dynamodb_mock()
    store.upsert_containers([record(1)], at(1))
    item = store.client.get_item(TableName=store.table, Key=record_key(cid(1)))["Item"]
    assert (item["pk"]["S"], item["sk"]["S"], item["task"]["S"], item["v"]["N"]) == (
        "C#" + cid(1)[:12],
        cid(1),
        TASK,
        "1",
    )
    assert "svc" not in item and "expires_at" not in item
    assert len(item["r"]["B"]) < 1024


def test_fargate_runtime_ids_share_a_prefix_and_are_told_apart_by_a_longer_one(dynamodb_mock):
    """A Fargate task's containers are TASKID-NUMBER: their first 12 (and 32) characters are the same."""
    store = dynamodb_mock()
    task = "cd189a933e5849daa93386466019ab50"
    ids = [f"{task}-{n}" for n in ("2495160603", "2495160604", "3715291642")]
    store.upsert_containers([record(n, container_id=c, task=task) for n, c in enumerate(ids)], at(1))
    assert [r["container_id"] for r in store.find_containers(task[:12], 10)] == ids
    assert [r["container_id"] for r in store.find_containers(task, 10)] == ids
    assert [r["container_id"] for r in store.find_containers(ids[0][:35], 10)] == ids[:2]
    assert [r["container_id"] for r in store.find_containers(ids[2], 10)] == [ids[2]]
    assert [r["container_id"] for r in store.containers_of_task(task)] == ids
    assert store.get_container(ids[1])["container_id"] == ids[1]


def test_reads_are_strongly_consistent_and_index_reads_lead_to_table_reads(dynamodb_mock):
    store = dynamodb_mock()
    store.upsert_containers([record(1)], at(1))
    store.update_task(TASK, {"service_name": "api"})
    store.add_events([event("e1")])
    sent = []
    store.client.meta.events.register(
        "before-parameter-build.dynamodb", lambda model, params, **_: sent.append((model.name, dict(params)))
    )
    store.get_container(cid(1))
    store.find_containers(cid(1)[:12], 10)
    store.containers_of_task(TASK)
    store.containers_of_service("default", "api")
    store.events_of_task(TASK)
    for name, params in sent:
        if "IndexName" in params:
            continue  # a global secondary index is eventually consistent only
        consistent = params.get(
            "ConsistentRead", params.get("RequestItems", {}).get(store.table, {}).get("ConsistentRead")
        )
        assert consistent is True, name
    # events_of_task: the task's records (index, then the table), then the events kept apart
    reads = ["GetItem", "Query", "Query", "GetItem", "Query", "GetItem", "Query", "GetItem", "Query"]
    assert [name for name, _ in sent] == reads


def test_a_record_with_a_service_is_in_the_sparse_service_index(dynamodb_mock):
    store = dynamodb_mock()
    store.upsert_containers([record(1), record(2, task="f" * 32)], at(1))
    store.update_task(TASK, {"service_name": "api"})
    answer = store.client.scan(TableName=store.table, IndexName="by_service")
    assert [item["sk"]["S"] for item in answer["Items"]] == [cid(1)]


# --- conditional writes ------------------------------------------------------------------------------------


def put_params(store: DynamoDBStore, record_: dict, version: int, condition: dict) -> dict:
    return {"TableName": store.table, "Item": store._item(record_, version), **condition}


CONFLICT = {"service_error_code": "ConditionalCheckFailedException",
            "service_message": "The conditional request failed", "http_status_code": 400}  # fmt: skip


def stored(record_: dict, version: int) -> dict:
    return {"Item": {**record_key(record_["container_id"]), "v": {"N": str(version)}, "r": {"B": encode(record_)},
                     "task": {"S": record_["task_id"]}}}  # fmt: skip


def version_is(version: int) -> dict:
    return {"ConditionExpression": "v = :v", "ExpressionAttributeValues": {":v": {"N": str(version)}}}


def test_a_write_from_a_stale_cache_is_refused_then_read_again_and_merged(dynamodb_mock):
    store = dynamodb_mock()
    store.upsert_containers([record(1, status="PENDING")], at(0))  # cached at version 1
    mine = store.get_container(cid(1))
    theirs = {**mine, "newrelic_url": "https://nr.example/1"}  # another replica wrote version 2 meanwhile
    report = record(1, status="RUNNING", sample=1)
    with Stubber(store.client) as stub:
        stale = records.merge(mine, report, at(1))
        stub.add_client_error("put_item", expected_params=put_params(store, stale, 2, version_is(1)), **CONFLICT)
        stub.add_response("get_item", stored(theirs, 2),
                          {"TableName": store.table, "Key": record_key(cid(1)), "ConsistentRead": True})  # fmt: skip
        merged = records.merge(theirs, report, at(1))
        stub.add_response("put_item", {}, put_params(store, merged, 3, version_is(2)))
        stub.add_response("update_item", {})  # it now runs: the discovery generation moves
        assert store.upsert_containers([report], at(1)) == []
        stub.assert_no_pending_responses()
    assert merged["newrelic_url"] == "https://nr.example/1" and merged["known_status"] == "RUNNING"


def test_a_new_record_is_put_only_if_absent(dynamodb_mock):
    store = dynamodb_mock()
    with Stubber(store.client) as stub:
        stub.add_response("get_item", {})
        new = records.merge(None, record(1), at(1))
        stub.add_response(
            "put_item", {}, put_params(store, new, 1, {"ConditionExpression": "attribute_not_exists(pk)"})
        )
        stub.add_response("update_item", {})  # a new running container: the discovery generation moves
        assert store.upsert_containers([record(1)], at(1)) == [new]
        stub.assert_no_pending_responses()


def test_two_replicas_with_stale_caches_lose_no_change(dynamodb_mock):
    one = dynamodb_mock()
    two = dynamodb_mock(one.table)
    one.upsert_containers([record(1, status="PENDING")], at(0))
    two.get_container(cid(1))  # both remember version 1
    one.update_container(cid(1), {"newrelic_url": "https://nr.example/1"})
    two.upsert_containers([record(1, status="RUNNING", sample=1)], at(1))
    stored_ = one.get_container(cid(1))
    assert (stored_["known_status"], stored_["newrelic_url"]) == ("RUNNING", "https://nr.example/1")


def test_a_record_that_keeps_changing_fails_the_report_after_bounded_tries(dynamodb_mock):
    store = dynamodb_mock()
    store.upsert_containers([record(1)], at(0))
    original = store.get_container(cid(1))
    with Stubber(store.client) as stub:
        for attempt in range(DynamoDBStore.MERGE_TRIES):
            if attempt:
                stub.add_response("get_item", stored(original, attempt + 5))
            stub.add_client_error("put_item", **CONFLICT)
        with pytest.raises(StoreUnavailable, match="kept changing"):
            store.upsert_containers([record(1, status="STOPPED", sample=1)], at(1))
        stub.assert_no_pending_responses()


def test_an_event_of_a_container_with_no_record_is_put_apart_only_if_absent_and_a_resend_is_not_new(dynamodb_mock):
    store = dynamodb_mock()
    sent = []
    store.client.meta.events.register(
        "before-parameter-build.dynamodb.PutItem", lambda params, **_: sent.append(params)
    )
    assert store.add_events([event("e1")]) == 1
    assert store.add_events([event("e1", timestamp=9)]) == 0  # an agent restarted without its spool
    assert sent[0]["ConditionExpression"] == "attribute_not_exists(pk) OR expires_at < :now"
    assert (sent[0]["Item"]["pk"]["S"], sent[0]["Item"]["sk"]["S"]) == (f"E#{TASK}", f"{cid(1)}#e1")
    assert [e["timestamp"] for e in store.events_of_task(TASK)] == [at(0)]


def change(kind: str, old: str, new: str, timestamp: float, n: int = 1) -> dict:
    """An event as the agent and ECS make it, its ID derived from the change."""
    return {"event_id": records.event_id(cid(n), kind, old, new), "container_id": cid(n), "task_id": TASK,
            "event": kind, "from": old, "to": new, "timestamp": at(timestamp)}  # fmt: skip


def test_a_report_puts_the_record_with_its_events_in_one_conditional_put(dynamodb_mock, monkeypatch):
    store = dynamodb_mock()
    monkeypatch.setattr(dynamodb.time, "time_ns", lambda: 1_764_000_000_000_000_000)
    appeared = change("appeared", "", "PENDING", 0)
    with Stubber(store.client) as stub:
        stub.add_response("get_item", {})
        new = records.merge(None, record(1, status="PENDING"), at(1))
        arrival = "01764000000000000000000000"
        condition = {"ConditionExpression": "attribute_not_exists(pk)"}
        item = store._item(new, 1, ((appeared, arrival),))
        stub.add_response("put_item", {}, {"TableName": store.table, "Item": item, **condition})
        assert store.record_report([record(1, status="PENDING")], [appeared], at(1)) == ([new], 1)
        stub.assert_no_pending_responses()
    assert json.loads(zlib.decompress(item["ev"]["B"])) == [["appeared", "", "PENDING", at(0), arrival]]  # no ID
    assert dynamodb.write_units(item) == 1


def test_a_containers_life_with_its_events_is_four_record_puts_of_one_write_unit_each(dynamodb_mock):
    store = dynamodb_mock(retention_days=30)
    puts = []
    store.client.meta.events.register(
        "before-parameter-build.dynamodb.PutItem", lambda params, **_: puts.append(params)
    )
    steps = [("PENDING", "", 0), ("RUNNING", "PENDING", 20), ("STOPPED", "RUNNING", 3600)]
    for status, old, seconds in steps:
        kind = "known_status" if old else "appeared"
        store.record_report(
            [record(1, status=status, sample=seconds)], [change(kind, old, status, seconds)], at(seconds)
        )
    store.record_report([], [change("vanished", "STOPPED", "", 3605)], at(3605))
    assert [p["Item"]["sk"]["S"] for p in puts] == [cid(1)] * 4  # no event item of its own
    assert [dynamodb.write_units(p["Item"]) for p in puts] == [1, 1, 1, 1]
    assert ["run" in p["Item"] for p in puts] == [False, True, False, False]  # enters and leaves `running` once
    assert len(store.events_of_container(cid(1))) == 4


def test_events_resent_in_later_reports_are_stored_once_in_the_record(dynamodb_mock):
    store = dynamodb_mock()
    appeared, running = change("appeared", "", "PENDING", 0), change("known_status", "PENDING", "RUNNING", 20)
    assert store.record_report([record(1, status="PENDING")], [appeared], at(1))[1] == 1
    assert store.record_report([record(1, sample=20)], [appeared, running, running], at(21))[1] == 1
    assert store.add_events([appeared, running]) == 0  # an agent restarted without its spool
    other = dynamodb_mock(store.table)  # a replica that has not seen the container
    assert other.record_report([record(1, sample=20)], [running], at(22))[1] == 0
    assert store.events_of_container(cid(1)) == other.events_of_task(TASK) == [appeared, running]
    items = store.client.scan(TableName=store.table)["Items"]
    assert [item["sk"]["S"] for item in items if item["pk"]["S"].startswith("C#")] == [cid(1)]
    assert not [item for item in items if item["pk"]["S"].startswith("E#")]  # no event item of its own


def test_replicas_adding_events_to_one_record_from_stale_caches_keep_each_others(dynamodb_mock):
    one = dynamodb_mock()
    two = dynamodb_mock(one.table)
    one.upsert_containers([record(1, status="PENDING")], at(0))
    two.get_container(cid(1))  # both remember version 1
    running = change("known_status", "PENDING", "RUNNING", 20)
    assert one.record_report([record(1, sample=20)], [running], at(21)) == ([], 1)
    desired = change("desired_status", "RUNNING", "STOPPED", 30)
    assert two.record_report([], [desired, running], at(31)) == ([], 1)  # refused, read again, merged
    assert one.events_of_container(cid(1)) == [running, desired]
    assert one.get_container(cid(1))["known_status"] == "RUNNING"


def test_an_event_that_would_make_the_item_cost_a_second_write_unit_is_put_apart(dynamodb_mock):
    store = dynamodb_mock()
    store.upsert_containers([record(1)], at(0))
    named = [event(hashlib.sha512(bytes([n])).hexdigest(), timestamp=n) for n in range(12)]  # stored whole
    assert store.add_events(named[:6]) == 6
    assert store.add_events(named) == 6
    assert store.add_events(named) == 0
    items = store.client.scan(TableName=store.table)["Items"]
    (kept,) = [item for item in items if item["pk"]["S"].startswith("C#")]
    apart = [item for item in items if item["pk"]["S"] == f"E#{TASK}"]
    assert dynamodb.write_units(kept) == 1 and 0 < len(apart) < 12
    assert store.events_of_container(cid(1)) == store.events_of_task(TASK) == named


def test_an_event_naming_another_task_than_its_record_is_put_apart(dynamodb_mock):
    store = dynamodb_mock()
    store.upsert_containers([record(1)], at(0))
    assert store.add_events([event("e1", task="f" * 32)]) == 1
    assert [e["event_id"] for e in store.events_of_task("f" * 32)] == ["e1"]
    assert store.events_of_container(cid(1)) == []  # as on every store: a container's events are its task's


def test_events_stored_as_items_of_their_own_are_read_with_those_in_the_record_once_each(dynamodb_mock):
    store = dynamodb_mock()
    store.upsert_containers([record(1)], at(0))
    store.add_events([event("e1"), event("e2", timestamp=2)])
    store._put_event(event("e1"), "00000000000000000000000000")  # as a table written before events moved in
    store._put_event(event("e0", timestamp=-1), "00000000000000000000000000")
    assert [e["event_id"] for e in store.events_of_container(cid(1))] == ["e0", "e1", "e2"]
    assert [e["event_id"] for e in store.events_of_task(TASK)] == ["e0", "e1", "e2"]


# --- host leases, reconciliation, notes --------------------------------------------------------------------

HOST = {"cluster_name": "default", "instance_id": "i-0aaa", "host_name": "ip-10-0-1-7", "container_instance_arn": ""}


def on_host(n: int, **fields) -> dict:
    return record(n, **{**HOST, **fields})


def puts_of(store) -> list[dict]:
    puts: list[dict] = []
    store.client.meta.events.register(
        "before-parameter-build.dynamodb.PutItem", lambda params, **_: puts.append(params)
    )
    return puts


def test_a_lease_is_read_then_written_once_per_half_lease_and_a_report_in_between_costs_nothing(dynamodb_mock):
    store = dynamodb_mock()
    requests = Requests(store.client, "dynamodb")
    store.record_report([], [], at(0), host=HOST)
    assert requests.counts == {"GetItem": 1, "PutItem": 1}
    requests.reset()
    for minute in (1, 2, 3, 4):  # the agent's keep-alives
        store.record_report([], [], at(minute), host=HOST)
    assert requests.counts == {}
    store.record_report([], [], at(4.5), host=HOST)
    assert requests.counts == {"GetItem": 1, "PutItem": 1}
    items = store.client.query(
        TableName=store.table, KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": {"S": "H"}}
    )["Items"]
    assert [(item["sk"]["S"], item["at"]["S"]) for item in items] == [(liveness.host_key(HOST), at(4.5))]


def test_a_worker_that_finds_the_lease_renewed_by_another_writes_nothing(dynamodb_mock):
    one = dynamodb_mock()
    two = dynamodb_mock(one.table)
    requests = Requests(two.client, "dynamodb")
    one.record_report([], [], at(0), host=HOST)
    two.record_report([], [], at(1), host=HOST)
    two.record_report([], [], at(2), host=HOST)
    assert requests.counts == {"GetItem": 1}  # read once, then remembered
    one.record_report([], [], at(4.5), host=HOST)
    requests.reset()
    two.record_report([], [], at(4.6), host=HOST)  # due by its memory: reads, finds it renewed
    assert requests.counts == {"GetItem": 1}
    assert two.host_leases() == {liveness.host_key(HOST): at(4.5)}


def test_host_leases_are_one_query_of_one_partition(dynamodb_mock):
    store = dynamodb_mock()
    hosts = [{**HOST, "instance_id": f"i-{n:04x}"} for n in range(30)]
    for host in hosts:
        store.record_report([], [], at(0), host=host)
    requests = Requests(store.client, "dynamodb")
    assert store.host_leases() == {liveness.host_key(host): at(0) for host in hosts}
    assert requests.counts == {"Query": 1}


def test_a_full_snapshot_finds_what_vanished_in_one_index_query_and_stops_it_in_one_put(dynamodb_mock):
    store = dynamodb_mock()
    store.record_report([on_host(1), on_host(2)], [], at(0), full=True, host=HOST)
    requests, puts = Requests(store.client, "dynamodb"), puts_of(store)
    store.record_report([on_host(1)], [], at(4), full=True, host=HOST)
    # The unchanged record and the lease: not due; the stop moves the discovery generation.
    assert requests.counts == {"Query": 1, "PutItem": 1, "UpdateItem": 1}
    (put,) = puts
    assert put["Item"]["sk"]["S"] == cid(2) and not {"host", "run"} & set(put["Item"])  # leaves both indexes
    assert dynamodb.write_units(put["Item"]) == 1
    assert sorted((e["event"], e["from"], e["to"]) for e in store.events_of_container(cid(2))) == [
        ("appeared", "", "RUNNING"),
        ("known_status", "RUNNING", "STOPPED"),
        ("vanished", "RUNNING", ""),
    ]
    indexed = store.client.scan(TableName=store.table, IndexName="by_host")["Items"]
    assert [(item["host"]["S"], item["sk"]["S"]) for item in indexed] == [(liveness.host_key(HOST), cid(1))]


def test_the_by_host_index_holds_the_not_stopped_containers_of_named_hosts_only(dynamodb_mock):
    store = dynamodb_mock()
    store.upsert_containers(
        [on_host(1), on_host(2, status="PENDING"), on_host(3, status="STOPPED"), record(4)], at(0)
    )  # record(4) names a cluster and no host: the ECS feed, not a snapshot, ends it
    indexed = store.client.scan(TableName=store.table, IndexName="by_host")["Items"]
    assert sorted(item["sk"]["S"] for item in indexed) == [cid(1), cid(2)]


def test_a_resync_whose_records_only_moved_their_sample_time_writes_nothing_within_the_resolution(dynamodb_mock):
    store = dynamodb_mock()
    snapshot = [on_host(1), on_host(2)]
    store.record_report(snapshot, [], at(0), full=True, host=HOST)
    puts = puts_of(store)
    for minute in (10, 20, 30, 40, 50):  # the agent samples every snapshot anew
        store.record_report([{**r, "sample_time": at(minute)} for r in snapshot], [], at(minute), full=True, host=HOST)
    assert [p["Item"]["pk"]["S"] for p in puts] == ["H"] * 5  # the lease at each (due after 4.5 min), no record
    store.record_report([{**r, "sample_time": at(60)} for r in snapshot], [], at(60), full=True, host=HOST)
    assert store.get_container(cid(1))["sample_time"] == at(60)  # last_seen an hour old: written


def test_a_by_host_index_still_being_backfilled_reconciles_nothing_until_it_is_active(dynamodb_mock, monkeypatch):
    store = dynamodb_mock()
    store.record_report([on_host(1), on_host(2)], [], at(0), full=True, host=HOST)
    monkeypatch.setattr(store, "_hosts_indexed", False)
    monkeypatch.setattr(store, "_index_checked_at", time.monotonic())  # looked a moment ago: CREATING
    store.record_report([on_host(1, sample=1)], [], at(1), full=True, host=HOST)
    assert store.get_container(cid(2))["known_status"] == "RUNNING"
    monkeypatch.setattr(store, "_index_checked_at", -float("inf"))  # looks again: ACTIVE
    store.record_report([on_host(1, sample=2)], [], at(2), full=True, host=HOST)
    assert store.get_container(cid(2))["known_status"] == "STOPPED"


def test_transitions_the_report_did_not_name_ride_in_the_records_put(dynamodb_mock):
    store = dynamodb_mock()
    store.record_report([on_host(1, status="PENDING")], [], at(0), host=HOST)
    puts = puts_of(store)
    assert store.record_report([on_host(1, sample=1)], [], at(1), host=HOST) == ([], 0)  # none of its own
    (put,) = puts
    assert put["Item"]["sk"]["S"] == cid(1) and dynamodb.write_units(put["Item"]) == 1
    assert [row[:3] for row in json.loads(zlib.decompress(put["Item"]["ev"]["B"]))] == [
        ["appeared", "", "PENDING"],
        ["known_status", "PENDING", "RUNNING"],
    ]


def test_a_note_is_one_compressed_item_read_by_every_replica(dynamodb_mock):
    store = dynamodb_mock()
    key = "taskdef/" + "x" * 248
    value = json.dumps({"containerDefinitions": [{"name": f"c{n}", "portMappings": [n]} for n in range(2000)]})
    value = value[: 64 * 1024 - 2] + "\u00e9\ud800"  # up to 64 KiB, any text
    store.put_note(key, value)
    item = store.client.get_item(TableName=store.table, Key={"pk": {"S": "N#" + key}, "sk": {"S": "N"}})["Item"]
    assert len(item["b"]["B"]) < len(value) / 4
    assert dynamodb_mock(store.table).get_note(key) == value
    store.put_note(key, "replaced")
    assert store.get_note(key) == "replaced" and store.get_note("taskdef/other") is None


# --- failures ----------------------------------------------------------------------------------------------


def throttling(client, operation: str, times: int):
    """Answer the next ``times`` calls of ``operation`` as DynamoDB does when it throttles."""
    left = [times]
    message = "Throughput exceeds the current capacity of your table or index."
    body = json.dumps({"__type": "com.amazonaws.dynamodb.v20120810#ThrottlingException", "message": message}).encode()

    def answer(request, **_):
        if left[0] and request.headers.get("X-Amz-Target", b"").endswith(operation.encode()):
            left[0] -= 1
            return AWSResponse(request.url, 400, {"Content-Type": "application/x-amz-json-1.0"}, RawBody(body))
        return None

    client.meta.events.register("before-send.dynamodb", answer)
    return left


def test_throttling_is_retried(dynamodb_server, no_backoff):
    store = dynamodb_server(max_attempts=3)
    left = throttling(store.client, "PutItem", 2)
    store.upsert_containers([record(1)], at(1))
    assert left == [0]
    assert store.get_container(cid(1)) is not None


def test_throttling_after_the_retries_answers_503_with_retry_after(moto_server, no_backoff, make_app):
    url = f"dynamodb://t-throttle?region={REGION}&endpoint_url={moto_server}&create=true&max_attempts=2"
    app = make_app({"store": url, "token": "t", "service_names": False})
    store = app.extensions["ecs_id_mapper"].store
    throttling(store.client, "Query", 2)
    answer = app.test_client().get(f"/query/container_id/{cid(1)[:12]}")
    assert answer.status_code == 503
    assert answer.headers["Retry-After"] == "2"
    assert answer.get_json()["error"] == "service_unavailable"
    assert app.test_client().get(f"/query/container_id/{cid(1)[:12]}").status_code == 404  # it answers again


def test_an_unreachable_endpoint_is_unavailable():
    store = DynamoDBStore("down", region=REGION, endpoint_url=f"http://127.0.0.1:{free_port()}", max_attempts=1)
    for call in (store.ping, lambda: store.get_container(cid(1)), lambda: store.upsert_containers([record(1)], at(1))):
        with pytest.raises(StoreUnavailable, match="Could not connect"):
            call()
    store.close()


def test_a_table_deleted_under_a_running_store_is_unavailable_naming_it(dynamodb_mock):
    store = dynamodb_mock()
    store.client.delete_table(TableName=store.table)
    with pytest.raises(StoreUnavailable, match=r"deploy/cloudformation\.yaml"):
        store.get_container(cid(1))


# --- cost --------------------------------------------------------------------------------------------------


def test_an_unchanged_resync_costs_nothing_warm_and_one_batch_read_cold(dynamodb_mock):
    store = dynamodb_mock()
    fleet = [record(n) for n in range(50)]
    store.upsert_containers(fleet, at(0))
    requests = Requests(store.client, "dynamodb")
    store.upsert_containers(fleet, at(1))
    assert sum(requests.counts.values()) == 0
    cold = dynamodb_mock(store.table)
    requests = Requests(cold.client, "dynamodb")
    cold.upsert_containers(fleet, at(2))
    assert requests.counts == {"BatchGetItem": 1}


def test_a_lookup_is_one_request(dynamodb_mock):
    store = dynamodb_mock()
    store.upsert_containers([record(1)], at(0))
    requests = Requests(store.client, "dynamodb")
    store.get_container(cid(1))
    store.find_containers(cid(1)[:12], 10)
    assert requests.counts == {"GetItem": 1, "Query": 1}


def test_the_running_containers_are_a_query_per_key_of_a_sparse_sharded_index_carrying_the_records(dynamodb_mock):
    store = dynamodb_mock()
    running = [record(n) for n in range(1, 41)]
    store.upsert_containers([*running, record(41, status="STOPPED"), record(42, status="PENDING")], at(0))
    requests = Requests(store.client, "dynamodb")

    assert sorted(r["container_id"] for r in store.running_containers()) == [cid(n) for n in range(1, 41)]
    assert requests.counts == {"Query": RUNNING_SHARDS + 1}  # each key, and the one of items written unsharded
    indexed = store.client.scan(TableName=store.table, IndexName="running")["Items"]
    assert sorted(item["sk"]["S"] for item in indexed) == [cid(n) for n in range(1, 41)]  # not stopped, pending
    assert {item["run"]["S"] for item in indexed} == {f"RUNNING#{shard}" for shard in range(RUNNING_SHARDS)}
    assert all("ev" not in item for item in indexed)  # the index carries records, not their events


def test_a_running_record_written_before_the_index_was_sharded_is_listed_until_its_next_write(dynamodb_mock):
    store = dynamodb_mock()
    store.upsert_containers([record(1)], at(0))
    store.client.update_item(
        TableName=store.table, Key=record_key(cid(1)), UpdateExpression="SET #run = :old",
        ExpressionAttributeNames={"#run": "run"}, ExpressionAttributeValues={":old": {"S": "RUNNING"}},
    )  # fmt: skip
    assert [r["container_id"] for r in store.running_containers()] == [cid(1)]
    store.upsert_containers([record(1, status="STOPPED")], at(1))
    assert store.running_containers() == []


def test_update_task_reaches_records_this_process_wrote_before_the_index_lists_them(dynamodb_mock, monkeypatch):
    store = dynamodb_mock()
    store.upsert_containers([record(1), record(2)], at(0))
    pages = store._pages
    # The task index has not caught up with the write yet: it lists none of the task's containers.
    monkeypatch.setattr(store, "_pages", lambda **params: [] if params.get("IndexName") else pages(**params))
    store.update_task(TASK, {"service_name": "api"})
    assert [store.get_container(cid(n)).get("service_name") for n in (1, 2)] == ["api", "api"]
