"""Writers on every backend (``server.writing``): the events a write makes carry its writer's name, and a writer
scoped to some records changes no other, whether by merge or by the reconciliation of a full snapshot."""

from __future__ import annotations

import pytest

from server import writing
from server.records import utc_now
from tests.store.samples import TASK, at, cid, record

OTHER_HOST = {"instance_id": "i-0fedcba987654321f", "host_name": "ip-10-0-9-9"}


def prod(n: int, **fields: str) -> dict[str, str]:
    return record(n, **{"cluster_name": "prod-eu", **OTHER_HOST, **fields})


def in_prod(stored: dict[str, str]) -> bool:
    return stored.get("cluster_name") == "prod-eu"


def test_every_event_a_write_makes_is_signed_with_its_writer(store):
    told = {"event_id": "e-1", "container_id": cid(1), "task_id": TASK, "event": "known_status",
            "from": "PENDING", "to": "RUNNING", "timestamp": at(0)}  # fmt: skip
    with writing.writing("prod-eu-agents"):
        store.record_report([prod(1)], [writing.sign(told)], utc_now())
        store.record_report([prod(1, known_status="STOPPED", sample_time=at(5))], [], utc_now())
    events = store.events_of_container(cid(1))
    assert sorted((e["event"], e["to"]) for e in events) == [
        ("appeared", "RUNNING"), ("known_status", "RUNNING"), ("known_status", "STOPPED"),
    ]  # fmt: skip
    assert {e["by"] for e in events} == {"prod-eu-agents"}
    store.record_report([prod(2)], [], utc_now())  # nobody named: nothing signed
    assert all("by" not in e for e in store.events_of_container(cid(2)))


def test_a_scoped_writer_changes_no_record_outside_its_scope(store):
    store.record_report([prod(3)], [], utc_now(), full=True, host=OTHER_HOST)
    before = store.get_container(cid(3)), store.events_of_container(cid(3))
    with writing.writing("dev-agents", lambda stored: not in_prod(stored)):
        with pytest.raises(writing.OutOfScope, match=r"'dev-agents' may not change container .* of cluster 'prod-eu'"):
            store.record_report([prod(3, cluster_name="dev", image="evil", sample_time=at(5))], [], utc_now())
        # Its host's full snapshot without the container: the prod record is left running.
        store.record_report([], [], utc_now(), full=True, host=OTHER_HOST)
    assert (store.get_container(cid(3)), store.events_of_container(cid(3))) == before


def test_a_container_its_own_writer_finds_vanished_is_stopped_and_signed(store):
    host = {"instance_id": "i-0aaaaaaaaaaaaaaaa", "host_name": "ip-10-0-7-7"}
    store.record_report([prod(4, **host)], [], utc_now(), full=True, host=host)
    with writing.writing("prod-eu-agents", in_prod):
        store.record_report([], [], utc_now(), full=True, host=host)
    stopped = store.get_container(cid(4))
    assert stopped is not None and stopped["known_status"] == "STOPPED"
    vanished = [e for e in store.events_of_container(cid(4)) if e["event"] == "vanished"]
    assert [e["by"] for e in vanished] == ["prod-eu-agents"]
