"""DescribeTaskDefinition calls per 1,000 task starts (target: one per new revision), against moto's ECS.

Two replicas (two apps on one SQLite file, as two servers would be) take the starts of 1,000 tasks, in turn: half
Fargate tasks of a service, from the ECS events of their PENDING and RUNNING states (``/report/ecs-events``), half
EC2 tasks of another, from their agents' reports (``/report/map``). Each service deploys a new revision every 200 of
its tasks. Every DescribeTaskDefinition the replicas make is counted with botocore's event hooks; the workers run as
they do in the server (one call per second at most). ``.venv/bin/python -m bench.taskdef_calls``.
"""

from __future__ import annotations

import os
import tempfile
import time
from typing import Any

import boto3
from moto import mock_aws

from server import create_app
from server.ecs import EcsClient
from server.state import state

REGION = "eu-central-1"
ACCOUNT = "123456789012"  # moto's
TOKEN = "bench-token"
TASKS = 1000
PER_REVISION = 200  # tasks of one service between two deploys
REPLICAS = 2


def register(ecs: Any, family: str, network_mode: str, revisions: int) -> list[str]:
    container = {"name": "app", "image": f"registry.example/{family}:1", "memory": 256,
                 "portMappings": [{"containerPort": 8080, "protocol": "tcp"}],
                 "dockerLabels": {"PROMETHEUS_EXPORTER_PORT": "8080"}}  # fmt: skip
    return [
        ecs.register_task_definition(family=family, networkMode=network_mode, containerDefinitions=[container])[
            "taskDefinition"
        ]["taskDefinitionArn"]
        for _ in range(revisions)
    ]


def fargate_events(n: int, definition: str) -> list[dict]:
    task = f"{n:032x}"
    arn = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/web/{task}"
    events = []
    for version, status in ((1, "PENDING"), (2, "RUNNING")):
        detail = {
            "taskArn": arn, "clusterArn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/web", "group": "service:web",
            "taskDefinitionArn": definition, "launchType": "FARGATE", "lastStatus": status, "version": version,
            "desiredStatus": "RUNNING", "updatedAt": "2026-11-20T08:01:25Z",
            "attachments": [{"type": "eni", "details": [{"name": "privateIPv4Address", "value": "10.20.3.41"}]}],
            "containers": [{"name": "app", "lastStatus": status, "runtimeId": f"{task}-{n:010d}"}],
        }  # fmt: skip
        events.append({"source": "aws.ecs", "detail-type": "ECS Task State Change", "time": "2026-11-20T08:01:25Z",
                       "region": REGION, "detail": detail})  # fmt: skip
    return events


def agent_report(n: int, definition: str) -> dict:
    family, _, revision = definition.rpartition("/")[2].rpartition(":")
    task = f"{n:032x}"
    container = {
        "container_id": f"{n:064x}", "container_name": "app",
        "task_arn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/default/{task}", "task_name": family,
        "task_version": revision, "known_status": "RUNNING", "desired_status": "RUNNING",
        "ports": [{"container_port": 8080, "host_port": 32768 + n % 1000, "protocol": "tcp"}],
        "sample_time": "2026-11-20T08:01:25Z",
    }  # fmt: skip
    return {"host": {"instance_ip": "10.0.1.17", "cluster_name": "default"}, "containers": [container]}


def run() -> dict[str, Any]:
    """The task starts through the replicas: their calls, and what they learnt."""
    calls = [0]
    with mock_aws(), tempfile.TemporaryDirectory() as directory:
        setup = boto3.client("ecs", region_name=REGION)
        revisions = (TASKS // 2 + PER_REVISION - 1) // PER_REVISION
        fargate = register(setup, "web", "awsvpc", revisions)
        ec2 = register(setup, "worker", "bridge", revisions)

        def counted_client() -> Any:
            client = boto3.client("ecs", region_name=REGION)
            client.meta.events.register(
                "before-call.ecs.DescribeTaskDefinition", lambda **_: calls.__setitem__(0, calls[0] + 1)
            )
            return client

        settings = {"store": f"sqlite:///{directory}/bench.sqlite3", "token": TOKEN, "service_names": False,
                    "log_level": "WARNING"}  # fmt: skip
        apps = [create_app(settings, ecs=EcsClient(client_factory=counted_client)) for _ in range(REPLICAS)]
        clients = [app.test_client() for app in apps]
        headers = {"Authorization": f"Bearer {TOKEN}"}
        started = time.perf_counter()
        for n in range(TASKS):
            kind, number = n % 2, n // 2
            client = clients[number % REPLICAS]  # each replica takes tasks of both services
            definition = (fargate if kind == 0 else ec2)[number // PER_REVISION]
            if kind == 0:
                for event in fargate_events(n, definition):
                    assert client.post("/report/ecs-events", json=event, headers=headers).status_code == 200
            else:
                answer = client.post("/report/map", json=agent_report(n, definition), headers=headers)
                assert answer.status_code == 200, answer.get_json()
        workers = [state(app).task_definitions for app in apps]
        while any(w.waiting() or not w.wait_idle(1.0) for w in workers):
            time.sleep(0.2)
        running = state(apps[0]).store.running_containers()
        for app in apps:
            state(app).close()
    return {
        "calls": calls[0],
        "revisions": len(fargate) + len(ec2),
        "seconds": time.perf_counter() - started,
        "labelled": sum(1 for record in running if record.get("docker_labels")),
    }


def main() -> None:
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    os.environ["AWS_DEFAULT_REGION"] = REGION
    print(f"task starts: {TASKS} ({TASKS // 2} Fargate from ECS events, {TASKS // 2} EC2 from agents) through "
          f"{REPLICAS} replicas; each service deploys a new revision every {PER_REVISION} of its tasks")  # fmt: skip
    result = run()
    calls, revisions = result["calls"], result["revisions"]
    print(f"two replicas on one SQLite store, sharing its notes: {result['seconds']:.1f} s")
    print(f"  DescribeTaskDefinition calls: {calls} = {calls * 1000 / TASKS:.1f} per 1,000 task starts, "
          f"{calls / revisions:.2f} per new revision ({revisions} revisions; target: 1)")  # fmt: skip
    print(f"  running containers with their Docker labels: {result['labelled']} of {TASKS}")


if __name__ == "__main__":
    main()
