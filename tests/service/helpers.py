"""Test data for the service tests: records and ECS task descriptions in the shapes the server sees."""

from __future__ import annotations

REGION = "eu-central-1"
ACCOUNT = "210987654321"
CLUSTER = "prod"


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def task_id(n: int) -> str:
    return f"{n:032x}"


def task_arn(n: int, cluster: str = CLUSTER) -> str:
    return f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/{cluster}/{task_id(n)}"


def container_id(n: int, c: int = 0) -> str:
    return f"{c:02x}{n:062x}"


def record(n: int, c: int = 0, cluster: str = CLUSTER, **fields: str) -> dict[str, str]:
    """A stored-shape record of container ``c`` of task ``n``."""
    return {
        "container_id": container_id(n, c),
        "container_name": f"app{c}",
        "task_id": task_id(n),
        "task_arn": task_arn(n, cluster),
        "task_name": "web",
        "task_version": "7",
        "cluster_name": cluster,
        "desired_status": "RUNNING",
        "known_status": "RUNNING",
        "region": REGION,
        "sample_time": "2026-11-25T15:05:38.123Z",
        **fields,
    }


def described(n: int, group: str, cluster: str = CLUSTER) -> dict:
    """A task as DescribeTasks shows it, reduced to what the server reads."""
    return {
        "taskArn": task_arn(n, cluster),
        "clusterArn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/{cluster}",
        "group": group,
        "lastStatus": "RUNNING",
    }
