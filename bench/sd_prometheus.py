"""How long ``GET /sd/prometheus`` takes at 10,000 running containers, kept built and built again, beside its targets.

The record holds 10,000 running containers on 250 reporting hosts and 30,000 stopped ones (history). The answer is
fetched over loopback from the real server (``python -m server``, gunicorn, SQLite), on one keep-alive connection:
as Prometheus asks (gzip, no ``If-None-Match``), uncompressed, with ``If-None-Match`` (a 304), filtered, and right
after one write that changes a running container (the answer built again). In process: what building it again
costs (store query, the groups, JSON), and what the discovery generation costs a write and a read.
``.venv/bin/python -m bench.sd_prometheus [--running N] [--stopped N] [--rounds N]``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from bench import fleet
from bench.load import Served, clean_env
from server import schema
from server.discovery import Filters, target_groups
from server.records import utc_now
from server.store.sdb import items as sdb_items
from server.store.sqlite import SQLiteStore

REFRESH_SECONDS = 60
#: The targets, in seconds: p50 and p99 of the whole answer at 10,000 running containers.
TARGET_P50, TARGET_P99 = 0.100, 0.250
TOKEN = "bench-sd-token"
T = TypeVar("T")


def load(database: Path, running: int, stopped: int) -> None:
    """Containers ``0 … running-1`` RUNNING, the next ``stopped`` STOPPED, 40 to a host, through the report parser;
    each report renews its host's lease, as an agent's does."""
    store = SQLiteStore(str(database))
    try:
        for status, first, count in (("RUNNING", 0, running), ("STOPPED", running, stopped)):
            for start in range(first, first + count, 40):
                body = json.loads(fleet.report(start, min(40, first + count - start), status=status))
                containers, _, _ = schema.map_report(body)
                store.record_report(containers, [], utc_now(), host=body["host"])
    finally:
        store.close()


def timed(work: Callable[[], T], rounds: int) -> tuple[list[float], T]:
    """Seconds of each of ``rounds`` runs of ``work()`` after one warm-up, and its last result."""
    result = work()
    times = []
    for _ in range(rounds):
        began = time.perf_counter()
        result = work()
        times.append(time.perf_counter() - began)
    return times, result


def p50_p99(times: list[float]) -> tuple[float, float]:
    cuts = statistics.quantiles(times, n=100, method="inclusive")
    return statistics.median(times), cuts[98]


def verdict(times: list[float]) -> str:
    p50, p99 = p50_p99(times)
    met = "met" if p50 <= TARGET_P50 and p99 <= TARGET_P99 else "MISSED"
    worst = max(times) * 1000
    return (f"p50 {p50 * 1000:6.1f} ms (target ≤ {TARGET_P50 * 1000:.0f}), p99 {p99 * 1000:6.1f} ms "
            f"(target ≤ {TARGET_P99 * 1000:.0f}), worst {worst:6.1f} ms of {len(times)}: {met}")  # fmt: skip


class Client:
    """GETs over one keep-alive loopback connection, reading the whole body."""

    def __init__(self, port: int):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        self.conn.request("GET", path, headers=headers or {})
        response = self.conn.getresponse()
        body = response.read()
        if response.status not in (200, 304):
            raise RuntimeError(f"GET {path}: {response.status} {body[:200]!r}")
        return response.status, dict(response.getheaders()), body

    def post(self, path: str, body: bytes) -> None:
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
        self.conn.request("POST", path, body, headers)
        response = self.conn.getresponse()
        answer = response.read()
        if response.status != 200:
            raise RuntimeError(f"POST {path}: {response.status} {answer[:200]!r}")


def moved_port(n: int, round_: int) -> bytes:
    """A report of running container ``n`` on another host port each round: a write discovery shows."""
    body = json.loads(fleet.report(n, 1))
    body["containers"][0]["ports"][0]["host_port"] = 40000 + round_
    return json.dumps(body).encode()


def write_cost(database: Path, rounds: int) -> tuple[float, float, float, float]:
    """Median seconds of one report of 40 running containers whose ports moved, with the generation counted and
    without (alternating), of the counting statement alone (inside an open transaction), and of one read of the
    generation."""
    store = SQLiteStore(str(database))
    counting = store._count_shown  # the very step measured, switched off in alternate rounds
    with_, without = [], []
    try:
        for round_ in range(rounds):
            for counted in (True, False) if round_ % 2 else (False, True):
                store._count_shown = counting if counted else (lambda conn: None)  # type: ignore[method-assign]
                body = json.loads(fleet.report(0, 40))
                for entry in body["containers"]:
                    entry["ports"][0]["host_port"] = 20000 + round_ * 2 + counted
                containers, _, _ = schema.map_report(body)
                began = time.perf_counter()
                store.record_report(containers, [], utc_now(), host=body["host"])
                (with_ if counted else without).append(time.perf_counter() - began)
        conn = sqlite3.connect(database, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        statement, _ = timed(lambda: counting(conn), 2000)
        conn.execute("ROLLBACK")
        conn.close()
        reads, _ = timed(store.discovery_generation, 2000)
    finally:
        store.close()
    return statistics.median(with_), statistics.median(without), statistics.median(statement), statistics.median(reads)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--running", type=int, default=10_000)
    parser.add_argument("--stopped", type=int, default=30_000)
    parser.add_argument("--rounds", type=int, default=200, help="requests per kept-answer case")
    args = parser.parse_args(argv)
    rebuilds = max(10, args.rounds // 10)

    with tempfile.TemporaryDirectory(prefix="sd-bench-") as workdir:
        database = Path(workdir) / "mapper.sqlite3"
        began = time.perf_counter()
        load(database, args.running, args.stopped)
        print(f"loaded {args.running:,} running and {args.stopped:,} stopped containers in "
              f"{time.perf_counter() - began:.0f} s")  # fmt: skip

        def cold() -> list[dict[str, str]]:
            opened = SQLiteStore(str(database))  # nothing decoded yet
            try:
                return opened.running_containers()
            finally:
                opened.close()

        query, records = timed(cold, 5)
        store = SQLiteStore(str(database))
        warm, _ = timed(store.running_containers, 5)  # each record decoded at the first read only
        build, answer = timed(lambda: target_groups(records, Filters()), 5)
        encode, body = timed(lambda: json.dumps(answer), 5)
        store.close()

        env = clean_env(
            ECS_ID_MAPPER_STORE=f"sqlite:///{database}",
            ECS_ID_MAPPER_TOKEN=TOKEN,
            ECS_ID_MAPPER_SERVICE_NAMES="false",
            ECS_ID_MAPPER_TASK_DEFINITIONS="false",
            ECS_ID_MAPPER_CONTAINER_INSTANCES="false",
        )
        with Served("server", env, Path(workdir) / "server.log") as server:
            client = Client(server.port)
            whole, (_, headers, payload) = timed(lambda: client.get("/sd/prometheus"), args.rounds)
            gzip_ = {"Accept-Encoding": "gzip"}  # what Prometheus's HTTP client sends
            packed, (_, _, compressed) = timed(lambda: client.get("/sd/prometheus", gzip_), args.rounds)
            tag = {"If-None-Match": headers["ETag"]}
            unchanged, (status, _, _) = timed(lambda: client.get("/sd/prometheus", tag), args.rounds)
            filtered, _ = timed(lambda: client.get("/sd/prometheus?port=8000"), args.rounds)
            rebuilt = []
            for round_ in range(rebuilds):
                client.post("/report/map", moved_port(round_ * 40, round_))
                began = time.perf_counter()
                client.get("/sd/prometheus")
                rebuilt.append(time.perf_counter() - began)
            # Each worker keeps its own answer: the other one builds it at its next request.
            client.get("/sd/prometheus")

        counted, uncounted, statement, read = write_cost(database, 100)

    groups = json.loads(payload)
    item_bytes = statistics.mean(
        sum(len(k) + len(v) for k, v in sdb_items.record_attributes(r).items()) for r in records[:1000]
    )
    print(f"{len(groups):,} target groups, {len(payload) / 1024:,.0f} KiB; over loopback, one keep-alive connection:")
    print(f"  GET /sd/prometheus, Accept-Encoding: gzip ({len(compressed) / 1024:,.0f} KiB, as Prometheus asks): "
          f"{verdict(packed)}")  # fmt: skip
    print(f"  GET /sd/prometheus, no Accept-Encoding:      {verdict(whole)}")
    print(f"  with If-None-Match (answered {status}):       {verdict(unchanged)}")
    print(f"  ?port=8000 (cut from the kept answer):       {verdict(filtered)}")
    p50, p99 = p50_p99(rebuilt)
    print(f"  right after one write it shows (built again): p50 {p50 * 1000:6.1f} ms, p99 {p99 * 1000:6.1f} ms, "
          f"worst {max(rebuilt) * 1000:6.1f} ms of {len(rebuilt)}")  # fmt: skip
    print(f"in process (medians): the store query {statistics.median(query) * 1000:.0f} ms for a process's first "
          f"read ({len(records):,} records), {statistics.median(warm) * 1000:.0f} ms once they were decoded; "
          f"every group afresh {statistics.median(build) * 1000:.0f} ms, "
          f"JSON {statistics.median(encode) * 1000:.0f} ms ({len(body) / 1024:,.0f} KiB)")  # fmt: skip
    print(f"the discovery generation on SQLite: a report of 40 running containers whose ports moved takes "
          f"{counted * 1000:.2f} ms counted, {uncounted * 1000:.2f} ms not (medians, alternating rounds); the "
          f"counting statement alone {statement * 1e6:.0f} µs; one read of it {read * 1e6:.0f} µs")  # fmt: skip
    print(f"one refresh every {REFRESH_SECONDS} s, built again each time, keeps one worker busy "
          f"{statistics.median(rebuilt) / REFRESH_SECONDS:.2%} of the time")  # fmt: skip
    pages = max(1, -(-int(item_bytes * args.running) // (1024 * 1024)))
    print(f"SimpleDB (estimate from item size): {item_bytes:,.0f} bytes per record item, so about {pages} "
          f"Select pages of 1 MB for {args.running:,} running containers")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
