"""Lookup and ingest speed of the real server (``python -m server`` under gunicorn, its defaults) measured from
outside with wrk on loopback, side by side with a bare Flask route served by the same gunicorn settings.

``.venv/bin/python -m bench.lookup`` (``make bench``) runs every case; ``--cases 1,5`` picks some, ``--quick``
runs small ones. It prints a table with each target, then one JSON object of every figure.

1. quiet lookups at 100,000 containers: container text, task text, ``_all``, each ÷ bare;
2. busy lookups: the same while another process posts 1,000 new containers/s, service names on against moto's ECS
   (``--busy-ecs none``: no AWS configured); then again with a report pool (``ECS_ID_MAPPER_REPORT_WORKERS=1``)
   that the poster sends to;
3. growth: container text p50 and p99 at 1,000 and 1,000,000 containers (1M loaded through the store's code);
4. remote store: SimpleDB in moto's server behind a proxy adding 20 ms per request: answers that cannot change;
5. ingest: container upserts/s through ``/report/map``, 100-container reports from 4 posting processes;
6. disk: SQLite bytes per container with and without events; WAL size during cases 2 and 5.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from bench import fleet, fleet_ecs
from bench.load import (
    FileSizes,
    Served,
    SlowProxy,
    alternate,
    clean_env,
    files_size,
    free_port,
    median_of,
    side_by_side,
    wrk,
    wrk_available,
)
from server import schema
from server.records import utc_now, with_event_times
from server.store.sqlite import SQLiteStore

TOKEN = "bench-token"
MIB = 1024 * 1024


class Bench:
    def __init__(self, args: argparse.Namespace, workdir: Path):
        self.args = args
        self.workdir = workdir
        self.figures: dict = {}
        self.bare_url = ""

    def log(self, name: str) -> Path:
        return self.workdir / f"{name}.log"

    def compare(self, server_url: str, paths: list[str]) -> dict:
        a = self.args
        bare_paths = [f"/bare/{i}" for i in range(1000)]
        return side_by_side(server_url, paths, self.bare_url, bare_paths, a.rounds, a.seconds, a.connections)

    def lookups(self, server_url: str, ids: list[str], tasks: list[str]) -> dict:
        sample = random.sample(ids, min(len(ids), 100_000))
        return {
            "container_text": self.compare(server_url, [f"/query/container_id/{i}" for i in sample]),
            "task_text": self.compare(server_url, [f"/query/task_id/{t}" for t in tasks]),
            "container_all": self.compare(server_url, [f"/query/container_id/{i}/_all" for i in sample]),
        }

    # Cases 1, 2, 5 and 6 share one fleet.

    def fleet(self, cases: set[int]) -> None:
        n = self.args.containers
        database = self.workdir / "fleet.sqlite3"
        env = clean_env(ECS_ID_MAPPER_STORE=f"sqlite:///{database}", ECS_ID_MAPPER_TOKEN=TOKEN, **self.args.settings)
        ids = [fleet.container_id(i) for i in range(n)]
        tasks = sorted({fleet.task_id(i) for i in range(n)})
        with Served("server", env, self.log("server-fleet")) as server:
            with FileSizes(database) as wal:
                rate = fleet.ingest(server.port, TOKEN, n, posters=4)
            time.sleep(5)
            self.figures["ingest"] = {
                "containers": n,
                "upserts_per_s": round(rate),
                "wal_max_mib": round(wal.largest / MIB, 1),
                "wal_5s_after_mib": round(_wal_size(database) / MIB, 1),
            }
            print(f"ingest: {self.figures['ingest']}", file=sys.stderr)
            if 1 in cases:
                self.figures["quiet"] = self.lookups(server.url, ids, tasks)
                print(f"quiet: {self.figures['quiet']}", file=sys.stderr)
        self.figures["disk"] = {"bytes_per_container": round(files_size(database) / n)}
        if 2 in cases:
            self.busy(env, ids, tasks, database)
            # The same with reports on a pool of their own (ECS_ID_MAPPER_REPORT_WORKERS), the poster sending there.
            report_port = free_port()
            split = {
                **env,
                "ECS_ID_MAPPER_REPORT_WORKERS": "1",
                "ECS_ID_MAPPER_REPORT_BIND": f"127.0.0.1:{report_port}",
            }
            self.busy(split, ids, tasks, database, report_port=report_port)
        if 6 in cases:
            with_events = self.workdir / "events.sqlite3"
            count = self.args.event_containers
            bulk_load(with_events, count, events=True)
            self.figures["disk"]["bytes_per_container_with_4_events"] = round(files_size(with_events) / count)

    def busy(self, env: dict[str, str], ids: list[str], tasks: list[str], database: Path, report_port: int = 0) -> None:
        """Case 2: lookups while another process posts new containers. That process also holds moto's ECS and
        tells it about each task before reporting it; the server asks it for service names (``--busy-ecs moto``)
        or has no AWS configured at all (``none``). With ``report_port`` the server runs a report pool there and
        the poster sends to it."""
        ecs_port = free_port()
        if self.args.busy_ecs == "moto":
            env = {
                **env,
                "AWS_ACCESS_KEY_ID": "bench",
                "AWS_SECRET_ACCESS_KEY": "bench",
                "AWS_REGION": fleet.REGION,
                "AWS_ENDPOINT_URL_ECS": f"http://127.0.0.1:{ecs_port}",
            }
        server = Served("server", env, self.log("server-busy"))
        ready, go, stop = multiprocessing.Event(), multiprocessing.Event(), multiprocessing.Event()
        posted = multiprocessing.Value("q", 0)
        poster = multiprocessing.Process(
            target=fleet_ecs.steady_poster,
            args=(report_port or server.port, ecs_port, TOKEN, self.args.busy_rate, "busy", ready, go, stop, posted),
        )
        poster.start()
        try:
            if not ready.wait(60):
                raise RuntimeError("the poster's ECS did not start")
            with server, FileSizes(database) as wal:
                if report_port:
                    _wait_port(report_port)
                go.set()
                began = time.monotonic()
                try:
                    busy = self.lookups(server.url, ids, tasks)
                finally:
                    stop.set()
                    poster.join()
                busy["poster_upserts_per_s"] = round(posted.value / (time.monotonic() - began))
                busy["wal_max_mib"] = round(wal.largest / MIB, 1)
                busy["ecs"] = self.args.busy_ecs
                busy["service_name_lookups"] = _service_name_lookups(server.url)
                busy["new_tasks"] = posted.value // fleet.PER_TASK
        finally:
            stop.set()
            go.set()
            poster.join()
        name = "busy_report_pool" if report_port else "busy"
        self.figures[name] = busy
        print(f"{name}: {busy}", file=sys.stderr)

    # Case 3.

    def growth(self) -> None:
        small_n, big_n = 1000, self.args.big
        targets = {}
        servers = []
        for name, count in (("small", small_n), ("big", big_n)):
            database = self.workdir / f"growth-{name}.sqlite3"
            began = time.monotonic()
            bulk_load(database, count)
            print(f"growth: loaded {count} in {time.monotonic() - began:.0f} s", file=sys.stderr)
            env = clean_env(
                ECS_ID_MAPPER_STORE=f"sqlite:///{database}", ECS_ID_MAPPER_TOKEN=TOKEN, **self.args.settings
            )
            servers.append(Served("server", env, self.log(f"server-growth-{name}")).__enter__())
            sample = [fleet.container_id(random.randrange(count)) for _ in range(min(count, 200_000))]
            targets[name] = (servers[-1].url, [f"/query/container_id/{i}" for i in sample])
        targets["bare"] = (self.bare_url, [f"/bare/{i}" for i in range(1000)])
        try:
            a = self.args
            runs = alternate(targets, a.rounds, a.seconds, a.connections)
        finally:
            for server in servers:
                server.__exit__()
        small, big = runs["small"], runs["big"]
        self.figures["growth"] = {
            "containers": [small_n, big_n],
            "p50_ms": [median_of(small, "p50_ms"), median_of(big, "p50_ms")],
            "p99_ms": [median_of(small, "p99_ms"), median_of(big, "p99_ms")],
            "rps": [
                round(median_of(small, "rps")),
                round(median_of(big, "rps")),
                round(median_of(runs["bare"], "rps")),
            ],
            "p50_ratio": round(median_of(big, "p50_ms") / median_of(small, "p50_ms"), 3),
            "p99_ratio": round(median_of(big, "p99_ms") / median_of(small, "p99_ms"), 3),
            "errors": sum(r["errors"] for r in small + big),
        }
        print(f"growth: {self.figures['growth']}", file=sys.stderr)

    # Case 4.

    def remote(self) -> None:
        moto_port = free_port()
        with open(self.log("moto"), "ab") as log:
            moto = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(moto_port)],
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        proxy = SlowProxy(moto_port, delay=0.020)
        env = clean_env(
            ECS_ID_MAPPER_STORE=f"sdb://bench?region=eu-central-1&endpoint_url=http://127.0.0.1:{proxy.port}",
            ECS_ID_MAPPER_TOKEN=TOKEN,
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
            AWS_REGION="eu-central-1",
            AWS_ENDPOINT_URL_ECS=f"http://127.0.0.1:{moto_port}",
            **self.args.settings,
        )
        n = self.args.remote_containers
        try:
            _wait_port(moto_port)
            with Served("server", env, self.log("server-remote")) as server:
                poster = fleet.Poster(server.port, TOKEN)
                for first in range(0, n, fleet.REPORT_SIZE):
                    poster.post(fleet.report(first, salt="running"))
                    poster.post(fleet.report(first, salt="stopped", status="STOPPED"))
                ids = [fleet.container_id(i, s) for i in range(n) for s in ("running", "stopped")]
                stopped = sorted({fleet.task_id(i, "stopped") for i in range(n)})
                running = sorted({fleet.task_id(i, "running") for i in range(n)})
                container_paths = [f"/query/container_id/{i}" for i in ids]
                task_paths = [f"/query/task_id/{t}" for t in stopped]
                a = self.args
                for paths in (container_paths, task_paths):
                    warm_up(server.url, paths, a.connections)
                self.figures["remote"] = {
                    "containers": 2 * n,
                    "container_text": self.compare(server.url, container_paths),
                    "stopped_task_text": self.compare(server.url, task_paths),
                    "running_task_text": {
                        k: round(v, 1)
                        for k, v in wrk(server.url, [f"/query/task_id/{t}" for t in running], a.seconds, 4).items()
                    },
                }
                print(f"remote: {self.figures['remote']}", file=sys.stderr)
        finally:
            proxy.close()
            moto.terminate()
            moto.wait()


def warm_up(url: str, paths: list[str], connections: int, most: int = 10) -> None:
    """Ask until every worker has learnt the answers it can keep: until the rate stops rising."""
    last = 0.0
    for _ in range(most):
        rate = wrk(url, paths, 3, connections)["rps"]
        if rate < last * 1.1:
            return
        last = rate


def bulk_load(database: Path, count: int, events: bool = False) -> None:
    """Load containers ``0 … count-1`` through the same parsing and store code a report takes."""
    store = SQLiteStore(str(database))
    size = 250 if events else 1000  # a report carries at most 1,000 events
    try:
        for first in range(0, count, size):
            body = json.loads(fleet.report(first, min(size, count - first), events=events))
            containers, event_list, _ = schema.map_report(body)
            store.upsert_containers(with_event_times(containers, event_list), utc_now())
            if event_list:
                store.add_events(event_list)
    finally:
        store.close()


def _service_name_lookups(url: str) -> dict[str, int]:
    """The server's count of tasks asked of ECS for their service, by outcome, from its ``/metrics``."""
    counts: dict[str, int] = {}
    try:
        text = requests.get(f"{url}/metrics", timeout=60).text
    except requests.RequestException:  # a loaded machine: the figure is left out, not the run
        return counts
    for line in text.splitlines():
        if line.startswith("ecs_id_mapper_service_name_lookups_total{"):
            outcome = line.split('outcome="', 1)[1].split('"', 1)[0]
            counts[outcome] = round(float(line.rsplit(" ", 1)[1]))
    return counts


def _wal_size(database: Path) -> int:
    wal = Path(f"{database}-wal")
    return wal.stat().st_size if wal.exists() else 0


def _wait_port(port: int, timeout: float = 30.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


# Output.

TARGETS = [
    # (label, path into the figures, target, comparison)
    ("ingest, container upserts/s (4 posters, 100/report)", ("ingest", "upserts_per_s"), 5000, ">="),
    ("quiet: container text ÷ bare", ("quiet", "container_text", "ratio"), 0.85, ">="),
    ("quiet: task text ÷ bare", ("quiet", "task_text", "ratio"), 0.85, ">="),
    ("quiet: container _all ÷ bare", ("quiet", "container_all", "ratio"), 0.70, ">="),
    ("quiet, server CPU, bare ÷ ours: container text", ("quiet", "container_text", "cpu_ratio"), None, ""),
    ("quiet, server CPU, bare ÷ ours: task text", ("quiet", "task_text", "cpu_ratio"), None, ""),
    ("quiet, server CPU, bare ÷ ours: container _all", ("quiet", "container_all", "cpu_ratio"), None, ""),
    ("busy: container text ÷ bare", ("busy", "container_text", "ratio"), 0.70, ">="),
    ("busy: task text ÷ bare", ("busy", "task_text", "ratio"), 0.70, ">="),
    ("busy: container _all ÷ bare", ("busy", "container_all", "ratio"), None, ""),
    ("busy, report pool: container text ÷ bare", ("busy_report_pool", "container_text", "ratio"), 0.70, ">="),
    ("busy, report pool: task text ÷ bare", ("busy_report_pool", "task_text", "ratio"), 0.70, ">="),
    ("busy, report pool: container _all ÷ bare", ("busy_report_pool", "container_all", "ratio"), None, ""),
    ("busy, report pool: the poster's upserts/s", ("busy_report_pool", "poster_upserts_per_s"), None, ""),
    ("busy: the poster's upserts/s", ("busy", "poster_upserts_per_s"), None, ""),
    ("busy: tasks the poster started", ("busy", "new_tasks"), None, ""),
    ("busy: of them, described by ECS by the end (the rest wait)", ("busy", "service_name_lookups", "found"), None, ""),
    ("growth: p50 at 1M ÷ at 1k", ("growth", "p50_ratio"), 1.25, "<="),
    ("growth: p99 at 1M ÷ at 1k", ("growth", "p99_ratio"), 1.25, "<="),
    ("remote: container text ÷ bare", ("remote", "container_text", "ratio"), 0.80, ">="),
    ("remote: stopped task text ÷ bare", ("remote", "stopped_task_text", "ratio"), 0.80, ">="),
    ("remote, server CPU, bare ÷ ours: container text", ("remote", "container_text", "cpu_ratio"), None, ""),
    ("remote, server CPU, bare ÷ ours: stopped task", ("remote", "stopped_task_text", "cpu_ratio"), None, ""),
    ("disk: bytes per container, no events", ("disk", "bytes_per_container"), 1536, "<="),
    ("disk: bytes per container, 4 events each", ("disk", "bytes_per_container_with_4_events"), None, ""),
    ("WAL MiB, largest during ingest", ("ingest", "wal_max_mib"), 64, "<="),
    ("WAL MiB, 5 s after ingest", ("ingest", "wal_5s_after_mib"), 64, "<="),
    ("WAL MiB, largest during busy lookups", ("busy", "wal_max_mib"), 64, "<="),
]


def table(figures: dict) -> str:
    rows = ["| Figure | Measured | Target | Met |", "|---|---:|---:|---|"]
    for label, path, target, op in TARGETS:
        value = figures
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if value is None:
            continue
        met = "" if target is None else ("yes" if (value >= target if op == ">=" else value <= target) else "NO")
        shown = f"{value:,}" if isinstance(value, int) else f"{value:.2f}"
        rows.append(f"| {label} | {shown} | {'' if target is None else f'{op} {target:,}'} | {met} |")
    return "\n".join(rows)


def machine() -> dict:
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    models = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return {
        "cpus": os.cpu_count(),
        "cpu": models[0] if models else platform.processor(),
        "python": platform.python_version(),
        "system": platform.platform(),
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default="1,2,3,4,5,6", help="comma-separated case numbers (default: all)")
    parser.add_argument("--quick", action="store_true", help="small fleets and short runs, to try the harness")
    parser.add_argument("--containers", type=int, default=100_000)
    parser.add_argument("--big", type=int, default=1_000_000, help="the large fleet of the growth case")
    parser.add_argument("--remote-containers", type=int, default=250, help="per half (running, stopped)")
    parser.add_argument("--event-containers", type=int, default=20_000)
    parser.add_argument("--busy-rate", type=float, default=1000.0)
    parser.add_argument(
        "--busy-ecs", choices=("moto", "none"), default="moto", help="case 2's ECS: moto's server, or no AWS at all"
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument(
        "--set", action="append", default=[], metavar="NAME=VALUE", help="a server setting, e.g. WORKERS=4"
    )
    parser.add_argument("--keep", action="store_true", help="keep the working directory (databases, logs)")
    args = parser.parse_args(argv)
    if args.quick:
        args.containers, args.big, args.remote_containers, args.event_containers = 10_000, 50_000, 100, 2000
        args.rounds, args.seconds = 1, 2.0
    cases = {int(c) for c in args.cases.split(",") if c.strip()}
    args.settings = {"ECS_ID_MAPPER_" + k.upper(): v for k, _, v in (item.partition("=") for item in args.set)}
    if not wrk_available():
        print(
            "bench.lookup needs wrk on PATH: apt-get install wrk (Debian, Ubuntu) or brew install wrk", file=sys.stderr
        )
        return 2

    workdir = Path(tempfile.mkdtemp(prefix="ecs-id-mapper-bench-"))
    bench = Bench(args, workdir)
    bench.figures["machine"] = machine()
    bench.figures["command"] = "python -m bench.lookup " + " ".join(argv if argv is not None else sys.argv[1:])
    bare_env = clean_env(**args.settings)
    try:
        with Served("bench.bare", bare_env, bench.log("bare")) as bare:
            bench.bare_url = bare.url
            if cases & {1, 2, 5, 6}:
                bench.fleet(cases)
            if 3 in cases:
                bench.growth()
            if 4 in cases:
                bench.remote()
    finally:
        if args.keep:
            print(f"kept {workdir}", file=sys.stderr)
        else:
            subprocess.run(["rm", "-rf", str(workdir)], check=False)
    print(table(bench.figures))
    print(json.dumps(bench.figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
