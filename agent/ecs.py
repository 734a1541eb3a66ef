"""Reading the local ECS agent's introspection API (`/v1/metadata`, `/v1/tasks`) into a snapshot.

Every value is made to fit the wire format (`agent.wire`): one bad container must never cost a whole report.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import requests

from agent import wire

log = logging.getLogger(__name__)


class EcsUnavailable(Exception):
    """The ECS agent could not be read, or answered something that is not a task list."""


@dataclass(frozen=True)
class Snapshot:
    """The containers of this host as last read: container ID → record (the wire fields but `sample_time`).

    `held` and `held_tasks` name containers and tasks that were listed but could not be read this time:
    they are not gone, so their last known state stands. `held_all` says an entry could not even be told apart
    (a task that is not an object): then nothing missing is gone, while what was read is reported as usual.
    """

    containers: dict[str, dict[str, Any]] = field(default_factory=dict)
    held: frozenset[str] = frozenset()
    held_tasks: frozenset[str] = frozenset()
    held_all: bool = False


def _show(value: Any) -> str:
    """A short, safe rendering of an unexpected value for the log (repr of deep JSON can recurse)."""
    return repr(value[:80]) if isinstance(value, str) else type(value).__name__


class WarnOnce:
    """Logs each distinct problem once, so that a container stuck in a bad state does not flood the log."""

    LIMIT = 10_000

    def __init__(self) -> None:
        self._seen: set[str] = set()

    def __call__(self, key: str, message: str, *args: Any) -> None:
        if key in self._seen:
            return
        if len(self._seen) >= self.LIMIT:
            self._seen.clear()
        self._seen.add(key)
        log.warning(message, *args)


Cache = dict[str, tuple[dict, tuple, dict[str, Any]]]


def parse_tasks(payload: Any, warn: WarnOnce | None = None, cache: Cache | None = None) -> Snapshot:
    """The snapshot in a `/v1/tasks` answer; EcsUnavailable if it is not a task list at all.

    `cache` (container ID → the raw container, its task's fields, the record made of them), kept from one call
    to the next, spares rebuilding the records of containers whose entries did not change: most of them.
    """
    warn = warn or WarnOnce()
    seen: Cache = {}
    if not isinstance(payload, dict) or not isinstance(payload.get("Tasks"), list):
        raise EcsUnavailable("/v1/tasks answered JSON without a Tasks list")
    containers: dict[str, dict[str, Any]] = {}
    held: set[str] = set()
    held_tasks: set[str] = set()
    held_all = False
    for task in payload["Tasks"]:
        if not isinstance(task, dict):
            warn(
                f"task:{_show(task)}",
                "/v1/tasks listed a task that is not an object (%s); keeping the rest",
                _show(task),
            )
            held_all = True
            continue
        arn = task.get("Arn")
        task_id = wire.task_id_of_arn(arn)
        raw_containers = task.get("Containers")
        if raw_containers is None:
            continue  # a task with no containers yet
        if not isinstance(raw_containers, list) or not all(isinstance(c, dict) for c in raw_containers):
            if not isinstance(arn, str):
                warn(
                    "task:unnamed", "/v1/tasks listed a task with neither an ARN nor a container list; keeping the rest"
                )
                held_all = True
                continue
            warn(f"containers:{arn[:200]}", "task %s: its container list is malformed; keeping its state", _show(arn))
            held_tasks.add(arn)
            continue
        known = wire.status(task.get("KnownStatus"))
        desired = wire.status(task.get("DesiredStatus")) or ""  # absent on older agents
        task_key = (arn, task.get("KnownStatus"), task.get("DesiredStatus"), task.get("Family"), task.get("Version"))
        for raw in raw_containers:
            docker_id = raw.get("DockerId")
            if not docker_id:
                continue  # not created yet: reported once Docker has given it an ID
            container_id = docker_id.lower() if isinstance(docker_id, str) else ""
            if not wire.CONTAINER_ID.fullmatch(container_id):
                warn(
                    f"id:{_show(docker_id)}",
                    "skipping a container whose DockerId is not 64 hex: %s",
                    _show(docker_id),
                )
                continue
            cached = cache.get(container_id) if cache is not None else None
            if cached is not None and cached[1] == task_key and cached[0] == raw:
                seen[container_id] = cached
                containers[container_id] = cached[2]
                continue
            name = wire.text(raw.get("Name")) or wire.text(raw.get("DockerName"))
            if task_id is None or known is None or not name:
                warn(
                    f"bad:{container_id}",
                    "container %s: not reported until its task ARN (%s), status (%s) and name are valid",
                    container_id, _show(arn), _show(task.get("KnownStatus")),
                )  # fmt: skip
                held.add(container_id)
                continue
            record = _record(container_id, name, raw, task, task_id, known, desired)
            containers[container_id] = record
            seen[container_id] = (raw, task_key, record)
    if cache is not None:
        cache.clear()
        cache.update(seen)
    return Snapshot(containers, frozenset(held), frozenset(held_tasks), held_all)


def _record(
    container_id: str, name: str, raw: dict, task: dict, task_id: str, known: str, desired: str
) -> dict[str, Any]:
    networks = wire.networks(raw.get("Networks"))
    ports = wire.ports(raw.get("Ports"), awsvpc=any(n["network_mode"] == "awsvpc" for n in networks))
    return {
        "container_id": container_id,
        "container_name": name,
        "docker_name": wire.text(raw.get("DockerName")) or "",
        "image": wire.text(raw.get("Image")) or "",
        "image_id": wire.text(raw.get("ImageID")) or "",
        "task_arn": task["Arn"],
        "task_id": task_id,
        "task_name": wire.text(task.get("Family")) or "",
        "task_version": wire.text(task.get("Version")) or "",
        "desired_status": desired,
        "known_status": known,
        "created_at": wire.text(raw.get("CreatedAt")) or "",
        "started_at": wire.text(raw.get("StartedAt")) or "",
        "ports": ports,
        "networks": networks,
    }


def parse_metadata(payload: Any) -> dict[str, str]:
    """The host fields in a `/v1/metadata` answer; EcsUnavailable if it is not an object."""
    if not isinstance(payload, dict):
        raise EcsUnavailable("/v1/metadata answered JSON that is not an object")
    return {
        "cluster_name": wire.text(payload.get("Cluster")) or "",
        "container_instance_arn": wire.text(payload.get("ContainerInstanceArn")) or "",  # null until registered
        "ecs_agent_version": wire.text(payload.get("Version")) or "",
    }


class EcsAgent:
    """The ECS agent's introspection API on this host."""

    def __init__(self, session: requests.Session, base_url: str, timeout: tuple[float, float]) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._warn = WarnOnce()
        self._cache: Cache = {}
        self._host: dict[str, str] = {}

    def _get(self, path: str) -> Any:
        try:
            # A redirect is not the ECS agent's answer: following one could read another host's (or no) tasks.
            response = self.session.get(self.base_url + path, timeout=self.timeout, allow_redirects=False)
        except requests.RequestException as exc:
            raise EcsUnavailable(f"{path}: {exc.__class__.__name__}: {exc}") from None
        if response.status_code != 200:
            raise EcsUnavailable(f"{path} answered HTTP {response.status_code}")
        try:
            return response.json()
        except (ValueError, RecursionError):
            raise EcsUnavailable(f"{path} answered something that is not JSON") from None

    def read(self, refresh_host: bool = False) -> tuple[dict[str, str], Snapshot]:
        """The host fields and the snapshot of this host's containers; EcsUnavailable if unreadable.

        The host fields change only when the instance registers or the ECS agent is replaced, so `/v1/metadata`
        is read when `refresh_host` asks, after a failed read, and until the instance ARN is known; the rest of
        the time a poll costs one request.
        """
        if refresh_host or not self._host.get("container_instance_arn"):
            self._host = {}
            self._host = parse_metadata(self._get("/v1/metadata"))
        try:
            return self._host, parse_tasks(self._get("/v1/tasks"), self._warn, self._cache)
        except RecursionError:  # JSON nested just shallow enough to parse, too deep to compare
            self._host = {}
            raise EcsUnavailable("/v1/tasks answered JSON nested too deep") from None
        except EcsUnavailable:
            self._host = {}  # the ECS agent may come back as another version
            raise
