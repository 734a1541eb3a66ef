"""End to end: ``python -m server.feed`` reading moto's SQS over HTTP into the SQLite file that ``python -m server``
(gunicorn) answers from; EventBridge delivers through a rule, as in an account."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import boto3
import pytest
import requests
from moto.server import ThreadedMotoServer

from tests.server.ecs_samples import API_RUNTIME_ID, FARGATE_TASK, fargate_lifecycle
from tests.server.samples import TOKEN
from tests.support import ROOT, ServerProcess, eventually, free_port

pytestmark = pytest.mark.slow


@pytest.fixture
def moto_url():
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


def test_the_feed_process_fills_the_record_the_server_answers(tmp_path, moto_url, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", moto_url)
    monkeypatch.setenv("AWS_ENDPOINT_URL_EVENTBRIDGE", moto_url)
    sqs, events = boto3.client("sqs"), boto3.client("events")
    dlq = sqs.create_queue(QueueName="ecs-events-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 5})
    queue = sqs.create_queue(QueueName="ecs-events", Attributes={"RedrivePolicy": redrive})["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(
        Name="ecs", EventPattern=json.dumps({"source": ["aws.ecs"], "detail-type": ["ECS Task State Change"]})
    )
    events.put_targets(Rule="ecs", Targets=[{"Id": "feed", "Arn": queue_arn}])

    store = f"sqlite:///{tmp_path}/mapper.sqlite3"
    env = {"ECS_ID_MAPPER_STORE": store, "ECS_ID_MAPPER_TOKEN": TOKEN, "ECS_ID_MAPPER_SERVICE_NAMES": "false"}
    with ServerProcess(env, tmp_path / "server.log") as server:
        feed_log = open(tmp_path / "feed.log", "wb")  # noqa: SIM115 - the child writes to it for its whole life
        feed = subprocess.Popen(
            [sys.executable, "-m", "server.feed"],
            cwd=ROOT,
            env={**server.env, "ECS_ID_MAPPER_EVENTS_QUEUE_URL": queue},
            stdout=feed_log,
            stderr=subprocess.STDOUT,
        )
        feed_log.close()
        try:
            for event in reversed(fargate_lifecycle()):
                events.put_events(Entries=[{
                    "Source": event["source"], "DetailType": event["detail-type"],
                    "Resources": event["resources"], "Detail": json.dumps(event["detail"]),
                }])  # fmt: skip
            sqs.send_message(QueueUrl=queue, MessageBody="not an event")

            def stopped_record():
                answer = requests.get(f"{server.url}/query/container_id/{API_RUNTIME_ID}/_all", timeout=5)
                return answer.status_code == 200 and answer.json()

            record = eventually(stopped_record, "the feed to record the Fargate container", timeout=60)
            assert (record["task_id"], record["service_name"], record["exit_code"]) == (
                FARGATE_TASK,
                "orders-api",
                "137",
            )
            assert record["stopped_reason"] == "Essential container in task exited"
            assert (
                requests.get(f"{server.url}/query/container_id/{API_RUNTIME_ID}", timeout=5).text == FARGATE_TASK + "\n"
            )
            assert feed.poll() is None, (tmp_path / "feed.log").read_text()
        finally:
            feed.send_signal(signal.SIGTERM)
            code = feed.wait(40)  # the batch in hand (a long poll of up to 20 s) is finished first
    log = (tmp_path / "feed.log").read_text()
    assert code == 0, log
    assert "left for the dead-letter queue" in log and "feed stopped" in log
