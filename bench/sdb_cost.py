"""How many SimpleDB requests the store makes: one container's life (with and without the record cache), an
unchanged resync of 50, a fleet's hour of resyncs, its hour of host leases (resyncs and keep-alives), the lookups.

Runs against moto in-process, made to answer as SimpleDB does (``testkit.simpledb``, as in the tests:
conditional puts, Select in whole pages), and counts requests with botocore's event hooks, so the figures are
exact and need no AWS account: ``.venv/bin/python -m bench.sdb_cost [HOSTS]`` (hosts of 40 containers in the
fleet cases, 10 by default; the figures per second are scaled to 5,000 hosts). Time is simulated: nothing sleeps.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from datetime import timedelta
from typing import Any

from moto import mock_aws

from server.records import format_time
from server.store.sdb import SimpleDBStore, hosts, items
from testkit.records import T0, TASK, record
from testkit.simpledb import REGION, strict_simpledb

#: The agent's full resync interval (``resync_interval``), and the fleet of the sizing example in docs/simpledb.md.
RESYNC = 600
#: The agent's keep-alive (``ECS_ID_MAPPER_KEEPALIVE_INTERVAL``) and the server's lease (``ECS_ID_MAPPER_HOST_LEASE``).
KEEPALIVE, LEASE = 60, 540.0
FLEET_HOSTS, CONTAINERS_PER_HOST = 5_000, 40


def at(seconds: float) -> str:
    return format_time(T0 + timedelta(seconds=seconds))


Figures = tuple[int, int, int]


class Counted:
    """Counts requests by operation on one client."""

    def __init__(self, client: Any):
        self.counts: Counter[str] = Counter()
        client.meta.events.register("before-call.sdb", lambda model, **_: self.counts.update([model.name]))

    def take(self) -> Figures:
        """(reads, writes, other) since the last take; a Select page is a read."""
        counts, self.counts = self.counts, Counter()
        reads = counts.pop("GetAttributes", 0) + counts.pop("Select", 0)
        writes = counts.pop("PutAttributes", 0)
        return reads, writes, sum(counts.values())


def task_of(n: int) -> str:
    return f"{n:04x}" + "e" * 28  # apart from the resync's tasks


def container(
    n: int, status: str, seconds: float, task: str = TASK, host: int | None = None, **fields: str
) -> dict[str, str]:
    """A report entry, the tests' sample record; with ``host``, the host fields an agent sends (without, a record
    names no host)."""
    where = {} if host is None else {
        "container_instance_arn": f"arn:aws:ecs:eu-central-1:210987654321:container-instance/default/{host:032x}",
        "instance_id": f"i-{host:017x}",
        "host_name": f"ip-10-0-{host // 250}-{host % 250}",
    }  # fmt: skip
    return record(
        task=task,
        name=f"c{n}",
        status=status,
        container_id=f"{n:012x}" + "ab" * 26,
        desired_status="STOPPED" if status == "STOPPED" else "RUNNING",
        sample_time=at(seconds),
        **where,
        **fields,
    )


def event(n: int, event_id: str, old: str, new: str, seconds: float) -> dict[str, str]:
    """An event of container ``n`` (in task ``task_of(n)``): appeared (no ``old``), vanished (no ``new``), else a
    status change."""
    kind = "appeared" if not old else "vanished" if not new else "known_status"
    return {"event_id": event_id, "container_id": container(n, new, 0)["container_id"], "task_id": task_of(n),
            "event": kind, "from": old, "to": new, "timestamp": at(seconds)}  # fmt: skip


def life(store: SimpleDBStore, n: int, counted: Counted, events: bool = True, show: bool = False) -> Figures:
    """One container's life as four reports: appeared (PENDING), running, stopped, vanished (its event alone)."""
    steps = [
        ("PENDING", "", "PENDING", 0),
        ("RUNNING", "PENDING", "RUNNING", 20),
        ("STOPPED", "RUNNING", "STOPPED", 3600),
        ("", "STOPPED", "", 3605),
    ]
    total = (0, 0, 0)
    for status, old, new, seconds in steps:
        records = [container(n, status, seconds, task=task_of(n))] if status else []
        found = [event(n, f"ev{n}-{new or 'vanished'}", old, new, seconds)] if events else []
        if records or found:
            store.record_report(records, found, at(seconds + 1))
        figures = counted.take()
        total = tuple(a + b for a, b in zip(total, figures, strict=True))  # type: ignore[assignment]
        if show:
            label = f"{old} -> {status}" if old and status else f"first report {status}" if status else "vanished"
            print(row(f"{label}{' + its event' if records else ': its event alone'}", figures))
    return total


def row(label: str, figures: Figures) -> str:
    reads, writes, other = figures
    return f"  {label:<44} {reads + writes + other:>5} {reads:>6} {writes:>7}"


def host_containers(host: int, seconds: float) -> list[dict[str, str]]:
    """One host's containers, sampled at ``seconds``: tasks of 4."""
    first = host * CONTAINERS_PER_HOST
    return [
        container(n, "RUNNING", seconds, task=f"{n // 4:032x}", host=host)
        for n in range(first, first + CONTAINERS_PER_HOST)
    ]


def fleet_hour(prefix: str, hosts: int, full: bool, fresh_replica: bool) -> tuple[int, int, int]:
    """Requests for ``hosts`` hosts' hour of resyncs every ``RESYNC`` seconds, after their first report: as full
    reports (the heartbeat) or record by record; each report on the same replica or on one that remembers nothing."""
    first = SimpleDBStore(prefix, region=REGION)
    for host in range(hosts):
        first.record_report(host_containers(host, 0), [], at(1), full=full)
    counted = Counted(first.client)
    for seconds in range(RESYNC, 3600 + 1, RESYNC):
        for host in range(hosts):
            store = SimpleDBStore(prefix, region=REGION) if fresh_replica else first
            counter = Counted(store.client) if fresh_replica else counted
            store.record_report(host_containers(host, seconds), [], at(seconds + 1), full=full)
            if fresh_replica:
                counted.counts.update(counter.counts)
                store.close()
    figures = counted.take()
    first.close()
    return figures


class Writes:
    """Counts one client's PutAttributes by what they write: a lease alone, a heartbeat (with the lease), a record."""

    def __init__(self, client: Any):
        self.counts: Counter[str] = Counter()
        client.meta.events.register("before-parameter-build.sdb.PutAttributes", self._count)

    def _count(self, params: dict[str, Any], **_: Any) -> None:
        names = {a["Name"] for a in params["Attributes"]}
        if not params["ItemName"].startswith(hosts.PREFIX):
            self.counts["record"] += 1
        else:
            self.counts["lease" if names == {hosts.HOST, hosts.LEASE} else "heartbeat"] += 1


def lease_hour(prefix: str, hosts_: int, replicas: int) -> tuple[Counter[str], Figures]:
    """An hour of ``hosts_`` hosts of 40 running containers after their first full report: each sends its full
    snapshot every ``RESYNC`` seconds and a keep-alive (no containers, its host) in every other minute; each report
    goes to the next of ``replicas`` replicas in turn. The writes by kind, and (reads, writes, other)."""
    stores = [SimpleDBStore(prefix, region=REGION) for _ in range(replicas)]
    writes, counted = Counter[str](), Counter[str]()
    for store in stores:
        store.lease = LEASE
    for host in range(hosts_):
        stores[0].record_report(host_containers(host, 0), [], at(1), full=True, host=host_fields(host))
    watched = [(Writes(store.client), Counted(store.client)) for store in stores]
    turn = 0
    for seconds in range(KEEPALIVE, 3600 + 1, KEEPALIVE):
        for host in range(hosts_):
            store, turn = stores[turn % replicas], turn + 1
            if seconds % RESYNC == 0:
                store.record_report(host_containers(host, seconds), [], at(seconds + 1), True, host_fields(host))
            else:
                store.record_report([], [], at(seconds + 1), host=host_fields(host))
    for by_kind, by_operation in watched:
        writes.update(by_kind.counts)
        counted.update(by_operation.counts)
    figures = (
        counted["GetAttributes"] + counted["Select"],
        counted["PutAttributes"],
        sum(counted.values()) - counted["GetAttributes"] - counted["Select"] - counted["PutAttributes"],
    )
    for store in stores:
        store.close()
    return writes, figures


def host_fields(host: int) -> dict[str, str]:
    """The ``host`` object of one host's reports, as the report schema hands it to the store."""
    fields = container(0, "RUNNING", 0, host=host)
    return {
        name: fields.get(name, "") for name in ("cluster_name", "container_instance_arn", "instance_id", "host_name")
    }


def main() -> None:
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    hosts = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    with strict_simpledb(page=2500), mock_aws():
        store = SimpleDBStore("bench", region=REGION)
        counted = Counted(store.client)
        header = f"  {'':<44} {'total':>5} {'reads':>6} {'writes':>7}"

        print("One container's life, a one-container task (each line: one report, as /report/map stores it)")
        print(header)
        print(row("life with its four events", life(store, 1, counted, show=True)))
        print(row("the same life without events", life(store, 3, counted, events=False)))

        print("\nThe same life with no record cache (each report on another replica: cache_size=0)")
        print(header)
        cold = SimpleDBStore("benchcold", region=REGION, cache_size=0)
        counted_cold = Counted(cold.client)
        print(row("life with its four events", life(cold, 2, counted_cold, show=True)))
        cold.close()

        print(f"\nA container that keeps changing: its record item holds {items.EVENT_PAIRS} events (the first its")
        print("appearance, which the server records), later ones go to its task's event log (each line: one report of")
        print("a changed record and its event)")
        print(header)
        busy = [
            store.record_report(
                [container(4, "RUNNING", n, task=task_of(4), health=f"h{n}")],
                [event(4, f"ev-h{n}", f"h{n - 1}", f"h{n}", n)],
                at(n),
            )
            and counted.take()
            for n in range(items.EVENT_PAIRS + 3)
        ]
        last = items.EVENT_PAIRS - 1  # the report whose event is the item's last
        print(row("first report", busy[0]))
        print(row(f"report {last}, the item's last event", busy[last - 1]))
        print(row(f"report {last + 1}: to the log, the item marked", busy[last]))
        print(row(f"report {last + 2} and later: record, and the log", busy[last + 1]))

        print("\nUnchanged resync of one host's 50 containers (10 tasks of 5), each sampled anew as the agent does")
        print(header)
        for way, full in (("record by record (a report without full)", False), ("as the host's full report", True)):
            print(f"  {way}")
            prefix = "resyncfull" if full else "resynceach"
            host = SimpleDBStore(prefix, region=REGION)
            counted_host = Counted(host.client)
            snapshot = [container(100 + n, "RUNNING", 0, task=f"{n // 5:032x}", host=0) for n in range(50)]
            for seconds, label in [
                (0, "first report (50 new)"),
                (60, "resync 1 min later, nothing changed"),
                (240, "resync 4 min later, nothing changed"),
                (400, "resync after last_seen resolution (5 min)"),
            ]:
                host.record_report([{**c, "sample_time": at(seconds)} for c in snapshot], [], at(seconds + 1), full)
                print(row(label, counted_host.take()))
            fresh = SimpleDBStore(prefix, region=REGION)  # a replica that has not seen these yet
            counted_fresh = Counted(fresh.client)
            fresh.record_report([{**c, "sample_time": at(460)} for c in snapshot], [], at(461), full)
            print(row("resync on a replica with an empty cache", counted_fresh.take()))
            fresh.get_container(snapshot[0]["container_id"])
            print(row("get_container, running, last_seen > 5 min", counted_fresh.take()))
            fresh.close()
            host.close()

        print(
            f"\nA fleet's hour: {hosts} hosts of {CONTAINERS_PER_HOST} running containers, a full resync every "
            f"{RESYNC // 60} min (6 an hour)"
        )
        print(f"{header}   writes/s, reads/s at {FLEET_HOSTS:,} hosts")
        for n, (label, full, fresh_replica) in enumerate([
            ("record by record, same replica", False, False),
            ("record by record, each on a fresh replica", False, True),
            ("heartbeat, same replica", True, False),
            ("heartbeat, each on a fresh replica", True, True),
        ]):  # fmt: skip
            figures = fleet_hour(f"fleet{n}", hosts, full, fresh_replica)
            scale = FLEET_HOSTS / hosts / 3600
            print(f"{row(label, figures)}   {figures[1] * scale:>8,.1f} {figures[0] * scale:>8,.1f}")

        print(
            f"\nHost leases: the same fleet, a full snapshot every {RESYNC // 60} min and a keep-alive every other "
            f"minute, lease {LEASE:.0f} s (renewed once half of it passed)"
        )
        print(f"{header}   writes/s at {FLEET_HOSTS:,} hosts: lease alone, heartbeat (with lease), records; reads/s")
        for replicas in (1, 3):
            writes, figures = lease_hour(f"leases{replicas}", hosts, replicas)
            scale = FLEET_HOSTS / hosts / 3600
            label = "one replica" if replicas == 1 else f"each report on the next of {replicas} replicas"
            rates = " ".join(f"{writes[kind] * scale:>6,.1f}" for kind in ("lease", "heartbeat", "record"))
            print(f"{row(label, figures)}   {rates} {figures[0] * scale:>7,.1f}")

        print("\nLookups")
        print(header)
        fleet = [container(100 + n, "RUNNING", 0, task=f"{n // 5:032x}") for n in range(50)]
        store.upsert_containers(fleet, at(1))
        counted.take()
        cid = fleet[0]["container_id"]
        for label, call in [
            ("get_container (full ID)", lambda: store.get_container(cid)),
            ("find_containers (12-hex short ID)", lambda: store.find_containers(cid[:12], 10)),
            ("containers_of_task (5 containers)", lambda: store.containers_of_task(fleet[0]["task_id"])),
            ("events_of_container", lambda: store.events_of_container(container(1, "", 0)["container_id"])),
            ("events_of_task", lambda: store.events_of_task(task_of(1))),
            ("ping", store.ping),
        ]:
            call()
            print(row(label, counted.take()))
        store.close()


if __name__ == "__main__":
    main()
