"""Builders of ECS introspection payloads, fakes of the agent's HTTP, and a server that checks every report."""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable
from typing import Any

import requests

from agent.config import Config
from agent.daemon import Agent

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


try:  # the server's own validator: the agent's reports are checked against the code that will take them
    from server.schema import map_report as _server_takes
except ImportError:  # pragma: no cover - an agent-only checkout: the body's shape is all that can be checked
    _server_takes = None


def check_report(body: Any) -> None:
    """AssertionError unless the server would take `body` as a `/report/map` body."""
    assert isinstance(body, dict) and set(body) == {"host", "containers", "events", "full"}, body
    if _server_takes is not None:
        try:
            _server_takes(body)
        except Exception as exc:
            raise AssertionError(f"the server refuses this report: {exc}") from exc


class Reports:
    """What a fake server was sent: each body checked as the server checks it, in arrival order."""

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


class FakeHost(FakeSession):
    """An ECS host whose agent and instance metadata answer whatever the test sets, and a checking server.

    Instance metadata answers only once `instance` (path → answer) is set; until then it is unreachable.
    """

    def __init__(self) -> None:
        super().__init__()
        self.reports = Reports()
        self.tasks: bytes = b'{"Tasks": []}'
        self.metadata: bytes = json.dumps(METADATA).encode()
        self.instance: dict[str, str] | None = None
        self.route("GET", f"{ECS}/v1/tasks", lambda _kw: response(200, self.tasks))
        self.route("GET", f"{ECS}/v1/metadata", lambda _kw: response(200, self.metadata))
        self.route("PUT", f"{IMDS}/latest/api/token", lambda _kw: self._instance_answer("imds-token"))
        for path in INSTANCE:
            self.route("GET", f"{IMDS}/latest/{path}", lambda _kw, path=path: self._instance_answer(path))
        self.route("POST", f"{SERVER}/report/map", self._report)

    def _instance_answer(self, path: str) -> requests.Response:
        if self.instance is None:
            raise requests.ConnectionError("no instance metadata service here")
        answer = "imds-token" if path == "imds-token" else self.instance[path]
        return response(200, answer.encode("utf-8", "surrogatepass"))

    def _report(self, kwargs: dict[str, Any]) -> requests.Response:
        self.reports.take(kwargs["data"], kwargs["headers"])
        return response(200, {})


def host_agent(host: FakeHost, **overrides: Any) -> Agent:
    """An agent on `host`, its clock and randomness fixed."""
    settings: dict[str, Any] = {"backoff_base": 0.0, "start_spread": 0.0, **overrides}
    config = Config(server_url=SERVER, token=TOKEN, ecs_agent_url=ECS, imds_url=IMDS, **settings)
    clock = FakeClock()
    return Agent(config, host, clock=clock, now=clock.now, rng=random.Random(0))
