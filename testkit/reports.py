"""Report bodies shaped like the agent's, built from the wire format in docs/wire-format.md."""

from __future__ import annotations

import copy

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

TASK_LONG = "0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e"
TASK_UUID = "3e4f5a6b-7c8d-4e9f-a0b1-c2d3e4f5a6b7"
ARN_LONG = f"arn:aws:ecs:eu-central-1:210987654321:task/default/{TASK_LONG}"
ARN_OLD = f"arn:aws:ecs:eu-central-1:210987654321:task/{TASK_UUID}"
API_ID = "9f8e7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a39281706f5e4d3c2b1a0"
SIDECAR_ID = "0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9"
MIGRATE_ID = "5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d"

HOST = {
    "instance_id": "i-0123456789abcdef0",
    "instance_ip": "10.0.1.17",
    "instance_type": "m5.large",
    "instance_az": "eu-central-1a",
    "region": "eu-central-1",
    "host_name": "ip-10-0-1-17",
    "cluster_name": "default",
    "container_instance_arn": (
        "arn:aws:ecs:eu-central-1:210987654321:container-instance/default/5a0c6f2e8d1b4c7a9e3f2d1c0b9a8e7d"
    ),
    "ecs_agent_version": "Amazon ECS Agent - v1.88.0 (4f2e1d0c)",
}


def container(container_id: str = API_ID, name: str = "api", task_arn: str = ARN_LONG, **fields) -> dict:
    entry = {
        "container_id": container_id,
        "container_name": name,
        "docker_name": f"ecs-{name}-42-{name}-c8e9f0a1b2c3d4e5f6a7",
        "image": f"registry.example/{name}:2.3.1",
        "image_id": "sha256:" + "1" * 64,
        "task_arn": task_arn,
        "task_name": name,
        "task_version": "42",
        "desired_status": "RUNNING",
        "known_status": "RUNNING",
        "created_at": "2026-11-20T08:12:03.417281938Z",
        "started_at": "2026-11-20T08:12:04.001Z",
        "ports": [{"container_port": 8000, "host_port": 49153, "protocol": "tcp"}],
        "sample_time": "2026-11-25T15:00:00.000Z",
    }
    entry.update(fields)
    return entry


def map_report(*containers: dict, events: list | None = None, full: bool = False, host: dict | None = None) -> dict:
    body = {"host": copy.deepcopy(host or HOST), "containers": list(containers), "full": full}
    if events is not None:
        body["events"] = events
    return body


def event(event_id: str, container_id: str = API_ID, task_id: str = TASK_LONG, **fields) -> dict:
    return {
        "event_id": event_id,
        "container_id": container_id,
        "task_id": task_id,
        "event": "known_status",
        "from": "PENDING",
        "to": "RUNNING",
        "timestamp": "2026-11-25T15:00:00.000Z",
        **fields,
    }
