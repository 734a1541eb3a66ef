"""How long ``GET /sd/prometheus`` takes at 10,000 running containers, against Prometheus's 60 s refresh.

The record holds 10,000 running containers and 30,000 stopped ones (history). The answer is fetched over HTTP
from the real server (``python -m server``, gunicorn, SQLite) and its parts are timed in process: the store query
and the answer built from it. ``.venv/bin/python -m bench.sd_prometheus [--running N] [--stopped N]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import requests

from bench import fleet
from bench.load import Served, clean_env
from server import schema
from server.discovery import Filters, target_groups
from server.records import utc_now
from server.store.sdb import items as sdb_items
from server.store.sqlite import SQLiteStore

REFRESH_SECONDS = 60
ROUNDS = 15
T = TypeVar("T")


def load(database: Path, running: int, stopped: int) -> None:
    """Containers ``0 … running-1`` RUNNING, the next ``stopped`` STOPPED, through the report parser."""
    store = SQLiteStore(str(database))
    try:
        for status, first, count in (("RUNNING", 0, running), ("STOPPED", running, stopped)):
            for start in range(first, first + count, 1000):
                body = json.loads(fleet.report(start, min(1000, first + count - start), status=status))
                containers, _, _ = schema.map_report(body)
                store.upsert_containers(containers, utc_now())
    finally:
        store.close()


def timed(work: Callable[[], T], rounds: int = ROUNDS) -> tuple[float, float, T]:
    """Median and worst seconds of ``work()`` over ``rounds`` runs after one warm-up, and its last result."""
    result = work()
    times = []
    for _ in range(rounds):
        began = time.perf_counter()
        result = work()
        times.append(time.perf_counter() - began)
    return statistics.median(times), max(times), result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--running", type=int, default=10_000)
    parser.add_argument("--stopped", type=int, default=30_000)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="sd-bench-") as workdir:
        database = Path(workdir) / "mapper.sqlite3"
        began = time.perf_counter()
        load(database, args.running, args.stopped)
        print(f"loaded {args.running:,} running and {args.stopped:,} stopped containers in "
              f"{time.perf_counter() - began:.0f} s")  # fmt: skip

        store = SQLiteStore(str(database))
        query, _, records = timed(store.running_containers)
        build, _, answer = timed(lambda: target_groups(records, Filters()))
        encode, _, body = timed(lambda: json.dumps(answer))
        store.close()

        env = clean_env(ECS_ID_MAPPER_STORE=f"sqlite:///{database}", ECS_ID_MAPPER_SERVICE_NAMES="false")
        with Served("server", env, Path(workdir) / "server.log") as server:
            session = requests.Session()

            def fetch() -> requests.Response:
                response = session.get(server.url + "/sd/prometheus", timeout=60)
                response.raise_for_status()
                return response

            median, worst, response = timed(fetch)
            filtered, _, _ = timed(lambda: session.get(server.url + "/sd/prometheus?port=8000", timeout=60))

    groups, size = response.json(), len(response.content)
    item_bytes = statistics.mean(
        sum(len(k) + len(v) for k, v in sdb_items.record_attributes(r).items()) for r in records[:1000]
    )
    print(f"in process: store query {query * 1000:.0f} ms ({len(records):,} records), "
          f"answer built {build * 1000:.0f} ms, JSON {encode * 1000:.0f} ms ({len(body) / 1024:.0f} KiB)")  # fmt: skip
    print(f"GET /sd/prometheus over HTTP: median {median * 1000:.0f} ms, worst {worst * 1000:.0f} ms of "
          f"{ROUNDS}; {len(groups):,} target groups, {size / 1024:.0f} KiB")  # fmt: skip
    print(f"GET /sd/prometheus?port=8000: median {filtered * 1000:.0f} ms")
    print(f"one refresh every {REFRESH_SECONDS} s keeps one worker busy {median / REFRESH_SECONDS:.2%} of the time; "
          f"the answer is ready {REFRESH_SECONDS / median:,.0f} times faster than Prometheus asks")  # fmt: skip
    pages = max(1, -(-int(item_bytes * args.running) // (1024 * 1024)))
    print(f"SimpleDB (estimate from item size): {item_bytes:,.0f} bytes per record item, so about {pages} "
          f"Select pages of 1 MB for {args.running:,} running containers")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
