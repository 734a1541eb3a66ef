"""Validation of the agent's report bodies (the wire format in docs/wire-format.md).

A body is checked whole before anything is stored, so a rejected report leaves no trace. Each check raises
ApiError(400) with the JSON path of the offending value.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from server import ids
from server.errors import ApiError
from server.records import STATUSES, format_time

MAX_ITEMS = 1000
MAX_PORTS = 100  # per container
MAX_NETWORKS = 16  # per container
MAX_ADDRESSES = 16  # IPv4 and IPv6 each, per network; only IP addresses
MAX_BYTES = 1024

HOST_FIELDS = (
    "instance_id", "instance_ip", "instance_type", "instance_az", "region", "host_name", "cluster_name",
    "container_instance_arn", "ecs_agent_version",
)  # fmt: skip
CONTAINER_TEXT_FIELDS = ("docker_name", "image", "image_id", "task_name", "created_at", "started_at")
EVENT_KINDS = ("appeared", "known_status", "desired_status", "vanished")
PROTOCOLS = ("tcp", "udp", "sctp")
CLOCK_SKEW = timedelta(minutes=5)
#: Times before this are implausible for a container (ECS began in 2014); they would sort before every real one.
EARLIEST_TIME = datetime(2000, 1, 1, tzinfo=UTC)
EVENT_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
#: A dotted-quad IPv4 address as ``ipaddress`` accepts it (ASCII digits, 0-255, no leading zeros): one regular
#: expression instead of its parser, which cost more than all the other checks of a container together.
_OCTET = "(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
IPV4 = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")
#: ``json.dumps`` with separators builds an encoder per call; one encoder made once does the same.
COMPACT_JSON = json.JSONEncoder(separators=(",", ":"))


def _fail(path: str, problem: str) -> ApiError:
    return ApiError(f"{path}: {problem}")


def _text(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise _fail(path, f"expected a string, got {type(value).__name__}")
    if value.isascii():  # nearly always: a character is a byte and no surrogate can hide in it
        size = len(value)
    else:
        try:
            size = len(value.encode("utf-8"))
        except UnicodeEncodeError:
            raise _fail(path, "is not valid Unicode (a lone surrogate)") from None
    if size > MAX_BYTES:
        raise _fail(path, f"longer than {MAX_BYTES} bytes")
    if "\x00" in value:
        raise _fail(path, "contains a NUL character")
    return value


def _optional_text(obj: dict, key: str, path: str) -> str:
    value = obj.get(key)
    return "" if value is None else _text(value, f"{path}.{key}")


def _required(obj: dict, key: str, path: str) -> Any:
    if obj.get(key) in (None, ""):
        raise _fail(f"{path}.{key}", "required")
    return obj[key]


def _object(value: Any, path: str) -> dict:
    if not isinstance(value, dict):
        raise _fail(path, f"expected an object, got {type(value).__name__}")
    return value


def _list(value: Any, path: str, limit: int) -> list:
    if not isinstance(value, list):
        raise _fail(path, f"expected a list, got {type(value).__name__}")
    if len(value) > limit:
        raise _fail(path, f"at most {limit} entries, got {len(value)}")
    return value


def _status(value: Any, path: str, allow_empty: bool) -> str:
    if allow_empty and value in (None, ""):
        return ""
    if value not in STATUSES:
        raise _fail(path, f"unknown status {value!r}; expected one of {', '.join(STATUSES)}")
    return value


def _time(value: Any, path: str) -> str:
    text = _text(value, path)
    moment, stored = _parsed_time(text)
    try:
        if moment is None:
            raise _fail(path, f"expected an ISO 8601 time, got {text!r}") if stored == "no time" else OverflowError
        # A clock far ahead must not freeze a record (later reports would all look older): no time past now.
        latest = datetime.now(UTC) + CLOCK_SKEW
        if moment > latest:
            return format_time(latest)
        if not stored:
            raise OverflowError
        return stored
    except OverflowError:  # also year 1 with a positive offset, before datetime's first UTC moment
        raise _fail(path, f"time out of range (before {EARLIEST_TIME.year} or unrepresentable): {text!r}") from None


@lru_cache(maxsize=1024)
def _parsed_time(text: str) -> tuple[datetime | None, str]:
    """``text`` as a moment and in the stored format ('' if it has none); (None, why) for no usable moment.

    Cached: an agent samples every container of a report at once, so they share one ``sample_time``."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None, "no time"
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        if moment < EARLIEST_TIME:  # a clock that was never set, not a container's life
            return None, "too early"
        return moment, format_time(moment)
    except OverflowError:
        return moment, ""


def _port(value: Any, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
        raise _fail(path, f"expected a port number 0-65535, got {value!r}")
    return value


def _ports(value: Any, path: str) -> list[dict]:
    ports = []
    for i, raw in enumerate(_list(value, path, MAX_PORTS)):
        entry = _object(raw, f"{path}[{i}]")
        container_port = _port(_required(entry, "container_port", f"{path}[{i}]"), f"{path}[{i}].container_port")
        host_port = entry.get("host_port")
        protocol = entry.get("protocol") or "tcp"
        if protocol not in PROTOCOLS:
            raise _fail(f"{path}[{i}].protocol", f"expected one of {', '.join(PROTOCOLS)}, got {protocol!r}")
        ports.append({
            "container_port": container_port,
            "host_port": container_port if host_port is None else _port(host_port, f"{path}[{i}].host_port"),
            "protocol": protocol,
        })  # fmt: skip
    return ports


def _networks(value: Any, path: str) -> list[dict]:
    networks = []
    for i, raw in enumerate(_list(value, path, MAX_NETWORKS)):
        entry = _object(raw, f"{path}[{i}]")
        network: dict[str, Any] = {"network_mode": _optional_text(entry, "network_mode", f"{path}[{i}]")}
        for key, version in (("ipv4_addresses", 4), ("ipv6_addresses", 6)):
            addresses = entry.get(key)
            network[key] = [
                _address(a, f"{path}[{i}].{key}[{j}]", version)
                for j, a in enumerate(
                    _list([] if addresses is None else addresses, f"{path}[{i}].{key}", MAX_ADDRESSES)
                )
            ]
        networks.append(network)
    return networks


def _address(value: Any, path: str, version: int) -> str:
    text = _text(value, path)
    if version == 4 and IPV4.fullmatch(text):
        return text
    try:
        if ipaddress.ip_address(text).version == version:
            return text
    except ValueError:
        pass
    raise _fail(path, f"expected an IPv{version} address, got {text[:64]!r}")


def _container(raw: Any, path: str, host: dict[str, str]) -> dict[str, str]:
    entry = _object(raw, path)
    container_id = _text(_required(entry, "container_id", path), f"{path}.container_id").lower()
    if not ids.CONTAINER_ID.fullmatch(container_id):
        raise _fail(f"{path}.container_id", "expected 64 hex digits")
    task_arn = _optional_text(entry, "task_arn", path)
    task_id = _optional_text(entry, "task_id", path).lower() or ids.task_id_of_arn(task_arn)
    if not task_id:
        raise _fail(f"{path}.task_id", "required (or task_arn)")
    if not ids.TASK_ID.fullmatch(task_id):
        raise _fail(f"{path}.task_id", f"expected 32 hex digits or a UUID, got {task_id!r}")
    if task_arn and ids.task_id_of_arn(task_arn) != task_id:
        raise _fail(f"{path}.task_arn", "does not end with task_id")
    version = entry.get("task_version")
    if isinstance(version, int) and not isinstance(version, bool):
        version = str(version)
    # Absent or null is none; any other non-list (0, false, {}) is a malformed body.
    ports = _ports([] if entry.get("ports") is None else entry["ports"], f"{path}.ports")
    networks = _networks([] if entry.get("networks") is None else entry["networks"], f"{path}.networks")
    record = {
        **host,
        "container_id": container_id,
        "container_name": _text(_required(entry, "container_name", path), f"{path}.container_name"),
        "task_id": task_id,
        "task_arn": task_arn,
        "task_version": "" if version is None else _text(version, f"{path}.task_version"),
        "desired_status": _status(entry.get("desired_status"), f"{path}.desired_status", allow_empty=True),
        "known_status": _status(_required(entry, "known_status", path), f"{path}.known_status", False),
        "sample_time": _time(_required(entry, "sample_time", path), f"{path}.sample_time"),
        "ports": _compact(ports),
        "networks": _compact(networks),
        "container_port": str(ports[0]["container_port"]) if ports else "",
        "instance_port": str(ports[0]["host_port"]) if ports else "",
    }
    for key in CONTAINER_TEXT_FIELDS:
        record[key] = _optional_text(entry, key, path)
    # The stored JSON of ports and networks is bounded by their list limits (about 6 KiB and 40 KiB at most),
    # not by the 1 KiB of a string: every store holds records that size (SimpleDB in chunks).
    return record


def _compact(value: list) -> str:
    return COMPACT_JSON.encode(value) if value else ""


def _event(raw: Any, path: str) -> dict[str, str]:
    entry = _object(raw, path)
    event_id = _text(_required(entry, "event_id", path), f"{path}.event_id")
    if not EVENT_ID.fullmatch(event_id):
        raise _fail(f"{path}.event_id", "expected 1-128 characters of A-Z a-z 0-9 . _ : -")
    container_id = _text(_required(entry, "container_id", path), f"{path}.container_id").lower()
    if not ids.CONTAINER_ID.fullmatch(container_id):
        raise _fail(f"{path}.container_id", "expected 64 hex digits")
    task_id = _text(_required(entry, "task_id", path), f"{path}.task_id").lower()
    if not ids.TASK_ID.fullmatch(task_id):
        raise _fail(f"{path}.task_id", "expected 32 hex digits or a UUID")
    kind = _required(entry, "event", path)
    if kind not in EVENT_KINDS:
        raise _fail(f"{path}.event", f"unknown event {kind!r}; expected one of {', '.join(EVENT_KINDS)}")
    return {
        "event_id": event_id,
        "container_id": container_id,
        "task_id": task_id,
        "event": kind,
        "from": _status(entry.get("from"), f"{path}.from", allow_empty=True),
        "to": _status(entry.get("to"), f"{path}.to", allow_empty=True),
        "timestamp": _time(_required(entry, "timestamp", path), f"{path}.timestamp"),
    }


def _items(body: dict, key: str, parse: Callable[[Any, str], dict], required: bool) -> list[dict]:
    if key not in body and not required:
        return []
    raw = _list(_required(body, key, "$") if required else body[key], f"$.{key}", MAX_ITEMS)
    return [parse(item, f"$.{key}[{i}]") for i, item in enumerate(raw)]


def map_report(body: Any) -> tuple[list[dict[str, str]], list[dict[str, str]], bool]:
    """The container records, events and full flag of a /report/map body."""
    body = _object(body, "$")
    host_raw = _object(body.get("host", {}), "$.host")
    host = {key: _optional_text(host_raw, key, "$.host") for key in HOST_FIELDS}
    if host["instance_ip"]:
        try:
            ipaddress.ip_address(host["instance_ip"])
        except ValueError:
            raise _fail("$.host.instance_ip", f"expected an IP address, got {host['instance_ip']!r}") from None
    containers = _items(body, "containers", lambda raw, path: _container(raw, path, host), required=True)
    events = _items(body, "events", _event, required=False)
    full = body.get("full", False)
    if not isinstance(full, bool):
        raise _fail("$.full", f"expected true or false, got {full!r}")
    return containers, events, full


def event_report(body: Any) -> list[dict[str, str]]:
    """The events of a /report/event body."""
    return _items(_object(body, "$"), "events", _event, required=True)
