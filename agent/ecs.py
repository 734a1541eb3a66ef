"""Reading the local ECS agent's introspection API (`/v1/metadata`, `/v1/tasks`) into a snapshot.

Every value is checked against what the server accepts: one bad container must never cost a whole report.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from typing import Any

import requests

log = logging.getLogger(__name__)

MAX_BYTES = 1024  # the server's bound on every string
MAX_PORTS = 100
MAX_NETWORKS = 16
MAX_ADDRESSES = 16
PROTOCOLS = ("tcp", "udp", "sctp")
CONTAINER_ID = re.compile(r"[0-9a-f]{64}")
TASK_ID = re.compile(r"[0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

# The server knows three statuses. The ECS agent also shows its own internal steps and, on newer versions,
# the ECS API's lifecycle names; each maps onto the state the container is really in.
STATUSES = {
    "PENDING": "PENDING",
    "NONE": "PENDING",
    "MANIFEST_PULLED": "PENDING",
    "PULLED": "PENDING",
    "CREATED": "PENDING",
    "RESOURCES_PROVISIONED": "PENDING",
    "PROVISIONING": "PENDING",
    "ACTIVATING": "PENDING",
    "RUNNING": "RUNNING",
    "DEACTIVATING": "RUNNING",
    "STOPPING": "RUNNING",
    "STOPPED": "STOPPED",
    "ZOMBIE": "STOPPED",
    "DEPROVISIONING": "STOPPED",
    "DELETED": "STOPPED",
}


class EcsUnavailable(Exception):
    """The ECS agent could not be read, or answered something that is not a task list."""


@dataclass(frozen=True)
class Snapshot:
    """The containers of this host as last read: container ID → record (the wire fields but `sample_time`).

    `held` and `held_tasks` name containers and tasks that were listed but could not be read this time:
    they are not gone, so their last known state stands.
    """

    containers: dict[str, dict[str, Any]] = field(default_factory=dict)
    held: frozenset[str] = frozenset()
    held_tasks: frozenset[str] = frozenset()


def text(value: Any) -> str | None:
    """`value` as a string the server accepts (≤ 1024 bytes of UTF-8, no NUL), or None if it is no text."""
    if isinstance(value, str):
        if value.isascii() and len(value) <= MAX_BYTES and "\x00" not in value:
            return value
        raw = value.replace("\x00", "").encode("utf-8", "replace")[:MAX_BYTES]
        return raw.decode("utf-8", "ignore")  # "ignore" drops a character cut in half
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def status(value: Any) -> str | None:
    """The server's status for an ECS status, or None for one it does not know."""
    return STATUSES.get(value.upper()) if isinstance(value, str) else None


def compact_size(value: list) -> int:
    """Bytes of `value` as the server stores it (compact JSON), so lists can be cut to fit its bound."""
    return len(json.dumps(value, separators=(",", ":")))


def _port(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 65535:
        return value
    return None


def parse_ports(raw: Any, awsvpc: bool) -> list[dict[str, Any]]:
    """The `ports` list of one container: malformed entries skipped, cut to what the server accepts."""
    ports: list[dict[str, Any]] = []
    if not isinstance(raw, list):
        return ports
    for entry in raw:
        if not isinstance(entry, dict):
            continue
        container_port = _port(entry.get("ContainerPort"))
        protocol = entry.get("Protocol") or "tcp"
        protocol = protocol.lower() if isinstance(protocol, str) else None
        if container_port is None or protocol not in PROTOCOLS:
            continue
        host_port = _port(entry.get("HostPort"))
        if host_port is None or (awsvpc and host_port == 0):
            host_port = container_port  # awsvpc: the task's own interface, same port
        ports.append({"container_port": container_port, "host_port": host_port, "protocol": protocol})
        if len(ports) == MAX_PORTS:
            break
    # An entry is at most 59 bytes ({"container_port":65535,"host_port":65535,"protocol":"sctp"},): 17 always fit.
    while len(ports) > 17 and compact_size(ports) > MAX_BYTES:
        ports.pop()
    return ports


def _addresses(raw: Any) -> list[str]:
    if not isinstance(raw, list):
        return []
    found = (text(a) for a in raw[:MAX_ADDRESSES])
    return [a for a in found if a]


def parse_networks(raw: Any) -> list[dict[str, Any]]:
    """The `networks` list of one container (awsvpc tasks only), cut to what the server accepts."""
    networks: list[dict[str, Any]] = []
    if not isinstance(raw, list):
        return networks
    for entry in raw[:MAX_NETWORKS]:
        if not isinstance(entry, dict):
            continue
        networks.append({
            "network_mode": text(entry.get("NetworkMode")) or "",
            "ipv4_addresses": _addresses(entry.get("IPv4Addresses")),
            "ipv6_addresses": _addresses(entry.get("IPv6Addresses")),
        })  # fmt: skip
    while networks and compact_size(networks) > MAX_BYTES:
        networks.pop()
    return networks


def task_id_of_arn(arn: Any) -> str | None:
    """The task ID of a task ARN in either form (`…:task/UUID`, `…:task/CLUSTER/ID`), or None."""
    if not isinstance(arn, str) or ":task/" not in arn or text(arn) != arn:
        return None  # an ARN cut to fit would no longer end with its task ID
    task_id = arn.rsplit("/", 1)[-1].lower()
    return task_id if TASK_ID.fullmatch(task_id) else None


def _show(value: Any) -> str:
    """A short, safe rendering of an unexpected value for the log (repr of deep JSON can recurse)."""
    return repr(value[:80]) if isinstance(value, str) else type(value).__name__


class _Warnings:
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


def parse_tasks(payload: Any, warn: _Warnings | None = None, cache: Cache | None = None) -> Snapshot:
    """The snapshot in a `/v1/tasks` answer; EcsUnavailable if it is not a task list at all.

    `cache` (container ID → the raw container, its task's fields, the record made of them), kept from one call
    to the next, spares rebuilding the records of containers whose entries did not change: most of them.
    """
    warn = warn or _Warnings()
    seen: Cache = {}
    if not isinstance(payload, dict) or not isinstance(payload.get("Tasks"), list):
        raise EcsUnavailable("/v1/tasks answered JSON without a Tasks list")
    containers: dict[str, dict[str, Any]] = {}
    held: set[str] = set()
    held_tasks: set[str] = set()
    for task in payload["Tasks"]:
        if not isinstance(task, dict):
            raise EcsUnavailable("/v1/tasks listed a task that is not an object")
        arn = task.get("Arn")
        task_id = task_id_of_arn(arn)
        raw_containers = task.get("Containers")
        if raw_containers is None:
            continue  # a task with no containers yet
        if not isinstance(raw_containers, list) or not all(isinstance(c, dict) for c in raw_containers):
            if not isinstance(arn, str):
                raise EcsUnavailable("/v1/tasks listed a task with neither an ARN nor a container list")
            warn(f"containers:{arn[:200]}", "task %s: its container list is malformed; keeping its state", _show(arn))
            held_tasks.add(arn)
            continue
        known = status(task.get("KnownStatus"))
        desired = status(task.get("DesiredStatus")) or ""  # absent on older agents
        task_key = (arn, task.get("KnownStatus"), task.get("DesiredStatus"), task.get("Family"), task.get("Version"))
        for raw in raw_containers:
            docker_id = raw.get("DockerId")
            if not docker_id:
                continue  # not created yet: reported once Docker has given it an ID
            container_id = docker_id.lower() if isinstance(docker_id, str) else ""
            if not CONTAINER_ID.fullmatch(container_id):
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
            name = text(raw.get("Name")) or text(raw.get("DockerName"))
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
    return Snapshot(containers, frozenset(held), frozenset(held_tasks))


def _record(
    container_id: str, name: str, raw: dict, task: dict, task_id: str, known: str, desired: str
) -> dict[str, Any]:
    networks = parse_networks(raw.get("Networks"))
    ports = parse_ports(raw.get("Ports"), awsvpc=any(n["network_mode"] == "awsvpc" for n in networks))
    return {
        "container_id": container_id,
        "container_name": name,
        "docker_name": text(raw.get("DockerName")) or "",
        "image": text(raw.get("Image")) or "",
        "image_id": text(raw.get("ImageID")) or "",
        "task_arn": task["Arn"],
        "task_id": task_id,
        "task_name": text(task.get("Family")) or "",
        "task_version": text(task.get("Version")) or "",
        "desired_status": desired,
        "known_status": known,
        "created_at": text(raw.get("CreatedAt")) or "",
        "started_at": text(raw.get("StartedAt")) or "",
        "ports": ports,
        "networks": networks,
        "container_port": str(ports[0]["container_port"]) if ports else "",
        "instance_port": str(ports[0]["host_port"]) if ports else "",
    }


def parse_metadata(payload: Any) -> dict[str, str]:
    """The host fields in a `/v1/metadata` answer; EcsUnavailable if it is not an object."""
    if not isinstance(payload, dict):
        raise EcsUnavailable("/v1/metadata answered JSON that is not an object")
    return {
        "cluster_name": text(payload.get("Cluster")) or "",
        "container_instance_arn": text(payload.get("ContainerInstanceArn")) or "",  # null until registered
        "ecs_agent_version": text(payload.get("Version")) or "",
    }


class EcsAgent:
    """The ECS agent's introspection API on this host."""

    def __init__(self, session: requests.Session, base_url: str, timeout: tuple[float, float]) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._warn = _Warnings()
        self._cache: Cache = {}
        self._host: dict[str, str] = {}

    def _get(self, path: str) -> Any:
        try:
            response = self.session.get(self.base_url + path, timeout=self.timeout)
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
