"""The fleet-wide restart drill: every agent of a cluster restarts at once (an AMI roll, an agent upgrade) and sends
its full snapshot, while people keep looking containers up.

``.venv/bin/python -m bench.fleet_restart`` (``make bench``) starts the real server (``python -m server``) on SQLite
and on DynamoDB in moto's server, and one process that plays N agents: each host's full snapshot (the agent's wire
format: its 40 containers, their ``appeared`` events, ``full: true``) on a connection of its own with the token, at
most ``--connections`` at once. A refused host (429 or 503) waits as the agent does (``agent.backoff``: the server's
``Retry-After`` with jitter, or the backoff) and sends again. Meanwhile another process looks up containers already
on record (four connections, a lookup every 10 ms each) and times every answer. It prints, per store, layout and
fleet size: the time to drain (every host's snapshot taken), refusals, timeouts, the lookups' p50/p99 during the
storm, and whether every container is on record; then one JSON object.

Layouts: ``one pool`` (the defaults: reports and lookups in the same workers) and ``report pool``
(``ECS_ID_MAPPER_REPORT_WORKERS=1``: agents post to the report pool's port, lookups go to the main one).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import requests

from agent.backoff import Backoff, retry_after
from bench import fleet
from bench.load import Served, clean_env, free_port
from bench.lookup import machine

TOKEN = "drill-token"
PER_HOST = 40
KNOWN = 10_000  # containers on record before the storm, which the lookups ask for
MOTO_KNOWN = 1_000  # as many in moto's DynamoDB, which takes them far more slowly
REQUEST_TIMEOUT = 30.0  # the agent's read timeout
LOOKUP_THREADS, LOOKUP_PAUSE = 4, 0.010
P99_TARGET_MS = 250.0


def snapshot(host: int, per_host: int = PER_HOST, salt: str = "storm") -> bytes:
    """Host ``host``'s full snapshot after its agent restarted: every container it runs, each with its
    ``appeared`` event, as the agent's first report carries them."""
    first = host * per_host
    containers = [fleet.container(n, salt) for n in range(first, first + per_host)]
    events = [
        {
            "event_id": f"{c['container_id'][:16]}-appeared",
            "container_id": c["container_id"],
            "task_id": fleet.task_id(n, salt),
            "event": "appeared",
            "from": "",
            "to": "RUNNING",
            "timestamp": c["sample_time"],
        }
        for n, c in zip(range(first, first + per_host), containers, strict=True)
    ]
    host_fields = {**fleet.host(first), "instance_id": f"i-{host:017x}"}
    return json.dumps({"host": host_fields, "containers": containers, "events": events, "full": True}).encode()


class Storm:
    """N simulated agents' full snapshots against ``port``, each on a connection of its own."""

    def __init__(self, port: int, hosts: int, connections: int, spread: float, per_host: int, seed: int = 1):
        self.port, self.hosts, self.per_host = port, hosts, per_host
        self.connections, self.spread = connections, spread
        self.rng = random.Random(seed)
        self.outcomes: Counter[str] = Counter()
        self.attempts: Counter[int] = Counter()  # host → requests it took
        self.accepted = 0
        self.drained_at = 0.0
        self.asked: list[float] = []  # every Retry-After the server gave

    async def _post(self, body: bytes) -> tuple[int, str | None]:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            head = (
                "POST /report/map HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                f"Authorization: Bearer {TOKEN}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + body)
            await writer.drain()
            status_line = await reader.readline()
            status = int(status_line.split()[1])
            wait = None
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                if name.strip().lower() == "retry-after":
                    wait = value.strip()
            await reader.read()
            return status, wait
        finally:
            writer.close()

    async def _host(self, host: int, slots: asyncio.Semaphore, began: float) -> None:
        await asyncio.sleep(self.rng.uniform(0, self.spread))  # the agent's start spread (0: all at once)
        body = snapshot(host, self.per_host)
        backoff = Backoff(1.0, 300.0, random.Random(self.rng.random()))
        while True:
            self.attempts[host] += 1
            async with slots:
                try:
                    status, asked = await asyncio.wait_for(self._post(body), REQUEST_TIMEOUT)
                except TimeoutError:
                    status, asked, outcome = 0, None, "timeout"
                except (OSError, ValueError, IndexError):
                    status, asked, outcome = 0, None, "connection error"
                else:
                    outcome = str(status)
            self.outcomes[outcome] += 1
            if status == 200:
                self.accepted += 1
                self.drained_at = time.monotonic() - began
                return
            if status and status not in (429, 503) and status < 500:
                raise RuntimeError(f"host {host}: the server refused its snapshot for good ({status})")
            wait = retry_after(asked)
            if wait is not None:
                self.asked.append(wait)
            await asyncio.sleep(backoff.next_delay(wait))

    def run(self) -> dict:
        async def main() -> None:
            slots = asyncio.Semaphore(self.connections)
            began = time.monotonic()
            await asyncio.gather(*(self._host(h, slots, began) for h in range(self.hosts)))

        asyncio.run(main())
        refused = sum(n for k, n in self.outcomes.items() if k in ("429", "503"))
        return {
            "hosts": self.hosts,
            "containers": self.hosts * self.per_host,
            "drain_s": round(self.drained_at, 1),
            "requests": sum(self.outcomes.values()),
            "refused": refused,
            "timeouts": self.outcomes["timeout"],
            "connection_errors": self.outcomes["connection error"],
            "outcomes": dict(self.outcomes),
            "most_attempts": max(self.attempts.values()),
            "retry_after_s": _spread(self.asked),
            "accepted": self.accepted,
        }


def _spread(values: list[float]) -> dict:
    """Median and range of ``values`` (empty when none)."""
    if not values:
        return {}
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def _probe(url: str, ids: list[str], stop, results) -> None:  # type: ignore[no-untyped-def]
    """In a process of its own: look containers up until ``stop`` is set; every answer's seconds and status."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    timings: list[float] = []
    failures: Counter[str] = Counter()
    lock = threading.Lock()

    def loop(seed: int) -> None:
        rng = random.Random(seed)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        while not stop.is_set():
            began = time.perf_counter()
            try:
                conn.request("GET", f"/query/container_id/{rng.choice(ids)}")
                response = conn.getresponse()
                response.read()
                status = response.status
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
                status = 0
            took = time.perf_counter() - began
            with lock:
                if status == 200:
                    timings.append(took)
                else:
                    failures[str(status)] += 1
            time.sleep(LOOKUP_PAUSE)

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(LOOKUP_THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    results.put((timings, dict(failures)))


class Lookups:
    """The lookup prober: a process looking up ``ids`` through ``url`` for as long as the block runs."""

    def __init__(self, url: str, ids: list[str]):
        self.stop = multiprocessing.Event()
        self.results: multiprocessing.Queue = multiprocessing.Queue()
        self.process = multiprocessing.Process(target=_probe, args=(url, ids, self.stop, self.results))
        self.figures: dict = {}

    def __enter__(self) -> Lookups:
        self.process.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        timings, failures = self.results.get(timeout=60)
        self.process.join()
        timings.sort()
        ms = [t * 1000 for t in timings]
        self.figures = {
            "answered": len(ms),
            "failed": failures,
            "p50_ms": round(statistics.median(ms), 1) if ms else None,
            "p99_ms": round(ms[min(len(ms) - 1, int(len(ms) * 0.99))], 1) if ms else None,
            "max_ms": round(ms[-1], 1) if ms else None,
        }


def missing(url: str, hosts: int, per_host: int, sample: int | None = None) -> int:
    """Storm containers the server does not know (each host's containers, or ``sample`` hosts' first one)."""
    session = requests.Session()
    chosen = range(hosts) if sample is None else random.Random(2).sample(range(hosts), min(sample, hosts))
    ids = [
        fleet.container_id(h * per_host + i, "storm") for h in chosen for i in range(per_host if sample is None else 1)
    ]
    return sum(session.get(f"{url}/query/container_id/{i}", timeout=30).status_code != 200 for i in ids)


def drill(env: dict[str, str], workdir: Path, name: str, hosts: int, args: argparse.Namespace, split: bool) -> dict:
    """One storm against a fresh server: ``split`` runs the report pool and sends the snapshots to it."""
    settings = {**env, "ECS_ID_MAPPER_TOKEN": TOKEN}
    if split:
        report_port = free_port()
        settings.update(ECS_ID_MAPPER_REPORT_WORKERS="1", ECS_ID_MAPPER_REPORT_BIND=f"127.0.0.1:{report_port}")
    with Served("server", clean_env(**settings), workdir / f"server-{name}.log") as server:
        post_port = report_port if split else server.port
        _wait_ready(post_port)
        count = args.known if "sqlite" in name else min(args.known, MOTO_KNOWN)
        fleet.ingest(post_port, TOKEN, count, posters=2, salt="known")
        known = [fleet.container_id(i, "known") for i in range(count)]
        storm = Storm(post_port, hosts, args.connections, args.spread, args.per_host)
        with Lookups(server.url, known) as lookups:
            figures = storm.run()
        figures["lookups"] = lookups.figures
        figures["missing"] = missing(server.url, hosts, args.per_host, None if hosts <= 200 else args.check_hosts)
        figures["checked"] = hosts * args.per_host if hosts <= 200 else min(args.check_hosts, hosts)
        figures["shed_by_server"] = _shed(server.url)
    return figures


def _wait_ready(port: int) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            requests.get(f"http://127.0.0.1:{port}/health", timeout=2)
            return
        except requests.RequestException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _shed(url: str) -> int | None:
    """The server's own count of reports it shed (``/metrics``; None when it does not answer in time: with
    DynamoDB in moto, the count of containers on record that the metrics read may take long)."""
    try:
        text = requests.get(f"{url}/metrics", timeout=60).text
    except requests.RequestException:
        return None
    for line in text.splitlines():
        if line.startswith("ecs_id_mapper_reports_shed_total "):
            return round(float(line.split()[1]))
    return 0


class MotoServer:
    """moto's server in a process of its own (its CPU apart from the drill's), for the DynamoDB store."""

    def __init__(self, log: Path):
        self.port = free_port()
        with open(log, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        _wait_ready_moto(self.port)

    def close(self) -> None:
        self.process.terminate()
        self.process.wait()


def _wait_ready_moto(port: int) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            requests.get(f"http://127.0.0.1:{port}/moto-api/", timeout=2)
            return
        except requests.RequestException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def store_env(store: str, workdir: Path, name: str, moto: MotoServer | None) -> dict[str, str]:
    if store == "sqlite":
        return {"ECS_ID_MAPPER_STORE": f"sqlite:///{workdir}/{name}.sqlite3"}
    assert moto is not None
    return {
        "ECS_ID_MAPPER_STORE": (
            f"dynamodb://{name.replace('-', '')}?region={fleet.REGION}"
            f"&endpoint_url=http://127.0.0.1:{moto.port}&create=true"
        ),
        "AWS_ACCESS_KEY_ID": "drill",
        "AWS_SECRET_ACCESS_KEY": "drill",
        "AWS_REGION": fleet.REGION,
        "ECS_ID_MAPPER_SERVICE_NAMES": "false",  # no ECS here
        "ECS_ID_MAPPER_TASK_DEFINITIONS": "false",
        "ECS_ID_MAPPER_CONTAINER_INSTANCES": "false",
    }


def table(results: list[dict]) -> str:
    rows = [
        "| store | layout | hosts | drained in s | requests | refused (503/429) | timeouts | lookups p50 ms | "
        "lookups p99 ms (target ≤ 250) | lookups failed | missing |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lookups = r["lookups"]
        met = "" if lookups["p99_ms"] is None else (" ✓" if lookups["p99_ms"] <= P99_TARGET_MS else " ✗")
        rows.append(
            f"| {r['store']} | {r['layout']} | {r['hosts']:,} | {r['drain_s']} | {r['requests']:,} | "
            f"{r['refused']:,} | "
            f"{r['timeouts']} | {lookups['p50_ms']} | {lookups['p99_ms']}{met} | {sum(lookups['failed'].values())} | "
            f"{r['missing']} of {r['checked']:,} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", default="1000,5000", help="fleet sizes, comma-separated")
    parser.add_argument("--stores", default="sqlite,dynamodb")
    parser.add_argument("--layouts", default="one,split", help="one: one pool; split: a report pool")
    parser.add_argument(
        "--dynamodb-hosts", default="200", help="fleet sizes on DynamoDB (moto's server takes a few snapshots a second)"
    )
    parser.add_argument("--per-host", type=int, default=PER_HOST)
    parser.add_argument("--connections", type=int, default=500)
    parser.add_argument("--spread", type=float, default=0.0, help="the agents' start spread, seconds (0: at once)")
    parser.add_argument("--known", type=int, default=KNOWN, help="containers on record before the storm")
    parser.add_argument("--check-hosts", type=int, default=1000, help="hosts whose containers are looked up after")
    parser.add_argument("--quick", action="store_true", help="200 hosts, one layout each, to try the harness")
    args = parser.parse_args(argv)
    if args.quick:
        args.hosts, args.dynamodb_hosts, args.known = "200", "200", 1000
    sizes = [int(h) for h in args.hosts.split(",") if h]
    dynamodb_sizes = [int(h) for h in args.dynamodb_hosts.split(",") if h]
    workdir = Path(tempfile.mkdtemp(prefix="ecs-id-mapper-drill-"))
    results = []
    try:
        for store in args.stores.split(","):
            moto = MotoServer(workdir / "moto.log") if store == "dynamodb" else None
            try:
                for hosts in sizes if store == "sqlite" else dynamodb_sizes:
                    for layout in args.layouts.split(","):
                        name = f"{store}-{layout}-{hosts}"
                        env = store_env(store, workdir, name, moto)
                        figures = drill(env, workdir, name, hosts, args, split=layout == "split")
                        figures.update(store=store, layout="report pool" if layout == "split" else "one pool")
                        results.append(figures)
                        print(json.dumps(figures), file=sys.stderr)
            finally:
                if moto:
                    moto.close()
    finally:
        subprocess.run(["rm", "-rf", str(workdir)], check=False)
    print(table(results))
    command = "python -m bench.fleet_restart " + " ".join(argv if argv is not None else sys.argv[1:])
    print(json.dumps({"machine": machine(), "command": command, "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
