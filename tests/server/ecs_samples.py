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


def binding(container_port: int, host_port: int, bind_ip: str = "0.0.0.0", protocol: str = "tcp") -> dict:
    return {"bindIP": bind_ip, "containerPort": container_port, "hostPort": host_port, "protocol": protocol}


def eni(*details: tuple[str, str]) -> list[dict]:
    """A task's ``attachments``: one ENI with these name-value ``details``."""
    return [{"id": "0d9e8f7a-6b5c-4d3e-2f1a-0b9c8d7e6f5a", "type": "eni", "status": "ATTACHED",
             "details": [{"name": name, "value": value} for name, value in details]}]  # fmt: skip


def ec2_event(version: int, status: str, containers: list[dict], **detail) -> dict:
    """An event of the EC2 task (bridge networking, no ENI) on the agent's container instance."""
    return task_event(
        version, status, containers, task_arn=EC2_ARN, launch_type="EC2", group="family:orders-api",
        containerInstanceArn=CONTAINER_INSTANCE_ARN, **detail,
    )  # fmt: skip


CONTAINER_INSTANCE_ARN = (
    "arn:aws:ecs:eu-central-1:210987654321:container-instance/default/5a0c6f2e8d1b4c7a9e3f2d1c0b9a8e7d"
)


def _changed(change) -> dict:
    """The RUNNING event of the Fargate lifecycle, changed by ``change`` (which may return a new detail)."""
    event = fargate_lifecycle()[2]
    replaced = change(event["detail"])
    if replaced is not None:
        event["detail"] = replaced
    return event


def _set(*path, value):
    """A change setting the value at ``path`` (keys and indexes) below ``detail``."""

    def change(detail):
        *parents, last = path
        for key in parents:
            detail = detail[key]
        detail[last] = value

    return change


def _address_detail(name: str, value) -> object:
    return _set("attachments", 0, "details", 0, value={"name": name, "value": value})


#: Bodies from outside that the route refuses (400, nothing stored), each outside the OpenAPI document.
HOSTILE = {
    "version 10^30": _changed(_set("version", value=10**30)),
    "version of 19 digits": _changed(_set("version", value=10**18)),
    "version negative": _changed(_set("version", value=-1)),
    "version a fraction": _changed(_set("version", value=3.5)),
    "version true": _changed(_set("version", value=True)),
    "version a string": _changed(_set("version", value="3")),
    "private IP with a line feed": _changed(_address_detail("privateIPv4Address", "999.1.1.1\nlocalhost")),
    "private IP with a prefix length": _changed(_address_detail("privateIPv4Address", "10.0.0.1/24")),
    "private IP in hex": _changed(_address_detail("privateIPv4Address", "0x7f.1")),
    "private IP empty": _changed(_address_detail("privateIPv4Address", "")),
    "private IP missing": _changed(_set("attachments", 0, "details", 0, value={"name": "privateIPv4Address"})),
    "private IPv6 with a zone and a header": _changed(_address_detail("privateIPv6Address", "fe80::1%\r\nX-Evil: 1")),
    "private IPv6 with a zone": _changed(_address_detail("privateIPv6Address", "fe80::1%eth0")),
    "private IPv6 that is IPv4": _changed(_address_detail("privateIPv6Address", "10.0.0.1")),
    "interface address not IPv4": _changed(
        _set("containers", 0, "networkInterfaces", value=[{"privateIpv4Address": "localhost"}])
    ),
    "bind IP not an address": _changed(
        _set("containers", 0, "networkBindings", value=[{"bindIP": "0.0.0.0 ", "containerPort": 80, "hostPort": 80}])
    ),
    "container port 0": _changed(_set("containers", 0, "networkBindings", value=[{"containerPort": 0}])),
    "host port 65536": _changed(
        _set("containers", 0, "networkBindings", value=[{"containerPort": 80, "hostPort": 65536}])
    ),
    "binding protocol TCP": _changed(
        _set("containers", 0, "networkBindings", value=[{"containerPort": 80, "protocol": "TCP"}])
    ),
    "cluster ARN a name": _changed(_set("clusterArn", value="web")),
    "cluster ARN of another service": _changed(
        _set("clusterArn", value="arn:aws:eks:eu-central-1:210987654321:cluster/web")
    ),
    "cluster ARN with a path": _changed(
        _set("clusterArn", value="arn:aws:ecs:eu-central-1:210987654321:cluster/../../etc")
    ),
    "group escaping its name": _changed(_set("group", value="service:../../x")),
    "group of another kind": _changed(_set("group", value="batch:nightly")),
    "group without a name": _changed(_set("group", value="service:")),
    "group empty": _changed(_set("group", value="")),
    "task definition ARN a family": _changed(_set("taskDefinitionArn", value="orders-api:31")),
    "container instance ARN with a newline": _changed(
        _set("containerInstanceArn", value=f"{CONTAINER_INSTANCE_ARN}\n")
    ),
    "exit code 2^31": _changed(_set("containers", 0, "exitCode", value=2**31)),
    "exit code below -2^31": _changed(_set("containers", 0, "exitCode", value=-(2**31) - 1)),
    "exit code 1e40": _changed(_set("containers", 0, "exitCode", value=1e40)),
    "exit code a string": _changed(_set("containers", 0, "exitCode", value="1")),
    "status lower-case": _changed(_set("lastStatus", value="running")),
    "status capitalised": _changed(_set("lastStatus", value="Stopped")),
    "status unknown": _changed(_set("lastStatus", value="EXPLODED")),
    "status empty": _changed(_set("lastStatus", value="")),
    "status 0": _changed(_set("lastStatus", value=0)),
    "desired status empty": _changed(_set("desiredStatus", value="")),
    "desired status lower-case": _changed(_set("desiredStatus", value="stopped")),
    "container status empty": _changed(_set("containers", 0, "lastStatus", value="")),
    "container status 0": _changed(_set("containers", 0, "lastStatus", value=0)),
    "containers an empty object": _changed(_set("containers", value={})),
    "containers 0": _changed(_set("containers", value=0)),
    "containers empty text": _changed(_set("containers", value="")),
    "attachments an empty object": _changed(_set("attachments", value={})),
    "startedAt empty": _changed(_set("startedAt", value="")),
    "startedAt 0": _changed(_set("startedAt", value=0)),
    "updatedAt empty": _changed(_set("updatedAt", value="")),
    "stoppedAt a date alone": _changed(_set("stoppedAt", value="2026-11-20")),
    "createdAt without seconds": _changed(_set("createdAt", value="2026-11-20T08:00Z")),
    "createdAt in 1999": _changed(_set("createdAt", value="1999-12-31T23:59:59Z")),
    "task ARN with a leading space": _changed(_set("taskArn", value=f" {FARGATE_ARN}")),
    "task ARN with extra segments": _changed(_set("taskArn", value=FARGATE_ARN.replace("/web/", "/web/extra/"))),
    "task ARN of another service": _changed(_set("taskArn", value=FARGATE_ARN.replace(":ecs:", ":batch:"))),
    "task ARN in upper case": _changed(_set("taskArn", value=FARGATE_ARN.upper())),
    "task ARN empty": _changed(_set("taskArn", value="")),
    "container of another task ARN": _changed(_set("containers", 0, "taskArn", value=EC2_ARN)),
    "runtime ID of another task": _changed(_set("containers", 0, "runtimeId", value=f"{EC2_TASK}-3107445921")),
    "runtime ID shared by two containers": _changed(_set("containers", 1, "runtimeId", value=API_RUNTIME_ID)),
    "runtime ID in upper case": _changed(_set("containers", 0, "runtimeId", value=API_RUNTIME_ID.upper())),
    "runtime ID empty": _changed(_set("containers", 0, "runtimeId", value="")),
    "container name twice": _changed(_set("containers", 1, "name", value="api")),
    "container name with a slash": _changed(_set("containers", 0, "name", value="api/../x")),
    "image digest with a newline": _changed(_set("containers", 0, "imageDigest", value="sha256:" + "a" * 64 + "\n")),
    "stop code with a space": _changed(_set("stopCode", value="Essential Container Exited")),
    "launch type lower-case": _changed(_set("launchType", value="fargate")),
    "region with a space": {**fargate_lifecycle()[2], "region": "eu-central-1 "},
    "time empty": {**fargate_lifecycle()[2], "time": ""},
    "time missing": {k: v for k, v in fargate_lifecycle()[2].items() if k != "time"},
    "detail a list": {**fargate_lifecycle()[2], "detail": []},
    "stopped reason of 1025 bytes": _changed(_set("stoppedReason", value="x" * 1025)),
    "reason with a NUL": _changed(_set("containers", 0, "reason", value="killed\x00")),
}
