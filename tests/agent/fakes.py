"""Builders of ECS introspection payloads, a checker of the report wire format, fakes of the agent's HTTP."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

import requests

ECS = "http://127.0.0.1:51678"
IMDS = "http://127.0.0.1:51679"
SERVER = "http://127.0.0.1:5001"
TOKEN = "s3cret-token"
CLUSTER_ARN = "arn:aws:ecs:eu-central-1:210987654321"

METADATA = {
    "Cluster": "default",
    "ContainerInstanceArn": f"{CLUSTER_ARN}:container-instance/default/5a0c6f2e8d1b4c7a9e3f2d1c0b9a8e7d",
    "Version": "Amazon ECS Agent - v1.88.0 (4f2e1d0c)",
}
INSTANCE = {
    "meta-data/instance-id": "i-0abc1234def567890",
    "meta-data/local-ipv4": "10.0.1.17",
    "meta-data/instance-type": "m5.large",
    "meta-data/placement/availability-zone": "eu-central-1a",
    "meta-data/placement/region": "eu-central-1",
}


def container_id(n: int) -> str:
    return hashlib.sha256(f"container-{n}".encode()).hexdigest()


def long_arn(n: int) -> str:
    return f"{CLUSTER_ARN}:task/default/{hashlib.md5(f'task-{n}'.encode()).hexdigest()}"


def old_arn(n: int) -> str:
    h = hashlib.md5(f"old-task-{n}".encode()).hexdigest()
    return f"{CLUSTER_ARN}:task/{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def container(n: int, name: str = "app", ports: list | None = None, **fields: Any) -> dict[str, Any]:
    """One container as a current ECS agent lists it (bridge network, one host port unless `ports` given)."""
    entry: dict[str, Any] = {
        "DockerId": container_id(n),
        "DockerName": f"ecs-{name}-1-{name}-{n:08x}",
        "Name": name,
        "Image": f"registry.example/{name}:1",
        "ImageID": "sha256:" + "1" * 64,
        "CreatedAt": "2026-11-20T08:12:03.417281938Z",
        "StartedAt": "2026-11-20T08:12:04.001Z",
        "Ports": [{"ContainerPort": 8000, "Protocol": "tcp", "HostPort": 49000 + n}] if ports is None else ports,
    }
    entry.update(fields)
    return {k: v for k, v in entry.items() if v is not None}


def task(arn: str, known: str, *containers: dict, desired: str | None = "RUNNING", family: str = "app") -> dict:
    entry = {"Arn": arn, "DesiredStatus": desired, "KnownStatus": known, "Family": family, "Version": "1"}
    entry = {k: v for k, v in entry.items() if v is not None}
    if containers:
        entry["Containers"] = list(containers)
    return entry


def tasks(*entries: dict) -> dict:
    return {"Tasks": list(entries)}


# The report wire format, checked from the rules in docs/wire-format.md, so that every test sees that the agent
# never sends what the server would refuse (a refused body is dropped whole).
CONTAINER_ID = re.compile(r"[0-9a-f]{64}")
TASK_ID = re.compile(r"[0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
EVENT_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
STATUSES = ("PENDING", "RUNNING", "STOPPED")


def _check_text(value: Any, where: str) -> None:
    assert isinstance(value, str), f"{where}: not a string: {value!r}"
    assert len(value.encode("utf-8")) <= 1024, f"{where}: longer than 1024 bytes"
    assert "\x00" not in value, f"{where}: NUL"


def _check_time(value: Any, where: str) -> None:
    _check_text(value, where)
    assert datetime.fromisoformat(value).tzinfo is not None, f"{where}: no time zone"


def check_report(body: Any) -> None:
    """AssertionError unless `body` is a `/report/map` body the rules in docs/wire-format.md accept."""
    assert isinstance(body, dict)
    assert isinstance(body["host"], dict)
    for key, value in body["host"].items():
        _check_text(value, f"host.{key}")
    assert isinstance(body["full"], bool)
    assert isinstance(body["containers"], list) and len(body["containers"]) <= 1000
    for c in body["containers"]:
        assert CONTAINER_ID.fullmatch(c["container_id"]), c["container_id"]
        assert c["container_name"], "container_name required"
        assert c["known_status"] in STATUSES
        assert c.get("desired_status", "") in (*STATUSES, "")
        _check_time(c["sample_time"], "sample_time")
        assert TASK_ID.fullmatch(c["task_id"]), c["task_id"]
        assert c["task_arn"].rsplit("/", 1)[-1].lower() == c["task_id"]
        assert isinstance(c["task_version"], str | int)
        for key, value in c.items():
            if key not in ("ports", "networks", "task_version"):
                _check_text(value, key)
        assert len(c["ports"]) <= 100 and len(json.dumps(c["ports"], separators=(",", ":"))) <= 1024
        for p in c["ports"]:
            for key in ("container_port", "host_port"):
                assert type(p[key]) is int and 0 <= p[key] <= 65535
            assert p["protocol"] in ("tcp", "udp", "sctp")
        assert len(c["networks"]) <= 16 and len(json.dumps(c["networks"], separators=(",", ":"))) <= 1024
        for n in c["networks"]:
            _check_text(n["network_mode"], "network_mode")
            for key in ("ipv4_addresses", "ipv6_addresses"):
                assert len(n[key]) <= 16
                for address in n[key]:
                    _check_text(address, key)
    assert isinstance(body["events"], list) and len(body["events"]) <= 1000
    for e in body["events"]:
        assert EVENT_ID.fullmatch(e["event_id"]), e["event_id"]
        assert CONTAINER_ID.fullmatch(e["container_id"])
        assert TASK_ID.fullmatch(e["task_id"])
        assert e["event"] in ("appeared", "known_status", "desired_status", "vanished")
        assert e["from"] in (*STATUSES, "") and e["to"] in (*STATUSES, "")
        _check_time(e["timestamp"], "timestamp")


class Reports:
    """What a fake server was sent: each body checked against the wire format, in arrival order."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []

    def take(self, raw: bytes | str, headers: Any) -> dict:
        assert headers["Authorization"] == f"Bearer {TOKEN}"
        assert headers["Content-Type"] == "application/json"
        body = json.loads(raw)
        check_report(body)
        self.bodies.append(body)
        return body

    @property
    def events(self) -> list[tuple[str, str, str, str]]:
        """(container ID, event, from, to) of every event, in the order they were sent."""
        return [(e["container_id"], e["event"], e["from"], e["to"]) for b in self.bodies for e in b["events"]]

    @property
    def event_ids(self) -> list[str]:
        return [e["event_id"] for b in self.bodies for e in b["events"]]

    def statuses(self, index: int = -1) -> dict[str, tuple[str, str]]:
        """Container ID → (desired, known) as report `index` carried them."""
        return {c["container_id"]: (c["desired_status"], c["known_status"]) for c in self.bodies[index]["containers"]}


class FakeClock:
    """Monotonic seconds and wall-clock sample times that only move when a test says so."""

    def __init__(self) -> None:
        self.seconds = 1000.0

    def __call__(self) -> float:
        return self.seconds

    def advance(self, seconds: float) -> None:
        self.seconds += seconds

    def now(self) -> str:
        whole = int(self.seconds)
        millis = int((self.seconds - whole) * 1000)
        return f"2026-11-25T{whole // 3600 % 24:02d}:{whole // 60 % 60:02d}:{whole % 60:02d}.{millis:03d}Z"


def response(status: int = 200, body: Any = b"", headers: dict[str, str] | None = None) -> requests.Response:
    """A requests.Response as a session would return it."""
    r = requests.Response()
    r.status_code = status
    r._content = body if isinstance(body, bytes) else json.dumps(body).encode()
    r.headers.update(headers or {})
    r.encoding = "utf-8"
    return r


Handler = Callable[[dict[str, Any]], requests.Response]


class FakeSession:
    """Stands in for requests.Session: (method, URL) → handler; records every call; insists on a timeout."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], Handler] = {}
        self.calls: list[tuple[str, str]] = []
        self.closed = 0  # times its pooled connections were dropped

    def route(self, method: str, url: str, handler: Handler | requests.Response) -> None:
        self.routes[(method, url)] = handler if callable(handler) else (lambda _kw, r=handler: r)

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        assert kwargs.get("timeout"), f"{method} {url} without a timeout"
        self.calls.append((method, url))
        handler = self.routes.get((method, url))
        if handler is None:
            raise requests.ConnectionError(f"nothing listens for {method} {url}")
        return handler(kwargs)

    def get(self, url: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", url, **kwargs)

    def put(self, url: str, **kwargs: Any) -> requests.Response:
        return self.request("PUT", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> requests.Response:
        return self.request("POST", url, **kwargs)

    def close(self) -> None:
        self.closed += 1


class Script:
    """The HTTP an agent will see, in order, on a responses mock with an ordered registry."""

    def __init__(self, rsps: Any, reports: Reports) -> None:
        self.rsps = rsps
        self.reports = reports
        self.metadata_due = True

    def imds(self, token: str = "imds-token") -> None:
        """An IMDSv2 service: a token for the PUT, then each field, asked for with that token."""
        from responses import matchers

        from agent.imds import FIELDS

        self.rsps.put(
            f"{IMDS}/latest/api/token",
            body=token,
            match=[matchers.header_matcher({"X-aws-ec2-metadata-token-ttl-seconds": "21600"})],
        )
        for path in FIELDS.values():
            self.rsps.get(
                f"{IMDS}/latest/{path}",
                body=INSTANCE[path],
                match=[matchers.header_matcher({"X-aws-ec2-metadata-token": token})],
            )

    def poll(self, payload: Any, metadata: Any = METADATA) -> None:
        """One read of the ECS agent answering `payload` for /v1/tasks.

        /v1/metadata is asked for only when the agent wants it (first poll, after an outage, at a resync, until
        the instance ARN is known); `metadata_due` mirrors that, and tests set it where a resync falls.
        """
        if self.metadata_due:
            self.rsps.get(f"{ECS}/v1/metadata", json=metadata)
            self.metadata_due = not (isinstance(metadata, dict) and metadata.get("ContainerInstanceArn"))
        self.rsps.get(f"{ECS}/v1/tasks", json=payload)

    def report(self, status: int = 200, headers: dict[str, str] | None = None) -> None:
        """One POST /report/map, checked and recorded, answered with `status`."""

        def answer(request: Any) -> tuple[int, dict[str, str], str]:
            body = self.reports.take(request.body, request.headers)
            if status != 200:
                self.reports.bodies.pop()  # refused: the server kept nothing
            return status, headers or {}, json.dumps({"containers": len(body["containers"]), "events": 0})

        self.rsps.add_callback("POST", f"{SERVER}/report/map", callback=answer)
