"""The soak: the real server (``python -m server``, its defaults, SQLite in a temporary directory) under minutes of
mixed load on loopback, while the real agent (``python -m agent``) reports a simulated host that keeps starting
and stopping tasks (``python -m simhost``).

``.venv/bin/python -m bench.soak [--minutes 5] [--connections 50]`` (``make bench``). wrk keeps ``--connections``
keep-alive connections busy, one run per minute: 90 % queries over the whole API (container and task lookups as
text and JSON, ID prefixes, unknown and malformed IDs, links and ``?redir=true`` with templates configured,
events, services from ECS in moto's server, ``/sd/prometheus``, ``/metrics``, ``/health``, ``/openapi.json``) and
10 % reports (``/report/map``, ``/report/event``, ``/report/ecs-events``). Each minute prints its requests, 5xx,
p50/p99, the server's RSS (gunicorn's master and workers, from /proc) and open file descriptors; the end prints a
table against the targets (no 5xx, RSS growth from minute 1 to the last under 10 %, file descriptors flat) and one
JSON object of every figure. Exits 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
from contextlib import ExitStack
from pathlib import Path

import boto3
import requests
from moto.server import ThreadedMotoServer
from prometheus_client.parser import text_string_to_metric_families

from bench import fleet
from bench.load import ROOT, Served, clean_env, free_port, wrk_available
from bench.lookup import machine

LUA = Path(__file__).with_name("wrk_soak.lua")
TOKEN = "soak-token"
SALT = "soak"
CONTAINERS = 400  # the fleet on record before the load starts, four per task, a tenth of the tasks in a service
SERVICES = ("checkout", "search", "billing")
REQUESTS_PER_FILE = 20_000
RSS_GROWTH_TARGET = 10.0  # percent, minute 1 to the last
FDS_SLACK = 2  # a connection being opened or closed as the descriptors are listed
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "soak",
    "AWS_SECRET_ACCESS_KEY": "soak",
    "AWS_REGION": fleet.REGION,
    "AWS_DEFAULT_REGION": fleet.REGION,
}
SETTINGS = {
    "ECS_ID_MAPPER_TOKEN": TOKEN,
    "ECS_ID_MAPPER_GRAYLOG_URL": "https://graylog.example/search?q=container_id%3A{short_id}",
    "ECS_ID_MAPPER_LINK_LOGS": "https://logs.example/{cluster_name}/{task_id}/{container_name}",
}


# What the server holds ------------------------------------------------------------------------------------------


def ecs_event(task: int, version: int, status: str, service: str) -> dict:
    """An EventBridge ``ECS Task State Change`` (the EC2 example's shape) for fleet task ``task``."""
    first = task * fleet.PER_TASK
    arn = fleet.container(first, SALT)["task_arn"]
    containers = [
        {
            "containerArn": f"arn:aws:ecs:{fleet.REGION}:{fleet.ACCOUNT}:container/default/{arn[-32:]}/{n:08x}",
            "lastStatus": status,
            "name": fleet.container(n, SALT)["container_name"],
            "image": fleet.container(n, SALT)["image"],
            "runtimeId": fleet.container_id(n, SALT),
            "taskArn": arn,
        }
        for n in range(first, first + fleet.PER_TASK)
    ]
    return {
        "version": "0",
        "id": f"{task:08x}-0000-4000-8000-{version:012x}",
        "detail-type": "ECS Task State Change",
        "source": "aws.ecs",
        "account": fleet.ACCOUNT,
        "time": "2026-11-25T15:06:00Z",
        "region": fleet.REGION,
        "resources": [arn],
        "detail": {
            "clusterArn": f"arn:aws:ecs:{fleet.REGION}:{fleet.ACCOUNT}:cluster/default",
            "containers": containers,
            "desiredStatus": "RUNNING",
            "group": f"service:{service}",
            "launchType": "EC2",
            "lastStatus": status,
            "taskArn": arn,
            "version": version,
            "updatedAt": "2026-11-25T15:06:00Z",
        },
    }


def service_of(task: int) -> str | None:
    return SERVICES[task % len(SERVICES)] if task % 10 < len(SERVICES) else None


def seed(url: str) -> None:
    """The fleet on record with its events, and the services of some of its tasks."""
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {TOKEN}"
    for first in range(0, CONTAINERS, 100):
        body = fleet.report(first, count=100, salt=SALT, events=True)
        session.post(f"{url}/report/map", data=body, headers={"Content-Type": "application/json"}).raise_for_status()
    events = [
        ecs_event(task, 2, "RUNNING", service)
        for task in range(CONTAINERS // fleet.PER_TASK)
        if (service := service_of(task))
    ]
    session.post(f"{url}/report/ecs-events", json=events).raise_for_status()


class ServiceTasks:
    """ECS in moto's server, with a task running in each service, so ``/query/service/…`` has something to ask."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)

    def __enter__(self) -> ServiceTasks:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's server logs every request otherwise
        self.server.start()
        ecs = boto3.client(
            "ecs",
            endpoint_url=self.url,
            region_name=fleet.REGION,
            aws_access_key_id="soak",
            aws_secret_access_key="soak",
        )
        ecs.create_cluster(clusterName="default")
        ecs.register_task_definition(
            family="api", containerDefinitions=[{"name": "api", "image": "registry.example/api:1", "memory": 256}]
        )
        for service in SERVICES:
            ecs.create_service(cluster="default", serviceName=service, taskDefinition="api", desiredCount=1)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()


# What the load asks ---------------------------------------------------------------------------------------------


def requests_file(path: Path, rng: random.Random, host_ids: list[str], minute: int) -> None:
    """``REQUESTS_PER_FILE`` requests for wrk_soak.lua, 90 % GETs over the whole API and 10 % reports."""
    fleet_ids = [fleet.container_id(n, SALT) for n in range(CONTAINERS)]
    ids = fleet_ids + host_ids
    tasks = [fleet.task_id(n, SALT) for n in range(0, CONTAINERS, fleet.PER_TASK)]
    links = ("cadvisor", "graylog", "logs")

    def unknown() -> str:
        return f"{rng.getrandbits(256):064x}"

    reads = [  # (weight, path maker)
        (10, lambda: f"/query/container_id/{rng.choice(ids)}"),
        (10, lambda: f"/query/container_id/{rng.choice(ids)[:12]}"),
        (8, lambda: f"/query/container_id/{rng.choice(ids)}/_all"),
        (3, lambda: f"/query/container_id/{rng.choice(ids)[: rng.randint(12, 63)]}/_all"),
        (4, lambda: f"/query/container_id/{rng.choice(ids)[:12]}/urls"),
        (4, lambda: f"/query/container_id/{rng.choice(ids)}/events"),
        (6, lambda: f"/query/container_id/{rng.choice(ids)[:12]}/{rng.choice(links)}"),
        (6, lambda: f"/query/container_id/{rng.choice(ids)}/{rng.choice(links)}?redir=true"),
        (2, lambda: f"/query/container_id/{rng.choice(ids)[:12]}/newrelic"),  # not configured: 404
        (6, lambda: f"/query/container_id/{unknown()}"),
        (2, lambda: f"/query/container_id/{unknown()[:12]}/_all"),
        (2, lambda: "/query/container_id/not-a-container-id"),
        (8, lambda: f"/query/task_id/{rng.choice(tasks)}"),
        (5, lambda: f"/query/task_id/{rng.choice(tasks)}/_all"),
        (3, lambda: f"/query/task_id/{rng.choice(tasks)}/containers"),
        (3, lambda: f"/query/task_id/{rng.choice(tasks)}/events"),
        (2, lambda: f"/query/task_id/{rng.choice(tasks)}/urls?container=sidecar"),
        (3, lambda: f"/query/task_id/{rng.choice(tasks)}/{rng.choice(links)}?redir=yes&container=api"),
        (2, lambda: f"/query/task_id/{unknown()[:32]}"),
        (3, lambda: f"/query/service/default/{rng.choice(SERVICES)}/_all"),
        (1, lambda: f"/query/service/default/{rng.choice(SERVICES)}/_all?include_stopped=true"),
        (1, lambda: f"/query/service/default/{rng.choice(SERVICES)}/newrelic"),
        (2, lambda: "/sd/prometheus"),
        (1, lambda: f"/sd/prometheus?cluster=default&service={rng.choice(SERVICES)}"),
        (1, lambda: "/sd/prometheus?container_name=api&port=8000"),
        (1, lambda: "/metrics"),
        (3, lambda: "/health"),
        (1, lambda: "/openapi.json"),
    ]
    weights = [w for w, _ in reads]
    lines = []
    for i in range(REQUESTS_PER_FILE):
        if i % 10:
            (make,) = rng.choices([m for _, m in reads], weights)
            lines.append(f"GET\t{make()}")
        else:
            lines.append(report_line(rng, minute, i))
    path.write_text("\n".join(lines) + "\n")


def report_line(rng: random.Random, minute: int, i: int) -> str:
    """A report as a host or EventBridge sends it: a status change with its event, events alone, a task event."""
    n = rng.randrange(CONTAINERS)
    kind = rng.random()
    stamp = f"2026-11-25T16:{minute % 60:02d}:{i % 60:02d}.{i % 1000:03d}Z"
    event = {
        "event_id": f"soak-{minute}-{i}",
        "container_id": fleet.container_id(n, SALT),
        "task_id": fleet.task_id(n, SALT),
        "event": "known_status",
        "from": "RUNNING",
        "to": "RUNNING",
        "timestamp": stamp,
    }
    if kind < 0.6:
        entry = {**fleet.container(n, SALT), "sample_time": stamp}
        body = {"host": fleet.host(n), "containers": [entry], "events": [event], "full": False}
        return f"POST\t/report/map\t{json.dumps(body)}"
    if kind < 0.8:
        return f"POST\t/report/event\t{json.dumps({'events': [event]})}"
    task = n // fleet.PER_TASK
    body = ecs_event(task, 3 + minute, "RUNNING", service_of(task) or "checkout")
    return f"POST\t/report/ecs-events\t{json.dumps(body)}"


def wrk_minute(url: str, requests_path: Path, seconds: float, connections: int) -> dict:
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s", "-s", str(LUA), url,
         "--", str(requests_path), TOKEN],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    line = next(line for line in out.splitlines() if line.startswith("WRK_JSON "))
    return json.loads(line.removeprefix("WRK_JSON "))


# What the server uses -------------------------------------------------------------------------------------------


def process_tree(master: int) -> list[int]:
    """gunicorn's master and its workers (the master's children)."""
    pids = [master]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == master:
                pids.append(int(entry))
    return pids


def rss_and_fds(master: int) -> tuple[int, int, int]:
    """(RSS in bytes, open file descriptors, processes) summed over the master and its workers."""
    rss = fds = count = 0
    for pid in process_tree(master):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            fds += len(os.listdir(f"/proc/{pid}/fd"))
        except OSError:
            continue  # a worker that exited between listing and reading
        rss += next(int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmRSS:"))
        count += 1
    return rss, fds, count


class Sampler:
    """Samples the server's RSS and file descriptors every ``every`` seconds; ``take()`` returns and clears them."""

    def __init__(self, master: int, every: float = 2.0):
        self.master, self.every = master, every
        self.samples: list[tuple[int, int, int]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            sample = rss_and_fds(self.master)
            with self._lock:
                self.samples.append(sample)

    def take(self) -> list[tuple[int, int, int]]:
        with self._lock:
            taken, self.samples = self.samples, []
        return taken

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# The agent and its host -----------------------------------------------------------------------------------------


class Child:
    """A ``python -m MODULE`` process, its output in ``log``."""

    def __init__(self, module: str, args: list[str], env: dict[str, str], log: Path, pipe: bool = False):
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", module, *args], cwd=ROOT, env=env,
                stdout=subprocess.PIPE if pipe else out, stderr=out,
            )  # fmt: skip

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait()


def host_container_ids(ecs_url: str) -> list[str]:
    """The Docker IDs the simulated host lists now."""
    tasks = requests.get(f"{ecs_url}/v1/tasks", timeout=5).json()["Tasks"]
    return [c["DockerId"] for t in tasks for c in t.get("Containers", []) if c.get("DockerId")]


def agent_metrics(url: str) -> dict[str, float]:
    """The agent's samples by name (without the common prefix); none if its port does not answer."""
    figures: dict[str, float] = {}
    try:
        text = requests.get(url, timeout=5).text
    except requests.RequestException:
        return figures
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            figures[name.removeprefix("ecs_id_mapper_agent_")] = float(value)
    return figures


# The run --------------------------------------------------------------------------------------------------------


def percent(new: float, old: float) -> float:
    return round(100.0 * (new - old) / old, 1)


def server_counts(url: str) -> dict:
    """What the server's ``/metrics`` says it answered: requests by status class, reports by outcome, and the
    containers on record."""
    counts: dict = {"requests_by_status": {}, "reports": {}, "containers_on_record": None}
    text = requests.get(f"{url}/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "ecs_id_mapper_requests_total":
                status = sample.labels["status"][0] + "xx"
                counts["requests_by_status"][status] = counts["requests_by_status"].get(status, 0) + int(sample.value)
            elif sample.name == "ecs_id_mapper_reports_total":
                key = f"{sample.labels['kind']} {sample.labels['outcome']}"
                counts["reports"][key] = int(sample.value)
            elif sample.name == "ecs_id_mapper_containers_on_record":
                counts["containers_on_record"] = int(sample.value)
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=int, default=5)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--seconds-per-minute", type=float, default=60.0, help="shorter, to try the harness")
    parser.add_argument("--keep", action="store_true", help="keep the working directory (database, logs)")
    args = parser.parse_args(argv)
    if args.minutes < 2:
        parser.error("--minutes must be 2 or more: growth is measured from minute 1 to the last")
    if not wrk_available():
        print("bench.soak needs wrk on PATH: apt-get install wrk (Debian, Ubuntu) or brew install wrk", file=sys.stderr)
        return 2

    workdir = Path(tempfile.mkdtemp(prefix="ecs-id-mapper-soak-"))
    rng = random.Random(13)
    figures: dict = {"machine": machine(), "minutes": [], "connections": args.connections}
    with ExitStack() as stack:
        ecs = stack.enter_context(ServiceTasks())
        env = clean_env(
            **AWS_ENV, **SETTINGS,
            ECS_ID_MAPPER_STORE=f"sqlite:///{workdir}/soak.sqlite3",
            AWS_ENDPOINT_URL_ECS=ecs.url,
        )  # fmt: skip
        server = stack.enter_context(Served("server", env, workdir / "server.log"))
        seed(server.url)
        simhost = Child(
            "simhost", ["--seed", "13", "--tasks", "6", "--run", "10", "40", "--linger", "15"],
            clean_env(), workdir / "simhost.log", pipe=True,
        )  # fmt: skip
        stack.callback(simhost.stop)
        assert simhost.process.stdout is not None
        started = simhost.process.stdout.readline()  # its two URLs, once it listens
        if not started:
            raise SystemExit(f"python -m simhost did not start: see {workdir / 'simhost.log'}")
        sim = json.loads(started)
        metrics_port = free_port()
        agent = Child("agent", [], clean_env(
            ECS_ID_MAPPER_SERVER_URL=server.url,
            ECS_ID_MAPPER_TOKEN=TOKEN,
            ECS_ID_MAPPER_ECS_AGENT_URL=sim["ecs_agent_url"],
            ECS_ID_MAPPER_IMDS_URL=sim["imds_url"],
            ECS_ID_MAPPER_POLL_INTERVAL="1",
            ECS_ID_MAPPER_START_SPREAD="0",
            ECS_ID_MAPPER_METRICS_PORT=str(metrics_port),
        ), workdir / "agent.log")  # fmt: skip
        stack.callback(agent.stop)
        assert server.process is not None
        sampler = stack.enter_context(Sampler(server.process.pid))
        print(f"soak: {args.minutes} x {args.seconds_per_minute:g} s, {args.connections} connections, {server.url}")
        print("minute  requests     req/s   5xx   4xx   errors  p50 ms  p99 ms  RSS MiB  fds  processes", flush=True)
        seen_on_host: set[str] = set()
        for minute in range(1, args.minutes + 1):
            seen_on_host.update(host_container_ids(sim["ecs_agent_url"]))
            requests_path = workdir / f"requests-{minute}.txt"
            requests_file(requests_path, rng, sorted(seen_on_host), minute)
            run = wrk_minute(server.url, requests_path, args.seconds_per_minute, args.connections)
            samples = sampler.take() or [rss_and_fds(server.process.pid)]
            rss, fds, processes = samples[-1]  # the last sample taken under load
            errors = sum(run[k] for k in ("connect_errors", "read_errors", "write_errors", "timeouts"))
            row = {
                "minute": minute,
                "requests": run["requests"],
                "rps": round(run["requests"] / (run["duration_us"] / 1e6)),
                "status_5xx": run["status_5xx"],
                "status_4xx": run["status_4xx"],
                "socket_errors": errors,
                "p50_ms": run["p50_us"] / 1000,
                "p99_ms": run["p99_us"] / 1000,
                "max_ms": run["max_us"] / 1000,
                "rss_mib": round(rss / 2**20, 1),
                "rss_mib_max": round(max(s[0] for s in samples) / 2**20, 1),
                "fds": fds,
                "fds_max": max(s[1] for s in samples),
                "processes": processes,
            }
            figures["minutes"].append(row)
            print(
                f"{minute:>6}  {row['requests']:>8}  {row['rps']:>8}  {row['status_5xx']:>4}  {row['status_4xx']:>4}"
                f"  {errors:>7}  {row['p50_ms']:>6.1f}  {row['p99_ms']:>6.1f}  {row['rss_mib']:>7}  {fds:>3}"
                f"  {processes:>9}",
                flush=True,
            )
        agent_alive = agent.process.poll() is None
        figures["agent"] = {"running": agent_alive, **agent_metrics(f"http://127.0.0.1:{metrics_port}/metrics")}
        figures["host_containers_seen"] = len(seen_on_host)
        missing = [
            cid
            for cid in sorted(seen_on_host)
            if requests.get(f"{server.url}/query/container_id/{cid}", timeout=5).status_code != 200
        ]
        figures["host_containers_not_on_record"] = len(missing)
        figures["server"] = server_counts(server.url)
    figures["tracebacks"] = {
        name: (workdir / f"{name}.log").read_text(errors="replace").count("Traceback")
        for name in ("server", "agent", "simhost")
    }
    return verdict(figures, workdir, args.keep)


def verdict(figures: dict, workdir: Path, keep: bool) -> int:
    rows = figures["minutes"]
    first, last = rows[0], rows[-1]
    total = sum(r["requests"] for r in rows)
    summary = {
        "requests": total,
        "rps": round(sum(r["rps"] for r in rows) / len(rows)),
        "status_5xx": sum(r["status_5xx"] for r in rows),
        "socket_errors": sum(r["socket_errors"] for r in rows),
        "p50_ms": max(r["p50_ms"] for r in rows),
        "p99_ms": max(r["p99_ms"] for r in rows),
        "rss_growth_percent": percent(last["rss_mib"], first["rss_mib"]),
        "fds_first_last": [first["fds"], last["fds"]],
    }
    figures["summary"] = summary
    agent = figures["agent"]
    server_5xx = figures["server"]["requests_by_status"].get("5xx", 0)
    refused = sum(n for key, n in figures["server"]["reports"].items() if key.endswith("rejected"))
    checks = [
        ("5xx answers (wrk)", summary["status_5xx"], "0", summary["status_5xx"] == 0),
        ("5xx answers (server's /metrics)", server_5xx, "0", server_5xx == 0),
        ("reports refused (server's /metrics)", refused, "0", refused == 0),
        ("socket errors and timeouts", summary["socket_errors"], "0", summary["socket_errors"] == 0),
        ("p50 / p99, worst minute (ms)", f"{summary['p50_ms']:.1f} / {summary['p99_ms']:.1f}", "", True),
        (
            f"RSS minute 1 → {last['minute']} (MiB)",
            f"{first['rss_mib']} → {last['rss_mib']} ({summary['rss_growth_percent']:+.1f} %)",
            f"< +{RSS_GROWTH_TARGET:g} %",
            summary["rss_growth_percent"] < RSS_GROWTH_TARGET,
        ),
        (f"fds minute 1 → {last['minute']}", f"{first['fds']} → {last['fds']}", f"flat (± {FDS_SLACK})",
         last["fds"] <= first["fds"] + FDS_SLACK),
        ("agent running, outbox depth", f"{agent['running']}, {agent.get('outbox_depth')}", "yes, 0",
         agent["running"] and agent.get("outbox_depth") == 0),
        ("host containers not on record", figures["host_containers_not_on_record"], "0",
         figures["host_containers_not_on_record"] == 0),
        ("tracebacks in the logs", sum(figures["tracebacks"].values()), "0", not any(figures["tracebacks"].values())),
    ]  # fmt: skip
    print("\n| Figure | Measured | Target | Met |\n|---|---:|---:|---|")
    for label, measured, target, met in checks:
        print(f"| {label} | {measured} | {target} | {'yes' if met else 'NO' if target else ''} |")
    figures["met"] = all(met for *_, met in checks)
    print(json.dumps(figures))
    if keep or not figures["met"]:
        print(f"working directory kept: {workdir}", file=sys.stderr)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if figures["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
