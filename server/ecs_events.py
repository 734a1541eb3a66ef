"""ECS task state changes (EventBridge events, ``detail`` shaped like a DescribeTasks task) as container records
and events: the one converter behind the event feed (``server.feed``) and ``POST /report/ecs-events``.

The mapping is in docs/ecs-events.md. Delivery is at least once and unordered, so a
conversion depends only on the event: ``detail.version`` goes into the record as ``state_version`` (the merge
rules in ``server.records`` let no lower version overwrite a higher one) and event IDs come from the container
and the change, as the agent makes them, so a repeat, or the agent reporting the same change, is stored once.
A container without ``runtimeId`` (on EC2, not created yet; or its image pull failed) has no ID to be recorded
by: it is left out until a later event of its task, a whole snapshot of the task, gives the ID.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from server import ids
from server.records import event_id
from server.schema import MAX_ITEMS
from server.store import Event, Record, Store
from server.validation import ValidationError, json_list, json_object, optional_text, required, text, timestamp

SOURCE = "aws.ecs"
DETAIL_TYPE = "ECS Task State Change"
#: A task definition holds at most 10 containers; this bounds what a hostile body can make us do.
MAX_CONTAINERS = 100
MAX_ATTACHMENTS = 16

#: ECS statuses (task and container) onto the record's PENDING / RUNNING / STOPPED, as the agent maps them.
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


@dataclass
class Conversion:
    """What one event says: records and events to store, and the containers still without a runtime ID."""

    records: list[Record] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    held: list[str] = field(default_factory=list)  # container names


def convert(event: Any, path: str = "$") -> Conversion:
    """The records and events of one EventBridge event; ``server.validation.ValidationError`` naming the offending
    path otherwise."""
    event = json_object(event, path)
    if event.get("source") != SOURCE or event.get("detail-type") != DETAIL_TYPE:
        raise ValidationError(path, f"not an ECS task state change: source {event.get('source')!r}, "
                              f"detail-type {event.get('detail-type')!r}")  # fmt: skip
    at = f"{path}.detail"
    detail = json_object(event.get("detail"), at)
    task_arn = text(required(detail, "taskArn", at), f"{at}.taskArn")
    task_id = ids.task_id_of_arn(task_arn)
    if ":task/" not in task_arn or not ids.TASK_ID.fullmatch(task_id):
        raise ValidationError(f"{at}.taskArn", f"expected a task ARN ending in a task ID, got {task_arn!r}")
    version = detail.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise ValidationError(f"{at}.version", f"expected a whole number, got {version!r}")
    task_status = _status(required(detail, "lastStatus", at), f"{at}.lastStatus")
    desired = _status(detail["desiredStatus"], f"{at}.desiredStatus") if detail.get("desiredStatus") else ""
    times = {
        name: timestamp(detail[name], f"{at}.{name}") if detail.get(name) else ""
        for name in ("createdAt", "startedAt", "stoppingAt", "stoppedAt", "executionStoppedAt", "updatedAt")
    }
    sample_time = times["updatedAt"] or timestamp(required(event, "time", path), f"{path}.time")
    group = optional_text(detail, "group", at)
    definition = optional_text(detail, "taskDefinitionArn", at).rpartition("/")[2]
    family, _, revision = definition.rpartition(":")
    task = {
        "task_id": task_id,
        "task_arn": task_arn,
        "task_name": family or group.partition(":")[2],
        "task_version": revision if family else "",
        "cluster_name": optional_text(detail, "clusterArn", at).rpartition("/")[2],
        "container_instance_arn": optional_text(detail, "containerInstanceArn", at),
        "region": optional_text(event, "region", path),
        "desired_status": desired,
        "sample_time": sample_time,
        "created_at": times["createdAt"],
        "started_at": times["startedAt"],
        "service_name": group.removeprefix("service:") if group.startswith("service:") else "",
        "launch_type": optional_text(detail, "launchType", at),
        "availability_zone": optional_text(detail, "availabilityZone", at),
        "private_ip": _task_ip(detail, at),
        "stopped_reason": optional_text(detail, "stoppedReason", at),
        "stop_code": optional_text(detail, "stopCode", at),
        "state_version": str(version),
    }
    conversion = Conversion()
    for i, raw in enumerate(json_list(detail.get("containers") or [], f"{at}.containers", MAX_CONTAINERS)):
        here = f"{at}.containers[{i}]"
        container = json_object(raw, here)
        name = text(required(container, "name", here), f"{here}.name")
        runtime_id = optional_text(container, "runtimeId", here).lower()
        if not runtime_id:
            conversion.held.append(name)
            continue
        if not ids.is_full_container_id(runtime_id):
            raise ValidationError(
                f"{here}.runtimeId", "expected a Docker ID (64 hex) or 32 hex digits, a dash, 10 digits"
            )
        status = _status(container["lastStatus"], f"{here}.lastStatus") if container.get("lastStatus") else ""
        exit_code = container.get("exitCode")
        if exit_code is not None and (isinstance(exit_code, bool) or not isinstance(exit_code, int)):
            raise ValidationError(f"{here}.exitCode", f"expected a whole number, got {exit_code!r}")
        record = {
            **task,
            "container_id": runtime_id,
            "container_name": name,
            "known_status": status or task_status,
            "image": optional_text(container, "image", here),
            "image_digest": optional_text(container, "imageDigest", here),
            "exit_code": "" if exit_code is None else str(exit_code),
            "reason": optional_text(container, "reason", here),
        }
        # Hints for the merge: when the container appeared and stopped, earlier than this event's sample time.
        hints = {"first_seen": times["createdAt"]}
        if record["known_status"] == "STOPPED":
            hints["stopped_at"] = times["stoppedAt"] or times["executionStoppedAt"] or sample_time
        conversion.records.append({**record, **{k: v for k, v in hints.items() if v}})
        conversion.events.extend(_events(record, times))
    return conversion


def convert_all(body: Any) -> list[Conversion]:
    """The conversions of ``POST /report/ecs-events``: one event or a list of them, checked whole."""
    if isinstance(body, list):
        return [convert(event, f"$[{i}]") for i, event in enumerate(json_list(body, "$", MAX_ITEMS))]
    return [convert(body)]


def store_conversions(store: Store, conversions: list[Conversion], now: str) -> tuple[list[Record], int]:
    """Write the conversions through ``store``: the records that are new, and how many events were."""
    records = [r for c in conversions for r in c.records]
    events = [e for c in conversions for e in c.events]
    return store.record_report(records, events, now)


def _status(value: Any, path: str) -> str:
    status = STATUSES.get(value.upper()) if isinstance(value, str) else None
    if status is None:
        raise ValidationError(path, f"unknown ECS status {value!r}")
    return status


def _task_ip(detail: dict, at: str) -> str:
    """The private IPv4 address of the task's ENI (awsvpc tasks; Fargate always), else ""."""
    for i, raw in enumerate(json_list(detail.get("attachments") or [], f"{at}.attachments", MAX_ATTACHMENTS)):
        attachment = json_object(raw, f"{at}.attachments[{i}]")
        for j, pair in enumerate(json_list(attachment.get("details") or [], f"{at}.attachments[{i}].details", 64)):
            pair = json_object(pair, f"{at}.attachments[{i}].details[{j}]")
            if pair.get("name") == "privateIPv4Address":
                return text(pair.get("value"), f"{at}.attachments[{i}].details[{j}].value")
    return ""


def _events(record: Record, times: dict[str, str]) -> list[Event]:
    """The changes the record's state implies, each with a time taken from the task, the same in every event of
    the task that implies it: an unordered or repeated delivery makes the same events."""
    status = record["known_status"]
    ran = status == "RUNNING" or (status == "STOPPED" and bool(record["exit_code"] or times["startedAt"]))
    sample = record["sample_time"]
    changes = [("appeared", "", "PENDING", times["createdAt"] or sample)]
    if ran:
        changes.append(("known_status", "PENDING", "RUNNING", times["startedAt"] or sample))
    if status == "STOPPED":
        stopped = times["stoppedAt"] or times["executionStoppedAt"] or sample
        changes.append(("known_status", "RUNNING" if ran else "PENDING", "STOPPED", stopped))
    if record["desired_status"] == "STOPPED":
        changes.append(("desired_status", "RUNNING", "STOPPED", times["stoppingAt"] or sample))
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
