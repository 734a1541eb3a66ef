"""SimpleDB host leases, full-snapshot reconciliation, the transitions the server records, and notes: what each
costs in requests, pinned (the contract suite says what they do on every store)."""

from __future__ import annotations

import uuid

from botocore.stub import ANY, Stubber

from server import liveness
from server.records import event_id
from server.store.sdb import hosts, items, notes
from testkit.simpledb import moto_items
from tests.store.conftest import Requests
from tests.store.samples import at, cid, record

HOST = {
    "cluster_name": "default",
    "container_instance_arn": "arn:aws:ecs:eu-central-1:210987654321:container-instance/default/4f1e2d3c4b5a",
    "instance_id": "i-0a1b2c3d4e5f60718",
    "host_name": "ip-10-0-1-17",
}
KEY = liveness.host_key(HOST)
LEASE = 540.0


def on_host(n: int, minute: float = 0, **fields) -> dict[str, str]:
    return record(n, task=f"{n // 5:032x}", sample=minute, **{**HOST, **fields})


def keepalive(store, minute: float) -> None:
    store.record_report([], [], at(minute), host=HOST)


def resync(store, ns, minute: float) -> None:
    store.record_report([on_host(n, minute) for n in ns], [], at(minute), full=True, host=HOST)


def puts_of(store) -> list[dict]:
    sent: list[dict] = []
    store.client.meta.events.register(
        "before-parameter-build.sdb.PutAttributes", lambda params, **_: sent.append(params)
    )
    return sent


def item(store, domain: str, name: str) -> dict[str, str]:
    found = [a for d, n, a in moto_items() if d == store.domains[domain] and n == name]
    return {a["Name"]: a["Value"] for a in found[0]} if found else {}


# --- leases ------------------------------------------------------------------------------------------------


def test_a_keepalive_inside_the_half_lease_costs_no_request(sdb_mock):
    prefix = f"t{uuid.uuid4().hex[:12]}"
    store = sdb_mock(prefix)
    store.lease = LEASE
    requests = Requests(store.client)
    keepalive(store, 0)  # nothing known: the stored renewal read, then written
    assert dict(requests.counts) == {"GetAttributes": 1, "PutAttributes": 1}
    requests.reset()
    for minute in range(1, 5):
        keepalive(store, minute)
    assert dict(requests.counts) == {}
    cold = sdb_mock(prefix)  # a replica: reads the stored renewal once, then remembers it
    cold.lease = LEASE
    cold_requests = Requests(cold.client)
    keepalive(cold, 1)
    keepalive(cold, 2)
    assert dict(cold_requests.counts) == {"GetAttributes": 1}
    requests.reset()
    keepalive(store, 5)  # the half lease passed: read (another replica may have renewed it), then written
    assert dict(requests.counts) == {"GetAttributes": 1, "PutAttributes": 1}
    assert item(store, "containers", hosts.item_name(KEY))[hosts.LEASE] == at(5)


def test_the_renewal_is_one_unconditional_put_of_the_lease(sdb_mock):
    store = sdb_mock()
    prefix = store.domains["containers"].removesuffix(".containers")
    lease_read = {
        "DomainName": f"{prefix}.containers",
        "ItemName": hosts.item_name(KEY),
        "ConsistentRead": True,
        "AttributeNames": [hosts.BEAT, hosts.LEASE],
    }
    renewal = {
        "DomainName": f"{prefix}.containers",
        "ItemName": hosts.item_name(KEY),
        "Attributes": [
            {"Name": hosts.HOST, "Value": KEY, "Replace": True},
            {"Name": hosts.LEASE, "Value": at(0), "Replace": True},
        ],
    }
    with Stubber(store.client) as stub:
        stub.add_response("get_attributes", {}, lease_read)
        stub.add_response("put_attributes", {}, renewal)
        keepalive(store, 0)
        stub.assert_no_pending_responses()


def test_a_full_report_renews_the_lease_in_its_heartbeat_put(sdb_mock, whole_pages):
    store = sdb_mock()
    store.lease = LEASE
    requests, sent = Requests(store.client), puts_of(store)
    resync(store, range(10), 0)
    beat_puts = [p for p in sent if p["ItemName"] == hosts.item_name(KEY)]
    assert len(beat_puts) == 1 and hosts.LEASE in {a["Name"] for a in beat_puts[0]["Attributes"]}
    assert requests.counts["GetAttributes"] == 10  # the new containers' buckets; the lease as the Select read it
    requests.reset()
    keepalive(store, 1)
    resync(store, range(10), 2)  # within the heartbeat's resolution and the half lease: nothing at all
    assert dict(requests.counts) == {}
    requests.reset()
    resync(store, range(10), 10)  # the host's Select, and one put: heartbeat and lease together
    assert dict(requests.counts) == {"Select": 1, "PutAttributes": 1}
    assert store.host_leases() == {KEY: at(10)}


def test_every_hosts_lease_is_one_select_of_two_attributes(sdb_mock, whole_pages):
    store = sdb_mock()
    prefix = store.domains["containers"].removesuffix(".containers")
    for n in range(30):
        store.record_report([], [], at(n / 10), host={**HOST, "instance_id": f"i-{n:017x}"})
    query = {
        "SelectExpression": f"select beat, lease from `{prefix}.containers` where itemName() like 'host/%' limit 2500",
        "ConsistentRead": True,
    }
    answer = store.client.select(**query)
    answer.pop("ResponseMetadata")
    with Stubber(store.client) as stub:
        stub.add_response("select", answer, query)
        leases = store.host_leases()
        stub.assert_no_pending_responses()
    assert len(leases) == 30 and set(leases.values()) == {at(n / 10) for n in range(30)}


def test_a_heartbeat_written_before_leases_is_a_renewal(sdb_mock):
    store = sdb_mock()
    resync(store, range(3), 0)
    attrs = item(store, "containers", hosts.item_name(KEY))
    store._delete("containers", hosts.item_name(KEY), [{"Name": hosts.LEASE, "Value": attrs[hosts.LEASE]}])
    assert store.host_leases() == {KEY: at(0)}  # its beat


def test_leases_follow_select_pages(sdb_mock):
    store = sdb_mock()
    for n in range(7):  # the test server's pages hold 3 items
        store.record_report([], [], at(0), host={**HOST, "instance_id": f"i-{n:017x}"})
    requests = Requests(store.client)
    assert len(store.host_leases()) == 7
    assert dict(requests.counts) == {"Select": 3}


# --- reconciliation and transitions ------------------------------------------------------------------------


def test_a_vanished_container_goes_out_in_one_put_with_its_events(sdb_mock, whole_pages):
    store = sdb_mock()
    resync(store, range(5), 0)
    requests, sent = Requests(store.client), puts_of(store)
    resync(store, [0, 1, 2, 4], 10)
    stop = [p for p in sent if p["ItemName"] == cid(3)[:12]]
    assert len(stop) == 1 and stop[0]["Expected"] == {"Name": items.REVISION, "Value": "1"}
    assert {a["Name"] for a in stop[0]["Attributes"]} >= {
        items.EVENT + event_id(cid(3), "vanished", "RUNNING", ""),
        items.EVENT + event_id(cid(3), "known_status", "RUNNING", "STOPPED"),
    }
    # The host's Select, the vanished record, the discovery generation, the heartbeat (with the lease): no read of
    # the departed one.
    assert dict(requests.counts) == {"Select": 1, "PutAttributes": 3}
    gone = store.get_container(cid(3))
    assert (gone["known_status"], gone["stopped_at"], gone["last_seen"]) == ("STOPPED", at(10), at(0))


def test_a_vanishing_the_agent_named_under_its_own_id_is_not_doubled(sdb_mock):
    store = sdb_mock()
    resync(store, range(2), 0)
    told = {"event_id": "agent-7", "container_id": cid(1), "task_id": on_host(1)["task_id"], "event": "vanished",
            "from": "RUNNING", "to": "", "timestamp": at(10)}  # fmt: skip
    assert store.record_report([on_host(0, 10)], [told], at(10), full=True, host=HOST)[1] == 1
    assert [(e["event_id"], e["event"]) for e in store.events_of_container(cid(1))][1:] == [
        ("agent-7", "vanished"),
        (event_id(cid(1), "known_status", "RUNNING", "STOPPED"), "known_status"),
    ]


def test_a_cold_replica_stops_a_container_the_heartbeat_never_listed(sdb_mock):
    prefix = f"t{uuid.uuid4().hex[:12]}"
    resync(sdb_mock(prefix), range(3), 0)
    sdb_mock(prefix).record_report([on_host(7, 1)], [], at(1), host=HOST)  # started since, by a change report
    resync(sdb_mock(prefix), range(3), 10)  # the Select finds it among the host's records
    gone = sdb_mock(prefix).get_container(cid(7))
    assert (gone["known_status"], gone["stopped_reason"]) == (
        "STOPPED",
        "vanished: no longer listed by its host's ECS agent",
    )


def test_an_empty_full_snapshot_stops_every_container_of_its_host(sdb_mock):
    store = sdb_mock()
    resync(store, range(3), 0)
    store.record_report([], [], at(10), full=True, host=HOST)
    assert {store.get_container(cid(n))["known_status"] for n in range(3)} == {"STOPPED"}
    assert store.get_container(cid(0))["stopped_at"] == at(10)  # the server's time: no sample in the snapshot


def test_a_derived_transition_goes_out_in_its_records_put(sdb_mock):
    store = sdb_mock()
    store.record_report([on_host(1, status="PENDING")], [], at(0), host=HOST)
    requests, sent = Requests(store.client), puts_of(store)
    assert store.record_report([on_host(1, 1)], [], at(1), host=HOST) == ([], 0)  # derived events are not counted
    assert dict(requests.counts) == {"PutAttributes": 2}  # the record; it runs now: the discovery generation
    assert items.EVENT + event_id(cid(1), "known_status", "PENDING", "RUNNING") in {
        a["Name"] for a in sent[0]["Attributes"]
    }


# --- notes -------------------------------------------------------------------------------------------------


def test_a_note_is_one_put_and_one_read(sdb_mock):
    store = sdb_mock()
    requests = Requests(store.client)
    store.put_note("taskdef/arn:aws:ecs:eu-central-1:1:task-definition/api:3", '{"ports": [8000]}' * 3000)
    assert store.get_note("taskdef/arn:aws:ecs:eu-central-1:1:task-definition/api:3") == '{"ports": [8000]}' * 3000
    assert dict(requests.counts) == {"PutAttributes": 1, "GetAttributes": 1}


def test_a_note_of_64_kib_of_anything_fits_and_a_shorter_one_replaces_it(sdb_mock):
    store = sdb_mock()
    hostile = ("\x00\ud800\U0001f600<&'\"\\" * 8192)[: 64 * 1024]
    store.put_note("k" * 256, hostile)
    assert store.get_note("k" * 256) == hostile
    store.put_note("k" * 256, "short")
    assert store.get_note("k" * 256) == "short"
    assert store.get_note("k" * 255) is None


def test_a_torn_note_reads_as_none(sdb_mock):
    store = sdb_mock()
    store.put_note("key", "x" * 300_000)  # two items
    store._put("indexes", notes.note_item("key", 1), {f"note.{notes.CHUNKS_PER_ITEM}": "y" * 1024})
    assert store.get_note("key") is None


def test_a_note_past_one_item_is_written_rest_first(sdb_mock):
    store = sdb_mock()
    written = {"DomainName": store.domains["indexes"], "ItemName": ANY, "Attributes": ANY}
    with Stubber(store.client) as stub:
        for _ in range(3):
            stub.add_response("put_attributes", {}, written)
        store.put_note("key", "x" * 500_000)
        stub.assert_no_pending_responses()
