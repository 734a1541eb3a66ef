"""``/sd/prometheus``: Prometheus HTTP service discovery from the record, one target group per port of each
running container.

The answer is what ``http_sd_configs`` reads: a JSON list of ``{"targets": ["HOST:PORT", …], "labels": {…}}``.
Labels are named like those of Prometheus's own ECS discovery (``__meta_ecs_*``), so relabelling rules written
for it keep working. The answer is built by pure functions from the running records and the filters; the route
keeps its answer built (``server.discovery_cache``) and builds it again only when the store's discovery generation
moved or the host leases lose or bring back a container; filtered answers are cut from it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeGuard, cast

from flask import Blueprint, Flask, Response, current_app, request
from flask.blueprints import BlueprintSetupState

from server.discovery_cache import WHOLE, AnswerCache
from server.errors import ApiError
from server.liveness import is_running
from server.state import state
from server.store import Record

bp = Blueprint("discovery", __name__, url_prefix="/sd")
#: The key of the answer this process keeps (``server.discovery_cache``) in ``app.extensions``.
ANSWERS = "ecs_id_mapper_discovery"

#: ECS cluster, service and container names: letters, digits, hyphens and underscores, at most 255.
ECS_NAME = re.compile(r"[A-Za-z0-9_-]{1,255}")
#: Prometheus scrapes over TCP; a UDP or SCTP port is no target.
SCRAPED_PROTOCOL = "tcp"

#: A Docker label ``NAME`` is shown as ``__meta_ecs_container_label_NAME``, NAME sanitised (``label_name``).
DOCKER_LABEL_PREFIX = "__meta_ecs_container_label_"
#: What Prometheus allows after the first character of a label name; anything else becomes ``_``.
NOT_IN_LABEL_NAME = re.compile(r"[^a-zA-Z0-9_]")

#: label → the record field it shows; labels whose field is empty are left out.
LABELS = {
    "__meta_ecs_cluster": "cluster_name",
    "__meta_ecs_service": "service_name",
    "__meta_ecs_task_id": "task_id",
    "__meta_ecs_task_arn": "task_arn",
    "__meta_ecs_task_family": "task_name",
    "__meta_ecs_task_version": "task_version",
    "__meta_ecs_container_name": "container_name",
    "__meta_ecs_container_id": "container_id",
    "__meta_ecs_image": "image",
    "__meta_ecs_availability_zone": "instance_az",
    "__meta_ecs_region": "region",
    "__meta_ecs_ec2_instance_id": "instance_id",
    "__meta_ecs_desired_status": "desired_status",
    "__meta_ecs_last_status": "known_status",
}


class FilterError(ApiError):
    """A query-string filter is malformed; 400, the message says which and why."""

    status = 400


@dataclass(frozen=True)
class Filters:
    """What ``/sd/prometheus?…`` narrows the answer to; None matches everything."""

    cluster: str | None = None
    service: str | None = None
    port: int | None = None
    container_name: str | None = None

    @classmethod
    def parse(cls, args: Mapping[str, list[str]]) -> Filters:
        """Filters from query parameters (each name with its list of values); FilterError for a bad one."""
        unknown = sorted(set(args) - set(cls.__dataclass_fields__))
        if unknown:
            known = ", ".join(cls.__dataclass_fields__)
            raise FilterError(f"unknown filter {', '.join(unknown)}; the filters are {known}")
        values: dict[str, Any] = {}
        for name, given in args.items():
            if len(given) != 1:
                raise FilterError(f"{name}: give it once")
            values[name] = _port(given[0]) if name == "port" else _name(name, given[0])
        return cls(**values)

    def shows(self, group: dict[str, Any]) -> bool:
        """Whether a target group of the whole answer is in this filtered one: ``target_groups(records, self)``
        is ``[g for g in target_groups(records) if self.shows(g)]``."""
        shown = group["labels"]
        return all(
            wanted is None or shown.get(label) == wanted
            for wanted, label in (
                (self.cluster, "__meta_ecs_cluster"),
                (self.service, "__meta_ecs_service"),
                (self.container_name, "__meta_ecs_container_name"),
                (None if self.port is None else str(self.port), "__meta_ecs_container_port"),
            )
        )

    def match(self, record: Record) -> bool:
        return all(
            wanted is None or record.get(field, "") == wanted
            for wanted, field in (
                (self.cluster, "cluster_name"),
                (self.service, "service_name"),
                (self.container_name, "container_name"),
            )
        )


def _name(filter_name: str, value: str) -> str:
    if not ECS_NAME.fullmatch(value):
        raise FilterError(f"{filter_name} {value!r} is malformed: expected up to 255 letters, digits, '-' or '_'")
    return value


def _port(value: str) -> int:
    if not (value.isascii() and value.isdigit() and 0 < int(value) < 65536):
        raise FilterError(f"port {value!r} is malformed: expected a container port 1-65535")
    return int(value)


def target_groups(running: Iterable[Record], filters: Filters = Filters()) -> list[dict[str, Any]]:
    """The HTTP SD answer for these running records: a group per port of each running container, ordered by
    cluster, service, task, container name and port so that the answer only changes when the containers do.

    A group per port, not per container, so that each target has labels of its own (``__meta_ecs_container_port``)
    and two ports of one container never write the same series. Records as ``server.liveness.annotate`` shows them:
    a lost container is no target, whatever its last report said.
    """
    groups = []
    for record in running:
        if not is_running(record) or not filters.match(record):
            continue
        address = task_address(record)  # decoded once for every port
        by_port = port_targets(record, filters.port, address=address)
        if not by_port:
            continue
        shown = labels(record, address=address)
        for (container_port, host_port), found in sorted(by_port.items()):
            port_labels = {"__meta_ecs_container_port": str(container_port)}
            if host_port is not None:
                port_labels["__meta_ecs_host_port"] = str(host_port)
            groups.append({"targets": found, "labels": {**shown, **port_labels}})
    return sorted(groups, key=group_order)


def group_order(group: dict[str, Any]) -> tuple[str, ...]:
    """Where a target group stands in the answer: by cluster, service, task, container name and ID, then port."""
    shown = group["labels"]
    names = tuple(
        shown.get(f"__meta_ecs_{n}", "") for n in ("cluster", "service", "task_id", "container_name", "container_id")
    )
    return (*names, shown["__meta_ecs_container_port"].zfill(5), shown.get("__meta_ecs_host_port", "").zfill(5))


def targets(record: Record, container_port: int | None = None, *, address: str | None = None) -> list[str]:
    """``HOST:PORT`` for each TCP port the container publishes (only ``container_port`` when given)."""
    found = port_targets(record, container_port, address=address)
    return sorted({target for group in found.values() for target in group})


def port_targets(
    record: Record, container_port: int | None = None, *, address: str | None = None
) -> dict[tuple[int, int | None], list[str]]:
    """The targets of each TCP port the container publishes (only ``container_port`` when given), by container port
    and host port: ``(container port, host port)`` → ``["HOST:PORT"]``.

    On awsvpc the task has an address of its own (``address``: its ``task_address``, when already known) and the
    container listens on its own port there: no host port is involved (None). On bridge and host networking the
    port is published on the EC2 instance, as the host port. A port not mapped yet (host port 0) is no target.
    """
    on_task = task_address(record) if address is None else address
    host = on_task or record.get("instance_ip", "")
    if not host:
        return {}
    found: dict[tuple[int, int | None], list[str]] = {}
    for port in _decoded(record.get("ports")):
        if not isinstance(port, dict) or port.get("protocol", SCRAPED_PROTOCOL) != SCRAPED_PROTOCOL:
            continue
        inside, outside = port.get("container_port"), port.get("host_port")
        if not _is_port(inside) or (container_port is not None and inside != container_port):
            continue
        published = inside if on_task else outside
        if _is_port(published):
            target = _join(host, published)
            group = found.setdefault((inside, None if on_task else published), [])
            if target not in group:  # ECS lists a port once per address family (0.0.0.0 and ::) it binds
                group.append(target)
    return found


def _is_port(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 65536


def labels(record: Record, *, address: str | None = None) -> dict[str, str]:
    """The ``__meta_ecs_*`` labels of one container; those the record does not know are left out."""
    shown = {label: record[field] for label, field in LABELS.items() if record.get(field)}
    if not record.get("instance_id") and record.get("ec2_instance_id"):  # learnt from the feed's container instance
        shown["__meta_ecs_ec2_instance_id"] = record["ec2_instance_id"]
    on_task = task_address(record) if address is None else address
    if on_task:
        shown["__meta_ecs_ip_address"] = on_task
        shown["__meta_ecs_network_mode"] = "awsvpc"
    elif record.get("instance_ip"):
        shown["__meta_ecs_ip_address"] = record["instance_ip"]
    launch_type = record.get("launch_type") or ("EC2" if record.get("instance_id") else "")
    if launch_type:
        shown["__meta_ecs_launch_type"] = launch_type
    shown.update(docker_labels(record))
    return shown


def docker_labels(record: Record) -> dict[str, str]:
    """``__meta_ecs_container_label_<name>`` for each of the container's Docker labels (``docker_labels``, a JSON
    object in text). Names are sanitised as Prometheus requires (``label_name``); where two names sanitise alike,
    the one that sorts first wins, so that the answer does not depend on the order the labels came in."""
    try:
        given = json.loads(record.get("docker_labels") or "{}")
    except ValueError:
        return {}
    if not isinstance(given, dict):
        return {}
    shown: dict[str, str] = {}
    for name in sorted(n for n in given if isinstance(n, str) and n):
        value = given[name]
        if isinstance(value, str):
            shown.setdefault(DOCKER_LABEL_PREFIX + label_name(name), value)
    return shown


def label_name(name: str) -> str:
    """``name`` as part of a Prometheus label name: every character other than an ASCII letter, digit or
    underscore becomes ``_`` (``com.example.team`` → ``com_example_team``), as Prometheus's own discoveries do."""
    return NOT_IN_LABEL_NAME.sub("_", name)


def task_address(record: Record) -> str:
    """The task's own address on awsvpc (IPv4 first), else ''."""
    networks = _decoded(record.get("networks"))
    awsvpc = [n for n in networks if isinstance(n, dict) and n.get("network_mode") == "awsvpc"]
    for key in ("ipv4_addresses", "ipv6_addresses"):
        for network in awsvpc:
            addresses = network.get(key)
            if isinstance(addresses, list) and addresses and isinstance(addresses[0], str) and addresses[0]:
                return addresses[0]
    return ""


def _join(host: str, port: int) -> str:
    # Of a host name, an IPv4 and an IPv6 address, only the last holds a colon, and it needs brackets.
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _decoded(text: str | None) -> list[Any]:
    """A list field stored as JSON text; anything unreadable is no entries."""
    try:
        value = json.loads(text) if text else []
    except ValueError:
        return []
    return value if isinstance(value, list) else []


@bp.record_once
def _keep_answers(setup: BlueprintSetupState) -> None:
    app = cast(Flask, setup.app)
    app_state = state(app)
    app.extensions[ANSWERS] = AnswerCache(
        app_state.store, app_state.leases, target_groups, group_order, refresh=app_state.config.discovery_refresh
    )


def answers(app: Flask | None = None) -> AnswerCache:
    """The answer this process keeps for ``app`` (by default the current one)."""
    found: AnswerCache = (app or current_app).extensions[ANSWERS]
    return found


@bp.get("/prometheus")
def prometheus() -> Response:
    filters = Filters.parse(request.args.to_dict(flat=False))  # a bad filter is a 400 before the store is asked
    # Prometheus's HTTP client asks for gzip: a ninth of the bytes, compressed once per answer built.
    gzipped = request.accept_encodings["gzip"] > 0
    body, etag = answers().answer(WHOLE if filters == Filters() else filters, filters.shows, gzipped)
    if request.if_none_match.contains_weak(etag):
        response = Response(status=304)
    else:
        response = Response(body, mimetype="application/json")
        if gzipped:
            response.headers["Content-Encoding"] = "gzip"
    response.headers["ETag"] = f'"{etag}"'
    response.headers["Cache-Control"] = "no-cache"  # may be kept, but asked again (If-None-Match) before use
    response.vary.add("Accept-Encoding")
    return response
