"""ECS for the made-up fleet: moto's server, told about each task just before the poster reports its containers,
so that the server's service-name worker asks a real ECS API over HTTP and learns a name for most tasks.

Three tasks in four run in a service (``group`` ``service:NAME``), the fourth on its own (``family:api``), as on
a typical cluster. moto finds the tasks DescribeTasks names by scanning every task it holds with a substring test
per name; with the tens of thousands a busy benchmark starts that scan would cost moto more CPU than the server
spends, so here it looks them up by ID instead (same answers).
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from typing import Any

import boto3
from moto.core import DEFAULT_ACCOUNT_ID
from moto.ecs.exceptions import InvalidParameterException
from moto.ecs.models import Task, ecs_backends
from moto.moto_server.threaded_moto_server import ThreadedMotoServer

from bench import fleet

SERVICES = ("web", "api", "jobs")
CLUSTER = "default"
#: Reports in flight at once at most. One sender waiting for each answer fell behind 1,000 upserts/s once wrk
#: slowed the server's answers past 100 ms; reports from a fleet's many hosts do not wait for each other.
SENDERS = 4
FAMILY = "api"


def group_of(task_number: int) -> str:
    """The ECS group of the fleet's task ``task_number``: three in four belong to a service."""
    if task_number % 4 == 3:
        return f"family:{FAMILY}"
    return f"service:{SERVICES[task_number % len(SERVICES)]}"


class FleetEcs:
    """moto's ECS on a loopback port, in this process, holding the fleet's tasks as they are announced."""

    def __init__(self, port: int):
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        self.by_id: dict[str, Task] = {}
        self.backend: Any = None

    def __enter__(self) -> FleetEcs:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's server logs every request otherwise
        self.server.start()
        ecs = boto3.client(
            "ecs", endpoint_url=self.url, region_name=fleet.REGION, aws_access_key_id="bench",
            aws_secret_access_key="bench",
        )  # fmt: skip
        ecs.create_cluster(clusterName=CLUSTER)
        ecs.register_task_definition(
            family=FAMILY, containerDefinitions=[{"name": "api", "image": "registry.example/api:1", "memory": 256}]
        )
        self.backend = ecs_backends[DEFAULT_ACCOUNT_ID][fleet.REGION]
        self.backend.describe_tasks = self._describe_tasks
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()

    def announce(self, first: int, count: int, salt: str) -> None:
        """Start in ECS the tasks of containers ``first … first+count-1``."""
        cluster = self.backend.clusters[CLUSTER]
        definition = self.backend.task_definitions[FAMILY][1]
        for number in range(first // fleet.PER_TASK, (first + count - 1) // fleet.PER_TASK + 1):
            task_id = fleet.task_id(number * fleet.PER_TASK, salt)
            if task_id not in self.by_id:
                task = Task(cluster, definition, None, None, self.backend, group=group_of(number))
                task.id = task_id
                self.by_id[task_id] = task

    def _describe_tasks(self, cluster: str, tasks: list[str]) -> list[Task]:
        self.backend._get_cluster(cluster)  # ClusterNotFoundException as moto raises it
        if not tasks:
            raise InvalidParameterException("Tasks cannot be empty.")
        found = (self.by_id.get(name.rsplit("/", 1)[-1]) for name in tasks)
        return [task for task in found if task is not None]


def steady_poster(port: int, ecs_port: int, token: str, rate: float, salt: str, ready, go, stop, posted) -> None:
    """Post new containers at ``rate`` upserts per second in 100-container reports until ``stop`` is set, each
    report's tasks started in this process's ECS just before. Sets ``ready`` once ECS answers and waits for ``go``
    (the server up); ``posted`` (a shared integer) counts the containers the server took."""
    with FleetEcs(ecs_port) as ecs:
        ready.set()
        go.wait()
        numbers = itertools.count()
        began = time.monotonic()

        def send() -> None:
            while True:
                number = next(numbers)
                if stop.wait(max(0.0, began + number * fleet.REPORT_SIZE / rate - time.monotonic())):
                    return
                first = number * fleet.REPORT_SIZE
                ecs.announce(first, fleet.REPORT_SIZE, salt)
                poster = fleet.Poster(port, token)  # a connection per report, as from many hosts
                poster.post(fleet.report(first, salt=salt))
                poster.conn.close()
                with posted.get_lock():
                    posted.value += fleet.REPORT_SIZE

        senders = [threading.Thread(target=send) for _ in range(SENDERS)]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join()
