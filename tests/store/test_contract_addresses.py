"""The store contract for the address index: who held an address at a moment, and what ran on an instance, answered
through ``server.addresses`` from each store's index. Written once, run against every backend (``make_store``)."""

from __future__ import annotations

import json

import pytest

from server import addresses
from server.ecs_events import convert
from server.records import VANISHED_REASON, utc_now
from server.store import address_index
from tests.server.ecs_samples import API_RUNTIME_ID, ROUTER_RUNTIME_ID, fargate_lifecycle
from tests.store.samples import OTHER_TASK, T0, TASK, at, cid, record

HOST = {"cluster_name": "default", "instance_id": "i-0aaa", "host_name": "ip-10-0-1-7", "instance_ip": "10.0.1.7"}
OTHER_HOST = {**HOST, "instance_id": "i-0bbb", "host_name": "ip-10-0-1-8", "instance_ip": "10.0.1.8"}
THIRD_TASK = "7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d"
LATER = at(24 * 60)  # the moment of the questions: long after every life here


def awsvpc(*ipv4: str, ipv6: tuple[str, ...] = ()) -> str:
    return json.dumps([{"network_mode": "awsvpc", "ipv4_addresses": list(ipv4), "ipv6_addresses": list(ipv6)}])


def task_on(n: int, task: str, address: str, start: float, **fields) -> dict:
    """An awsvpc container with ``address``, started at minute ``start`` and sampled then."""
    fields.setdefault("started_at", at(start))
    return record(
        n, task=task, sample=start, networks=awsvpc(address),
        ports='[{"container_port":8080,"host_port":8080,"protocol":"tcp"}]', **fields,
    )  # fmt: skip


def held(store, address: str, at_: str | None = None, port: int | None = None) -> list[tuple[str, str]]:
    return [(h.record["container_id"], h.via) for h in addresses.holdings(store, address, at_, port, now=LATER)]


def life(store, n: int, task: str, address: str, start: float, stop: float | None, **fields) -> None:
    store.record_report([task_on(n, task, address, start, **fields)], [], at(start))
    if stop is not None:
        stopped = {**fields, "known_status": "STOPPED", "started_at": at(start)}
        store.record_report([task_on(n, task, address, stop, **stopped)], [], at(stop))


def test_awsvpc_tasks_reusing_an_address_are_told_apart_inside_between_and_at_the_edges(store):
    life(store, 1, TASK, "10.0.3.17", 0, 10)
    life(store, 2, OTHER_TASK, "10.0.3.17", 20, None)
    first, second = (cid(1), "task"), (cid(2), "task")
    assert held(store, "10.0.3.17") == [second, first]  # newest first
    assert held(store, "10.0.3.17", at(5)) == [first]
    assert held(store, "10.0.3.17", at(0)) == [first]  # from its start
    assert held(store, "10.0.3.17", at(10)) == []  # no longer at its stop
    assert held(store, "10.0.3.17", at(15)) == []
    assert held(store, "10.0.3.17", at(20)) == [second]
    assert held(store, "10.0.3.17", at(60 * 23)) == [second]
    assert held(store, "10.0.3.17", at(-1)) == []
    (old,) = addresses.holdings(store, "10.0.3.17", at(5), now=LATER)
    assert (old.since, old.since_by, old.until, old.until_by, old.overlap) == (
        at(0),
        "started",
        at(10),
        "stopped",
        False,
    )
    (new,) = addresses.holdings(store, "10.0.3.17", at(30), now=LATER)
    assert (new.until, new.until_by, new.overlap) == (None, None, False)
    assert new.as_json()["record"]["task_id"] == OTHER_TASK
    assert held(store, "10.0.3.18") == []


def test_the_port_on_a_task_address_is_the_container_port(store):
    life(store, 1, TASK, "10.0.3.17", 0, None)
    assert held(store, "10.0.3.17", port=8080) == [(cid(1), "task")]
    assert held(store, "10.0.3.17", port=9090) == []


def test_bridge_containers_share_their_instance_address_and_are_told_apart_by_host_port(store):
    one = record(1, **HOST, started_at=at(0), ports='[{"container_port":8000,"host_port":49153,"protocol":"tcp"}]')
    two = record(2, task=OTHER_TASK, **HOST, started_at=at(1),
                 ports='[{"container_port":8000,"host_port":49154,"protocol":"tcp"}]')  # fmt: skip
    store.record_report([one, two], [], at(1), full=True, host=HOST)
    store.lease = 10**9  # the host never lapses in this test
    assert held(store, "10.0.1.7", port=49153) == [(cid(1), "instance")]
    assert held(store, "10.0.1.7", port=49154) == [(cid(2), "instance")]
    assert held(store, "10.0.1.7", port=8000) == []  # the container port is no port of the instance address
    both = addresses.holdings(store, "10.0.1.7", at(2), now=LATER)
    assert [h.record["container_id"] for h in both] == [cid(2), cid(1)]
    assert not any(h.overlap for h in both)  # different host ports: no clash
    assert [h.record["container_id"] for h in addresses.on_host(store, "i-0aaa", at(2), now=LATER)] == [cid(2), cid(1)]
    assert addresses.on_host(store, "i-0bbb", at(2), now=LATER) == []
    assert [h.record["container_id"] for h in addresses.on_host(store, "i-0aaa", at(0.5), now=LATER)] == [cid(1)]


def test_a_fargate_task_known_only_from_ecs_events(store):
    for event in fargate_lifecycle():
        conversion = convert(event)
        store.record_report(conversion.records, conversion.events, utc_now())
    found = addresses.holdings(store, "10.20.3.41", now=LATER)
    assert sorted(h.record["container_id"] for h in found) == sorted([API_RUNTIME_ID, ROUTER_RUNTIME_ID])
    api = next(h for h in found if h.record["container_id"] == API_RUNTIME_ID)
    assert (api.via, api.since, api.since_by) == ("task", "2026-11-20T08:01:24.600Z", "started")
    assert (api.until, api.until_by) == ("2026-11-20T09:14:06.900Z", "stopped")
    assert not api.overlap  # the task's two containers share its address
    assert [h.record["container_id"] for h in addresses.holdings(store, "10.20.3.41", "2026-11-20T09:00:00.000Z")]
    assert addresses.holdings(store, "10.20.3.41", "2026-11-20T09:14:07.000Z") == []


def test_ipv6_and_other_spellings_find_the_same_holder(store):
    store.record_report(
        [record(1, started_at=at(0), networks=awsvpc("10.0.3.17", ipv6=("2001:DB8:0:0::17",)))], [], at(0)
    )
    assert held(store, "2001:db8::17") == [(cid(1), "task")]
    assert held(store, "2001:DB8:0::17") == [(cid(1), "task")]
    assert held(store, "::ffff:10.0.3.17") == [(cid(1), "task")]
    (holding,) = addresses.holdings(store, "2001:db8::17", now=LATER)
    assert holding.address == "2001:db8::17"


def test_a_container_that_vanished_held_its_address_until_the_snapshot_that_no_longer_listed_it(store):
    store.lease = 10**9
    one = task_on(1, TASK, "10.0.3.17", 0, **HOST)
    store.record_report([one], [], at(0), full=True, host=HOST)
    store.record_report([], [], at(30), full=True, host=HOST)
    (holding,) = addresses.holdings(store, "10.0.3.17", now=LATER)
    assert holding.record["stopped_reason"] == VANISHED_REASON
    assert (holding.until, holding.until_by) == (at(30), "vanished")
    assert held(store, "10.0.3.17", at(29)) == [(cid(1), "task")]
    assert held(store, "10.0.3.17", at(30)) == []


def test_a_lost_hosts_container_and_the_next_holder_of_its_address_are_both_shown_marked(store):
    store.lease = 540.0
    store.record_report([task_on(1, TASK, "10.0.3.17", 0, **HOST)], [], at(0), full=True, host=HOST)
    store.record_report([task_on(2, OTHER_TASK, "10.0.3.17", 5, **OTHER_HOST)], [], at(5), host=OTHER_HOST)
    both = addresses.holdings(store, "10.0.3.17", at(6), now=at(60))
    assert [(h.record["container_id"], h.overlap) for h in both] == [(cid(2), True), (cid(1), True)]
    lost = both[1]
    assert (lost.until, lost.until_by) == (at(9), "lost")  # its host's lease lapsed 9 minutes after its renewal
    assert [h.record["container_id"] for h in addresses.holdings(store, "10.0.3.17", at(12), now=at(60))] == [cid(2)]


def test_a_record_that_gains_its_address_later_is_found_by_it(store):
    feed_like = record(1, started_at=at(0))
    store.record_report([feed_like], [], at(0))
    assert held(store, "10.0.1.7") == []
    store.update_container(cid(1), {"instance_ip": "10.0.1.7", "ec2_instance_id": "i-0ccc"})
    assert held(store, "10.0.1.7") == [(cid(1), "instance")]
    assert [h.record["container_id"] for h in addresses.on_host(store, "i-0ccc", now=LATER)] == [cid(1)]


def test_an_earlier_start_learnt_later_moves_the_entry(store):
    store.record_report([task_on(1, TASK, "10.0.3.17", 10)], [], at(10))
    assert held(store, "10.0.3.17", at(5)) == []
    store.record_report([task_on(1, TASK, "10.0.3.17", 11, started_at=at(2))], [], at(11))
    assert held(store, "10.0.3.17", at(5)) == [(cid(1), "task")]
    assert len(store.address_holders("10.0.3.17", None, 10)) == 1


def test_the_newest_starts_come_first_and_the_read_is_bounded(store):
    for n in range(1, 6):
        life(store, n, [TASK, OTHER_TASK, THIRD_TASK][n % 3], "10.0.3.17", n * 10, n * 10 + 5)
    found = store.address_holders("10.0.3.17", at(35), 2)
    assert [r["container_id"] for r in found] == [cid(3), cid(2)]
    assert [r["container_id"] for r in store.address_holders("10.0.3.17", None, 10)] == [
        cid(n) for n in (5, 4, 3, 2, 1)
    ]


@pytest.mark.parametrize("key", ["10.0.3.17", address_index.instance_key("i-0aaa")])
def test_retention_prunes_the_index_with_its_record(make_store, key):
    now = [0.0]
    store = make_store(retention_days=1, clock=lambda: now[0])
    now[0] = T0.timestamp()
    store.record_report([task_on(1, TASK, "10.0.3.17", 0, **HOST, known_status="STOPPED")], [], at(0))
    assert len(store.address_holders(key, None, 10)) == 1
    now[0] = T0.timestamp() + 3 * 86_400
    store.prune(100)
    assert store.address_holders(key, None, 10) == []


def test_a_task_whose_records_gain_an_address_together_is_found_by_it(store):
    store.record_report([record(1, started_at=at(0)), record(2, started_at=at(0))], [], at(0))
    store.update_task(TASK, {"service_name": "api"})  # nothing the index is made of
    assert held(store, "10.0.1.9") == []
    store.update_task(TASK, {"instance_ip": "10.0.1.9"})
    assert sorted(held(store, "10.0.1.9", at(1))) == [(cid(1), "instance"), (cid(2), "instance")]
