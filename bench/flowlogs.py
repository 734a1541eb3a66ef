"""The flow-log annotator's speed: a generated file of VPC Flow Log records whose addresses are drawn from the
containers on record, annotated by ``python -m server.flowlogs`` against ``python -m server`` on SQLite (loopback).

``.venv/bin/python -m bench.flowlogs`` (``make bench``): 100,000 containers (4 in 5 awsvpc tasks with an address of
their own, 1 in 5 bridge containers on an instance address and host port), 1,000,000 records; ``--containers`` and
``--records`` make it smaller. Prints records/s beside the target, then one JSON object of every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import fleet
from bench.load import ROOT, Served, clean_env
from server import schema
from server.records import utc_now
from server.store.sqlite import SQLiteStore

TOKEN = "bench-token"
READ_TOKEN = "bench-read-token"
TARGET = 20_000  # records/s
#: Containers started from here on; every flow falls inside the lives (nothing stops in this fleet).
STARTED = 1795161600  # 2026-11-20T08:00:00Z
#: One in BRIDGE containers is a bridge container reached on its instance's address.
BRIDGE = 5
EXTERNAL = ("198.51.100.7", "203.0.113.12", "52.95.128.10", "10.255.0.2")


def task_address(n: int) -> str:
    return f"10.{128 + (n >> 16 & 63)}.{n >> 8 & 255}.{n & 255}"


def entry(n: int) -> dict:
    """Container ``n`` as its agent reports it: an awsvpc task's own address, or a bridge container's host port."""
    made = fleet.container(n)
    made["started_at"] = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(STARTED + n % 3600))
    if n % BRIDGE:
        made["ports"] = [{"container_port": 8000, "protocol": "tcp"}]
        made["networks"] = [{"network_mode": "awsvpc", "ipv4_addresses": [task_address(n)]}]
    return made


def load(database: Path, count: int) -> float:
    """Containers ``0 … count-1`` through the schema and the store's own code, as reports would bring them."""
    store = SQLiteStore(str(database))
    began = time.perf_counter()
    try:
        for first in range(0, count, 40):  # one host's containers per report
            body = {"host": fleet.host(first), "containers": [entry(n) for n in range(first, min(first + 40, count))]}
            containers, _, _ = schema.map_report(body)
            store.upsert_containers(containers, utc_now())
    finally:
        store.close()
    return time.perf_counter() - began


def end_of(n: int, rng: random.Random) -> tuple[str, str]:
    """An (address, port) on container ``n``: its task address and container port, or its instance's host port."""
    if n % BRIDGE:
        return task_address(n), "8000"
    made = fleet.container(n)
    return fleet.host(n)["instance_ip"], str(made["ports"][0]["host_port"])


def generate(path: Path, records: int, containers: int, seed: int = 7) -> None:
    """Default-format (version 2) records: mostly container to container, some to or from outside addresses."""
    rng = random.Random(seed)
    with open(path, "w", buffering=1 << 20) as out:
        out.write("version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end "
                  "action log-status\n")  # fmt: skip
        for i in range(records):
            src, src_port = end_of(rng.randrange(containers), rng)
            if i % 10 == 0:
                dst, dst_port = rng.choice(EXTERNAL), "443"
            else:
                dst, dst_port = end_of(rng.randrange(containers), rng)
            start = STARTED + 3600 + rng.randrange(6 * 3600)
            out.write(
                f"2 123456789012 eni-{i % 4096:017x} {src} {dst} {rng.randrange(32768, 61000) if i % 3 else src_port} "
                f"{dst_port} 6 {rng.randrange(1, 50)} {rng.randrange(40, 90000)} {start} {start + 60} ACCEPT OK\n"
            )


def children_cpu() -> float:
    """CPU seconds (user and system) of the child processes that ended so far."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--containers", type=int, default=100_000)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--parallel", type=int, default=2, help="the tool's requests in flight")
    args = parser.parse_args()
    figures: dict = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version()}}
    with tempfile.TemporaryDirectory(prefix="bench-flowlogs-") as tmp:
        workdir = Path(tmp)
        database, records = workdir / "mapper.sqlite3", workdir / "flows.log"
        figures["load_seconds"] = round(load(database, args.containers), 1)
        generate(records, args.records, args.containers)
        figures["file_bytes"] = records.stat().st_size
        env = clean_env(
            ECS_ID_MAPPER_STORE=f"sqlite:///{database}",
            ECS_ID_MAPPER_TOKEN=TOKEN,
            ECS_ID_MAPPER_READ_TOKEN=READ_TOKEN,
            ECS_ID_MAPPER_RETENTION_DAYS="0",
            ECS_ID_MAPPER_SERVICE_NAMES="false",
            ECS_ID_MAPPER_TASK_DEFINITIONS="false",
            ECS_ID_MAPPER_CONTAINER_INSTANCES="false",
            ECS_ID_MAPPER_LOG_LEVEL="WARNING",
        )
        figures["load_average_before"] = os.getloadavg()[0]
        server_cpu = children_cpu()
        with Served("server", env, workdir / "server.log") as server:
            command = [sys.executable, "-m", "server.flowlogs", "--server", server.url, "--token", READ_TOKEN,
                       "--parallel", str(args.parallel), str(records)]  # fmt: skip
            with open(workdir / "annotated.log", "wb") as out:
                began, tool_cpu = time.perf_counter(), children_cpu()
                ran = subprocess.run(command, cwd=ROOT, stdout=out, stderr=subprocess.PIPE, env=env, check=False)
                seconds, tool_cpu = time.perf_counter() - began, children_cpu() - tool_cpu
        # gunicorn's workers are waited for by its master, and the master by us: their CPU is counted once it exits.
        server_cpu = children_cpu() - server_cpu - tool_cpu
        if ran.returncode:
            sys.exit(f"the annotator failed: {ran.stderr.decode()[-2000:]}")
        with open(workdir / "annotated.log", "rb") as written:
            lines = sum(1 for _ in written) - 1  # the header line
        rate = args.records / seconds
        figures.update(
            containers=args.containers,
            records=args.records,
            lines_written=lines,
            seconds=round(seconds, 2),
            records_per_second=round(rate),
            target_records_per_second=TARGET,
            tool_cpu_seconds=round(tool_cpu, 1),
            server_cpu_seconds=round(server_cpu, 1),
            load_average_after=os.getloadavg()[0],
            summary=ran.stderr.decode().splitlines(),
        )
    verdict = "ok" if rate >= TARGET else "MISSED"
    print(f"{'flow-log records annotated/s':<40}{rate:>12,.0f}   target >= {TARGET:,}  {verdict}")
    print(f"{'CPU seconds: the tool, the server':<40}{tool_cpu:>12.1f}{server_cpu:>8.1f}")
    per_cpu = args.records / max(tool_cpu + server_cpu, 1e-9)
    print(f"{'records per CPU second (tool + server)':<40}{per_cpu:>12,.0f}")
    loads = figures["load_average_before"], figures["load_average_after"]
    print(f"{'load average before and after':<40}{loads[0]:>12.1f}{loads[1]:>8.1f}   (other work on the machine)")
    for line in figures["summary"]:
        print(f"  {line}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
