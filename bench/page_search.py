"""The page's search beside the matching API route, at 100,000 containers on SQLite: server-side time per answer
and the store reads each costs, measured in one process, round by round, in the same run.

``.venv/bin/python -m bench.page_search`` (``make bench``); ``--containers 10000`` for a short try. The store is
loaded through the same parsing and store code a report takes (``bench.lookup.bulk_load``); each request is sent
through the app's WSGI callable (Flask's test client), so the time is the server's own, without a network. The
target: a search under 50 ms at p99, and no more store reads than the API route that answers the same question.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import fleet
from bench.lookup import bulk_load
from server import create_app
from server.state import state

#: The store's read methods: every call of one is a read (``host_leases`` is read at most every 5 s per process).
READS = (
    "get_container", "task_of_container", "find_containers", "containers_of_task", "statuses_of_task",
    "containers_of_service", "running_containers", "events_of_container", "events_of_task", "host_leases",
)  # fmt: skip
TARGET_MS = 50.0


class CountingStore:
    """The app's store, counting each read it is asked."""

    def __init__(self, store: Any):
        self._store = store
        self.reads: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        found = getattr(self._store, name)
        if name not in READS:
            return found

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.reads[name] += 1
            return found(*args, **kwargs)

        return counted


def cases(ids: list[str], tasks: list[str]) -> dict[str, tuple[Callable[[int], str], int]]:
    """Name → (the path of the i-th request, the status it must answer)."""
    return {
        "page: search by full container ID": (lambda i: f"/?q={ids[i]}", 302),
        "api: /query/container_id/<full>/_all": (lambda i: f"/query/container_id/{ids[i]}/_all", 200),
        "page: search by short ID": (lambda i: f"/?q={ids[i][:12]}", 302),
        "api: /query/container_id/<short>/_all": (lambda i: f"/query/container_id/{ids[i][:12]}/_all", 200),
        "page: search by task ID": (lambda i: f"/?q={tasks[i]}", 302),
        "api: /query/task_id/<id>": (lambda i: f"/query/task_id/{tasks[i]}", 200),
        "page: container view": (lambda i: f"/container/{ids[i]}", 200),
        "page: task view": (lambda i: f"/task/{tasks[i]}", 200),
    }


def measure(client: Any, counting: CountingStore, path_of: Callable[[int], str], status: int, n: int) -> dict:
    times, reads = [], []
    for i in range(n):
        path = path_of(i)
        counting.reads.clear()
        began = time.perf_counter()
        response = client.get(path)
        elapsed = time.perf_counter() - began
        assert response.status_code == status, (path, response.status_code, response.get_data(as_text=True)[:300])
        times.append(elapsed * 1000)
        reads.append(sum(n for name, n in counting.reads.items() if name != "host_leases"))
    return {"times": times, "reads": reads}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--containers", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=500, help="per case and round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-page-") as folder:
        database = Path(folder) / "page.sqlite3"
        began = time.monotonic()
        bulk_load(database, args.containers, events=True)
        print(f"loaded {args.containers} containers with their events in {time.monotonic() - began:.0f} s")
        app = create_app({
            "store": f"sqlite:///{database}", "token": "bench-token", "service_names": False,
            "task_definitions": False, "container_instances": False, "log_level": "WARNING",
        })  # fmt: skip
        counting = CountingStore(state(app).store)
        state(app).store = counting  # type: ignore[assignment]
        client = app.test_client()
        rng = random.Random(7)
        picked = rng.sample(range(args.containers), min(args.requests, args.containers))
        ids = [fleet.container_id(n) for n in picked]
        tasks = [fleet.task_id(n) for n in picked]
        # Short IDs that are unique in this fleet: the search opens the container, the API answers it.
        runs: dict[str, dict[str, list]] = {}
        for _ in range(args.rounds):
            for name, (path_of, status) in cases(ids, tasks).items():
                measured = measure(client, counting, path_of, status, len(ids))
                run = runs.setdefault(name, {"times": [], "reads": []})
                run["times"] += measured["times"]
                run["reads"] += measured["reads"]
        state(app).close()

    figures = {}
    print(f"\n{args.containers:,} containers on SQLite, {args.rounds} rounds x {len(ids)} requests per case")
    print(f"{'case':42} {'p50 ms':>8} {'p99 ms':>8} {'store reads':>12}")
    for name, run in runs.items():
        ordered = sorted(run["times"])
        p50, p99 = statistics.median(ordered), ordered[int(len(ordered) * 0.99) - 1]
        reads = Counter(run["reads"])
        said = ", ".join(f"{k}" if len(reads) == 1 else f"{k} ({v}x)" for k, v in sorted(reads.items()))
        figures[name] = {"p50_ms": round(p50, 2), "p99_ms": round(p99, 2), "reads": dict(reads)}
        print(f"{name:42} {p50:8.2f} {p99:8.2f} {said:>12}")
    search, api = figures["page: search by full container ID"], figures["api: /query/container_id/<full>/_all"]
    met = search["p99_ms"] < TARGET_MS and max(search["reads"]) <= min(api["reads"])
    print(
        f"\nsearch by exact ID: p99 {search['p99_ms']} ms (target < {TARGET_MS:g} ms), "
        f"{max(search['reads'])} store read(s) vs the API route's {min(api['reads'])}: {'met' if met else 'MISSED'}"
    )
    print(json.dumps(figures), file=sys.stderr)


if __name__ == "__main__":
    main()
