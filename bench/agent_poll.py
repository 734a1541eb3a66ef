"""CPU time per poll and peak RSS of the agent, for 10, 100 and 500 containers, nothing changed and all changed.

Run: `.venv/bin/python bench/agent_poll.py`. Each case runs the agent in a child process of its own (so its peak RSS
is the agent's alone) against a fake ECS agent and a counting fake server on loopback in this process.
Targets: ≤ 5 ms CPU per unchanged poll at 100 containers, peak RSS ≤ 40 MB, no request on an unchanged poll.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
POLLS = 300
SIZES = (10, 100, 500)
METADATA = json.dumps(
    {
        "Cluster": "default",
        "ContainerInstanceArn": "arn:aws:ecs:eu-central-1:210987654321:container-instance/default/5a0c6f2e8d1b4c7a9e3f",
        "Version": "Amazon ECS Agent - v1.88.0 (4f2e1d0c)",
    }
).encode()


def tasks_body(count: int, status: str, seed: int) -> bytes:
    """A /v1/tasks answer: one single-container bridge task per container, as a current ECS agent lists it.

    Tasks come in an order of their own per `seed`: the ECS agent lists them from a Go map, in no stable order.
    """
    entries = []
    for n in range(count):
        task_id = hashlib.md5(f"task-{n}".encode()).hexdigest()
        entries.append({
            "Arn": f"arn:aws:ecs:eu-central-1:210987654321:task/default/{task_id}",
            "DesiredStatus": "RUNNING",
            "KnownStatus": status,
            "Family": f"service-{n % 20}",
            "Version": "42",
            "Containers": [{
                "DockerId": hashlib.sha256(f"container-{n}".encode()).hexdigest(),
                "DockerName": f"ecs-service-{n % 20}-42-app-{task_id[:20]}",
                "Name": "app",
                "Image": f"registry.example/service-{n % 20}:2.3.1",
                "ImageID": "sha256:" + "1" * 64,
                "CreatedAt": "2026-11-20T08:12:03.417281938Z",
                "StartedAt": "2026-11-20T08:12:04.001Z",
                "Ports": [{"ContainerPort": 8000, "Protocol": "tcp", "HostPort": 32768 + n}],
            }],
        })  # fmt: skip
    random.Random(seed).shuffle(entries)
    return json.dumps({"Tasks": entries}).encode()


class FakeHost(ThreadingHTTPServer):
    """The ECS agent (answering its `bodies` in turn), IMDS, and a server that counts the reports it is sent."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        self.bodies: list[bytes] = [b'{"Tasks": []}']
        self.served = 0
        self.reports = 0
        self.lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    server: FakeHost
    protocol_version = "HTTP/1.1"  # keep-alive, as the real ECS agent and gunicorn offer
    disable_nagle_algorithm = True

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/v1/tasks":
            with self.server.lock:
                body = self.server.bodies[self.server.served % len(self.server.bodies)]
                self.server.served += 1
            self._answer(200, body)
        elif self.path == "/v1/metadata":
            self._answer(200, METADATA)
        else:
            self._answer(200, b"i-0bench")  # instance metadata (IMDSv1: the token PUT below is refused)

    def do_PUT(self) -> None:
        self._answer(405, b"")

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        with self.server.lock:
            self.server.reports += 1
        self._answer(200, b'{"containers": 0, "events": 0}')

    def log_message(self, format: str, *args: object) -> None:
        pass


def child(url: str, polls: int) -> None:
    """In the agent's own process: poll `polls` times after a first poll, print CPU ms per poll and peak RSS."""
    import resource

    import requests

    from agent.config import Config
    from agent.daemon import Agent

    config = Config(server_url=url, token="bench", ecs_agent_url=url, imds_url=url)
    agent = Agent(config, requests.Session())
    agent.poll_once()  # instance metadata, the first snapshot, the full report
    cpu = []
    for _ in range(polls):
        start = time.process_time()
        agent.poll_once()
        cpu.append((time.process_time() - start) * 1000)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({"cpu_ms": cpu, "peak_rss_mib": peak_kib / 1024}))


def run_case(host: FakeHost, count: int, changing: bool) -> dict:
    statuses = ["RUNNING", "STOPPED"] if changing else ["RUNNING"]
    host.bodies = [tasks_body(count, statuses[seed % len(statuses)], seed) for seed in range(4)]
    host.served = host.reports = 0
    out = subprocess.run(
        [sys.executable, __file__, "--child", host.url, "--polls", str(POLLS)],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, check=True,
    )  # fmt: skip
    result = json.loads(out.stdout.strip().splitlines()[-1])
    cpu = result["cpu_ms"]
    return {
        "containers": count,
        "polls": "all changed" if changing else "unchanged",
        "cpu_median": statistics.median(cpu),
        "cpu_mean": statistics.fmean(cpu),
        "cpu_p95": statistics.quantiles(cpu, n=20)[-1],
        "requests_per_poll": (host.reports - 1) / POLLS,  # the first poll's full snapshot is not counted
        "peak_rss_mib": result["peak_rss_mib"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--polls", type=int, default=POLLS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.polls)
        return

    host = FakeHost()
    threading.Thread(target=host.serve_forever, daemon=True).start()
    rows = [run_case(host, count, changing) for count in SIZES for changing in (False, True)]
    host.shutdown()

    print(f"Agent poll cost, {POLLS} polls per case after the first (Python {sys.version.split()[0]})\n")
    print("| containers | polls       | CPU ms/poll median | mean  | p95   | requests/poll | peak RSS MiB |")
    print("|-----------:|-------------|-------------------:|------:|------:|--------------:|-------------:|")
    for r in rows:
        print(
            f"| {r['containers']:>10} | {r['polls']:<11} | {r['cpu_median']:>18.2f} | {r['cpu_mean']:>5.2f} "
            f"| {r['cpu_p95']:>5.2f} | {r['requests_per_poll']:>13.2f} | {r['peak_rss_mib']:>12.1f} |"
        )
    unchanged_100 = next(r for r in rows if r["containers"] == 100 and r["polls"] == "unchanged")
    print()
    print(f"unchanged poll at 100 containers: {unchanged_100['cpu_median']:.2f} ms CPU (target ≤ 5 ms)")
    print(f"peak RSS: {max(r['peak_rss_mib'] for r in rows):.1f} MiB (target ≤ 40 MiB)")
    unchanged_requests = sum(r["requests_per_poll"] for r in rows if r["polls"] == "unchanged")
    print(f"requests on unchanged polls: {unchanged_requests:.0f} (target 0)")


if __name__ == "__main__":
    main()
