"""ECS task state changes through ``POST /report/ecs-events``, and what the query routes then answer."""

from __future__ import annotations

import copy
import random
from collections import Counter

import pytest

from server.ecs_events import MAX_VERSION, convert
from server.records import event_id
from server.validation import ValidationError
from tests.server import samples
from tests.server.ecs_samples import (
    API_RUNTIME_ID,
    EC2_ARN,
    EC2_TASK,
    FARGATE_TASK,
    ROUTER_RUNTIME_ID,
    binding,
    container,
    ec2_event,
    eni,
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


# What a record holds and answers, as the routes show it ------------------------------------------------------------


def shown(client, container_id: str) -> dict:
    response = client.get(f"/query/container_id/{container_id}/_all")
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def history(client, container_id: str) -> list[tuple[str, str, str]]:
    return [(e["event"], e["from"], e["to"]) for e in client.get(f"/query/container_id/{container_id}/events").json]


def targets(client) -> list[str]:
    return [t for group in client.get("/sd/prometheus").get_json() for t in group["targets"]]


AWSVPC = {"network_mode": "awsvpc", "ipv4_addresses": ["10.20.3.41"], "ipv6_addresses": []}


# Finding 3: the feed's containers carry their addresses and ports -------------------------------------------------


def test_a_running_fargate_task_has_its_enis_addresses_and_no_ports_until_its_task_definition_says(client, send):
    running = lifecycle_event()
    running["detail"]["attachments"] = eni(
        ("subnetId", "subnet-0f1e2d3c4b5a69788"),
        ("privateIPv4Address", "10.20.3.41"),
        ("privateIPv6Address", "2a05:d014:a2b:7c00::29"),
    )
    send(running)
    record = shown(client, API_RUNTIME_ID)
    assert record["networks"] == [{**AWSVPC, "ipv6_addresses": ["2a05:d014:a2b:7c00::29"]}]
    assert (record["private_ip"], record["ports"]) == ("10.20.3.41", [])
    assert targets(client) == []  # an awsvpc container's port comes from its task definition, not its events


def test_a_fargate_container_with_a_binding_is_a_target_on_the_tasks_own_address(client, send):
    running = lifecycle_event()
    running["detail"]["containers"][0]["networkBindings"] = [binding(8080, 8080, "::"), binding(8080, 8080)]
    send(running)
    record = shown(client, API_RUNTIME_ID)
    assert record["networks"] == [AWSVPC]
    assert record["ports"] == [{"container_port": 8080, "host_port": 8080, "protocol": "tcp"}]
    assert targets(client) == ["10.20.3.41:8080"]


def test_an_ec2_containers_bindings_are_its_ports_and_neither_source_erases_the_others(client, send, report):
    agent = samples.container(samples.API_ID, task_arn=EC2_ARN, ports=None, sample_time="2026-11-20T08:01:30.000Z")
    report(agent)  # an older ECS agent: no Ports
    assert targets(client) == []
    bindings = [binding(8080, 32791), binding(8080, 32791, "::"), binding(9125, 32792, protocol="udp")]
    send(ec2_event(3, "RUNNING", [container("api", "RUNNING", samples.API_ID, networkBindings=bindings)]))
    expected = [
        {"container_port": 8080, "host_port": 32791, "protocol": "tcp"},
        {"container_port": 9125, "host_port": 32792, "protocol": "udp"},
    ]
    record = shown(client, samples.API_ID)
    assert (record["ports"], record["container_port"], record["instance_port"]) == (expected, "8080", "32791")
    assert (record["networks"], record.get("private_ip")) == ([], None)  # bridge networking: the host's address
    assert targets(client) == ["10.0.1.17:32791"]

    report({**agent, "sample_time": "2026-11-20T08:02:30.000Z"})  # the agent still sees no ports
    send(ec2_event(4, "RUNNING", [container("api", "RUNNING", samples.API_ID)]))  # nor this event
    assert shown(client, samples.API_ID)["ports"] == expected
    assert targets(client) == ["10.0.1.17:32791"]


# Finding 4: the agent's stop and the feed's are one history -------------------------------------------------------


def agent_event(kind: str, old: str, new: str, moment: str, container_id: str = samples.API_ID) -> dict:
    return {"event_id": event_id(container_id, kind, old, new), "container_id": container_id, "task_id": EC2_TASK,
            "event": kind, "from": old, "to": new, "timestamp": moment}  # fmt: skip


def feed_stop(**fields) -> dict:
    return ec2_event(
        4, "STOPPED", [container("api", "STOPPED", samples.API_ID, **fields)],
        stopCode="UserInitiated", stoppedReason="Task stopped by user",
    )  # fmt: skip


def agent_reports_the_life(report) -> None:
    running = samples.container(samples.API_ID, task_arn=EC2_ARN, sample_time="2026-11-20T08:01:30.000Z")
    report(running, events=[agent_event("appeared", "", "RUNNING", "2026-11-20T08:01:30.000Z")])
    stopped = {**running, "known_status": "STOPPED", "desired_status": "STOPPED",
               "sample_time": "2026-11-20T09:14:10.000Z"}  # fmt: skip
    report(stopped, events=[
        agent_event("desired_status", "RUNNING", "STOPPED", "2026-11-20T09:13:55.000Z"),
        agent_event("known_status", "RUNNING", "STOPPED", "2026-11-20T09:14:10.000Z"),
    ])  # fmt: skip


@pytest.mark.parametrize("agent_first", [True, False], ids=["agent first", "feed first"])
def test_a_stop_that_the_agent_and_the_feed_both_report_is_in_the_history_once(client, send, report, agent_first):
    if agent_first:
        agent_reports_the_life(report)
    send(feed_stop(exitCode=0))
    if not agent_first:
        agent_reports_the_life(report)
    send(feed_stop(exitCode=0))  # and a redelivery

    told = Counter(history(client, samples.API_ID))
    assert told[("known_status", "RUNNING", "STOPPED")] == told[("desired_status", "RUNNING", "STOPPED")] == 1
    assert [n for n in told.values() if n > 1] == []
    assert [kind for kind, _, _ in told].count("appeared") == 1
    assert not [change for change in told if change[0] == "known_status" and change[1:] != ("RUNNING", "STOPPED")
                and change[2] == "STOPPED"]  # fmt: skip


def test_a_stop_whose_event_cannot_tell_that_it_ran_takes_what_it_came_from_from_the_record(client, send, report):
    # A STOPPED event without an exit code or a task start: only the record knows the container was RUNNING.
    agent_reports_the_life(report)
    stop = feed_stop()
    del stop["detail"]["startedAt"]
    send(stop)
    assert Counter(change for change in history(client, samples.API_ID) if change[2] == "STOPPED") == {
        ("known_status", "RUNNING", "STOPPED"): 1,
        ("desired_status", "RUNNING", "STOPPED"): 1,
    }


# Finding 9: version orders a task's states, whatever their clocks say ---------------------------------------------


def without_last_seen(record: dict) -> dict:
    return {k: v for k, v in record.items() if k != "last_seen"}


def test_a_higher_version_is_applied_whole_though_its_time_is_earlier_than_the_records(client, send):
    running, stopped = fargate_lifecycle()[2:]
    running["detail"]["updatedAt"] = running["time"] = "2999-01-01T00:00:00Z"  # a clock far ahead
    send(running)
    assert shown(client, API_RUNTIME_ID)["sample_time"] < "2999"  # taken as now (plus the skew allowed)
    send(stopped)

    record = shown(client, API_RUNTIME_ID)
    assert (record["known_status"], record["desired_status"], record["stopped_at"], record["exit_code"]) == (
        "STOPPED", "STOPPED", "2026-11-20T09:14:06.900Z", "137",
    )  # fmt: skip
    assert (record["stop_code"], record["state_version"]) == ("EssentialContainerExited", "5")
    assert ("known_status", "RUNNING", "STOPPED") in history(client, API_RUNTIME_ID)

    # Resending repairs nothing that is right and breaks nothing.
    before, told = without_last_seen(record), history(client, API_RUNTIME_ID)
    send([stopped, running, stopped])
    assert without_last_seen(shown(client, API_RUNTIME_ID)) == before
    assert history(client, API_RUNTIME_ID) == told


def test_an_earlier_state_with_a_far_future_time_does_not_hold_back_the_later_ones(client, send):
    pending, _, running, stopped = fargate_lifecycle()
    pending["detail"]["updatedAt"] = "2999-01-01T00:00:00Z"
    pending["detail"]["containers"] = copy.deepcopy(running["detail"]["containers"])  # with IDs, still PENDING
    for container_ in pending["detail"]["containers"]:
        container_["lastStatus"] = "PENDING"
    send(pending)
    send(running)
    assert shown(client, API_RUNTIME_ID)["known_status"] == "RUNNING"
    send(stopped)
    assert shown(client, ROUTER_RUNTIME_ID)["known_status"] == "STOPPED"


def test_the_highest_version_allowed_is_taken_and_orders_as_a_number(client, send):
    running, stopped = fargate_lifecycle()[2:]
    running["detail"]["version"] = 9
    stopped["detail"]["version"] = MAX_VERSION
    send([stopped, running])
    assert shown(client, API_RUNTIME_ID)["state_version"] == str(MAX_VERSION)
    assert shown(client, API_RUNTIME_ID)["known_status"] == "STOPPED"


# A container belongs to the task it is sent with -------------------------------------------------------------------


def test_an_event_naming_another_tasks_docker_id_is_refused_and_changes_nothing(client, send, report):
    report(samples.container(samples.API_ID))  # on record under samples.TASK_LONG
    before = without_last_seen(shown(client, samples.API_ID))
    answer = send(feed_stop(exitCode=1), status=400)
    assert answer["message"] == (
        f"$.detail.containers[0].runtimeId: is on record as a container of task {samples.TASK_LONG}, not of {EC2_TASK}"
    )
    assert without_last_seen(shown(client, samples.API_ID)) == before
    assert client.get(f"/query/task_id/{EC2_TASK}").status_code == 404


def test_a_body_naming_one_docker_id_under_two_tasks_is_refused_whole(client, send):
    other = "arn:aws:ecs:eu-central-1:210987654321:task/default/" + "a" * 32
    body = [
        ec2_event(3, "RUNNING", [container("api", "RUNNING", samples.API_ID)]),
        task_event(2, "RUNNING", [container("api", "RUNNING", samples.API_ID)], task_arn=other, launch_type="EC2"),
    ]
    assert send(body, status=400)["message"].startswith("$[1].detail.containers[0].runtimeId: is on record as")
    assert client.get(f"/query/container_id/{samples.API_ID}").status_code == 404


# Where the feed runs, its STOPPED ends a life -----------------------------------------------------------------------


def test_the_feeds_stop_ends_the_life_whatever_the_agent_said_and_however_late(client, send, report):
    agent = samples.container(samples.API_ID, task_arn=EC2_ARN, sample_time="2026-11-20T10:00:00.000Z")
    report(agent)  # sampled later than ECS stopped the task: this agent lags, or its clock runs ahead
    send(feed_stop(exitCode=137, reason="OutOfMemoryError: Container killed due to memory usage"))
    record = shown(client, samples.API_ID)
    assert (record["known_status"], record["stopped_at"], record["exit_code"], record["stop_code"]) == (
        "STOPPED", "2026-11-20T09:14:06.900Z", "137", "UserInitiated",
    )  # fmt: skip
    assert record["reason"].startswith("OutOfMemoryError")
    assert targets(client) == []

    report({**agent, "sample_time": "2026-11-20T10:05:00.000Z"})  # still listed by a lagging agent
    again = shown(client, samples.API_ID)
    assert (again["known_status"], again["desired_status"], again["stopped_at"]) == (
        "STOPPED", "STOPPED", "2026-11-20T09:14:06.900Z",
    )  # fmt: skip
    assert targets(client) == []


def test_the_feeds_stop_replaces_the_agents_own_stop_time_and_keeps_its_host(client, send, report):
    agent_reports_the_life(report)  # stopped at the agent's sample, 09:14:10
    send(feed_stop(exitCode=143))
    record = shown(client, samples.API_ID)
    assert (record["stopped_at"], record["exit_code"], record["stopped_reason"]) == (
        "2026-11-20T09:14:06.900Z", "143", "Task stopped by user",
    )  # fmt: skip
    assert (record["instance_id"], record["instance_ip"]) == ("i-0123456789abcdef0", "10.0.1.17")
