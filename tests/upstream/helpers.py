"""For the service tests: records and ECS task descriptions in the shapes the server sees, settings, a slow ECS."""

from __future__ import annotations

import json
import threading

import boto3

from server.config import Config, load
from server.ecs import EcsClient, EcsUnavailable

REGION = "eu-central-1"
ACCOUNT = "210987654321"
CLUSTER = "prod"


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


def run_tasks(ecs_client, groups: list[str | None], cluster: str = CLUSTER) -> list[str]:
    """Start one task per group on a moto cluster with one container instance; their ARNs."""
    ec2 = boto3.client("ec2", region_name=REGION)
    ecs_client.create_cluster(clusterName=cluster)
    image = ec2.describe_images()["Images"][0]["ImageId"]
    instance = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1)["Instances"][0]
    document = {"instanceId": instance["InstanceId"], "region": REGION}
    ecs_client.register_container_instance(cluster=cluster, instanceIdentityDocument=json.dumps(document))
    ecs_client.register_task_definition(
        family="web", containerDefinitions=[{"name": "app", "image": "app:1", "memory": 64, "cpu": 16}]
    )
    arns = []
    for group in groups:
        extra = {"group": group} if group else {}
        answer = ecs_client.run_task(cluster=cluster, taskDefinition="web", count=1, **extra)
        arns.extend(t["taskArn"] for t in answer["tasks"])
    return arns


def config(**values: str) -> Config:
    """The server's configuration from these values alone, no environment."""
    return load(values, environ={})


class SlowEcs:
    """An ECS client whose DescribeTasks waits until the test releases it."""

    def __init__(self, ecs: EcsClient, release: threading.Event):
        self.ecs = ecs
        self.release = release
        self.called = threading.Event()

    def describe_tasks(self, cluster, tasks):
        self.called.set()
        if not self.release.wait(10):
            raise EcsUnavailable("never released")
        return self.ecs.describe_tasks(cluster, tasks)
