"""A made-up fleet for the benchmarks: container entries shaped like the agent's, and posters that send them.

Every container is new and lives in a task of ``PER_TASK`` containers on a host of its own cluster-wide shape,
so each record is about the size a real one is (~1 KiB of JSON).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import multiprocessing
import time

PER_TASK = 4
REPORT_SIZE = 100
ACCOUNT = "210987654321"
REGION = "eu-central-1"


def container_id(n: int, salt: str = "") -> str:
    return hashlib.sha256(f"{salt}container{n}".encode()).hexdigest()


def task_id(n: int, salt: str = "") -> str:
    return hashlib.sha256(f"{salt}task{n // PER_TASK}".encode()).hexdigest()[:32]


def host(n: int) -> dict[str, str]:
    """The host of container ``n``: 40 containers per host."""
    h = n // 40
    ip = f"10.{h >> 16 & 255}.{h >> 8 & 255}.{h & 255}"
    return {
        "instance_id": f"i-{h:017x}",
        "instance_ip": ip,
        "instance_type": "m5.large",
        "instance_az": f"{REGION}a",
        "region": REGION,
        "host_name": "ip-" + ip.replace(".", "-"),
        "cluster_name": "default",
        "container_instance_arn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:container-instance/default/{h:032x}",
        "ecs_agent_version": "Amazon ECS Agent - v1.88.0 (4f2e1d0c)",
    }


def container(n: int, salt: str = "", status: str = "RUNNING") -> dict:
    """The report entry of container ``n`` (``salt`` makes another fleet's IDs)."""
    name = ("api", "sidecar", "log-router", "metrics")[n % PER_TASK]
    task = task_id(n, salt)
    return {
        "container_id": container_id(n, salt),
        "container_name": name,
        "docker_name": f"ecs-{name}-42-{name}-{task[:20]}",
        "image": f"registry.example/team/{name}:2.3.{n % 7}",
        "image_id": "sha256:" + hashlib.sha256(name.encode()).hexdigest(),
        "task_arn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/default/{task}",
        "task_name": "api",
        "task_version": "42",
        "desired_status": "RUNNING",
        "known_status": status,
        "created_at": "2026-11-20T08:12:03.417281938Z",
        "started_at": "2026-11-20T08:12:04.001Z",
        "ports": [{"container_port": 8000 + n % PER_TASK, "host_port": 32768 + n % 28000, "protocol": "tcp"}],
        "networks": [{"network_mode": "bridge", "ipv4_addresses": [f"172.17.{n >> 8 & 255}.{n & 255}"]}],
        "sample_time": "2026-11-25T15:05:38.123Z",
    }


def life(n: int, salt: str = "") -> list[dict]:
    """The four events of container ``n``'s life: appeared, started, told to stop, vanished."""
    entry = container(n, salt)
    steps = [("appeared", "", "PENDING"), ("known_status", "PENDING", "RUNNING"),
             ("desired_status", "RUNNING", "STOPPED"), ("vanished", "RUNNING", "")]  # fmt: skip
    return [
        {
            "event_id": f"{entry['container_id'][:16]}-{i}",
            "container_id": entry["container_id"],
            "task_id": task_id(n, salt),
            "event": kind,
            "from": old,
            "to": new,
            "timestamp": f"2026-11-25T15:0{i}:38.123Z",
        }
        for i, (kind, old, new) in enumerate(steps)
    ]


def report(
    first: int, count: int = REPORT_SIZE, salt: str = "", events: bool = False, status: str = "RUNNING"
) -> bytes:
    """One ``/report/map`` body with containers ``first … first+count-1`` (one host's fields), with their
    lives' events if asked."""
    containers = [container(n, salt, status) for n in range(first, first + count)]
    body = {"host": host(first), "containers": containers, "full": False}
    if events:
        body["events"] = [e for n in range(first, first + count) for e in life(n, salt)]
    return json.dumps(body).encode()


class Poster:
    """Posts report bodies over one keep-alive connection."""

    def __init__(self, port: int, token: str):
        self.port = port
        self.headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def post(self, body: bytes) -> None:
        for attempt in range(5):
            try:
                self.conn.request("POST", "/report/map", body, self.headers)
                response = self.conn.getresponse()
                answer = response.read()
            except (OSError, http.client.HTTPException):
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
                time.sleep(0.1 * (attempt + 1))
                continue
            if response.status == 200:
                return
            if response.status != 503:
                raise RuntimeError(f"report refused: {response.status} {answer[:200]!r}")
            time.sleep(0.1)
        raise RuntimeError("report failed five times")


def ingest(port: int, token: str, count: int, posters: int = 4, salt: str = "", events: bool = False) -> float:
    """Post containers ``0 … count-1`` from ``posters`` processes at once. Returns container upserts per second."""
    firsts = list(range(0, count, REPORT_SIZE))
    go = multiprocessing.Event()
    processes = [
        multiprocessing.Process(target=_run_poster, args=(go, port, token, firsts[i::posters], salt, events))
        for i in range(posters)
    ]
    for process in processes:
        process.start()
    time.sleep(min(30.0, 0.5 + count / 20_000))  # let every poster build its bodies first
    began = time.perf_counter()
    go.set()
    for process in processes:
        process.join()
        if process.exitcode:
            raise RuntimeError(f"a poster failed (exit {process.exitcode})")
    return count / (time.perf_counter() - began)


def _run_poster(go, port: int, token: str, firsts: list[int], salt: str, events: bool) -> None:
    bodies = [report(first, salt=salt, events=events) for first in firsts]  # made before the clock starts
    go.wait()
    for body in bodies:
        # Each report comes from another host, on a connection of its own, as a fleet's reports do. Over four
        # keep-alive connections the figure measured how gunicorn happened to deal them to its two workers
        # (4-0 to 2-2: one core or two), not the server.
        poster = Poster(port, token)
        poster.post(body)
        poster.conn.close()
