"""The report wire format (docs/wire-format.md) on the agent's side: the server's limits, and values made to fit.

The agent image carries no server code, so the limits are stated here a second time; a test pins them to the
server's own (`tests/agent/test_agent_wire.py`). Every value is cleaned rather than refused: one bad container
must never cost a whole report, which the server would reject whole.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

MAX_BYTES = 1024  # every string
MAX_ITEMS = 1000  # containers, and events, per report
MAX_PORTS = 100  # per container
MAX_NETWORKS = 16  # per container
MAX_ADDRESSES = 16  # IPv4 and IPv6 each, per network; only IP addresses
MAX_BODY_BYTES = 3 * 1024 * 1024  # the agent's own report size: under the server's 4 MiB, with room for framing
PROTOCOLS = ("tcp", "udp", "sctp")
CONTAINER_ID = re.compile(r"[0-9a-f]{64}")
TASK_ID = re.compile(r"[0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
EVENT_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")  # what `agent.diff.event_id` makes must match

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


def ip_address(value: str) -> str:
    """`value` if it is an IP address (the server refuses a host whose `instance_ip` is not), else ""."""
    try:
        parsed = ipaddress.ip_address(value)
    except ValueError:
        return ""
    return "" if getattr(parsed, "scope_id", None) else value  # a zone (`fe80::1%eth0`) is free text


def task_id_of_arn(arn: Any) -> str | None:
    """The task ID of a task ARN in either form (`…:task/UUID`, `…:task/CLUSTER/ID`), or None."""
    if not isinstance(arn, str) or ":task/" not in arn or text(arn) != arn:
        return None  # an ARN cut to fit would no longer end with its task ID
    task_id = arn.rsplit("/", 1)[-1].lower()
    return task_id if TASK_ID.fullmatch(task_id) else None


def _port(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 65535:
        return value
    return None


def ports(raw: Any, awsvpc: bool) -> list[dict[str, Any]]:
    """The `ports` list of one container from the ECS agent's `Ports`: malformed entries skipped, the first
    `MAX_PORTS` kept."""
    found: list[dict[str, Any]] = []
    if not isinstance(raw, list):
        return found
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
        found.append({"container_port": container_port, "host_port": host_port, "protocol": protocol})
        if len(found) == MAX_PORTS:
            break
    return found


def _addresses(raw: Any, version: int) -> list[str]:
    """The first `MAX_ADDRESSES` entries of `raw` that are IP addresses of that version (what the server takes)."""
    if not isinstance(raw, list):
        return []
    found = []
    for value in raw:
        try:
            parsed = ipaddress.ip_address(value) if isinstance(value, str) else None
        except ValueError:
            continue
        if parsed is not None and parsed.version == version and not getattr(parsed, "scope_id", None):
            found.append(value)
        if len(found) == MAX_ADDRESSES:
            break
    return found


def networks(raw: Any) -> list[dict[str, Any]]:
    """The `networks` list of one container from the ECS agent's `Networks` (awsvpc tasks only)."""
    found: list[dict[str, Any]] = []
    if not isinstance(raw, list):
        return found
    for entry in raw[:MAX_NETWORKS]:
        if not isinstance(entry, dict):
            continue
        found.append({
            "network_mode": text(entry.get("NetworkMode")) or "",
            "ipv4_addresses": _addresses(entry.get("IPv4Addresses"), 4),
            "ipv6_addresses": _addresses(entry.get("IPv6Addresses"), 6),
        })  # fmt: skip
    return found
