"""ECS task state changes (EventBridge events, ``detail`` shaped like a DescribeTasks task) as container records
and events: the one converter behind the event feed (``server.feed``) and ``POST /report/ecs-events``.

The mapping and the rules are in docs/ecs-events.md; ``server.openapi`` documents the body from the grammars
here. Delivery is at least once and unordered, so a conversion depends only on the event: ``detail.version``
goes into the record as ``state_version`` (``server.records.merge`` orders a task's states by it) and event IDs
come from the container and the change, as the agent makes them, so a repeat, or the agent reporting the same
change, is stored once. A container without ``runtimeId`` (on EC2, not created yet; or its image pull failed)
has no ID to be recorded by: it is left out until a later event of its task, a whole snapshot of the task, gives
the ID. ``Batch`` then checks the conversions against the store (a container belongs to the task it is on record
under) and writes them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from server import ids, writing
from server.records import event_id, merge
from server.schema import MAX_ADDRESSES, MAX_ITEMS, MAX_PORTS, PROTOCOLS
from server.store import Event, Record, Store
from server.validation import (
    ValidationError,
    ip_address,
    json_list,
    json_object,
    optional,
    plain_json,
    required,
    rfc3339,
    text,
    whole_number,
)

SOURCE = "aws.ecs"
DETAIL_TYPE = "ECS Task State Change"
#: A task definition holds at most 10 containers; this bounds what a hostile body can make us do.
MAX_CONTAINERS = 100
MAX_ATTACHMENTS = 16
MAX_DETAILS = 64  # name-value pairs per attachment
MAX_INTERFACES = 16  # per container
#: ``version`` grows by one per state change of a task; 18 digits still fit a signed 64-bit integer, which
#: every store and tool reading the record can hold, and no task lives through 10^18 changes.
MAX_VERSION = 10**18 - 1
#: Exit codes as Docker reports them: a signed 32-bit integer.
EXIT_CODES = (-(2**31), 2**31 - 1)

#: ECS statuses (task and container), exactly as ECS writes them, onto the record's PENDING / RUNNING / STOPPED
#: as the agent maps them.
STATUSES = {
    "PROVISIONING": "PENDING",
    "PENDING": "PENDING",
    "ACTIVATING": "PENDING",
    "RUNNING": "RUNNING",
    "DEACTIVATING": "RUNNING",
    "STOPPING": "RUNNING",
    "DEPROVISIONING": "STOPPED",
    "STOPPED": "STOPPED",
    "DELETED": "STOPPED",
}

# Grammars of what the event names, written once for the checks and for the OpenAPI document (so they are plain
# regular expressions that ECMA-262, JSON Schema's dialect, reads the same way: no named groups, no flags).
#: Cluster, service, family and container names.
NAME = "[A-Za-z0-9_-]{1,255}"
REGION = "[a-z]{2}(?:-[a-z]+)+-[0-9]{1,2}"
ARN = f"arn:aws(?:-[a-z]+)*:ecs:{REGION}:[0-9]{{12}}:"
#: A task or container instance ID: 32 lowercase hex, or a UUID in the old ARN form.
RESOURCE_ID = ids.TASK_ID.pattern
TASK_ARN = re.compile(f"{ARN}task/(?:{NAME}/)?(?:{RESOURCE_ID})")
CLUSTER_ARN = re.compile(f"{ARN}cluster/{NAME}")
CONTAINER_INSTANCE_ARN = re.compile(f"{ARN}container-instance/(?:{NAME}/)?(?:{RESOURCE_ID})")
TASK_DEFINITION_ARN = re.compile(f"{ARN}task-definition/{NAME}:[1-9][0-9]{{0,9}}")
#: What started the task: a service (``service:NAME``) or RunTask (``family:NAME``).
GROUP = re.compile(f"(?:service|family):{NAME}")
CONTAINER_NAME = re.compile(NAME)
#: A Docker ID (EC2) or a runtime ID (Fargate, Managed Instances), as ECS writes them: lowercase.
RUNTIME_ID = re.compile(f"{ids.CONTAINER_ID.pattern}|{ids.RUNTIME_ID.pattern}")
LAUNCH_TYPE = re.compile("[A-Z][A-Z0-9_]{0,31}")  # EC2, FARGATE, EXTERNAL, MANAGED_INSTANCES, and whatever comes
AVAILABILITY_ZONE = re.compile("[a-z0-9-]{1,64}")
STOP_CODE = re.compile("[A-Za-z]{1,64}")
#: An OCI content digest: ``ALGORITHM:ENCODED`` (``sha256:`` and 64 hex, in practice).
IMAGE_DIGEST = re.compile("[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,256}")
REGION_NAME = re.compile(REGION)
#: The task times the converter reads; the others (``pullStartedAt``…) are not looked at.
TIMES = ("createdAt", "startedAt", "stoppingAt", "stoppedAt", "executionStoppedAt", "updatedAt")
#: The ENI's addresses, among an attachment's ``details``, by IP version.
ADDRESS_DETAILS = {"privateIPv4Address": 4, "privateIPv6Address": 6}
COMPACT_JSON = json.JSONEncoder(separators=(",", ":"))


@dataclass
class Conversion:
    """What one event says: records to store and the containers still without a runtime ID.

    ``history`` makes the events, given what is on record: the conversion itself depends on the event alone.
    """

    task_id: str
    times: dict[str, str]
    records: list[Record] = field(default_factory=list)
    held: list[str] = field(default_factory=list)  # container names
    #: The JSON path of each record's container, to name it when the store refuses it.
    paths: list[str] = field(default_factory=list)
    #: Where the event says it comes from (its ``account`` and ARNs, its ``region`` and ARNs, its cluster's name):
    #: what a token's events scope is checked against.
    accounts: frozenset[str] = frozenset()
    regions: frozenset[str] = frozenset()
    cluster: str = ""

    @property
    def events(self) -> list[Event]:
        """The events of every record when nothing of them is on record yet."""
        return [event for record in self.records for event in self.history(record, None)]

    def history(self, record: Record, before: Record | None) -> list[Event]:
        """The changes ``record``'s state implies, ``before`` being the container's record as stored (or None).

        Each is timed by the task, the same in every event of the task that implies it, so an unordered or
        repeated delivery makes the same events. Where the event alone cannot tell what the container came from
        (did it run before it stopped? what was wanted before STOPPED?) the record on file says, so that the feed
        names a change as the store and the agent name it, and it is one event, not two.
        """
        times = self.times
        status = record["known_status"]
        ran = status == "RUNNING" or (
            status == "STOPPED"
            and bool(
                record["exit_code"]
                or times["startedAt"]
                or (before and (before.get("known_status") == "RUNNING" or before.get("started_at")))
            )
        )
        sample = record["sample_time"]
        changes = [("appeared", "", "PENDING", times["createdAt"] or sample)]
        if ran:
            changes.append(("known_status", "PENDING", "RUNNING", times["startedAt"] or sample))
        if status == "STOPPED":
            stopped = times["stoppedAt"] or times["executionStoppedAt"] or sample
            changes.append(("known_status", "RUNNING" if ran else "PENDING", "STOPPED", stopped))
        if record["desired_status"] == "STOPPED":
            wanted = before.get("desired_status", "") if before else "RUNNING"
            wanted = "RUNNING" if wanted == "STOPPED" else wanted  # before it was STOPPED, as ECS tells it
            changes.append(("desired_status", wanted, "STOPPED", times["stoppingAt"] or sample))
        container_id = record["container_id"]
        return [
            {
                "event_id": event_id(container_id, kind, old, new),
                "container_id": container_id,
                "task_id": record["task_id"],
                "event": kind,
                "from": old,
                "to": new,
                "timestamp": moment,
            }
            for kind, old, new, moment in changes
        ]


def convert(event: Any, path: str = "$") -> Conversion:
    """The records of one EventBridge event; ``server.validation.ValidationError`` naming the offending path
    otherwise. Optional fields may be absent or null; any other value must be what the document says, an empty
    one too (``"containers": {}``, ``"startedAt": ""`` are refused, not taken as absent)."""
    plain_json(event, path)
    event = json_object(event, path)
    if event.get("source") != SOURCE or event.get("detail-type") != DETAIL_TYPE:
        raise ValidationError(path, f"not an ECS task state change: source {event.get('source')!r}, "
                              f"detail-type {event.get('detail-type')!r}")  # fmt: skip
    event_time = rfc3339(required(event, "time", path), f"{path}.time")
    region = _matching(event, "region", path, REGION_NAME, "an AWS region")
    at = f"{path}.detail"
    detail = json_object(event.get("detail"), at)
    task_arn = _matching(detail, "taskArn", at, TASK_ARN, "a task ARN", mandatory=True)
    task_id = ids.task_id_of_arn(task_arn)
    version = whole_number(required(detail, "version", at), f"{at}.version", 0, MAX_VERSION)
    task_status = _status(required(detail, "lastStatus", at), f"{at}.lastStatus")
    desired = _optional_status(detail, "desiredStatus", at)
    times = {name: "" if optional(detail, name) is None else rfc3339(detail[name], f"{at}.{name}") for name in TIMES}
    sample_time = times["updatedAt"] or event_time
    group = _matching(detail, "group", at, GROUP, "service:NAME or family:NAME")
    definition = _matching(detail, "taskDefinitionArn", at, TASK_DEFINITION_ARN, "a task definition ARN")
    family, _, revision = definition.rpartition("/")[2].rpartition(":")
    addresses = _task_addresses(detail, at)
    task = {
        "task_id": task_id,
        "task_arn": task_arn,
        "task_name": family or group.partition(":")[2],
        "task_version": revision,
        "cluster_name": _matching(detail, "clusterArn", at, CLUSTER_ARN, "a cluster ARN").rpartition("/")[2],
        "container_instance_arn": _matching(
            detail, "containerInstanceArn", at, CONTAINER_INSTANCE_ARN, "a container instance ARN"
        ),
        "region": region,
        "desired_status": desired,
        "sample_time": sample_time,
        "created_at": times["createdAt"],
        "started_at": times["startedAt"],
        "service_name": group.removeprefix("service:") if group.startswith("service:") else "",
        "launch_type": _matching(detail, "launchType", at, LAUNCH_TYPE, "a launch type"),
        "availability_zone": _matching(detail, "availabilityZone", at, AVAILABILITY_ZONE, "an availability zone"),
        "stopped_reason": _optional_text(detail, "stoppedReason", at),
        "stop_code": _matching(detail, "stopCode", at, STOP_CODE, "a stop code"),
        "state_version": str(version),
        "task_definition_arn": definition,
    }
    arns = [arn for arn in (task_arn, task["container_instance_arn"], detail.get("clusterArn")) if arn]
    account = optional(event, "account")
    conversion = Conversion(
        task_id,
        times,
        accounts=frozenset({arn.split(":")[4] for arn in arns} | ({str(account)} if account is not None else set())),
        regions=frozenset({arn.split(":")[3] for arn in arns} | ({region} if region else set())),
        cluster=task["cluster_name"] or _cluster_of_task(task_arn),
    )
    names: set[str] = set()
    runtime_ids: set[str] = set()
    for i, raw in enumerate(_optional_list(detail, "containers", at, MAX_CONTAINERS)):
        here = f"{at}.containers[{i}]"
        container = json_object(raw, here)
        name = _matching(container, "name", here, CONTAINER_NAME, "a container name", mandatory=True)
        if name in names:
            raise ValidationError(f"{here}.name", f"{name!r} is named twice in the task")
        names.add(name)
        if _matching(container, "taskArn", here, TASK_ARN, "a task ARN") not in ("", task_arn):
            raise ValidationError(f"{here}.taskArn", "is not the task's taskArn: a container belongs to its task")
        runtime_id = _matching(container, "runtimeId", here, RUNTIME_ID, "a Docker ID (64 hex) or a runtime ID "
                               "(32 hex, a dash, 10 digits)")  # fmt: skip
        status = _optional_status(container, "lastStatus", here)
        exit_code = optional(container, "exitCode")
        ports = _ports(container, here)
        networks = _networks(addresses, container, here)
        record = {
            **task,
            "container_name": name,
            "known_status": status or task_status,
            "ecs_status": status or task_status,
            "image": _optional_text(container, "image", here),
            "image_digest": _matching(container, "imageDigest", here, IMAGE_DIGEST, "an image digest"),
            "exit_code": "" if exit_code is None else str(whole_number(exit_code, f"{here}.exitCode", *EXIT_CODES)),
            "reason": _optional_text(container, "reason", here),
            "ports": COMPACT_JSON.encode(ports) if ports else "",
            "networks": COMPACT_JSON.encode(networks) if networks else "",
            "private_ip": (networks[0]["ipv4_addresses"] or [""])[0] if networks else "",
            # The names of 2016: the first mapping, as the agent's reports give them.
            "container_port": str(ports[0]["container_port"]) if ports else "",
            "instance_port": str(ports[0]["host_port"]) if ports else "",
        }
        if not runtime_id:
            conversion.held.append(name)
            continue
        if runtime_id in runtime_ids:
            raise ValidationError(f"{here}.runtimeId", "names a container another of the task's containers is")
        runtime_ids.add(runtime_id)
        if ids.RUNTIME_ID.fullmatch(runtime_id) and runtime_id[:32] != task_id:
            raise ValidationError(f"{here}.runtimeId", f"is a container of task {runtime_id[:32]}, not of {task_id}")
        record["container_id"] = runtime_id
        # Hints for the merge: when the container appeared and stopped, earlier than this event's sample time.
        hints = {"first_seen": times["createdAt"]}
        if record["known_status"] == "STOPPED":
            hints["stopped_at"] = times["stoppedAt"] or times["executionStoppedAt"] or sample_time
        conversion.records.append({**record, **{k: v for k, v in hints.items() if v}})
        conversion.paths.append(here)
    return conversion


def _cluster_of_task(task_arn: str) -> str:
    """The cluster a task ARN of the long form names (``…:task/CLUSTER/ID``), else ""."""
    path = task_arn.partition(":task/")[2].split("/")
    return path[0] if len(path) == 2 else ""


def convert_all(body: Any) -> list[Conversion]:
    """The conversions of ``POST /report/ecs-events``: one event or a list of them, checked whole."""
    if isinstance(body, list):
        return [convert(event, f"$[{i}]") for i, event in enumerate(json_list(body, "$", MAX_ITEMS))]
    return [convert(body)]


class Enricher(Protocol):
    """What adds to records before they are stored, and learns more for those it could not add to:
    ``server.task_definitions.TaskDefinitions`` (which reads this module's grammars, so it is not imported here)."""

    def enrich(self, records: Iterable[Record]) -> list[Record]: ...

    def submit(self, created: Iterable[Record]) -> int: ...


class AddressEnricher(Protocol):
    """What adds to records their host's address, knowing them as on file (container ID → record), and learns the
    addresses it could not add: ``server.container_instances.ContainerInstances``."""

    def enrich(self, records: Iterable[Record], stored: Mapping[str, Record] | None = None) -> list[Record]: ...

    def submit(self, records: Iterable[Record], stored: Mapping[str, Record] | None = None) -> int: ...


class Batch:
    """Conversions checked against the store and each other, then written as one report.

    A container belongs to the task it is on record under (a container never changes task): a conversion that
    names, under task Y, a Docker ID on record under task X, or already taken by another task in the batch, is
    refused whole (``add`` raises ValidationError and takes nothing of it). A Fargate runtime ID begins with its
    task's ID; ``convert`` refuses one that does not. The store is read once per task (its records) and once per
    Docker ID new to its task.
    """

    def __init__(self, store: Store, now: str):
        self.store = store
        self.now = now
        self.records: list[Record] = []
        self.events: list[Event] = []
        self.held = 0
        #: Container ID → its record as it will be once the batch is stored (as far as the batch can tell).
        self._known: dict[str, Record] = {}
        self._tasks_read: set[str] = set()

    def add(self, conversion: Conversion) -> None:
        """Take one event's records and their events, or raise ValidationError and take nothing."""
        task_id = conversion.task_id
        if task_id not in self._tasks_read:
            for stored in self.store.containers_of_task(task_id):
                self._known.setdefault(stored["container_id"], stored)
            self._tasks_read.add(task_id)
        before = [self._before(record["container_id"]) for record in conversion.records]
        for found, path in zip(before, conversion.paths, strict=True):
            if found is not None and found.get("task_id") != task_id:
                raise ValidationError(
                    f"{path}.runtimeId", f"is on record as a container of task {found.get('task_id')}, not of {task_id}"
                )
        for record, found in zip(conversion.records, before, strict=True):
            self.events.extend(writing.sign(event) for event in conversion.history(record, found))
            self._known[record["container_id"]] = merge(found, record, self.now)
        self.records.extend(conversion.records)
        self.held += len(conversion.held)

    def _before(self, container_id: str) -> Record | None:
        if container_id in self._known:
            return self._known[container_id]
        if ids.RUNTIME_ID.fullmatch(container_id):
            return None  # of its own task (``convert`` checked), whose records were read
        owner = self.store.task_of_container(container_id)
        return None if owner is None else (self.store.get_container(container_id) or {"task_id": owner})

    def write(
        self, task_definitions: Enricher | None = None, container_instances: AddressEnricher | None = None
    ) -> tuple[list[Record], int]:
        """Store what was taken: the records that are new, and how many events were. With ``task_definitions``,
        the records gain what their task definitions give (see ``server.task_definitions``); with
        ``container_instances``, those on no agent's record their EC2 instance's address
        (see ``server.container_instances``)."""
        if not self.records and not self.events:
            return [], 0
        records = self.records
        if container_instances is not None:
            records = container_instances.enrich(records, self._known)
        if task_definitions is not None:
            records = task_definitions.enrich(records)
        created, new_events = self.store.record_report(records, self.events, self.now)
        if task_definitions is not None:
            task_definitions.submit(created)
        if container_instances is not None:
            # Every record still without an address, not only the new ones: a task already on record (from before
            # this process learnt addresses) may send no other event for as long as it runs.
            container_instances.submit(records, self._known)
        return created, new_events


def _status(value: Any, path: str) -> str:
    status = STATUSES.get(value) if isinstance(value, str) else None
    if status is None:
        raise ValidationError(path, f"expected an ECS status ({', '.join(STATUSES)}), got {str(value)[:64]!r}")
    return status


def _optional_status(obj: dict, key: str, path: str) -> str:
    value = optional(obj, key)
    return "" if value is None else _status(value, f"{path}.{key}")


def _optional_text(obj: dict, key: str, path: str) -> str:
    value = optional(obj, key)
    return "" if value is None else text(value, f"{path}.{key}")


def _matching(obj: dict, key: str, path: str, grammar: re.Pattern[str], what: str, mandatory: bool = False) -> str:
    """``obj[key]`` when it matches ``grammar`` whole; "" when optional and absent (or null)."""
    value = required(obj, key, path) if mandatory else optional(obj, key)
    if value is None:
        return ""
    written = text(value, f"{path}.{key}")
    if not grammar.fullmatch(written):
        raise ValidationError(f"{path}.{key}", f"expected {what}, got {written[:80]!r}")
    return written


def _optional_list(obj: dict, key: str, path: str, limit: int) -> list:
    value = optional(obj, key)
    return [] if value is None else json_list(value, f"{path}.{key}", limit)


def _task_addresses(detail: dict, at: str) -> dict[int, list[str]]:
    """The task ENI's private addresses by IP version (awsvpc tasks; Fargate always), from ``attachments``."""
    found: dict[int, list[str]] = {4: [], 6: []}
    for i, raw in enumerate(_optional_list(detail, "attachments", at, MAX_ATTACHMENTS)):
        here = f"{at}.attachments[{i}]"
        for j, pair in enumerate(_optional_list(json_object(raw, here), "details", here, MAX_DETAILS)):
            pair = json_object(pair, f"{here}.details[{j}]")
            name = _optional_text(pair, "name", f"{here}.details[{j}]")
            version = ADDRESS_DETAILS.get(name)
            if version is None:
                _optional_text(pair, "value", f"{here}.details[{j}]")
                continue
            address = ip_address(required(pair, "value", f"{here}.details[{j}]"), f"{here}.details[{j}].value", version)
            found[version].append(address)
    return found


def _networks(task: dict[int, list[str]], container: dict, here: str) -> list[dict[str, Any]]:
    """The container's network in the agent's shape (docs/wire-format.md): awsvpc with the task ENI's addresses
    and those the container's ``networkInterfaces`` name, each once; none when neither names one."""
    found = {4: list(task[4]), 6: list(task[6])}
    for i, raw in enumerate(_optional_list(container, "networkInterfaces", here, MAX_INTERFACES)):
        interface = json_object(raw, f"{here}.networkInterfaces[{i}]")
        for key, version in (("privateIpv4Address", 4), ("ipv6Address", 6)):
            value = optional(interface, key)
            if value is not None:
                found[version].append(ip_address(value, f"{here}.networkInterfaces[{i}].{key}", version))
    if not found[4] and not found[6]:
        return []
    return [{
        "network_mode": "awsvpc",
        "ipv4_addresses": list(dict.fromkeys(found[4]))[:MAX_ADDRESSES],
        "ipv6_addresses": list(dict.fromkeys(found[6]))[:MAX_ADDRESSES],
    }]  # fmt: skip


def _ports(container: dict, here: str) -> list[dict[str, Any]]:
    """``networkBindings`` as the agent's ``ports`` (docs/wire-format.md), each mapping once: ECS lists a port
    bound on both IPv4 and IPv6 twice. A binding of a port range (no ``containerPort``) is no mapping."""
    ports: dict[tuple, dict[str, Any]] = {}
    for i, raw in enumerate(_optional_list(container, "networkBindings", here, MAX_PORTS)):
        at = f"{here}.networkBindings[{i}]"
        binding = json_object(raw, at)
        if optional(binding, "bindIP") is not None:
            bind_ip = text(binding["bindIP"], f"{at}.bindIP")
            ip_address(bind_ip, f"{at}.bindIP", 6 if ":" in bind_ip else 4)
        protocol = optional(binding, "protocol")
        if protocol is not None and protocol not in PROTOCOLS:
            raise ValidationError(f"{at}.protocol", f"expected one of {', '.join(PROTOCOLS)}, got {protocol!r:.64}")
        host_port = optional(binding, "hostPort")
        host_port = None if host_port is None else whole_number(host_port, f"{at}.hostPort", 0, 65535)
        container_port = optional(binding, "containerPort")
        if container_port is None:
            continue
        container_port = whole_number(container_port, f"{at}.containerPort", 1, 65535)
        port = {
            "container_port": container_port,
            "host_port": container_port if host_port is None else host_port,
            "protocol": protocol or "tcp",
        }
        ports.setdefault(tuple(port.values()), port)
    return list(ports.values())
