"""EventBridge ECS Task State Change events, built on the shape of the examples AWS documents."""

from __future__ import annotations

FARGATE_TASK = "5b7f0c1e9a2d4e3fb6c8d0a1e2f3a4b5"
FARGATE_ARN = f"arn:aws:ecs:eu-central-1:210987654321:task/web/{FARGATE_TASK}"
API_RUNTIME_ID = f"{FARGATE_TASK}-3107445921"
ROUTER_RUNTIME_ID = f"{FARGATE_TASK}-0482913377"
EC2_TASK = "e4d3c2b1a0f94e8d7c6b5a4f3e2d1c0b"
EC2_ARN = f"arn:aws:ecs:eu-central-1:210987654321:task/default/{EC2_TASK}"

#: Task times by state: each later state keeps the earlier ones, as DescribeTasks does.
TIMES = {
    "PENDING": {"createdAt": "2026-11-20T08:00:58.204Z"},
    "RUNNING": {"startedAt": "2026-11-20T08:01:24.6Z"},
    "STOPPED": {
        "stoppingAt": "2026-11-20T09:13:52.2Z",
        "executionStoppedAt": "2026-11-20T09:13:51.5Z",
        "stoppedAt": "2026-11-20T09:14:06.9Z",
    },
}
ORDER = ("PENDING", "RUNNING", "STOPPED")


def task_event(
    version: int,
    status: str,
    containers: list[dict],
    task_arn: str = FARGATE_ARN,
    launch_type: str = "FARGATE",
    group: str = "service:orders-api",
    **detail,
) -> dict:
    """One event of a task in ``status`` (PENDING, RUNNING or STOPPED) at ``version``."""
    times: dict[str, str] = {}
    for state in ORDER[: ORDER.index(status) + 1]:
        times.update(TIMES[state])
    updated = {"PENDING": "2026-11-20T08:01:00Z", "RUNNING": "2026-11-20T08:01:25Z"}.get(status, times.get("stoppedAt"))
    body = {
        "clusterArn": "arn:aws:ecs:eu-central-1:210987654321:cluster/" + task_arn.split("/")[1],
        "taskArn": task_arn,
        "taskDefinitionArn": "arn:aws:ecs:eu-central-1:210987654321:task-definition/orders-api:31",
        "group": group,
        "launchType": launch_type,
        "availabilityZone": "eu-central-1b",
        "lastStatus": status,
        "desiredStatus": "STOPPED" if status == "STOPPED" else "RUNNING",
        "version": version,
        "updatedAt": updated,
        "containers": containers,
        **times,
        **detail,
    }
    if launch_type == "FARGATE":
        body["attachments"] = [
            {"type": "eni", "details": [{"name": "privateIPv4Address", "value": "10.20.3.41"}]},
        ]
    return {
        "version": "0",
        "id": f"event-{task_arn[-6:]}-{version}",
        "detail-type": "ECS Task State Change",
        "source": "aws.ecs",
        "account": "210987654321",
        "time": updated,
        "region": "eu-central-1",
        "resources": [task_arn],
        "detail": body,
    }


def container(name: str, status: str, runtime_id: str | None, **fields) -> dict:
    entry = {"name": name, "lastStatus": status, "image": f"registry.example/{name}:4.2.0", **fields}
    if runtime_id is not None:
        entry["runtimeId"] = runtime_id
    return entry


def fargate_lifecycle() -> list[dict]:
    """A two-container Fargate service task from PENDING to STOPPED, as EventBridge emits it, in order."""
    return [
        task_event(1, "PENDING", [container("api", "PENDING", None), container("log-router", "PENDING", None)]),
        task_event(
            2,
            "PENDING",
            [
                container("api", "PENDING", API_RUNTIME_ID),
                container("log-router", "PENDING", ROUTER_RUNTIME_ID),
            ],
        ),
        task_event(
            3,
            "RUNNING",
            [
                container("api", "RUNNING", API_RUNTIME_ID),
                container("log-router", "RUNNING", ROUTER_RUNTIME_ID),
            ],
        ),
        task_event(
            5,
            "STOPPED",
            [
                container("api", "STOPPED", API_RUNTIME_ID, exitCode=137, reason="OutOfMemoryError: killed"),
                container("log-router", "STOPPED", ROUTER_RUNTIME_ID, exitCode=0),
            ],
            stopCode="EssentialContainerExited",
            stoppedReason="Essential container in task exited",
        ),
    ]
