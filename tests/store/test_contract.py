"""The store contract: written once, run against every backend (see ``make_store`` in conftest)."""

from __future__ import annotations

import inspect
import json
from datetime import datetime, timedelta

import pytest

from server.store.base import Store
from server.store.dynamodb import DynamoDBStore
from server.store.sdb import SimpleDBStore
from server.store.sqlite import SQLiteStore
from tests.store.samples import (
    FARGATE_TASK,
    OTHER_TASK,
    T0,
    TASK,
    at,
    cid,
    event,
    feed_record,
    record,
    runtime_id,
)


def resolution(store: Store) -> float:
    """How stale a backend may leave last_seen when nothing else changed, in minutes (SimpleDB saves writes)."""
    return getattr(store, "last_seen_resolution", 0) / 60


# --- the interface -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", [SQLiteStore, SimpleDBStore, DynamoDBStore])
def test_every_backend_implements_the_whole_interface(backend):
    assert not inspect.isabstract(backend)
    for name in Store.__abstractmethods__ | {"close"}:
        ours, theirs = inspect.signature(getattr(Store, name)), inspect.signature(getattr(backend, name))
        # A trailing underscore (a parameter named so as not to shadow a module) is the same name.
        shape = [(p.name.rstrip("_"), p.kind, p.default) for p in ours.parameters.values()]
        assert [(p.name.rstrip("_"), p.kind, p.default) for p in theirs.parameters.values()] == shape, name
        assert theirs.return_annotation == ours.return_annotation, name
    assert backend.kind != Store.kind


# --- upsert_containers -------------------------------------------------------------------------------------


def test_a_new_record_is_returned_as_stored(store):
    created = store.upsert_containers([record(1)], at(1))
    assert created == [{**record(1), "first_seen": at(0), "last_seen": at(1)}]
    assert store.get_container(cid(1)) == created[0]


def test_the_task_of_a_container_is_read_by_its_full_id(store):
    store.upsert_containers([record(1)], at(1))
    assert store.task_of_container(cid(1)) == TASK
    assert store.task_of_container(cid(2)) is None


def test_the_statuses_of_a_task_come_in_the_order_of_its_records(store):
    store.upsert_containers([record(2, name="b"), record(1, name="a", status="STOPPED")], at(1))
    assert store.statuses_of_task(TASK) == [(cid(1), "STOPPED"), (cid(2), "RUNNING")]
    assert store.statuses_of_task(OTHER_TASK) == []


def test_upsert_is_idempotent(store):
    store.upsert_containers([record(1), record(2)], at(1))
    before = [store.get_container(cid(1)), store.get_container(cid(2))]
    assert store.upsert_containers([record(1), record(2)], at(1)) == []
    assert [store.get_container(cid(1)), store.get_container(cid(2))] == before


def test_only_new_records_are_returned(store):
    store.upsert_containers([record(1)], at(1))
    created = store.upsert_containers([record(1), record(2)], at(2))
    assert [r["container_id"] for r in created] == [cid(2)]


def test_first_seen_is_kept_and_last_seen_advanced(store):
    """first_seen is when the agent first saw the container (its first sample), not when the report arrived."""
    store.upsert_containers([record(1)], at(1))
    store.upsert_containers([record(1, sample=60)], at(61))
    stored = store.get_container(cid(1))
    assert (stored["first_seen"], stored["last_seen"], stored["sample_time"]) == (at(0), at(61), at(60))


def test_last_seen_of_an_unchanged_record_moves_within_the_backends_resolution(store):
    store.upsert_containers([record(1)], at(1))
    for minute in (2, 3, 30, 31):
        store.upsert_containers([record(1)], at(minute))
        last_seen = datetime.fromisoformat(store.get_container(cid(1))["last_seen"])
        assert timedelta(0) <= T0 + timedelta(minutes=minute) - last_seen <= timedelta(minutes=resolution(store))


def test_a_status_change_is_stored_at_once(store):
    store.upsert_containers([record(1, status="PENDING")], at(1))
    store.upsert_containers([record(1, status="RUNNING", sample=1)], at(1.5))
    assert store.get_container(cid(1))["known_status"] == "RUNNING"


def test_an_older_sample_changes_nothing_but_last_seen(store):
    store.upsert_containers([record(1, status="STOPPED", sample=10)], at(10))
    store.upsert_containers([record(1, status="RUNNING", sample=5, image="old")], at(60))
    stored = store.get_container(cid(1))
    assert (stored["known_status"], stored["image"], stored["sample_time"]) == ("STOPPED", record(1)["image"], at(10))
    late = datetime.fromisoformat(at(60)) - datetime.fromisoformat(stored["last_seen"])
    assert timedelta(0) <= late <= timedelta(minutes=resolution(store))


def test_stopped_at_is_set_once(store):
    store.upsert_containers([record(1)], at(1))
    assert "stopped_at" not in store.get_container(cid(1))
    store.upsert_containers([record(1, status="STOPPED", sample=2)], at(3))
    assert store.get_container(cid(1))["stopped_at"] == at(2)
    store.upsert_containers([record(1, status="STOPPED", sample=9)], at(10))
    assert store.get_container(cid(1))["stopped_at"] == at(2)


def test_identity_and_cached_fields_survive_later_reports(store):
    store.upsert_containers([record(1)], at(1))
    store.update_container(cid(1), {"newrelic_url": "https://rpm.example/1"})
    store.update_task(TASK, {"service_name": "api"})
    store.upsert_containers([record(1, task=OTHER_TASK, sample=5, newrelic_url="x", first_seen="x")], at(6))
    stored = store.get_container(cid(1))
    assert (stored["task_id"], stored["newrelic_url"], stored["service_name"]) == (TASK, "https://rpm.example/1", "api")
    assert stored["first_seen"] == at(0)  # the first sample time


def test_one_container_twice_in_a_batch_is_merged_in_order(store):
    first, second = record(1, status="PENDING"), record(1, status="RUNNING", sample=1)
    created = store.upsert_containers([first, second], at(2))
    assert [r["known_status"] for r in created] == ["PENDING"]
    assert store.get_container(cid(1))["known_status"] == "RUNNING"


def test_values_are_stored_exactly(store):
    hostile = {
        "image": "reg.example/" + "é☃" * 150 + "/img:1",  # over 1 KiB of UTF-8
        "docker_name": " <&>\"' \t\n spaces  ",
        "host_name": "",
        "networks": json.dumps([{"network_mode": "awsvpc", "ipv4_addresses": ["10.0.0.1"]}]),
        "ports": json.dumps([{"container_port": p, "host_port": 30000 + p, "protocol": "tcp"} for p in range(100)]),
        "instance_id": "\x01\x7f\u2028\U0001f433",
    }
    store.upsert_containers([record(1, **hostile)], at(1))
    stored = store.get_container(cid(1))
    assert {k: stored[k] for k in hostile} == hostile


def test_many_records_in_one_report(store):
    created = store.upsert_containers([record(n) for n in range(60)], at(1))
    assert len(created) == 60
    assert len(store.containers_of_task(TASK)) == 60


# --- lookups -----------------------------------------------------------------------------------------------


def test_an_unknown_container_is_none(store):
    assert store.get_container(cid(1)) is None
    store.upsert_containers([record(2)], at(1))
    assert store.get_container(cid(1)) is None


def test_find_by_prefix(store):
    short = "abcdef012345"
    ids = [cid(n, short) for n in (0x300, 0x100, 0x200)]
    store.upsert_containers([record(n, container_id=c) for n, c in zip((3, 1, 2), ids, strict=True)], at(1))
    store.upsert_containers([record(9)], at(1))
    assert [r["container_id"] for r in store.find_containers(short, 10)] == sorted(ids)
    assert [r["container_id"] for r in store.find_containers(short, 2)] == sorted(ids)[:2]
    assert [r["container_id"] for r in store.find_containers(sorted(ids)[1][:62], 10)] == [sorted(ids)[1]]
    assert [r["container_id"] for r in store.find_containers(ids[0], 10)] == [ids[0]]
    assert store.find_containers("abcdef012346", 10) == []
    assert [store.get_container(c)["container_id"] for c in ids] == ids


def test_containers_of_a_task_by_name_then_id(store):
    store.upsert_containers(
        [record(1, name="web"), record(2, name="api"), record(3, name="api"), record(4, task=OTHER_TASK)], at(1)
    )
    found = store.containers_of_task(TASK)
    assert [(r["container_name"], r["container_id"]) for r in found] == [
        ("api", cid(2)),
        ("api", cid(3)),
        ("web", cid(1)),
    ]
    assert [r["container_id"] for r in store.containers_of_task(OTHER_TASK)] == [cid(4)]
    assert store.containers_of_task("ffffffffffffffffffffffffffffffff") == []


def test_containers_of_a_service(store):
    store.upsert_containers(
        [record(1, name="b"), record(2, name="a"), record(3, task=OTHER_TASK), record(4, task="f" * 32)], at(1)
    )
    store.upsert_containers([record(5, task="e" * 32, cluster_name="other")], at(1))
    for task in (TASK, OTHER_TASK, "e" * 32):
        store.update_task(task, {"service_name": "api"})
    found = store.containers_of_service("default", "api")
    assert [r["container_id"] for r in found] == [cid(2), cid(1), cid(3)]
    assert [r["container_id"] for r in store.containers_of_service("other", "api")] == [cid(5)]
    assert store.containers_of_service("default", "nope") == []


def test_running_containers_follow_their_status(store):
    assert store.running_containers() == []
    store.upsert_containers([record(n, task=f"{n:032x}") for n in range(1, 8)], at(1))
    store.upsert_containers([record(8, status="PENDING"), record(9, status="STOPPED")], at(1))
    store.upsert_containers([record(2, task=f"{2:032x}", status="STOPPED", sample=2)], at(2))
    store.update_container(cid(3), {"newrelic_url": "https://one.newrelic.com/redirect/entity/x"})

    running = sorted(store.running_containers(), key=lambda r: r["container_id"])

    assert [r["container_id"] for r in running] == [cid(n) for n in (1, 3, 4, 5, 6, 7)]
    assert running[1] == store.get_container(cid(3))
    store.upsert_containers([record(8, status="RUNNING", sample=3)], at(3))
    assert cid(8) in {r["container_id"] for r in store.running_containers()}


def test_update_container(store):
    store.upsert_containers([record(1), record(2)], at(1))
    store.update_container(cid(1), {"newrelic_url": "https://rpm.example/1", "service_name": "api"})
    assert store.get_container(cid(1))["newrelic_url"] == "https://rpm.example/1"
    assert "newrelic_url" not in store.get_container(cid(2))
    assert [r["container_id"] for r in store.containers_of_service("default", "api")] == [cid(1)]
    store.update_container(cid(7), {"newrelic_url": "x"})
    assert store.get_container(cid(7)) is None


def test_update_task(store):
    store.upsert_containers([record(1), record(2), record(3, task=OTHER_TASK)], at(1))
    store.update_task(TASK, {"service_name": "api"})
    assert [store.get_container(cid(n)).get("service_name") for n in (1, 2, 3)] == ["api", "api", None]
    store.update_task("f" * 32, {"service_name": "api"})  # no such task: nothing happens
    store.update_task(TASK, {"service_name": "api2"})
    assert [r["container_id"] for r in store.containers_of_service("default", "api2")] == [cid(1), cid(2)]
    assert store.containers_of_service("default", "api") == []


# --- events ------------------------------------------------------------------------------------------------


def test_events_are_stored_once(store):
    assert store.add_events([event("e1"), event("e2"), event("e1")]) == 2
    assert store.add_events([event("e2"), event("e3")]) == 1
    assert store.add_events([]) == 0
    store.upsert_containers([record(1)], at(1))
    assert [e["event_id"] for e in store.events_of_container(cid(1))] == ["e1", "e2", "e3"]
    assert store.events_of_container(cid(1))[0] == event("e1")


def test_events_oldest_first_then_by_arrival(store):
    store.upsert_containers([record(1), record(2)], at(1))
    store.add_events([event("z-late", timestamp=5), event("b-same", timestamp=3), event("a-same", timestamp=3)])
    store.add_events([event("c-same", timestamp=3), event("early", timestamp=1), event("other", n=2, timestamp=2)])
    assert [e["event_id"] for e in store.events_of_container(cid(1))] == [
        "early",
        "b-same",
        "a-same",
        "c-same",
        "z-late",
    ]
    assert [e["event_id"] for e in store.events_of_task(TASK)] == [
        "early",
        "other",
        "b-same",
        "a-same",
        "c-same",
        "z-late",
    ]


def test_events_of_a_task_are_only_its_own(store):
    store.upsert_containers([record(1), record(2, task=OTHER_TASK)], at(1))
    store.add_events([event("e1"), event("e2", n=2, task=OTHER_TASK, to=None, **{"from": None})])
    assert [e["event_id"] for e in store.events_of_task(TASK)] == ["e1"]
    assert store.events_of_task(OTHER_TASK) == [event("e2", n=2, task=OTHER_TASK, to=None, **{"from": None})]
    assert store.events_of_container(cid(2))[0]["to"] is None
    assert store.events_of_task("f" * 32) == []
    assert store.events_of_container(cid(9)) == []


# --- sharing and health ------------------------------------------------------------------------------------


def test_two_handles_share_one_store(make_store):
    one, two = make_store(), make_store()
    one.upsert_containers([record(1)], at(1))
    one.add_events([event("e1")])
    assert two.get_container(cid(1)) == one.get_container(cid(1))
    assert two.upsert_containers([record(1, status="STOPPED", sample=2)], at(3)) == []
    assert one.get_container(cid(1))["known_status"] == "STOPPED"
    assert [e["event_id"] for e in two.events_of_task(TASK)] == ["e1"]


def test_ping(store):
    assert store.ping() is None


# --- Fargate runtime IDs and the event feed's entries ---------------------------------------------------------


def test_fargate_runtime_ids_are_found_in_full_by_prefix_and_by_task(store):
    store.upsert_containers([feed_record(1, 1), feed_record(2, 1, name="log-router")], at(1))
    # A Docker ID that shares the runtime IDs' first 12 characters is a neighbour, not a match of the longer ones.
    docker = FARGATE_TASK[:12] + "f" * 52
    store.upsert_containers([record(3, container_id=docker)], at(1))
    assert store.get_container(runtime_id(1))["container_name"] == "c1"
    assert [r["container_id"] for r in store.find_containers(FARGATE_TASK[:12], 10)] == sorted(
        [runtime_id(1), runtime_id(2), docker]
    )
    assert [r["container_id"] for r in store.find_containers(FARGATE_TASK, 10)] == [runtime_id(1), runtime_id(2)]
    assert [r["container_id"] for r in store.find_containers(FARGATE_TASK + "-", 10)] == [runtime_id(1), runtime_id(2)]
    assert [r["container_id"] for r in store.find_containers(runtime_id(2)[:-3], 10)] == [runtime_id(2)]
    assert [r["container_id"] for r in store.containers_of_task(FARGATE_TASK)] == [runtime_id(1), runtime_id(2)]
    assert store.get_container(runtime_id(3)) is None


def test_events_of_a_fargate_container(store):
    store.upsert_containers([feed_record(1, 1)], at(1))
    store.add_events([event("f1", container_id=runtime_id(1), task=FARGATE_TASK)])
    assert [e["event_id"] for e in store.events_of_container(runtime_id(1))] == ["f1"]
    assert [e["event_id"] for e in store.events_of_task(FARGATE_TASK)] == ["f1"]


def test_a_lower_task_version_never_overwrites_a_higher_one(store):
    stopped = feed_record(1, 5, status="STOPPED", sample=5, exit_code="137", stopped_reason="Essential exited")
    store.upsert_containers([stopped], at(6))
    store.upsert_containers([feed_record(1, 3, sample=3), feed_record(1, 5, status="STOPPED", sample=5)], at(7))
    kept = store.get_container(runtime_id(1))
    assert (kept["known_status"], kept["exit_code"], kept["stopped_reason"]) == ("STOPPED", "137", "Essential exited")
    assert kept["state_version"] == "5"


def test_the_agent_and_the_feed_merge_into_one_record(store):
    agent = record(1, sample=2, instance_ip="10.0.0.7", instance_id="i-0abc")
    feed = {k: v for k, v in record(1, sample=1).items() if k not in ("ports", "container_port", "instance_port")}
    feed.update(state_version="3", service_name="worker", launch_type="EC2", image="", desired_status="")
    store.upsert_containers([agent], at(2))
    store.upsert_containers([feed], at(3))  # older by sample time: the feed's own fields still apply
    merged = store.get_container(cid(1))
    assert (merged["instance_ip"], merged["ports"], merged["service_name"]) == ("10.0.0.7", agent["ports"], "worker")
    stopped = {**feed, "state_version": "4", "sample_time": at(4), "known_status": "STOPPED", "exit_code": "1"}
    store.upsert_containers([stopped], at(4))
    store.upsert_containers([{**agent, "instance_ip": "", "sample_time": at(3)}], at(5))  # a late agent report
    merged = store.get_container(cid(1))
    assert (merged["known_status"], merged["exit_code"], merged["instance_ip"]) == ("STOPPED", "1", "10.0.0.7")
    assert merged["image"] == agent["image"] and merged["desired_status"] == "RUNNING"


def test_update_tasks(store):
    store.upsert_containers([record(1), record(2), record(3, task=OTHER_TASK)], at(1))
    store.update_tasks(
        {TASK: {"service_name": "api"}, OTHER_TASK: {"service_name": "jobs"}, "f" * 32: {"service_name": "x"}}
    )
    assert [store.get_container(cid(n)).get("service_name") for n in (1, 2, 3)] == ["api", "api", "jobs"]
    store.update_tasks({})
    assert [r["container_id"] for r in store.containers_of_service("default", "api")] == [cid(1), cid(2)]
