"""Store writes of host leases: a fleet whose hosts each send a full snapshot every 10 minutes and a keep-alive
every 60 s between them (lease 540 s), on a simulated clock (nothing sleeps), counted by the store's own meter.

``.venv/bin/python -m bench.lease_writes --store sqlite [--hosts 5000] [--containers 40] [--minutes 20]``

The first resync round (every record new) is a warm-up: the figures are those of the ``--minutes`` after it, the
steady state of a fleet that runs what it ran. The target is <= 20 lease writes/s at 5,000 hosts.

Each backend brings a case (``LeaseCase``): its store, opened, and a meter of its writes by kind. SQLite's is
here; a backend named ``X`` whose case lives elsewhere is found as ``lease_case`` in the module ``CASES[X]``
(``bench.dynamodb_cost``, ``bench.sdb_cost``), with the same signature as ``sqlite_case``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Protocol

from server.records import format_time
from server.store.base import Store
from testkit.records import T0, record

#: The fleet of the target: 5,000 hosts of 40 containers.
HOSTS, CONTAINERS = 5_000, 40
#: The agent's full resync interval, its keep-alive interval and the server's host lease (the defaults).
RESYNC, KEEPALIVE, LEASE = 600, 60, 540.0
#: The kind of write a meter counts lease renewals as.
LEASE_WRITES = "lease writes"


class LeaseCase(Protocol):
    """What a backend hands the driver: its store and a meter of the writes it makes."""

    store: Store

    def writes(self) -> Counter[str]:
        """The writes since the last call, by kind; renewals of leases as ``LEASE_WRITES``."""
        ...


#: How a backend opens its case: ``(workdir, hosts) -> context manager of a LeaseCase``.
OpenCase = Callable[[Path, int], AbstractContextManager[LeaseCase]]


def at(seconds: float) -> str:
    return format_time(T0 + timedelta(seconds=seconds))


def host_fields(host: int) -> dict[str, str]:
    return {
        "cluster_name": "default",
        "container_instance_arn": f"arn:aws:ecs:eu-central-1:210987654321:container-instance/default/{host:032x}",
        "instance_id": f"i-{host:017x}",
        "host_name": f"ip-10-{host // 65536}-{host // 256 % 256}-{host % 256}",
    }


def snapshot(host: int, containers: int, seconds: float) -> list[dict[str, str]]:
    """A host's full snapshot: the same containers every time, sampled at ``seconds``."""
    fields = host_fields(host)
    sample = (seconds - RESYNC) / 60  # minutes, as the test records count them
    return [
        record(host * containers + n, task=f"{host:08x}{n // 4:024x}", sample=sample, **fields)
        for n in range(containers)
    ]


def sends(hosts: int, end: float) -> Iterator[tuple[float, int, bool]]:
    """Every report of the fleet before ``end``, in time order: (moment, host, full). Host ``h`` starts at
    ``h * RESYNC / hosts`` with a full snapshot, sends one every RESYNC and a keep-alive every KEEPALIVE between."""
    phases = [h * RESYNC / hosts for h in range(hosts)]
    order = sorted(range(hosts), key=lambda h: phases[h] % KEEPALIVE)  # each host's place in every minute
    per_round = RESYNC // KEEPALIVE
    for window in range(int(end // KEEPALIVE) + 1):
        for host in order:
            moment = window * KEEPALIVE + phases[host] % KEEPALIVE
            beat = round((moment - phases[host]) / KEEPALIVE)
            if beat >= 0 and moment < end:
                yield moment, host, beat % per_round == 0


def drive(case: LeaseCase, hosts: int, containers: int, minutes: float) -> tuple[Counter[str], float, Counter[str]]:
    """Run the fleet through a warm-up round and ``minutes`` more: the writes of the measured part, its reports
    by kind, and the wall-clock seconds it took."""
    store = case.store
    store.lease = LEASE
    end = RESYNC + minutes * 60
    sent: Counter[str] = Counter()
    began = 0.0
    for moment, host, full in sends(hosts, end):
        if moment >= RESYNC and not began:
            case.writes()  # the warm-up's: every record new
            began = time.perf_counter()
        measured = moment >= RESYNC
        if full:
            store.record_report(snapshot(host, containers, moment), [], at(moment), full=True, host=host_fields(host))
        else:
            store.record_report([], [], at(moment), host=host_fields(host))
        if measured:
            sent["full snapshots" if full else "keep-alives"] += 1
    return case.writes(), time.perf_counter() - began, sent


# --- SQLite ----------------------------------------------------------------------------------------------------


class SQLiteCase:
    """An SQLite store whose writes are counted from the statements of its connection (this thread's)."""

    def __init__(self, path: Path):
        from server.store.sqlite import SQLiteStore

        self.store = SQLiteStore(str(path))
        self._statements: list[str] = []
        self.store._connection().set_trace_callback(self._statements.append)
        self._events = self._count_events()

    def _count_events(self) -> int:
        return int(self.store._query("SELECT count(*) FROM events")[0][0])

    def writes(self) -> Counter[str]:
        counts: Counter[str] = Counter()
        for statement in self._statements:
            if statement.startswith("BEGIN IMMEDIATE"):
                counts["transactions"] += 1
            elif statement.startswith("INSERT INTO hosts"):
                counts[LEASE_WRITES] += 1
            elif statement.startswith(("INSERT INTO containers", "UPDATE containers")):
                counts["container rows"] += 1
        self._statements.clear()
        events, self._events = self._events, self._count_events()
        counts["event rows"] = self._events - events
        return counts


@contextmanager
def sqlite_case(workdir: Path, hosts: int) -> Iterator[LeaseCase]:
    case = SQLiteCase(workdir / "store.sqlite3")
    try:
        yield case
    finally:
        case.store.close()


#: The backends measured here; the AWS stores measure their leases in ``bench.dynamodb_cost`` and ``bench.sdb_cost``,
#: beside the rest of what they cost in requests.
CASES: dict[str, OpenCase] = {"sqlite": sqlite_case}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", choices=sorted(CASES), default="sqlite")
    parser.add_argument("--hosts", type=int, default=HOSTS)
    parser.add_argument("--containers", type=int, default=CONTAINERS, help="per host")
    parser.add_argument("--minutes", type=float, default=20, help="simulated, after the warm-up round")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as workdir, CASES[args.store](Path(workdir), args.hosts) as case:
        writes, took, sent = drive(case, args.hosts, args.containers, args.minutes)
    seconds = args.minutes * 60
    print(
        f"{args.store}: {args.hosts} hosts x {args.containers} containers, resync {RESYNC} s, keep-alive "
        f"{KEEPALIVE} s, lease {LEASE:g} s; {args.minutes:g} simulated minutes after a warm-up round "
        f"({took:.1f} s of wall clock)"
    )
    for kind, count in sorted(sent.items()):
        print(f"  {kind:>16}: {count:>9} sent, {count / seconds:8.1f}/s")
    for kind, count in sorted(writes.items()):
        print(f"  {kind:>16}: {count:>9} written, {count / seconds:8.1f}/s")
    lease_rate = writes[LEASE_WRITES] / seconds
    print(f"lease writes: {lease_rate:.1f}/s (target <= 20/s): {'met' if lease_rate <= 20 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
