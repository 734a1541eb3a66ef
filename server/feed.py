"""The ECS event feed: reads ECS task state changes from the SQS queue an EventBridge rule fills, and writes them
through the store. ``python -m server.feed``: configured like the server, plus ECS_ID_MAPPER_EVENTS_QUEUE_URL.

A message is deleted only once the store accepted what it says, so several feeds may read one queue and a crash
loses nothing (a repeat is stored once). A message that is no ECS task event is logged and left for the queue's
redrive policy to move to its dead-letter queue.
"""

from __future__ import annotations

import json
import logging
import re
import signal
import sys
import threading
from typing import Any

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

from server import aws, ecs_events, logs
from server import config as config_module
from server.backoff import Backoff
from server.container_instances import ContainerInstances
from server.ec2 import Ec2Client
from server.ecs import EcsClient
from server.records import utc_now
from server.store import Store, StoreError, open_store
from server.task_definitions import TaskDefinitions
from server.validation import ValidationError

log = logging.getLogger(__name__)

#: SQS's longest long poll and largest batch: the fewest requests for an idle or a busy queue.
WAIT_SECONDS = 20
BATCH = 10
#: ``https://sqs.REGION.amazonaws.com/ACCOUNT/NAME``: where the client's region comes from when none is set.
QUEUE_REGION = re.compile(r"https://sqs\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/")


class Feed:
    """One reader of the queue: ``poll`` is one cycle, ``run`` loops it until told to stop."""

    def __init__(
        self,
        store: Store,
        sqs: Any,
        queue_url: str,
        backoff: Backoff | None = None,
        wait_seconds: int = WAIT_SECONDS,
        task_definitions: TaskDefinitions | None = None,
        container_instances: ContainerInstances | None = None,
    ):
        self.store = store
        self.sqs = sqs
        self.queue_url = queue_url
        self.backoff = backoff or Backoff(1.0, 60.0)
        self.wait_seconds = wait_seconds
        #: Where the records' Docker labels and awsvpc ports come from; None leaves them out.
        self.task_definitions = task_definitions
        #: Where the address of an EC2 task's instance comes from (bridge and host networking); None leaves it out.
        self.container_instances = container_instances

    def poll(self) -> int:
        """Receive one batch, store what it says and delete the messages stored; returns how many were.

        Raises StoreError or the client's errors when the store or SQS failed: nothing of the batch is deleted.
        """
        if self.backoff.failures:
            # Each receive counts towards the dead-letter queue: take no message while the store is still down.
            self.store.ping()
        answer = self.sqs.receive_message(
            QueueUrl=self.queue_url, MaxNumberOfMessages=BATCH, WaitTimeSeconds=self.wait_seconds
        )
        accepted = []
        batch = ecs_events.Batch(self.store, utc_now())
        for message in answer.get("Messages", []):
            try:
                batch.add(ecs_events.convert(json.loads(message["Body"])))
            except (ValueError, RecursionError, ValidationError) as exc:
                log.warning("message %s is not a valid ECS task state change, left for the dead-letter queue: %s",
                            message.get("MessageId"), exc)  # fmt: skip
                continue
            accepted.append(message)
        batch.write(self.task_definitions, self.container_instances)
        if accepted:
            entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(accepted)]
            failed = self.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=entries).get("Failed", [])
            for failure in failed:  # delivered again later, and stored once: only a log line
                log.warning("could not delete message %s: %s", accepted[int(failure["Id"])]["MessageId"], failure)
        return len(accepted)

    def run(self, stop: threading.Event) -> None:
        """Poll until ``stop`` is set, waiting out failures with backoff; the batch in hand is finished first."""
        delay = 0.0
        while not stop.wait(delay):
            try:
                stored = self.poll()
            except (StoreError, BotoCoreError, ClientError) as exc:
                delay = self.backoff.fail()
                log.error("feed paused for %.1f s: %s", delay, exc)
                continue
            if self.backoff.failures:
                log.info("feed resumed")
            self.backoff.succeed()
            delay = 0.0
            if stored:
                log.debug("stored %d messages", stored)


def sqs_client(queue_url: str) -> Any:
    """The SQS client for ``queue_url``: the region is the environment's, else the queue URL's."""
    found = QUEUE_REGION.match(queue_url)
    region = aws.region() or (found.group(1) if found else None)
    # The read timeout outlasts a long poll; botocore's default (60 s) already does, said here so it stays so.
    return boto3.client("sqs", region_name=region, config=BotoConfig(read_timeout=WAIT_SECONDS + 40))


def main() -> None:
    try:
        cfg = config_module.load()
        if not cfg.events_queue_url:
            raise config_module.ConfigError(
                "ECS_ID_MAPPER_EVENTS_QUEUE_URL: required: the URL of the SQS queue the EventBridge rule fills"
            )
        store = open_store(cfg.store, cfg.retention_days)
    except config_module.ConfigError as exc:
        sys.exit(f"ecs-id-mapper-feed: {exc}")
    except (StoreError, ValueError, OSError) as exc:
        sys.exit(f"ecs-id-mapper-feed: ECS_ID_MAPPER_STORE: {exc}")
    logs.configure(cfg.log_level, cfg.log_format)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    log.info("feed reading %s into the %s store", cfg.events_queue_url, store.kind)
    # The feed is what records Fargate tasks where no agent runs: it learns their task definitions itself.
    ecs = EcsClient()
    task_definitions = TaskDefinitions(ecs, store) if cfg.task_definitions else None
    # And the addresses of the EC2 instances its agentless EC2 tasks run on.
    container_instances = ContainerInstances(ecs, Ec2Client(), store) if cfg.container_instances else None
    feed = Feed(store, sqs_client(cfg.events_queue_url), cfg.events_queue_url, task_definitions=task_definitions,
                container_instances=container_instances)  # fmt: skip
    try:
        feed.run(stop)
    finally:
        for worker in (task_definitions, container_instances):
            if worker is not None:
                worker.stop()
        store.close()
    log.info("feed stopped")


if __name__ == "__main__":
    main()
