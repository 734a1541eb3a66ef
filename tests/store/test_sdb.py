"""What only the SimpleDB store has: configuration, requests by name only, SimpleDB's limits, failures, cost."""

from __future__ import annotations

import logging
import threading
from urllib.parse import parse_qs

import pytest
from botocore.awsrequest import AWSResponse
from botocore.stub import Stubber
from moto import mock_aws
from moto.server import ThreadedMotoServer

from server.store import StoreUnavailable, open_store
from server.store.sdb import SimpleDBStore, items
from server.store.sdb.records import GENERATION_ITEM
from testkit.simpledb import moto_items
from tests.store.conftest import REGION, RawBody, Requests
from tests.store.samples import TASK, at, cid, event, record
from tests.support import free_port

# --- configuration -----------------------------------------------------------------------------------------


def test_opened_from_a_url_with_options():
    with mock_aws():
        store = open_store(f"sdb://mapper-prod?region={REGION}&last_seen_resolution=60&max_attempts=2&max_workers=3")
        assert isinstance(store, SimpleDBStore)
        assert (store.region, store.last_seen_resolution, store.max_workers) == (REGION, 60.0, 3)
        assert store.config.retries == {"mode": "standard", "total_max_attempts": 2}
        assert sorted(store.client.list_domains()["DomainNames"]) == [
            "mapper-prod.containers",
            "mapper-prod.events",
            "mapper-prod.indexes",
        ]
        store.close()


@pytest.mark.parametrize(
    ("prefix", "options", "message"),
    [
        ("ok", {"colour": "blue"}, "unknown sdb store option"),
        ("ok", {"read_timeout": "soon"}, "read_timeout='soon' is not a number"),
        ("ok", {"max_attempts": "-1"}, "must not be negative"),
        ("bad prefix", {}, "invalid domain name"),
        ("x" * 250, {}, "invalid domain name"),
    ],
)
def test_bad_options_stop_at_once(prefix, options, message):
    with pytest.raises(ValueError, match=message):
        SimpleDBStore(prefix, region=REGION, **options)


def test_a_missing_region_is_a_configuration_error(monkeypatch):
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    with pytest.raises(ValueError, match=r"region"):
        open_store("sdb://noregion")


def test_the_endpoint_comes_from_boto3s_own_variable(monkeypatch, moto_server):
    monkeypatch.setenv("AWS_ENDPOINT_URL_SIMPLEDB", moto_server)
    store = SimpleDBStore("envendpoint", region=REGION)
    assert store.client.meta.endpoint_url == moto_server
    store.ping()
    store.close()


def test_a_variable_named_after_the_client_is_ignored_as_boto3_does(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_SDB", "http://127.0.0.1:9")
    with mock_aws():
        store = SimpleDBStore("envignored", region=REGION)
        assert store.client.meta.endpoint_url == f"https://sdb.{REGION}.amazonaws.com"
        store.close()


def test_domains_are_created_once_and_never_again(sdb_mock, monkeypatch):
    calls: list[str] = []
    make_client = SimpleDBStore._new_client

    def counted_client(self):
        client = make_client(self)
        client.meta.events.register("before-call.sdb", lambda model, **_: calls.append(model.name))
        return client

    monkeypatch.setattr(SimpleDBStore, "_new_client", counted_client)
    first = sdb_mock("shared")
    first.upsert_containers([record(1)], at(1))
    assert calls.count("CreateDomain") == 3
    calls.clear()
    second = sdb_mock("shared")  # another process starting on the same domains
    second.get_container(cid(1))
    second.upsert_containers([record(2)], at(2))
    assert (calls[0], calls.count("ListDomains"), calls.count("CreateDomain")) == ("ListDomains", 1, 0)
    assert second.get_container(cid(1)) == first.get_container(cid(1))


def test_a_store_started_while_simpledb_is_down_works_once_it_is_up(caplog):
    port = free_port()
    store = SimpleDBStore("late", region=REGION, endpoint_url=f"http://127.0.0.1:{port}", max_attempts=1)
    assert "not reachable at start" in caplog.text
    with pytest.raises(StoreUnavailable):
        store.ping()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        store.ping()
        store.upsert_containers([record(1)], at(1))
        assert store.get_container(cid(1))["task_id"] == TASK
    finally:
        store.close()
        server.stop()


# --- requests: by name, consistent, concurrent --------------------------------------------------------------


def test_every_request_path_reads_by_name_consistently(sdb_mock):
    store = sdb_mock()
    requests = Requests(store.client)
    consistent: list[bool] = []
    store.client.meta.events.register(
        "before-parameter-build.sdb.GetAttributes", lambda params, **_: consistent.append(params["ConsistentRead"])
    )
    store.upsert_containers([record(1), record(2, name="a")], at(1))
    store.add_events([event("e1")])
    store.update_container(cid(1), {"newrelic_url": "u"})
    store.update_task(TASK, {"service_name": "api"})
    store.get_container(cid(1))
    store.find_containers(cid(1)[:12], 5)
    store.containers_of_task(TASK)
    store.containers_of_service("default", "api")
    store.events_of_container(cid(1))
    store.events_of_task(TASK)
    store.ping()
    assert set(requests.counts) == {"GetAttributes", "PutAttributes"}  # no Select, no batch call
    assert consistent and all(consistent)


def test_running_containers_is_one_consistent_select_followed_page_by_page(sdb_mock):
    store = sdb_mock("pinned")
    running, stopped = record(1), record(2, status="STOPPED")
    expression = "select * from `pinned.containers` where known_status = 'RUNNING' limit 2500"

    def item(record_: dict) -> dict:
        attrs = items.record_attributes(record_)
        return {"Name": record_["container_id"][:12], "Attributes": [{"Name": n, "Value": v} for n, v in attrs.items()]}

    with Stubber(store.client) as stub:
        stub.add_response(
            "select",
            {"Items": [item(running)], "NextToken": "page-2"},
            {"SelectExpression": expression, "ConsistentRead": True},
        )
        # What the answer holds is checked again: a record that is not running, or a torn item, is left out.
        torn = {"Name": "torn", "Attributes": [{"Name": "known_status", "Value": "RUNNING"}]}
        stub.add_response(
            "select",
            {"Items": [item(stopped), torn]},
            {"SelectExpression": expression, "ConsistentRead": True, "NextToken": "page-2"},
        )
        assert store.running_containers() == [running]
        stub.assert_no_pending_responses()


def test_the_writes_of_one_report_run_on_the_bounded_pool(sdb_mock):
    store = sdb_mock(max_workers=3)
    threads: set[str] = set()
    store.client.meta.events.register(
        "before-parameter-build.sdb.PutAttributes",
        # The discovery generation's one put follows the records', from the caller's thread.
        lambda params, **_: params["ItemName"] == GENERATION_ITEM or threads.add(threading.current_thread().name),
    )
    store.upsert_containers([record(n, task=f"{n:032x}") for n in range(30)], at(1))
    assert 1 < len(threads) <= 3
    assert all(name.startswith("sdb") for name in threads)


def test_a_forked_worker_makes_its_own_client(sdb_mock):
    store = sdb_mock()
    store.upsert_containers([record(1)], at(1))
    before = store.client
    store._pid = -1  # as if gunicorn had forked after the store was made
    assert store.get_container(cid(1)) is not None
    assert store.client is not before


# --- SimpleDB's limits -------------------------------------------------------------------------------------


def test_long_values_are_split_and_put_back(sdb_mock):
    store = sdb_mock()
    ports = ",".join(f'{{"container_port":{p},"host_port":{30000 + p},"protocol":"tcp"}}' for p in range(100))
    many = record(1, ports=f"[{ports}]", image="registry.example/" + "ü" * 1000 + ":1")
    store.upsert_containers([many], at(1))  # conftest checks every name and value against 1,024 bytes
    assert store.get_container(cid(1))["ports"] == many["ports"]
    (slot,) = [a for _, name, a in moto_items() if name == cid(1)[:12]]
    assert int({a["Name"]: a["Value"] for a in slot}[items.RECORD_COUNT]) > 5


def test_a_task_index_and_an_event_log_past_256_entries_are_sharded(sdb_mock):
    store = sdb_mock()
    for start in range(0, 300, 100):
        store.upsert_containers([record(n) for n in range(start, start + 100)], at(1))
    store.add_events([event(f"e{n:03}", n=n % 7, timestamp=n % 11) for n in range(300)])
    assert len(store.containers_of_task(TASK)) == 300
    found = store.events_of_task(TASK)
    assert len(found) == 300
    assert [e["timestamp"] for e in found] == sorted(e["timestamp"] for e in found)
    assert store.add_events([event("e000", n=0), event("e299", n=299 % 7, timestamp=299 % 11)]) == 0
    names = {(domain, name) for domain, name, _ in moto_items()}
    shards = {(store.domains[domain], f"task/{TASK}/1") for domain in ("indexes", "events")}
    assert shards <= names  # and conftest checks that no item holds over 256 pairs


def test_a_service_index_past_256_tasks_is_sharded(sdb_mock):
    store = sdb_mock()
    # A service name in the records themselves (as update_task leaves it) is indexed like one set later.
    store.upsert_containers([record(n, task=f"{n:032x}", service_name="api") for n in range(259)], at(1))
    store.upsert_containers([record(259, task=f"{259:032x}")], at(1))
    store.update_task(f"{259:032x}", {"service_name": "api"})
    assert len(store.containers_of_service("default", "api")) == 260
    assert (store.domains["indexes"], f"{items.service_family('default', 'api')}/1") in {
        (domain, name) for domain, name, _ in moto_items()
    }


def test_containers_sharing_a_short_id_each_get_a_slot(sdb_mock):
    store = sdb_mock()
    short = "feedfacecafe"
    store.upsert_containers([record(n, container_id=cid(n, short)) for n in (1, 2)], at(1))
    store.upsert_containers([record(3, container_id=cid(3, short))], at(1))
    store.upsert_containers([record(3, container_id=cid(3, short), status="STOPPED", sample=1)], at(2))
    assert [r["container_id"] for r in store.find_containers(short, 10)] == [cid(n, short) for n in (1, 2, 3)]
    assert store.get_container(cid(3, short))["known_status"] == "STOPPED"
    names = sorted(name for _, name, _ in moto_items() if name.startswith(short))
    assert names == [short, f"{short}/1", f"{short}/2"]


def test_a_record_too_large_for_an_item_is_refused_before_anything_is_written(sdb_mock):
    store = sdb_mock()
    requests = Requests(store.client)
    with pytest.raises(ValueError, match="too large"):
        store.upsert_containers([record(1), record(2, image="x" * 300_000)], at(1))
    assert requests.writes == 0


# --- failures ----------------------------------------------------------------------------------------------


def failing(client, operation: str, times: int, domain: str = "", status: int = 503):
    """Answer the next ``times`` calls of ``operation`` (to ``domain``) with HTTP ``status``, as SimpleDB would."""
    left = [times]
    body = (
        b'<?xml version="1.0"?><Response><Errors><Error><Code>ServiceUnavailable</Code>'
        b"<Message>Service AmazonSimpleDB is currently unavailable.</Message></Error></Errors></Response>"
    )

    def answer(request, **_):
        sent = request.body if isinstance(request.body, str) else request.body.decode()
        form = {k: v[-1] for k, v in parse_qs(sent).items()}
        if left[0] and form.get("Action") == operation and form.get("DomainName", "").endswith(domain):
            left[0] -= 1
            return AWSResponse(request.url, status, {}, RawBody(body))
        return None

    client.meta.events.register("before-send.sdb", answer)
    return left


def test_throttling_is_retried(sdb_server, no_backoff):
    store = sdb_server(max_attempts=3)
    left = failing(store.client, "PutAttributes", 2)
    store.upsert_containers([record(1)], at(1))
    assert left == [0]
    assert store.get_container(cid(1)) is not None


def test_5xx_after_retries_is_unavailable(sdb_server, no_backoff):
    store = sdb_server(max_attempts=2)
    failing(store.client, "GetAttributes", 2)
    with pytest.raises(StoreUnavailable, match="GetAttributes"):
        store.ping()


def test_an_unreachable_endpoint_is_unavailable():
    store = SimpleDBStore("down", region=REGION, endpoint_url=f"http://127.0.0.1:{free_port()}", max_attempts=1)
    for call in (store.ping, lambda: store.get_container(cid(1)), lambda: store.upsert_containers([record(1)], at(1))):
        with pytest.raises(StoreUnavailable, match="Could not connect"):
            call()
    store.close()


def test_a_stubbed_server_error_is_unavailable(sdb_mock):
    store = sdb_mock()
    with Stubber(store.client) as stub:
        stub.add_client_error("get_attributes", "InternalError", "boom", 500)
        with pytest.raises(StoreUnavailable, match="InternalError"):
            store.get_container(cid(1))


def test_a_report_that_fails_part_way_is_invisible_until_retried(sdb_server, no_backoff, caplog):
    caplog.set_level(logging.ERROR)
    store = sdb_server(max_attempts=1)
    failing(store.client, "PutAttributes", 1, domain=".containers")
    with pytest.raises(StoreUnavailable):
        store.upsert_containers([record(1)], at(1))
    # The task index was written first; its entry leads to no record, so nothing half-written shows.
    assert (store.get_container(cid(1)), store.containers_of_task(TASK)) == (None, [])
    created = store.upsert_containers([record(1)], at(2))  # the agent's retry
    assert [r["container_id"] for r in created] == [cid(1)]
    assert [r["container_id"] for r in store.containers_of_task(TASK)] == [cid(1)]


# --- cost --------------------------------------------------------------------------------------------------


def test_an_unchanged_resync_costs_nothing_warm_and_only_reads_cold(sdb_mock):
    fleet = [record(n, task=f"{n // 5:032x}") for n in range(50)]
    warm, cold = sdb_mock(), sdb_mock(cache_size=0)
    for store in (warm, cold):
        store.upsert_containers(fleet, at(0))
    for store, reads in ((warm, 0), (cold, 50)):
        requests = Requests(store.client)
        store.upsert_containers(fleet, at(1))
        store.upsert_containers(fleet, at(4))
        assert (requests.reads, requests.writes) == (2 * reads, 0)
        requests.reset()
        store.upsert_containers(fleet, at(6))  # past the 5-minute last_seen resolution
        assert (requests.reads, requests.writes) == (reads, 50)


# Starting and stopping to run each move the discovery generation too: one more write.
@pytest.mark.parametrize(("cache_size", "changes"), [(10_000, (0, 2)), (0, (1, 2))])
def test_requests_for_one_containers_life(sdb_mock, cache_size, changes):
    store = sdb_mock(cache_size=cache_size)
    requests = Requests(store.client)
    store.upsert_containers([record(1, status="PENDING")], at(0))
    assert (requests.reads, requests.writes) == (1, 2)  # its bucket; the task index (blind), the record
    for status, minute in (("RUNNING", 1), ("STOPPED", 60)):
        requests.reset()
        store.upsert_containers([record(1, status=status, sample=minute)], at(minute))
        assert (requests.reads, requests.writes) == changes
    requests.reset()
    store.get_container(cid(1))
    store.find_containers(cid(1)[:12], 10)
    assert requests.reads == 2
