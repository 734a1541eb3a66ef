"""What the routes share: every collaborator the app factory builds, on one object, and its typed accessor."""

from __future__ import annotations

from dataclasses import dataclass, field

from flask import Flask, current_app

from server.config import Config
from server.container_instances import ContainerInstances
from server.ecs import EcsClient
from server.liveness import Leases
from server.lru import LRU
from server.metrics import ContainersOnRecord, RunningOnRecord
from server.newrelic import NewRelicClient
from server.retention import Pruner
from server.service_names import ServiceNames
from server.store import Store
from server.store.probe import HealthCheck
from server.task_definitions import TaskDefinitions
from server.tokens import Registry

#: The key of the state in ``app.extensions``.
EXTENSION = "ecs_id_mapper"


@dataclass
class AppState:
    """The app's configuration and collaborators, built once by ``create_app``."""

    config: Config
    store: Store
    ecs: EcsClient
    newrelic: NewRelicClient
    service_names: ServiceNames
    task_definitions: TaskDefinitions
    #: The address of the EC2 instance behind each container instance the ECS events name.
    container_instances: ContainerInstances
    health: HealthCheck
    #: The gauge of containers on record that ``/metrics`` reads from the store.
    containers_on_record: ContainersOnRecord
    #: The store's host leases, read at most every few seconds: which containers are lost (``server.liveness``).
    leases: Leases
    #: The gauge of containers reported RUNNING, running or lost, that ``/metrics`` reads from the store.
    running_on_record: RunningOnRecord
    #: full container ID → task ID; a container never changes task, so this never goes stale.
    task_of_container: LRU[str, str] = field(default_factory=lambda: LRU(50_000))
    #: task ID → its container IDs, once every one of them is STOPPED: ECS starts no container in a stopped task.
    containers_of_stopped_task: LRU[str, tuple[str, ...]] = field(default_factory=lambda: LRU(50_000))
    #: Removes expired containers in the background, where the store does not expire them itself.
    pruner: Pruner | None = None
    #: The tokens accepted, re-read from the token file when it changes (``server.tokens``).
    tokens: Registry = field(default_factory=Registry)

    def close(self) -> None:
        """Stop the background workers and close the store; the app answers no more requests after this."""
        self.service_names.stop()
        self.task_definitions.stop()
        self.container_instances.stop()
        if self.pruner is not None:
            self.pruner.stop()
        self.store.close()


def state(app: Flask | None = None) -> AppState:
    """The state of ``app``, else of the app handling the current request."""
    found: AppState = (app or current_app).extensions[EXTENSION]
    return found
