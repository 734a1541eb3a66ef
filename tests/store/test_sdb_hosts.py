"""SimpleDB hosts' heartbeats: a full report keeps a host's running containers alive with one item per host, a cold
replica reads a host's records in one Select, and every answer stays what the records say."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from botocore.stub import ANY, Stubber
from moto.sdb.responses import SimpleDBResponse

from server.store.sdb import hosts, items
from server.store.sqlite import SQLiteStore
from testkit.simpledb import moto_items
from tests.store.conftest import Requests
from tests.store.samples import T0, at, cid, record

HOST = {
    "container_instance_arn": "arn:aws:ecs:eu-central-1:210987654321:container-instance/default/4f1e2d3c4b5a",
    "instance_id": "i-0a1b2c3d4e5f60718",
    "host_name": "ip-10-0-1-17",
}
KEY = hosts.host_key({"cluster_name": "default", **HOST})


def fleet(ns, minute: float = 0, **fields) -> list[dict[str, str]]:
    """One host's containers in tasks of 5, sampled at ``minute``."""
    return [record(n, task=f"{n // 5:032x}", sample=minute, **HOST, **fields) for n in ns]


class Clock:
    """The stores' clock, at a minute counted from the samples' T0."""

    def __init__(self) -> None:
        self.minute = 0.0

    def __call__(self) -> float:
        return (T0 + timedelta(minutes=self.minute)).timestamp()


def resync(store, ns, minute: float, **fields) -> None:
    """A host's full report at ``minute``, as the agent sends it: every container sampled then."""
    store.record_report(fleet(ns, minute, **fields), [], at(minute), full=True)


def host_select(prefix: str) -> dict[str, object]:
    return {
        "SelectExpression": f"select * from `{prefix}.containers` where host = '{KEY}' limit 2500",
        "ConsistentRead": True,
    }


def answer_to(store, params: dict[str, object]) -> dict[str, object]:
    """What SimpleDB (moto) answers ``params`` now, to replay through a Stubber."""
    answer = store.client.select(**params)
    answer.pop("ResponseMetadata", None)
    return answer


# --- requests ----------------------------------------------------------------------------------------------


def test_an_unchanged_resync_on_a_cold_replica_is_one_select_and_no_write(sdb_mock, whole_pages):
    prefix = f"t{uuid.uuid4().hex[:12]}"
    first = sdb_mock(prefix)
    resync(first, range(50), 0)
    cold = sdb_mock(prefix)  # another replica: nothing remembered
    with Stubber(cold.client) as stub:
        stub.add_response("select", answer_to(first, host_select(prefix)), host_select(prefix))
        resync(cold, range(50), 2)  # sampled again, nothing else changed
        stub.assert_no_pending_responses()


def test_a_changed_field_is_written_after_the_select(sdb_mock, whole_pages):
    prefix = f"t{uuid.uuid4().hex[:12]}"
    first = sdb_mock(prefix)
    resync(first, range(50), 0)
    cold = sdb_mock(prefix)
    report = fleet(range(50), 2)
    report[7]["image"] = "registry.example/api:2.4.0"
    written = {
        "DomainName": f"{prefix}.containers",
        "ItemName": cid(7)[:12],
        "Attributes": ANY,
        "Expected": {"Name": items.REVISION, "Value": "1"},
    }
    with Stubber(cold.client) as stub:
        stub.add_response("select", answer_to(first, host_select(prefix)), host_select(prefix))
        stub.add_response("put_attributes", {}, written)
        stub.add_response("put_attributes", {})  # a running container's image: the discovery generation moves
        cold.record_report(report, [], at(2), full=True)
        stub.assert_no_pending_responses()
    sdb_mock(prefix).record_report(report, [], at(2), full=True)
    assert first.get_container(cid(7))["image"] == "registry.example/api:2.4.0"


def test_a_host_costs_one_write_per_resolution_however_many_containers_it_runs(sdb_mock, whole_pages):
    clock = Clock()
    warm = sdb_mock(clock=clock)
    requests = Requests(warm.client)
    resync(warm, range(40), 0)
    for minute in range(10, 70, 10):  # the agent's resync every 10 minutes, for an hour
        requests.reset()
        resync(warm, range(40), minute)
        assert dict(requests.counts) == {"Select": 1, "PutAttributes": 1}, minute  # the host's items; its heartbeat
    requests.reset()
    resync(warm, range(40), 62)  # within the 5-minute resolution of the last heartbeat: nothing at all
    assert dict(requests.counts) == {}


def test_a_cold_replica_follows_select_pages(sdb_mock):
    prefix = f"t{uuid.uuid4().hex[:12]}"
    resync(sdb_mock(prefix), range(12), 0)
    cold = sdb_mock(prefix)
    requests = Requests(cold.client)
    resync(cold, range(12), 2)
    # 13 items (the heartbeat and 12 records) in the test server's pages of 3; nothing read or written one by one
    assert dict(requests.counts) == {"Select": 5}


def test_an_endpoint_that_serves_no_select_gets_host_reports_record_by_record(sdb_server, monkeypatch, caplog):
    def no_select(self):
        raise NotImplementedError("The select action has not been implemented")  # as moto's server answers

    monkeypatch.setattr(SimpleDBResponse, "select", no_select)
    prefix = f"t{uuid.uuid4().hex[:12]}"
    resync(sdb_server(prefix), range(5), 0)
    forgetful = sdb_server(prefix, max_attempts=1, cache_size=0)  # would Select for every report
    requests = Requests(forgetful.client)
    resync(forgetful, range(5), 10, image="registry.example/api:2.4.0")
    # The failed Select; the heartbeat and the records read one by one; the records, the heartbeat and the discovery
    # generation written.
    assert (requests.counts["Select"], requests.reads, requests.writes) == (1, 1 + 5, 5 + 1 + 1)
    assert "SimpleDB Select failed" in caplog.text
    requests.reset()
    resync(forgetful, range(5), 20, image="registry.example/api:2.4.0")
    assert (requests.counts["Select"], requests.reads, requests.writes) == (0, 1 + 5, 1)
    assert forgetful.get_container(cid(4))["image"] == "registry.example/api:2.4.0"


# --- answers -----------------------------------------------------------------------------------------------


def test_a_running_containers_last_seen_is_its_hosts_heartbeat(sdb_mock):
    clock = Clock()
    prefix = f"t{uuid.uuid4().hex[:12]}"
    store = sdb_mock(prefix, clock=clock)
    for minute in (0, 10, 20, 30):
        resync(store, range(10), minute)
    clock.minute = 31
    for reader in (store, sdb_mock(prefix, clock=clock)):
        found = reader.get_container(cid(3))
        assert (found["last_seen"], found["sample_time"], found["first_seen"]) == (at(30), at(30), at(0))
        assert {r["last_seen"] for r in reader.containers_of_task(f"{0:032x}")} == {at(30)}
        assert [r["last_seen"] for r in reader.find_containers(cid(3)[:12], 5)] == [at(30)]
    # Stored, the records still say when they were last written: the heartbeat carries them.
    stored = {name: dict((a["Name"], a["Value"]) for a in attrs) for _, name, attrs in moto_items()}
    assert stored[cid(3)[:12]]["last_seen"] == at(0)
    assert stored[hosts.item_name(KEY)][hosts.BEAT] == at(30)


def test_a_container_that_leaves_the_report_keeps_the_last_seen_its_host_gave_it(sdb_mock):
    clock = Clock()
    store = sdb_mock(clock=clock)
    for minute in (0, 10):
        resync(store, range(5), minute)
    resync(store, [0, 1, 2, 4], 20)  # container 3 is gone from its host without a word
    clock.minute = 60
    assert store.get_container(cid(3))["last_seen"] == at(10)
    assert store.get_container(cid(4))["last_seen"] == at(20)


def test_a_stopped_container_is_not_carried(sdb_mock):
    clock = Clock()
    store = sdb_mock(clock=clock)
    resync(store, range(2), 0)
    store.record_report([record(1, sample=3, status="STOPPED", **HOST)], [], at(3))  # a change report
    resync(store, [0], 10)
    clock.minute = 40
    stopped = store.get_container(cid(1))
    assert (stopped["known_status"], stopped["last_seen"], stopped["stopped_at"]) == ("STOPPED", at(3), at(3))


@pytest.mark.parametrize("reporter", ["one replica", "a fresh replica each time"])
def test_every_route_answers_as_a_store_without_heartbeats(sdb_mock, tmp_path, reporter):
    """A resync skips writes only when the merge would change nothing else: other routes' changes (service
    names, New Relic URLs, the event feed, made on another replica) stay, and a feed state the agent contradicts
    later is overwritten as the merge says, even by a replica that remembers the record from before."""
    clock = Clock()
    prefix = f"t{uuid.uuid4().hex[:12]}"
    reference = SQLiteStore(str(tmp_path / "reference.sqlite3"))
    one = sdb_mock(prefix, clock=clock)
    for store in (reference, one):
        resync(store, range(10), 0)
    for store in (reference, sdb_mock(prefix, clock=clock)):
        store.update_task(f"{0:032x}", {"service_name": "orders"})
        store.update_container(cid(6), {"newrelic_url": "https://one.newrelic.com/x"})
        feed = {**fleet([7], 4)[0], "known_status": "STOPPED", "state_version": "3", "exit_code": "137"}
        store.record_report([feed], [], at(5))
    for minute in (10, 20):
        resync(one if reporter == "one replica" else sdb_mock(prefix, clock=clock), range(10), minute)
        resync(reference, range(10), minute)
    clock.minute = 21
    ours = sdb_mock(prefix, clock=clock)
    for n in range(10):
        assert ours.get_container(cid(n)) == reference.get_container(cid(n)), n
    reference.close()


def test_an_older_full_report_does_not_roll_the_heartbeat_back(sdb_mock):
    clock = Clock()
    prefix = f"t{uuid.uuid4().hex[:12]}"
    one, two = sdb_mock(prefix, clock=clock), sdb_mock(prefix, clock=clock)
    resync(one, range(3), 0)
    resync(two, range(3), 10)  # another replica: reads the heartbeat, writes a newer one
    resync(one, range(3), 20)  # its remembered heartbeat is stale: refused, read again, written
    one.record_report(fleet(range(2), 15), [], at(21), full=True)  # a late retry of an older snapshot
    clock.minute = 22
    beat = one._read_beat(KEY)
    assert (beat.beat, beat.sampled, sorted(beat.members)) == (at(20), at(20), [cid(n) for n in range(3)])
    assert two.get_container(cid(2))["last_seen"] == at(20)


# --- retention ---------------------------------------------------------------------------------------------


def test_prune_keeps_what_the_heartbeat_carries_and_stores_its_last_seen(sdb_mock):
    clock = Clock()
    store = sdb_mock(retention_days=1, clock=clock)
    day = 24 * 60
    resync(store, range(3), 0)
    store.record_report([record(2, sample=1, status="STOPPED", **HOST)], [], at(1))
    resync(store, [0, 1], day)
    resync(store, [0], 2 * day)  # 1 left its host after day 1
    clock.minute = 2 * day + 60
    assert store.prune(100) == 2  # the stopped one and the one that left; never the running one
    assert store.get_container(cid(0))["last_seen"] == at(2 * day)
    assert (store.get_container(cid(1)), store.get_container(cid(2))) == (None, None)
    requests = Requests(store.client)
    assert store.prune(100) == 0
    assert dict(requests.counts) == {"Select": 1}  # the running one is no longer found: its last_seen is stored


def test_a_report_naming_no_host_or_several_is_stored_record_by_record(sdb_mock):
    store = sdb_mock()
    requests = Requests(store.client)
    store.record_report([record(1), record(2)], [], at(0), full=True)
    store.record_report([record(3, **HOST), record(4, instance_id="i-other")], [], at(0), full=True)
    assert "Select" not in requests.counts
    assert not any(name.startswith("host/") for _, name, _ in moto_items())
