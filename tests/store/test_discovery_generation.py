"""The discovery generation on every backend, and the answer each replica keeps built on it: every kind of change
that changes what ``/sd/prometheus`` shows reaches both replicas' answers; one that does not is read by neither."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from server import liveness
from server.discovery import group_order, target_groups
from server.discovery_cache import AnswerCache
from server.records import format_time
from server.store import sqlite_layout
from server.store.base import Store
from server.store.sqlite import SQLiteStore
from tests.store.samples import FARGATE_TASK, T0, TASK, at, cid, feed_record, record

HOST = {"instance_id": "i-0abc", "host_name": "ip-10-0-1-17"}
OTHER_HOST = {"instance_id": "i-0def", "host_name": "ip-10-0-1-18"}
LEASE = 540.0
BRIDGE = '[{"container_port":8000,"host_port":49153,"protocol":"tcp"}]'
AWSVPC = '[{"network_mode":"awsvpc","ipv4_addresses":["10.0.9.9"],"ipv6_addresses":[]}]'


def on(host: dict, n: int, minute: float, **fields: str) -> dict:
    return record(n, sample=minute, instance_ip="10.0.1.17", **host, **fields)


class Replica:
    """One process's view: its store handle, its leases and its kept answer, on a clock the test moves."""

    def __init__(self, store: Store, clock: list[float]):
        self.store = store
        self.clock = clock
        self.leases = liveness.Leases(store.host_leases, LEASE, interval=0)
        self.answers = AnswerCache(store, self.leases, target_groups, group_order, now=self.now, clock=lambda: clock[0])

    def now(self) -> str:
        return format_time(T0 + timedelta(minutes=self.clock[0]))

    def shown(self) -> list[dict]:
        return json.loads(self.answers.answer()[0])

    def fresh(self) -> list[dict]:
        """The answer computed as the route did before it kept one: from the store and the leases, now."""
        return target_groups(liveness.annotate(self.store.running_containers(), self.store.host_leases(), LEASE,
                                               self.now()))  # fmt: skip


@pytest.fixture
def replicas(make_store) -> tuple[Replica, Replica, list[float]]:
    clock = [0.0]  # minutes after T0, for records, leases and the caches alike
    return Replica(make_store(), clock), Replica(make_store(), clock), clock


def agrees(*replicas: Replica) -> list[list[str]]:
    """Each replica's kept answer is the fresh one; the targets it shows."""
    shown = [replica.shown() for replica in replicas]
    for replica, answer in zip(replicas, shown, strict=True):
        assert answer == replica.fresh()
    assert all(answer == shown[0] for answer in shown)
    return [group["targets"] for group in shown[0]]


def test_every_change_discovery_shows_reaches_both_replicas(replicas):
    one, two, _ = replicas
    assert agrees(one, two) == []

    one.store.record_report([on(HOST, 1, 0, ports=BRIDGE)], [], at(0), host=HOST)  # a new running container
    assert agrees(one, two) == [["10.0.1.17:49153"]]

    one.store.record_report([on(HOST, 1, 1, ports=BRIDGE.replace("49153", "49200"))], [], at(1), host=HOST)
    assert agrees(one, two) == [["10.0.1.17:49200"]]  # a port change

    two.store.record_report([on(HOST, 2, 2, ports=BRIDGE.replace("49153", "49300"))], [], at(2), host=HOST)
    assert len(agrees(one, two)) == 2
    snapshot = [on(HOST, 1, 3, ports=BRIDGE.replace("49153", "49200"))]
    two.store.record_report(snapshot, [], at(3), full=True, host=HOST)  # container 2 vanished
    assert agrees(one, two) == [["10.0.1.17:49200"]]

    one.store.update_task(TASK, {"service_name": "api"})  # what the service-name job learns
    assert one.shown()[0]["labels"]["__meta_ecs_service"] == "api"
    agrees(one, two)

    fargate = {**feed_record(5, 1), "ports": '[{"container_port":8080,"host_port":8080,"protocol":"tcp"}]'}
    two.store.record_report([{**fargate, "networks": AWSVPC}], [], at(4))  # the feed's events
    assert agrees(one, two) == [["10.0.1.17:49200"], ["10.0.9.9:8080"]]
    two.store.record_report([{**feed_record(5, 2, status="STOPPED", sample=5), "networks": AWSVPC}], [], at(5))
    assert agrees(one, two) == [["10.0.1.17:49200"]]
    assert FARGATE_TASK not in json.dumps(one.shown())

    one.store.record_report([on(HOST, 1, 6, ports=BRIDGE, known_status="STOPPED")], [], at(6), host=HOST)  # a stop
    assert agrees(one, two) == []


def test_a_host_lost_by_its_lease_and_back_needs_no_write(replicas):
    one, two, clock = replicas
    one.store.record_report([on(HOST, 1, 0, ports=BRIDGE)], [], at(0), host=HOST)
    other = {**on(OTHER_HOST, 2, 0, ports=BRIDGE), "instance_ip": "10.0.1.18"}
    one.store.record_report([other], [], at(0), host=OTHER_HOST)
    assert len(agrees(one, two)) == 2

    clock[0] = 7.0  # the other host keeps reporting (its renewal is due once half the lease passed)
    two.store.record_report([{**other, "sample_time": at(7)}], [], at(7), host=OTHER_HOST)
    clock[0] = LEASE / 60 + 1  # the first host's lease lapsed: nothing was written
    assert agrees(one, two) == [["10.0.1.18:49153"]]

    one.store.record_report([on(HOST, 1, clock[0], ports=BRIDGE)], [], at(clock[0]), host=HOST)  # back
    assert len(agrees(one, two)) == 2


def test_what_discovery_does_not_show_moves_no_generation_and_rebuilds_nothing(replicas):
    one, two, clock = replicas
    one.store.record_report([on(HOST, 1, 0, ports=BRIDGE)], [], at(0), host=HOST)
    one.store.record_report([on(HOST, 3, 0, known_status="PENDING")], [], at(0), host=HOST)
    agrees(one, two)
    generation, reads = one.store.discovery_generation(), (one.answers.reads, two.answers.reads)

    clock[0] = 1.0
    one.store.record_report([on(HOST, 1, 1, ports=BRIDGE)], [], at(1), full=False, host=HOST)  # sampled again
    one.store.update_container(cid(1), {"newrelic_url": "https://nr.example/1"})  # a cached link
    one.store.record_report([on(HOST, 3, 1, known_status="PENDING", image="other:1")], [], at(1), host=HOST)
    one.store.add_events([{"event_id": "e1", "container_id": cid(1), "task_id": TASK, "event": "known_status",
                           "from": "PENDING", "to": "RUNNING", "timestamp": at(1)}])  # fmt: skip

    assert one.store.discovery_generation() == generation
    agrees(one, two)
    assert (one.answers.reads, two.answers.reads) == reads


def test_sqlite_decodes_only_the_running_records_written_since_it_last_read(tmp_path, monkeypatch):
    path = str(tmp_path / "store.sqlite3")
    store = SQLiteStore(path)
    store.record_report([on(HOST, n, 0, ports=BRIDGE) for n in range(5)], [], at(0), host=HOST)
    store.running_containers()
    store.record_report([on(HOST, 1, 1, ports=BRIDGE.replace("49153", "49200"))], [], at(1), host=HOST)
    store.record_report([on(HOST, 2, 1, known_status="STOPPED")], [], at(1), host=HOST)
    decoded = []
    original = sqlite_layout.decode_record
    monkeypatch.setattr(sqlite_layout, "decode_record", lambda stored: decoded.append(stored) or original(stored))

    again = store.running_containers()

    assert len(decoded) == 1  # container 1, rewritten; 0, 3 and 4 as they were; 2 no longer runs
    fresh = SQLiteStore(path)
    assert sorted(again, key=lambda r: r["container_id"]) == sorted(
        fresh.running_containers(), key=lambda r: r["container_id"]
    )
    assert [r["ports"] for r in again if r["container_id"] == cid(1)] == [BRIDGE.replace("49153", "49200")]
    fresh.close()
    store.close()


def test_an_answer_built_just_after_a_write_on_dynamodb_is_built_again_once_its_index_settled(dynamodb_mock):
    store, clock = dynamodb_mock(), [0.0]
    leases = liveness.Leases(store.host_leases, LEASE, interval=0)
    kept = AnswerCache(store, leases, target_groups, group_order, clock=lambda: clock[0], now=lambda: at(0))
    store.record_report([on(HOST, 1, 0, ports=BRIDGE)], [], at(0), host=HOST)
    kept.answer()
    for moment, reads in ((1.0, 1), (store.discovery_settle + 0.5, 2), (60.0, 2)):
        clock[0] = moment
        kept.answer()
        assert kept.reads == reads, moment  # the index read eventually consistently is read once more, settled
