"""The simulated host's state: tasks that go PENDING → RUNNING → STOPPED, stay listed a while, then vanish.

Every moment comes from an injected clock and every ID from a seeded generator, so a test can step a task through
its life, or let the host churn on its own and still get the same tasks for the same seed.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

ACCOUNT = "210987654321"
REGION = "eu-central-1"
AGENT_VERSION = "Amazon ECS Agent - v1.88.0 (simhost)"
STEPS = ("created", "running", "stopping", "stopped", "vanished")  # the moments of a task's life, in order
FAMILIES = ("api", "worker", "search", "billing", "migrate")


@dataclass
class SimContainer:
    name: str
    docker_id: str
    image: str
    ports: list[dict[str, Any]]


@dataclass
class SimTask:
    """One task and the moments (host clock seconds) of its life; `math.inf` for a moment still to come."""

    arn: str
    family: str
    version: str
    containers: list[SimContainer]
    awsvpc_ip: str | None
    listed: float
    moments: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STEPS, math.inf))

    @property
    def task_id(self) -> str:
        return self.arn.rsplit("/", 1)[1]

    def state(self, now: float) -> tuple[str, str] | None:
        """(desired, known) status at `now`, or None when the task is not listed."""
        if now < self.listed or now >= self.moments["vanished"]:
            return None
        if now >= self.moments["stopped"]:
            return "STOPPED", "STOPPED"
        if now >= self.moments["stopping"]:
            return "STOPPED", "RUNNING"  # asked to stop, still running: a desired_status change of its own
        if now >= self.moments["running"]:
            return "RUNNING", "RUNNING"
        return "RUNNING", "PENDING"

    def listing(self, now: float, clock_to_iso: Callable[[float], str]) -> dict[str, Any] | None:
        """The task as `/v1/tasks` lists it at `now`, or None. Containers have no DockerId until created."""
        state = self.state(now)
        if state is None:
            return None
        desired, known = state
        entry: dict[str, Any] = {
            "Arn": self.arn,
            "DesiredStatus": desired,
            "KnownStatus": known,
            "Family": self.family,
            "Version": self.version,
        }
        if now < self.moments["created"]:
            return entry  # listed before Docker made its containers
        entry["Containers"] = [self._container(c, now, clock_to_iso) for c in self.containers]
        return entry

    def _container(self, container: SimContainer, now: float, clock_to_iso: Callable[[float], str]) -> dict:
        raw: dict[str, Any] = {
            "DockerId": container.docker_id,
            "DockerName": f"ecs-{self.family}-{self.version}-{container.name}-{container.docker_id[:20]}",
            "Name": container.name,
            "Image": container.image,
            "ImageID": "sha256:" + container.docker_id[::-1],
            "CreatedAt": clock_to_iso(self.moments["created"]),
        }
        if now >= self.moments["running"]:
            raw["StartedAt"] = clock_to_iso(self.moments["running"])
        if container.ports:
            raw["Ports"] = container.ports
        if self.awsvpc_ip:
            raw["Networks"] = [{"NetworkMode": "awsvpc", "IPv4Addresses": [self.awsvpc_ip]}]
        return raw


class SimulatedHost:
    """The tasks of one ECS container instance, as its ECS agent and instance metadata would describe them.

    `churn` keeps that many tasks of its own alive: each runs for `run_seconds` (a range), is asked to stop, stops
    and stays listed `linger_seconds` before it vanishes, and a new one starts in its place. With `churn=0` the
    tasks are only those a caller starts, and a caller moves them on with `advance`.
    """

    def __init__(
        self,
        seed: int = 1,
        clock: Callable[[], float] = time.monotonic,
        *,
        churn: int = 0,
        cluster: str = "default",
        pending_seconds: float = 2.0,
        run_seconds: tuple[float, float] = (30.0, 90.0),
        stopping_seconds: float = 1.0,
        linger_seconds: float = 30.0,
    ) -> None:
        self.rng = random.Random(seed)
        self._order = random.Random(seed + 1)  # listing order, apart so that IDs do not depend on how often it is read
        self.clock = clock
        self.cluster = cluster
        self.pending_seconds = pending_seconds
        self.run_seconds = run_seconds
        self.stopping_seconds = stopping_seconds
        self.linger_seconds = linger_seconds
        self.churn = churn
        self.tasks: list[SimTask] = []
        self.lock = threading.RLock()
        self._started_wall = time.time() - clock()  # wall time of clock 0, for CreatedAt and StartedAt
        self.instance = {
            "instance-id": "i-0" + self._hex(16),
            "local-ipv4": f"10.0.{self.rng.randrange(256)}.{self.rng.randrange(1, 255)}",
            "instance-type": "m5.large",
            "placement/availability-zone": f"{REGION}a",
            "placement/region": REGION,
        }
        self.container_instance_arn = f"arn:aws:ecs:{REGION}:{ACCOUNT}:container-instance/{cluster}/{self._hex(32)}"
        self._count = 0

    def _hex(self, digits: int) -> str:
        return f"{self.rng.getrandbits(4 * digits):0{digits}x}"

    def iso(self, moment: float) -> str:
        """A host clock moment as the ECS agent writes times (UTC, RFC 3339)."""
        wall = self._started_wall + moment
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(wall)) + f".{int(wall % 1 * 1000):03d}Z"

    # --- starting and moving tasks --------------------------------------------------------------------------

    def start_task(
        self,
        family: str | None = None,
        containers: int = 1,
        *,
        awsvpc: bool = False,
        old_arn: bool | None = None,
        scheduled: bool = False,
    ) -> SimTask:
        """A new task, listed PENDING without containers; `advance` moves it on.

        `old_arn` picks the ARN form (`…:task/UUID` rather than `…:task/CLUSTER/ID`); by default every other task
        has the old form. `scheduled` lays its whole life out from now with the host's durations instead.
        """
        with self.lock:
            self._count += 1
            if old_arn is None:
                old_arn = self._count % 2 == 0
            family = family or FAMILIES[(self._count - 1) % len(FAMILIES)]
            names = [family] + [f"sidecar-{n}" for n in range(1, containers)]
            ip = f"172.31.{self.rng.randrange(256)}.{self.rng.randrange(1, 255)}" if awsvpc else None
            members = [self._container(name, 8000 + n, awsvpc) for n, name in enumerate(names)]
            task = SimTask(self._task_arn(old_arn), family, str(self.rng.randrange(1, 60)), members, ip, self.clock())
            if scheduled:
                self._schedule(task)
            self.tasks.append(task)
            return task

    def _task_arn(self, old: bool) -> str:
        if old:
            h = self._hex(32)
            return f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"
        return f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/{self.cluster}/{self._hex(32)}"

    def _container(self, name: str, port: int, awsvpc: bool) -> SimContainer:
        # awsvpc: the task's own interface, so the host port is the container port; bridge: an ephemeral one.
        host_port = port if awsvpc else 32768 + self.rng.randrange(28000)
        ports = [{"ContainerPort": port, "Protocol": "tcp", "HostPort": host_port}]
        return SimContainer(name, self._hex(64), f"registry.example/{name}:{self._count}", ports)

    def _schedule(self, task: SimTask) -> None:
        lengths = (
            self.pending_seconds / 2,  # listed without containers, then created
            self.pending_seconds / 2,
            self.rng.uniform(*self.run_seconds),
            self.stopping_seconds,
            self.linger_seconds,
        )
        at = task.listed
        for step, length in zip(STEPS, lengths, strict=True):
            at += length
            task.moments[step] = at

    def advance(self, task: SimTask, step: str) -> None:
        """Move `task` on to `step` (one of STEPS) now, with every earlier step that has not happened yet."""
        with self.lock:
            now = self.clock()
            for name in STEPS[: STEPS.index(step) + 1]:
                task.moments[name] = min(task.moments[name], now)

    # --- what the ECS agent lists ---------------------------------------------------------------------------

    def _keep_churning(self, now: float) -> None:
        self.tasks = [t for t in self.tasks if t.moments["vanished"] > now]
        # Only the tasks it scheduled itself count: those a caller started live as long as the caller says.
        alive = sum(1 for t in self.tasks if now < t.moments["stopping"] < math.inf)
        for n in range(self.churn - alive):
            # A multi-container task and an awsvpc task among them, the ARN forms alternating.
            self.start_task(containers=2 if n % 3 == 0 else 1, awsvpc=n % 3 == 1, scheduled=True)

    def tasks_payload(self) -> dict[str, Any]:
        """`GET /v1/tasks` now."""
        with self.lock:
            if self.churn:
                self._keep_churning(self.clock())
            now = self.clock()
            listed = [t.listing(now, self.iso) for t in self.tasks]
            tasks = [entry for entry in listed if entry is not None]
            self._order.shuffle(tasks)  # the ECS agent lists tasks in no stable order
        return {"Tasks": tasks}

    def metadata_payload(self) -> dict[str, Any]:
        """`GET /v1/metadata`."""
        return {"Cluster": self.cluster, "ContainerInstanceArn": self.container_instance_arn, "Version": AGENT_VERSION}

    def listed(self) -> dict[str, dict[str, str]]:
        """Container ID → {task_id, desired_status, known_status} of every container listed now (with a Docker ID)."""
        found: dict[str, dict[str, str]] = {}
        for task in self.tasks_payload()["Tasks"]:
            for container in task.get("Containers", []):
                found[container["DockerId"]] = {
                    "task_id": task["Arn"].rsplit("/", 1)[1],
                    "desired_status": task["DesiredStatus"],
                    "known_status": task["KnownStatus"],
                }
        return found
