"""Validation of the agent's report bodies (the wire format in docs/wire-format.md).

A body is checked whole before anything is stored, so a rejected report leaves no trace. Each check raises
``server.validation.ValidationError`` with the JSON path of the offending value.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable
from typing import Any

from server import ids
from server.records import STATUSES
from server.validation import MAX_BYTES as MAX_BYTES  # with the limits below, what agent.wire mirrors
from server.validation import (
    ValidationError,
    ip_address,
    json_list,
    json_object,
    optional_text,
    required,
    text,
    timestamp,
)

MAX_ITEMS = 1000
MAX_PORTS = 100  # per container
MAX_NETWORKS = 16  # per container
MAX_ADDRESSES = 16  # IPv4 and IPv6 each, per network; only IP addresses

HOST_FIELDS = (
    "instance_id", "instance_ip", "instance_type", "instance_az", "region", "host_name", "cluster_name",
    "container_instance_arn", "ecs_agent_version",
)  # fmt: skip
CONTAINER_TEXT_FIELDS = ("docker_name", "image", "image_id", "task_name", "created_at", "started_at")
EVENT_KINDS = ("appeared", "known_status", "desired_status", "vanished")
PROTOCOLS = ("tcp", "udp", "sctp")
EVENT_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
#: A dotted-quad IPv4 address as ``ipaddress`` accepts it (ASCII digits, 0-255, no leading zeros): one regular
#: expression instead of its parser, which cost more than all the other checks of a container together.
_OCTET = "(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
IPV4 = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")
#: ``json.dumps`` with separators builds an encoder per call; one encoder made once does the same.
COMPACT_JSON = json.JSONEncoder(separators=(",", ":"))


def _status(value: Any, path: str, allow_empty: bool) -> str:
    if allow_empty and value in (None, ""):
        return ""
    if value not in STATUSES:
        raise ValidationError(path, f"unknown status {value!r}; expected one of {', '.join(STATUSES)}")
    return value


def _port(value: Any, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
        raise ValidationError(path, f"expected a port number 0-65535, got {value!r}")
    return value


def _ports(value: Any, path: str) -> list[dict]:
    ports = []
    for i, raw in enumerate(json_list(value, path, MAX_PORTS)):
        entry = json_object(raw, f"{path}[{i}]")
        container_port = _port(required(entry, "container_port", f"{path}[{i}]"), f"{path}[{i}].container_port")
        host_port = entry.get("host_port")
        protocol = entry.get("protocol") or "tcp"
        if protocol not in PROTOCOLS:
            raise ValidationError(f"{path}[{i}].protocol", f"expected one of {', '.join(PROTOCOLS)}, got {protocol!r}")
        ports.append({
            "container_port": container_port,
            "host_port": container_port if host_port is None else _port(host_port, f"{path}[{i}].host_port"),
            "protocol": protocol,
        })  # fmt: skip
    return ports


def _networks(value: Any, path: str) -> list[dict]:
    networks = []
    for i, raw in enumerate(json_list(value, path, MAX_NETWORKS)):
        entry = json_object(raw, f"{path}[{i}]")
        network: dict[str, Any] = {"network_mode": optional_text(entry, "network_mode", f"{path}[{i}]")}
        for key, version in (("ipv4_addresses", 4), ("ipv6_addresses", 6)):
            addresses = entry.get(key)
            network[key] = [
                _address(a, f"{path}[{i}].{key}[{j}]", version)
                for j, a in enumerate(
                    json_list([] if addresses is None else addresses, f"{path}[{i}].{key}", MAX_ADDRESSES)
                )
            ]
        networks.append(network)
    return networks


def _address(value: Any, path: str, version: int) -> str:
    address = text(value, path)
    if version == 4 and IPV4.fullmatch(address):
        return address  # the common case, without building an address object
    return ip_address(address, path, version)


def _container(raw: Any, path: str, host: dict[str, str]) -> dict[str, str]:
    entry = json_object(raw, path)
    container_id = text(required(entry, "container_id", path), f"{path}.container_id").lower()
    if not ids.CONTAINER_ID.fullmatch(container_id):
        raise ValidationError(f"{path}.container_id", "expected 64 hex digits")
    task_arn = optional_text(entry, "task_arn", path)
    task_id = optional_text(entry, "task_id", path).lower() or ids.task_id_of_arn(task_arn)
    if not task_id:
        raise ValidationError(f"{path}.task_id", "required (or task_arn)")
    if not ids.TASK_ID.fullmatch(task_id):
        raise ValidationError(f"{path}.task_id", f"expected 32 hex digits or a UUID, got {task_id!r}")
    if task_arn and ids.task_id_of_arn(task_arn) != task_id:
        raise ValidationError(f"{path}.task_arn", "does not end with task_id")
    version = entry.get("task_version")
    if isinstance(version, int) and not isinstance(version, bool):
        version = str(version)
    # Absent or null is none; any other non-list (0, false, {}) is a malformed body.
    ports = _ports([] if entry.get("ports") is None else entry["ports"], f"{path}.ports")
    networks = _networks([] if entry.get("networks") is None else entry["networks"], f"{path}.networks")
    record = {
        **host,
        "container_id": container_id,
        "container_name": text(required(entry, "container_name", path), f"{path}.container_name"),
        "task_id": task_id,
        "task_arn": task_arn,
        "task_version": "" if version is None else text(version, f"{path}.task_version"),
        "desired_status": _status(entry.get("desired_status"), f"{path}.desired_status", allow_empty=True),
        "known_status": _status(required(entry, "known_status", path), f"{path}.known_status", False),
        "sample_time": timestamp(required(entry, "sample_time", path), f"{path}.sample_time"),
        "ports": _compact(ports),
        "networks": _compact(networks),
        "container_port": str(ports[0]["container_port"]) if ports else "",
        "instance_port": str(ports[0]["host_port"]) if ports else "",
    }
    for key in CONTAINER_TEXT_FIELDS:
        record[key] = optional_text(entry, key, path)
    # The stored JSON of ports and networks is bounded by their list limits (about 6 KiB and 40 KiB at most),
    # not by the 1 KiB of a string: every store holds records that size (SimpleDB in chunks).
    return record


def _compact(value: list) -> str:
    return COMPACT_JSON.encode(value) if value else ""


def _event(raw: Any, path: str) -> dict[str, str]:
    entry = json_object(raw, path)
    event_id = text(required(entry, "event_id", path), f"{path}.event_id")
    if not EVENT_ID.fullmatch(event_id):
        raise ValidationError(f"{path}.event_id", "expected 1-128 characters of A-Z a-z 0-9 . _ : -")
    container_id = text(required(entry, "container_id", path), f"{path}.container_id").lower()
    if not ids.CONTAINER_ID.fullmatch(container_id):
        raise ValidationError(f"{path}.container_id", "expected 64 hex digits")
    task_id = text(required(entry, "task_id", path), f"{path}.task_id").lower()
    if not ids.TASK_ID.fullmatch(task_id):
        raise ValidationError(f"{path}.task_id", "expected 32 hex digits or a UUID")
    kind = required(entry, "event", path)
    if kind not in EVENT_KINDS:
        raise ValidationError(f"{path}.event", f"unknown event {kind!r}; expected one of {', '.join(EVENT_KINDS)}")
    return {
        "event_id": event_id,
        "container_id": container_id,
        "task_id": task_id,
        "event": kind,
        "from": _status(entry.get("from"), f"{path}.from", allow_empty=True),
        "to": _status(entry.get("to"), f"{path}.to", allow_empty=True),
        "timestamp": timestamp(required(entry, "timestamp", path), f"{path}.timestamp"),
    }


def _items(body: dict, key: str, parse: Callable[[Any, str], dict], mandatory: bool) -> list[dict]:
    if key not in body and not mandatory:
        return []
    raw = json_list(required(body, key, "$") if mandatory else body[key], f"$.{key}", MAX_ITEMS)
    return [parse(item, f"$.{key}[{i}]") for i, item in enumerate(raw)]


def map_report(body: Any) -> tuple[list[dict[str, str]], list[dict[str, str]], bool]:
    """The container records, events and full flag of a /report/map body."""
    body = json_object(body, "$")
    host = report_host(body)
    containers = _items(body, "containers", lambda raw, path: _container(raw, path, host), mandatory=True)
    events = _items(body, "events", _event, mandatory=False)
    full = body.get("full", False)
    if not isinstance(full, bool):
        raise ValidationError("$.full", f"expected true or false, got {full!r}")
    return containers, events, full


def report_host(body: Any) -> dict[str, str]:
    """The host fields of a /report/map body (``host``), every one present, empty when not given."""
    host_raw = json_object(json_object(body, "$").get("host", {}), "$.host")
    host = {key: optional_text(host_raw, key, "$.host") for key in HOST_FIELDS}
    if host["instance_ip"]:
        try:
            parsed = ipaddress.ip_address(host["instance_ip"])
        except ValueError:
            parsed = None
        if parsed is None or getattr(parsed, "scope_id", None):  # a zone (`fe80::1%eth0`) is free text
            raise ValidationError("$.host.instance_ip", f"expected an IP address, got {host['instance_ip']!r}")
    return host


def event_report(body: Any) -> list[dict[str, str]]:
    """The events of a /report/event body."""
    return _items(json_object(body, "$"), "events", _event, mandatory=True)
