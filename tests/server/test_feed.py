"""The ECS event feed against moto's SQS (and EventBridge delivering to it through a rule), with a real store."""

from __future__ import annotations

import json
import threading

import boto3
import pytest
from moto import mock_aws

from server.feed import Feed
from server.store import StoreUnavailable
from server.store.sqlite import SQLiteStore
from server.task_definitions import TaskDefinitions
from tests.server import ecs_samples
from tests.server.ecs_samples import API_RUNTIME_ID, FARGATE_TASK, ROUTER_RUNTIME_ID, fargate_lifecycle

PATTERN = {"source": ["aws.ecs"], "detail-type": ["ECS Task State Change"]}


class Queues:
    """The feed's queue with its dead-letter queue (after ``max_receives`` receives), in moto."""

    def __init__(self, sqs, max_receives: int = 2):
        self.sqs = sqs
        self.dlq_url = sqs.create_queue(QueueName="ecs-events-dlq")["QueueUrl"]
        self.dlq_arn = self.arn(self.dlq_url)
        policy = {"deadLetterTargetArn": self.dlq_arn, "maxReceiveCount": max_receives}
        # No visibility timeout: what the feed leaves is back at once, so the tests need not wait for it.
        self.url = sqs.create_queue(
            QueueName="ecs-events", Attributes={"VisibilityTimeout": "0", "RedrivePolicy": json.dumps(policy)}
        )["QueueUrl"]

    def arn(self, url: str) -> str:
        return self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

    def count(self, url: str | None = None) -> int:
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=url or self.url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return sum(int(v) for v in attributes.values())

    def send(self, *bodies) -> None:
        for body in bodies:
            self.sqs.send_message(QueueUrl=self.url, MessageBody=body if isinstance(body, str) else json.dumps(body))


class FlakyStore(SQLiteStore):
    """A SQLite store that can be taken down: writes and pings then fail as an unreachable backend's would."""

    down = False
    fail_events_only = False

    def upsert_containers(self, records_, now):
        if self.down and not self.fail_events_only:
            raise StoreUnavailable("store is down")
        return super().upsert_containers(records_, now)

    def record_report(self, records, events, now, full=False, host=None):
        # The store writes a report in one transaction: half of one is its records alone, then the failure.
        if self.down:
            self.upsert_containers(records, now)
            raise StoreUnavailable("store is down")
        return super().record_report(records, events, now, full, host)

    def add_events(self, events):
        if self.down:
            raise StoreUnavailable("store is down")
        return super().add_events(events)

    def ping(self):
        if self.down:
            raise StoreUnavailable("store is down")
        super().ping()


@pytest.fixture
def aws():
    with mock_aws():
        yield


@pytest.fixture
def queues(aws):
    return Queues(boto3.client("sqs"))


@pytest.fixture
def store(tmp_path):
    store = FlakyStore(str(tmp_path / "feed.sqlite3"))
    yield store
    store.close()


@pytest.fixture
def feed(store, queues):
    return Feed(store, queues.sqs, queues.url, wait_seconds=0)


def drain(feed: Feed, polls: int = 10) -> None:
    for _ in range(polls):
        feed.poll()


def test_eventbridge_delivers_a_fargate_task_through_the_rule_and_the_feed_stores_it(feed, queues, store):
    events = boto3.client("events")
    events.put_rule(Name="ecs-task-state", EventPattern=json.dumps(PATTERN))
    events.put_targets(Rule="ecs-task-state", Targets=[{"Id": "feed", "Arn": queues.arn(queues.url)}])
    lifecycle = fargate_lifecycle()
    # Out of order, with repeats: the last state first, then the earlier ones, then the last again.
    delivered = [lifecycle[3], lifecycle[1], lifecycle[0], lifecycle[2], lifecycle[1], lifecycle[3]]
    answer = events.put_events(Entries=[
        {"Source": e["source"], "DetailType": e["detail-type"], "Resources": e["resources"],
         "Detail": json.dumps(e["detail"])}
        for e in delivered
    ])  # fmt: skip
    assert answer["FailedEntryCount"] == 0
    assert queues.count() == len(delivered)

    drain(feed)
    assert queues.count() == 0 and queues.count(queues.dlq_url) == 0
    api = store.get_container(API_RUNTIME_ID)
    assert (api["known_status"], api["exit_code"], api["service_name"], api["state_version"]) == (
        "STOPPED", "137", "orders-api", "5",
    )  # fmt: skip
    assert api["stopped_reason"] == "Essential container in task exited"
    assert [r["container_id"] for r in store.containers_of_task(FARGATE_TASK)] == [API_RUNTIME_ID, ROUTER_RUNTIME_ID]
    assert len(store.events_of_task(FARGATE_TASK)) == 8


def test_malformed_messages_are_left_for_the_dead_letter_queue_and_the_rest_is_stored(feed, queues, store, caplog):
    good = fargate_lifecycle()[2]
    other = {**good, "detail-type": "ECS Container Instance State Change"}
    bad_id = json.loads(json.dumps(good))
    bad_id["detail"]["containers"][0]["runtimeId"] = "not-an-id"
    queues.send("not JSON {", other, bad_id, "[" * 100_000, good)

    assert feed.poll() == 1
    assert store.get_container(API_RUNTIME_ID)["known_status"] == "RUNNING"
    assert queues.count() == 4
    warned = [r.getMessage() for r in caplog.records if "dead-letter" in r.getMessage()]
    assert len(warned) == 4 and all("message " in w for w in warned)
    drain(feed)  # received again until the redrive policy moves them
    assert queues.count() == 0 and queues.count(queues.dlq_url) == 4


def test_the_store_down_mid_batch_deletes_nothing_and_loses_nothing(feed, queues, store):
    lifecycle = fargate_lifecycle()
    queues.send(*lifecycle)
    store.down = store.fail_events_only = True  # the records are written, then the events fail
    with pytest.raises(StoreUnavailable):
        feed.poll()
    assert queues.count() == len(lifecycle)
    store.down = False
    drain(feed)
    assert queues.count() == 0 and queues.count(queues.dlq_url) == 0
    assert store.get_container(API_RUNTIME_ID)["exit_code"] == "137"
    assert len(store.events_of_task(FARGATE_TASK)) == 8


def test_the_loop_backs_off_while_the_store_is_down_and_receives_nothing_until_it_is_back(feed, queues, store):
    queues.send(*fargate_lifecycle())
    store.down = True
    received = []
    original = queues.sqs.receive_message
    feed.sqs = type("Counting", (), {
        "receive_message": lambda _, **kw: received.append(1) or original(**kw),
        "delete_message_batch": lambda _, **kw: queues.sqs.delete_message_batch(**kw),
    })()  # fmt: skip
    feed.backoff.base = feed.backoff.cap = 0.01
    stop = threading.Event()
    loop = threading.Thread(target=feed.run, args=(stop,))
    loop.start()
    try:
        while feed.backoff.failures < 5:
            stop.wait(0.01)
        assert len(received) == 1  # the first batch; after it only pings until the store answers
        store.down = False
        while queues.count():
            stop.wait(0.01)
    finally:
        stop.set()
        loop.join(5)
    assert not loop.is_alive()
    assert store.get_container(ROUTER_RUNTIME_ID)["known_status"] == "STOPPED"
    assert queues.count(queues.dlq_url) == 0


def test_an_ec2_pending_event_without_runtime_ids_is_accepted_and_records_nothing_yet(feed, queues, store):
    pending = ecs_samples.task_event(
        1, "PENDING", [ecs_samples.container("worker", "PENDING", None)], task_arn=ecs_samples.EC2_ARN,
        launch_type="EC2",
    )  # fmt: skip
    queues.send(pending)
    assert feed.poll() == 1
    assert queues.count() == 0
    assert store.containers_of_task(ecs_samples.EC2_TASK) == []


def test_an_event_naming_another_tasks_container_is_left_for_the_dead_letter_queue(feed, queues, store, caplog):
    docker_id = "7c1e" * 16
    mine = ecs_samples.task_event(
        3, "RUNNING", [ecs_samples.container("worker", "RUNNING", docker_id)], task_arn=ecs_samples.EC2_ARN,
        launch_type="EC2",
    )  # fmt: skip
    other_arn = "arn:aws:ecs:eu-central-1:210987654321:task/default/" + "b" * 32
    theirs = ecs_samples.task_event(
        4, "STOPPED", [ecs_samples.container("worker", "STOPPED", docker_id, exitCode=1)], task_arn=other_arn,
        launch_type="EC2", group="service:intruder",
    )  # fmt: skip
    queues.send(mine, theirs)  # checked against the first whether it is stored yet or only in the same batch
    assert feed.poll() == 1
    record = store.get_container(docker_id)
    assert (record["task_id"], record["known_status"], record["service_name"]) == (
        ecs_samples.EC2_TASK, "RUNNING", "orders-api",
    )  # fmt: skip
    assert any(f"is on record as a container of task {ecs_samples.EC2_TASK}" in r.getMessage() for r in caplog.records)
    drain(feed)
    assert queues.count() == 0 and queues.count(queues.dlq_url) == 1
    assert store.get_container(docker_id)["known_status"] == "RUNNING"


def test_the_feed_gives_its_records_what_their_task_definitions_say(store, queues):
    class Ecs:
        def describe_task_definition(self, arn):
            api = {"name": "api", "portMappings": [{"containerPort": 8080}], "dockerLabels": {"team": "orders"}}
            return {"taskDefinitionArn": arn, "networkMode": "awsvpc", "containerDefinitions": [api]}

    task_definitions = TaskDefinitions(Ecs(), store, autostart=False)
    feed = Feed(store, queues.sqs, queues.url, wait_seconds=0, task_definitions=task_definitions)
    queues.send(fargate_lifecycle()[2])
    assert feed.poll() == 1
    task_definitions.run_once()
    api = store.get_container(API_RUNTIME_ID)
    assert (api["docker_labels"], api["ports"]) == (
        '{"team":"orders"}', '[{"container_port":8080,"host_port":8080,"protocol":"tcp"}]',
    )  # fmt: skip
    assert store.get_container(ROUTER_RUNTIME_ID)["docker_labels"] == "{}"
