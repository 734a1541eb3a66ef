"""Docker labels and awsvpc ports from task definitions: once per definition for every replica, throttled, retried,
written by container name; and through the app against moto's ECS, a Fargate task from the feed as a target."""

from __future__ import annotations

import json
import time

import boto3
import pytest
from moto import mock_aws

from server.ecs import EcsNotConfigured, EcsNotFound, EcsUnavailable
from server.state import state
from server.task_definitions import MAX_LABELS_BYTES, TaskDefinitions, definition_arn, note_key
from tests.server import ecs_samples
from tests.server.samples import AUTH, TOKEN
from tests.upstream.helpers import REGION

NOW = "2026-11-20T08:02:00.000Z"
ARN = "arn:aws:ecs:eu-central-1:210987654321:task-definition/orders-api:31"
TASK = "arn:aws:ecs:eu-central-1:210987654321:task/web/"
LABELS = {"PROMETHEUS_EXPORTER_PORT": "8080", "PROMETHEUS_EXPORTER_PATH": "/metrics", "team": "orders"}


def definition(network_mode: str = "awsvpc", **labels_by_container: dict) -> dict:
    """A DescribeTaskDefinition ``taskDefinition``: ``api`` maps 8080/tcp and 9125/udp, ``log-router`` nothing."""
    return {
        "taskDefinitionArn": ARN,
        "networkMode": network_mode,
        "containerDefinitions": [
            {"name": "api", "portMappings": [
                {"containerPort": 8080, "hostPort": 8080 if network_mode == "awsvpc" else 0, "protocol": "tcp"},
                {"containerPort": 9125, "protocol": "udp"},
            ], "dockerLabels": labels_by_container.get("api", LABELS)},
            {"name": "log-router", "portMappings": [], "dockerLabels": labels_by_container.get("log-router", {})},
        ],
    }  # fmt: skip


class FakeEcs:
    """DescribeTaskDefinition answered from ``definitions`` (ARN → answer or exception), each call counted."""

    def __init__(self, **definitions):
        self.definitions = {ARN: definition(), **definitions}
        self.calls: list[str] = []

    def describe_task_definition(self, arn: str) -> dict:
        self.calls.append(arn)
        answer = self.definitions.get(arn, EcsNotFound("Unable to describe task definition."))
        if isinstance(answer, Exception):
            raise answer
        return answer


class Notes:
    """The store's notes as the worker uses them (``get_note``, ``put_note``), in memory, each write kept."""

    def __init__(self):
        self.notes: dict[str, str] = {}
        self.puts: list[str] = []

    def get_note(self, key: str) -> str | None:
        return self.notes.get(key)

    def put_note(self, key: str, value: str) -> None:
        assert len(key) <= 256 and len(value) <= 64 * 1024  # what every store keeps under one key
        self.puts.append(key)
        self.notes[key] = value


@pytest.fixture
def fake_ecs() -> FakeEcs:
    return FakeEcs()


@pytest.fixture
def notes() -> Notes:
    return Notes()


@pytest.fixture
def definitions(fake_ecs, store, notes, clock) -> TaskDefinitions:
    return TaskDefinitions(fake_ecs, store, notes=notes, clock=clock, autostart=False)


def feed_record(runtime: str, name: str, **fields) -> dict:
    task = ecs_samples.FARGATE_TASK
    return {"container_id": f"{task}-{runtime}", "container_name": name, "task_id": task, "task_arn": TASK + task,
            "task_definition_arn": ARN, "known_status": "RUNNING", "sample_time": NOW,
            "networks": json.dumps([ecs_samples_awsvpc()]), **fields}  # fmt: skip


def ecs_samples_awsvpc() -> dict:
    return {"network_mode": "awsvpc", "ipv4_addresses": ["10.20.3.41"], "ipv6_addresses": []}


API = feed_record("3107445921", "api")
ROUTER = feed_record("0482913377", "log-router")
API_PORTS = [{"container_port": 8080, "host_port": 8080, "protocol": "tcp"},
             {"container_port": 9125, "host_port": 9125, "protocol": "udp"}]  # fmt: skip


def stored(store, *records: dict) -> list[dict]:
    return store.upsert_containers([dict(r) for r in records], NOW)


def fields(store, record: dict) -> tuple:
    found = store.get_container(record["container_id"])
    labels = found.get("docker_labels")
    return (json.loads(labels) if labels else None, json.loads(found["ports"]) if found.get("ports") else [])


def test_the_records_a_report_created_get_their_labels_and_awsvpc_ports_by_container_name(definitions, store,
                                                                                           fake_ecs):  # fmt: skip
    created = stored(store, API, ROUTER)
    assert definitions.submit(created) == 2
    assert definitions.run_once() == 2
    assert fields(store, API) == (LABELS, API_PORTS)
    assert fields(store, ROUTER) == ({}, [])  # known to have none: not asked again
    assert store.get_container(API["container_id"])["container_port"] == "8080"
    assert fake_ecs.calls == [ARN]
    assert definitions.waiting() == 0


def test_once_known_a_definition_is_added_to_a_report_before_it_is_stored_at_no_cost(definitions, fake_ecs):
    assert definitions.enrich([API]) == [API]  # not known yet: queued to learn, nothing waits to be written
    assert (definitions.waiting(), definitions.run_once(), fake_ecs.calls) == (0, 0, [ARN])
    enriched = definitions.enrich([API, ROUTER, {**API, "ports": '[{"container_port":80}]'}])
    assert json.loads(enriched[0]["docker_labels"]) == LABELS and json.loads(enriched[0]["ports"]) == API_PORTS
    assert enriched[1]["docker_labels"] == "{}" and "ports" not in enriched[1]
    assert enriched[2]["ports"] == '[{"container_port":80}]'  # its own ports stay
    assert definitions.submit(enriched) == 0  # they have them: nothing to write afterwards
    assert fake_ecs.calls == [ARN]


def test_one_call_per_definition_for_every_replica_however_many_tasks(fake_ecs, store, notes, clock):
    one = TaskDefinitions(fake_ecs, store, notes=notes, clock=clock, autostart=False)
    other = TaskDefinitions(fake_ecs, store, notes=notes, clock=clock, autostart=False)
    tasks = [feed_record(f"{n:010d}", "api", container_id=f"{n:032x}-{n:010d}", task_id=f"{n:032x}")
             for n in range(50)]  # fmt: skip
    one.submit(stored(store, *tasks[:25]))
    other.submit(stored(store, *tasks[25:]))
    one.run_once()
    other.run_once()  # the replica finds the note the first left
    assert fake_ecs.calls == [ARN] and notes.puts == [note_key(ARN)] * 2  # its claim, then the definition
    assert all(fields(store, t)[0] == LABELS for t in tasks)
    assert other.enrich([API])[0]["docker_labels"]  # and keeps it in memory


def test_a_replica_waits_for_the_one_that_claimed_a_definition_and_takes_over_a_stale_claim(fake_ecs, store, clock):
    notes, wall = Notes(), [1_000_000.0]
    one, other = (
        TaskDefinitions(fake_ecs, store, notes=notes, clock=clock, wall_clock=lambda: wall[0], autostart=False)
        for _ in range(2)
    )
    first = ARN.replace(":31", ":28")
    fake_ecs.definitions[first] = definition()
    one.submit(stored(store, feed_record("0000000028", "api", task_definition_arn=first), API))
    one.run_once()  # asks about the first, claims the second and waits its interval
    other.submit(stored(store, ROUTER))
    other.run_once()
    assert fake_ecs.calls == [first]  # the other waits for the claimer
    clock.advance(1.0)
    one.run_once()
    clock.advance(2.0)
    other.run_once()
    assert fake_ecs.calls == [first, ARN] and fields(store, ROUTER) == ({}, [])  # from the claimer's note

    gone = ARN.replace(":31", ":29")
    fake_ecs.definitions[gone] = definition()
    notes.put_note(note_key(gone), json.dumps({"arn": gone, "claim": "a replica that died", "at": wall[0]}))
    other.submit(stored(store, feed_record("0000000029", "api", task_definition_arn=gone)))
    clock.advance(2.0)
    other.run_once()
    assert fake_ecs.calls == [first, ARN]
    wall[0] += 31.0
    clock.advance(2.0)
    other.run_once()
    assert fake_ecs.calls == [first, ARN, gone]


def test_calls_are_throttled_and_a_failure_is_retried_with_backoff(fake_ecs, store, notes, clock):
    second = ARN.replace(":31", ":32")
    fake_ecs.definitions[second] = EcsUnavailable("ECS is throttling requests", retry_after=5)
    definitions = TaskDefinitions(fake_ecs, store, notes=notes, clock=clock, autostart=False, min_interval=1.0)
    definitions.submit(stored(store, API, feed_record("0000000007", "api", task_definition_arn=second)))
    definitions.run_once()
    assert fake_ecs.calls == [ARN]  # one call per interval
    definitions.run_once()
    assert fake_ecs.calls == [ARN]
    clock.advance(1.0)
    definitions.run_once()
    assert fake_ecs.calls == [ARN, second]  # throttled: retried after a backoff, not at once
    fake_ecs.definitions[second] = {**definition(), "taskDefinitionArn": second}
    clock.advance(1.0)
    definitions.run_once()
    assert len(fake_ecs.calls) == 2
    clock.advance(60.0)
    definitions.run_once()
    assert len(fake_ecs.calls) == 3 and definitions.waiting() == 0


def test_a_definition_ecs_does_not_have_is_noted_and_not_asked_again(definitions, store, fake_ecs, notes, clock):
    gone = feed_record("0000000009", "api", task_definition_arn=ARN.replace(":31", ":30"))
    definitions.submit(stored(store, gone))
    definitions.run_once()
    assert fields(store, gone) == ({}, [])
    clock.advance(5.0)
    assert definitions.enrich([gone])[0]["docker_labels"] == "{}"
    definitions.run_once()
    assert len(fake_ecs.calls) == 1 and len(notes.puts) == 2


def test_without_aws_configuration_it_stops_asking_until_it_changes(fake_ecs, store, notes, clock):
    configuration = ["none"]
    fake_ecs.definitions[ARN] = EcsNotConfigured("no AWS region for the ECS API")
    definitions = TaskDefinitions(fake_ecs, store, notes=notes, clock=clock, autostart=False,
                                  aws_configuration=lambda: configuration[0])  # fmt: skip
    definitions.submit(stored(store, API))
    definitions.run_once()
    assert definitions.submit([API]) == 0 and definitions.waiting() == 0
    configuration[0] = "a region now"
    fake_ecs.definitions[ARN] = definition()
    assert definitions.submit([API]) == 1
    clock.advance(1.0)
    definitions.run_once()
    assert fields(store, API) == (LABELS, API_PORTS)


def test_bridge_networking_gets_labels_but_no_ports_from_the_definition(definitions, store, fake_ecs):
    # The host port of a bridge container is chosen when it starts: only its events or its agent know it.
    fake_ecs.definitions[ARN] = definition("bridge")
    definitions.submit(stored(store, {**API, "networks": ""}))
    definitions.run_once()
    assert fields(store, API) == (LABELS, [])


def test_labels_are_bounded_and_the_agents_records_find_their_definition(definitions, store, fake_ecs):
    many = {f"label.{n:04d}": "v" * 100 for n in range(100)}
    fake_ecs.definitions[ARN] = definition(api=many)
    agent = {"container_id": "9f8e" * 16, "container_name": "api", "task_id": "0b1c" * 8,
             "task_arn": "arn:aws:ecs:eu-central-1:210987654321:task/default/" + "0b1c" * 8,
             "task_name": "orders-api", "task_version": "31", "known_status": "RUNNING", "sample_time": NOW,
             "ports": json.dumps(API_PORTS[:1])}  # fmt: skip
    assert definition_arn(agent) == ARN
    definitions.submit(stored(store, agent))
    definitions.run_once()
    labels = store.get_container(agent["container_id"])["docker_labels"]
    assert len(labels.encode()) <= MAX_LABELS_BYTES
    assert list(json.loads(labels)) == sorted(many)[: len(json.loads(labels))] and len(json.loads(labels)) > 30


# Through the app, against moto's ECS -------------------------------------------------------------------------------


def test_a_fargate_task_from_the_feed_becomes_a_target_with_its_labels(make_app, tmp_path):
    with mock_aws():
        ecs = boto3.client("ecs", region_name=REGION)
        arn = ecs.register_task_definition(
            family="orders-api", networkMode="awsvpc", requiresCompatibilities=["FARGATE"],
            containerDefinitions=[{"name": "api", "image": "registry.example/api:4.2.0", "memory": 512,
                                   "portMappings": [{"containerPort": 8080, "hostPort": 8080, "protocol": "tcp"}],
                                   "dockerLabels": LABELS}],
        )["taskDefinition"]["taskDefinitionArn"]  # fmt: skip
        app = make_app({"store": f"sqlite:///{tmp_path}/m.sqlite3", "token": TOKEN, "service_names": False})
        client = app.test_client()
        running = ecs_samples.fargate_lifecycle()[2]
        running["detail"]["taskDefinitionArn"] = arn
        running["detail"]["containers"] = running["detail"]["containers"][:1]
        assert client.post("/report/ecs-events", json=running, headers=AUTH).status_code == 200
        worker = state(app).task_definitions
        deadline = time.monotonic() + 10
        while client.get("/sd/prometheus").get_json() == [] and time.monotonic() < deadline:
            worker.wait_idle(1.0)
        (group,) = client.get("/sd/prometheus").get_json()
        assert group["targets"] == ["10.20.3.41:8080"]
        record = client.get(f"/query/container_id/{ecs_samples.API_RUNTIME_ID}/_all").get_json()
        assert json.loads(record["docker_labels"]) == LABELS
        assert worker.calls == 1


def test_records_a_report_queues_while_their_definition_is_written_are_written_too(fake_ecs, store, notes, clock):
    late = feed_record("0000000005", "api", container_id=f"{5:032x}-{5:010d}")
    stored(store, late)

    class Reporting:
        """The store, where a report queues another record of the definition in the middle of the worker's write."""

        def __getattr__(self, name):
            return getattr(store, name)

        def update_container(self, container_id, fields_):
            definitions.submit([late])
            store.update_container(container_id, fields_)

    definitions = TaskDefinitions(fake_ecs, Reporting(), notes=notes, clock=clock, autostart=False)
    definitions.submit(stored(store, API))
    definitions.run_once()
    definitions.run_once()
    assert fields(store, late) == (LABELS, API_PORTS) and definitions.waiting() == 0


def test_a_replica_that_does_not_know_the_definition_yet_keeps_the_ports_another_learnt(tmp_path):
    from server import create_app
    from testkit import reports

    settings = {"store": f"sqlite:///{tmp_path}/r.sqlite3", "token": TOKEN, "service_names": False}
    one, fresh = create_app(settings, ecs=FakeEcs()), create_app(settings, ecs=FakeEcs())
    arn = f"arn:aws:ecs:eu-central-1:210987654321:task/web/{reports.TASK_LONG}"
    networks = [{"network_mode": "awsvpc", "ipv4_addresses": ["10.0.5.9"]}]

    def resync(app, at: str) -> None:
        entry = reports.container(reports.API_ID, name="api", task_arn=arn, task_name="orders-api", task_version="31",
                                  ports=None, networks=networks, sample_time=at)  # fmt: skip
        assert (
            app.test_client().post("/report/map", json=reports.map_report(entry, full=True), headers=AUTH).status_code
        )
        assert state(app).task_definitions.wait_idle(5)

    def targets() -> list:
        return [g["targets"] for g in one.test_client().get("/sd/prometheus").get_json()]

    try:
        resync(one, "2026-11-25T15:00:00.000Z")
        learnt = targets()
        assert learnt and learnt[0] == ["10.0.5.9:8080"]
        resync(fresh, "2026-11-25T15:10:00.000Z")  # its worker has not learnt the definition when the report lands
        assert targets() == learnt
    finally:
        state(one).close()
        state(fresh).close()
