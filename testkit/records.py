"""Records and events in the shape the schema hands them to a store, at times counted from one fixed moment."""

from __future__ import annotations

from datetime import datetime, timedelta

from server.records import format_time

T0 = datetime.fromisoformat("2026-11-25T15:00:00.000Z")
TASK = "0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e"
OTHER_TASK = "3e4f5a6b-7c8d-4e9f-a0b1-c2d3e4f5a6b7"


def at(minutes: float) -> str:
    return format_time(T0 + timedelta(minutes=minutes))


def cid(n: int, short: str = "") -> str:
    """A 64-hex container ID; IDs made with the same ``short`` share their first 12 digits."""
    head = (short or f"{n:012x}")[:12]
    return head + f"{n:052x}"


def record(n: int = 1, task: str = TASK, name: str = "", status: str = "RUNNING", sample: float = 0, **fields):
    """A report entry as the schema hands it to the store: a flat map of strings."""
    entry = {
        "container_id": fields.pop("container_id", cid(n)),
        "container_name": name or f"c{n}",
        "task_id": task,
        "task_arn": f"arn:aws:ecs:eu-central-1:210987654321:task/default/{task}",
        "known_status": status,
        "desired_status": "RUNNING",
        "cluster_name": "default",
        "image": "registry.example/api:2.3.1",
        "ports": '[{"container_port":8000,"host_port":49153,"protocol":"tcp"}]',
        "container_port": "8000",
        "instance_port": "49153",
        "sample_time": at(sample),
    }
    entry.update(fields)
    return entry


def event(event_id: str, n: int = 1, timestamp: float = 0, task: str = TASK, **fields) -> dict:
    return {
        "event_id": event_id,
        "container_id": cid(n),
        "task_id": task,
        "event": "known_status",
        "from": "PENDING",
        "to": "RUNNING",
        "timestamp": at(timestamp),
        **fields,
    }


FARGATE_TASK = "5b7f0c1e9a2d4e3fb6c8d0a1e2f3a4b5"


def runtime_id(n: int, task: str = FARGATE_TASK) -> str:
    """A Fargate runtime ID: the task's 32 hex digits, a dash and 10 digits."""
    return f"{task}-{n % 10}{n * 104729:09d}"


def feed_record(n: int, version: int, status: str = "RUNNING", sample: float = 0, **fields):
    """An entry of the ECS event feed for a Fargate container, at task state ``version``."""
    entry = record(n, task=FARGATE_TASK, status=status, sample=sample, container_id=runtime_id(n), **fields)
    for name in ("ports", "container_port", "instance_port"):
        entry.pop(name)
    entry.update(state_version=str(version), service_name="orders-api", launch_type="FARGATE")
    return entry
