"""How many SimpleDB requests the store makes: one container's life (with and without the record cache), an
unchanged resync of 50, the lookups.

Runs against moto in-process and counts requests with botocore's event hooks, so the figures are exact and
need no AWS account: ``.venv/bin/python -m bench.sdb_cost``.
"""

from __future__ import annotations

import os
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from moto import mock_aws

from server.records import format_time
from server.store import sdb_items as items
from server.store.sdb import SimpleDBStore

T0 = datetime.fromisoformat("2026-11-25T15:00:00.000Z")


def at(seconds: float) -> str:
    return format_time(T0 + timedelta(seconds=seconds))


Figures = tuple[int, int, int]


class Counted:
    """Counts requests by operation on one client."""

    def __init__(self, client: Any):
        self.counts: Counter[str] = Counter()
        client.meta.events.register("before-call.sdb", lambda model, **_: self.counts.update([model.name]))

    def take(self) -> Figures:
        """(reads, writes, other) since the last take."""
        counts, self.counts = self.counts, Counter()
        reads, writes = counts.pop("GetAttributes", 0), counts.pop("PutAttributes", 0)
        return reads, writes, sum(counts.values())


def task_of(n: int) -> str:
    return f"{n:04x}" + "e" * 28  # apart from the resync's tasks


def container(n: int, status: str, seconds: float, task: str = "", **fields: str) -> dict[str, str]:
    task = task or task_of(n)
    return {
        "container_id": f"{n:012x}" + "ab" * 26,
        "container_name": f"c{n}",
        "task_id": task,
        "task_arn": f"arn:aws:ecs:eu-central-1:210987654321:task/default/{task}",
        "known_status": status,
        "desired_status": "STOPPED" if status == "STOPPED" else "RUNNING",
        "cluster_name": "default",
        "image": "registry.example/api:2.3.1",
        "ports": '[{"container_port":8000,"host_port":49153,"protocol":"tcp"}]',
        "sample_time": at(seconds),
        **fields,
    }


def event(n: int, event_id: str, old: str, new: str, seconds: float) -> dict[str, str]:
    """An event of container ``n``: appeared (no ``old``), vanished (no ``new``), else a status change."""
    kind = "appeared" if not old else "vanished" if not new else "known_status"
    return {"event_id": event_id, "container_id": container(n, new, 0)["container_id"], "task_id": task_of(n),
            "event": kind, "from": old, "to": new, "timestamp": at(seconds)}  # fmt: skip


def life(store: SimpleDBStore, n: int, counted: Counted, events: bool = True, show: bool = False) -> Figures:
    """One container's life as four reports: appeared (PENDING), running, stopped, vanished (its event alone)."""
    steps = [
        ("PENDING", "", "PENDING", 0),
        ("RUNNING", "PENDING", "RUNNING", 20),
        ("STOPPED", "RUNNING", "STOPPED", 3600),
    ]
    total = (0, 0, 0)
    for status, old, new, seconds in [*steps, ("", "STOPPED", "", 3605)]:
        records = [container(n, status, seconds)] if status else []
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


def main() -> None:
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    with mock_aws():
        store = SimpleDBStore("bench", region="us-west-2")  # moto serves SimpleDB outside us-east-1 only
        counted = Counted(store.client)
        header = f"  {'':<44} {'total':>5} {'reads':>6} {'writes':>7}"

        print("One container's life, a one-container task (each line: one report, as /report/map stores it)")
        print(header)
        print(row("life with its four events", life(store, 1, counted, show=True)))
        print(row("the same life without events", life(store, 3, counted, events=False)))

        print("\nThe same life with no record cache (each report on another replica: cache_size=0)")
        print(header)
        cold = SimpleDBStore("benchcold", region="us-west-2", cache_size=0)
        counted_cold = Counted(cold.client)
        print(row("life with its four events", life(cold, 2, counted_cold, show=True)))
        cold.close()

        print(f"\nA container that keeps changing: its record item holds {items.EVENT_PAIRS} events, later ones go")
        print("to its task's event log (each line: one report of a changed record and its event)")
        print(header)
        busy = [
            store.record_report(
                [container(4, "RUNNING", n, health=f"h{n}")], [event(4, f"ev-h{n}", f"h{n - 1}", f"h{n}", n)], at(n)
            )
            and counted.take()
            for n in range(items.EVENT_PAIRS + 3)
        ]
        print(row("first report", busy[0]))
        print(row(f"report {items.EVENT_PAIRS}, the item's last event", busy[items.EVENT_PAIRS - 1]))
        print(row(f"report {items.EVENT_PAIRS + 1}: to the log, the item marked", busy[items.EVENT_PAIRS]))
        print(row(f"report {items.EVENT_PAIRS + 2} and later: record, and the log", busy[items.EVENT_PAIRS + 1]))

        print("\nUnchanged full resync of 50 containers (10 tasks of 5)")
        print(header)
        fleet = [container(100 + n, "RUNNING", 0, task=f"{n // 5:032x}") for n in range(50)]
        store.upsert_containers(fleet, at(1))
        print(row("first full report (50 new)", counted.take()))
        store.upsert_containers(fleet, at(60))
        print(row("resync 1 min later, nothing changed", counted.take()))
        store.upsert_containers(fleet, at(240))
        print(row("resync 4 min later, nothing changed", counted.take()))
        store.upsert_containers(fleet, at(400))
        print(row("resync after last_seen resolution (5 min)", counted.take()))
        fresh = SimpleDBStore("bench", region="us-west-2")  # a replica that has not seen these yet
        counted_fresh = Counted(fresh.client)
        fresh.upsert_containers(fleet, at(460))
        print(row("resync on a replica with an empty cache", counted_fresh.take()))
        fresh.close()

        print("\nLookups")
        print(header)
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
