"""ECS task state changes through ``POST /report/ecs-events``, and what the query routes then answer."""

from __future__ import annotations

import copy
import random

import pytest

from server.ecs_events import convert
from server.validation import ValidationError
from tests.server import samples
from tests.server.ecs_samples import (
    API_RUNTIME_ID,
    EC2_ARN,
    EC2_TASK,
    FARGATE_TASK,
    ROUTER_RUNTIME_ID,
    container,
    fargate_lifecycle,
    task_event,
)
from tests.server.samples import AUTH


@pytest.fixture
def send(client):
    def post(body, status=200):
        response = client.post("/report/ecs-events", json=body, headers=AUTH)
        assert response.status_code == status, response.get_json()
        return response.get_json()

    return post


def test_a_fargate_task_out_of_order_and_repeated_is_recorded_once_at_its_last_state(client, send):
    lifecycle = fargate_lifecycle()
    shuffled = lifecycle + copy.deepcopy(lifecycle[1:3])
    random.Random(7).shuffle(shuffled)
    shuffled.sort(key=lambda e: e["detail"]["version"] != 5)  # the last state first: nothing may overwrite it
    for event in shuffled[:3]:
        send(event)
    send(shuffled[3:])

    assert client.get(f"/query/container_id/{API_RUNTIME_ID}").text == f"{FARGATE_TASK}\n"
    record = client.get(f"/query/container_id/{API_RUNTIME_ID.upper()}/_all").get_json()
    assert record["task_id"] == FARGATE_TASK
    assert record["service_name"] == "orders-api"
    assert (record["known_status"], record["exit_code"], record["reason"]) == (
        "STOPPED", "137", "OutOfMemoryError: killed",
    )  # fmt: skip
    assert (record["stopped_reason"], record["stop_code"]) == ("Essential container in task exited",
                                                               "EssentialContainerExited")  # fmt: skip
    assert (record["launch_type"], record["availability_zone"], record["private_ip"]) == (
        "FARGATE", "eu-central-1b", "10.20.3.41",
    )  # fmt: skip
    assert (record["cluster_name"], record["task_name"], record["state_version"]) == ("web", "orders-api", "5")
    assert record["first_seen"] == "2026-11-20T08:00:58.204Z"
    assert record["stopped_at"] == "2026-11-20T09:14:06.900Z"

    events = client.get(f"/query/container_id/{API_RUNTIME_ID}/events").get_json()
    assert [(e["event"], e["from"], e["to"]) for e in events] == [
        ("appeared", "", "PENDING"),
        ("known_status", "PENDING", "RUNNING"),
        ("desired_status", "RUNNING", "STOPPED"),
        ("known_status", "RUNNING", "STOPPED"),
    ]
    assert len(client.get(f"/query/task_id/{FARGATE_TASK}/events").get_json()) == 8


def test_a_fargate_task_id_and_runtime_id_prefixes_find_its_containers(client, send):
    send(fargate_lifecycle())
    assert client.get(f"/query/task_id/{FARGATE_TASK}").text == f"{API_RUNTIME_ID}\n{ROUTER_RUNTIME_ID}\n"
    ambiguous = client.get(f"/query/container_id/{FARGATE_TASK[:12]}")
    assert ambiguous.status_code == 409
    assert ambiguous.get_json()["matches"] == [ROUTER_RUNTIME_ID, API_RUNTIME_ID]
    assert client.get(f"/query/container_id/{FARGATE_TASK}-3").text == f"{FARGATE_TASK}\n"
    assert client.get(f"/query/container_id/{ROUTER_RUNTIME_ID[:36]}/_all").get_json()["exit_code"] == "0"
    for bad in (f"{FARGATE_TASK}-31074459211", f"{FARGATE_TASK}-31x", f"{FARGATE_TASK[:31]}-3107445921"):
        response = client.get(f"/query/container_id/{bad}")
        assert response.status_code == 400, bad
        assert response.get_json()["error"] == "bad_request"


def test_an_ec2_container_reported_by_the_agent_and_the_feed_is_one_record(client, send, report):
    docker_id = samples.API_ID
    agent_entry = samples.container(docker_id, task_arn=EC2_ARN, sample_time="2026-11-20T08:01:30.000Z")
    agent_events = [
        {"event_id": convert_id(docker_id, "appeared"), "container_id": docker_id, "task_id": EC2_TASK,
         "event": "appeared", "from": "", "to": "RUNNING", "timestamp": "2026-11-20T08:01:30.000Z"},
    ]  # fmt: skip
    report(agent_entry, events=agent_events)
    ec2 = {"task_arn": EC2_ARN, "launch_type": "EC2", "containerInstanceArn": samples.HOST["container_instance_arn"]}
    send(task_event(3, "RUNNING", [container("api", "RUNNING", docker_id)], **ec2))
    send(task_event(4, "STOPPED", [container("api", "STOPPED", docker_id, exitCode=1)], **ec2,
                    stoppedReason="Task stopped by user", stopCode="UserInitiated"))  # fmt: skip
    report({**agent_entry, "known_status": "RUNNING"})  # an agent report from before the stop, resent late

    record = client.get(f"/query/container_id/{docker_id}/_all").get_json()
    assert (record["instance_ip"], record["instance_id"], record["ports"]) == (
        "10.0.1.17", "i-0123456789abcdef0", agent_entry["ports"],
    )  # fmt: skip
    assert (record["service_name"], record["exit_code"], record["stopped_reason"]) == (
        "orders-api", "1", "Task stopped by user",
    )  # fmt: skip
    assert record["known_status"] == "STOPPED"
    events = client.get(f"/query/container_id/{docker_id}/events").get_json()
    assert [e["event"] for e in events].count("appeared") == 1
    assert len(events) == len({e["event_id"] for e in events}) == 4


def convert_id(container_id, kind, old="", new=""):
    from server.records import event_id

    return event_id(container_id, kind, old, new)


def test_a_container_whose_image_pull_failed_is_held_and_its_task_keeps_the_reason(client, send):
    failed = task_event(
        4,
        "STOPPED",
        [
            container("api", "STOPPED", None, reason="CannotPullContainerError: pull image manifest has been retried"),
            container("log-router", "STOPPED", ROUTER_RUNTIME_ID, exitCode=0),
        ],
        stopCode="TaskFailedToStart",
        stoppedReason="CannotPullContainerError: pull image manifest has been retried 5 time(s)",
    )
    assert send(failed) == {"containers": 1, "events": 4, "held": 1}
    router = client.get(f"/query/container_id/{ROUTER_RUNTIME_ID}/_all").get_json()
    assert router["stop_code"] == "TaskFailedToStart"
    assert router["stopped_reason"].startswith("CannotPullContainerError")
    assert client.get(f"/query/task_id/{FARGATE_TASK}").text == f"{ROUTER_RUNTIME_ID}\n"
    # A later event that gives the held container its ID records it.
    send(task_event(5, "STOPPED", [container("api", "STOPPED", API_RUNTIME_ID)]))
    assert client.get(f"/query/container_id/{API_RUNTIME_ID}").status_code == 200


def lifecycle_event():
    return fargate_lifecycle()[2]


def broken(change):
    event = lifecycle_event()
    change(event)
    return event


MALFORMED = {
    "not an object": [1, 2],
    "other detail-type": broken(lambda e: e.update({"detail-type": "ECS Container Instance State Change"})),
    "other source": broken(lambda e: e.update(source="my.app")),
    "no detail": broken(lambda e: e.pop("detail")),
    "no task ARN": broken(lambda e: e["detail"].pop("taskArn")),
    "task ARN without an ID": broken(lambda e: e["detail"].update(taskArn="arn:aws:ecs:x:1:task/web/zz")),
    "version a string": broken(lambda e: e["detail"].update(version="3")),
    "unknown status": broken(lambda e: e["detail"].update(lastStatus="EXPLODED")),
    "containers not a list": broken(lambda e: e["detail"].update(containers={"a": 1})),
    "runtime ID malformed": broken(lambda e: e["detail"]["containers"][0].update(runtimeId="abc-123")),
    "exit code a string": broken(lambda e: e["detail"]["containers"][0].update(exitCode="1")),
    "name missing": broken(lambda e: e["detail"]["containers"][0].pop("name")),
    "bad time": broken(lambda e: e["detail"].update(startedAt="yesterday")),
    "image too long": broken(lambda e: e["detail"]["containers"][0].update(image="x" * 1025)),
}


@pytest.mark.parametrize("body", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_event_is_a_400_and_nothing_of_its_body_is_stored(client, send, body):
    answer = send([fargate_lifecycle()[0], body] if isinstance(body, dict) else body, status=400)
    assert answer["error"] == "bad_request" and answer["message"].startswith("$")
    assert client.get(f"/query/task_id/{FARGATE_TASK}").status_code == 404


def test_the_report_token_is_required(client):
    response = client.post("/report/ecs-events", json=lifecycle_event())
    assert response.status_code == 401 and response.get_json()["error"] == "unauthorized"


def test_a_body_too_large_is_a_413(make_app, settings):
    client = make_app({**settings, "max_body_bytes": 1000}).test_client()
    response = client.post("/report/ecs-events", json=lifecycle_event(), headers=AUTH)
    assert response.status_code == 413 and response.get_json()["error"] == "request_entity_too_large"


def test_the_converter_says_where_an_event_is_wrong():
    with pytest.raises(ValidationError, match=r"^\$\.detail\.containers\[0\]\.runtimeId"):
        convert(MALFORMED["runtime ID malformed"])
