"""The store interface every backend implements, and the errors it raises.

A container record is a flat ``dict[str, str]`` (see ``server.records``); an event is a ``dict[str, str]`` with
``event_id, container_id, task_id, event, from, to, timestamp``. Backends hold data; the merge rules that say
how a report changes a record live in ``server.records`` so that every backend applies the same ones.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime

from server.records import format_time

Record = dict[str, str]
Event = dict[str, str]


class StoreError(Exception):
    """Base of the errors a store raises."""


class StoreUnavailable(StoreError):
    """The backend could not be reached or did not answer; the API maps this to 503."""


class Store(ABC):
    """Where container records and their events live."""

    #: Short name shown by /health.
    kind: str = "abstract"
    #: Seconds a container is kept after its last report (0: forever); backends take ``retention_days``.
    retention: float = 0.0
    #: True where the backend removes expired items itself (``prune`` then does nothing).
    expires_itself: bool = False
    #: Seconds a host stays alive after its last report (``ECS_ID_MAPPER_HOST_LEASE``; see ``server.liveness``).
    lease: float = 540.0
    #: Where the store reads the time, in seconds since the epoch (tests give a store a clock of its own).
    clock: Callable[[], float] = staticmethod(time.time)

    def keep_for(self, retention_days: float, clock: Callable[[], float] | None = None) -> None:
        """Set how long containers are kept after their last report (0: forever) and, for tests, the clock."""
        if not (retention_days >= 0):
            raise ValueError(f"retention_days must be 0 or more, got {retention_days!r}")
        self.retention = retention_days * 86_400
        if clock is not None:
            self.clock = clock

    def cutoff(self) -> str:
        """The ``last_seen`` before which a container has expired."""
        return format_time(datetime.fromtimestamp(self.clock() - self.retention, UTC))

    @abstractmethod
    def upsert_containers(self, records: Iterable[Record], now: str) -> list[Record]:
        """Merge each record into the store with ``server.records.merge`` (``now``: the server's ISO time).

        Returns the records that did not exist before, as stored.
        """

    @abstractmethod
    def add_events(self, events: Iterable[Event]) -> int:
        """Store each event whose ``event_id`` is not stored yet. Returns how many were new."""

    @abstractmethod
    def record_report(
        self, records: list[Record], events: list[Event], now: str, full: bool = False, host: Record | None = None
    ) -> tuple[list[Record], int]:
        """Store one report: its records (merged as ``upsert_containers`` does), its events (as ``add_events``), and
        the transitions its records made that its events do not name (``server.records.untold``).

        ``host``: the reporting host's fields; its lease (``host_leases``) is renewed when due
        (``server.liveness.renewal_due``). ``full``: the records are that host's whole snapshot (an agent's resync):
        every record of the host not stopped and not in it has vanished (``server.records.vanished``).
        Returns the records that are new and how many of the report's own events were.
        """

    @abstractmethod
    def host_leases(self) -> dict[str, str]:
        """Every host's last stored renewal: host key (``server.liveness.host_key``) → time, in one cheap read."""

    @abstractmethod
    def get_note(self, key: str) -> str | None:
        """The value kept under ``key`` by ``put_note``, or None."""

    @abstractmethod
    def put_note(self, key: str, value: str) -> None:
        """Keep ``value`` (a string of any length up to 64 KiB) under ``key`` (at most 256 characters) for every
        replica: what the server learnt once and must not ask again, such as a task definition."""

    @abstractmethod
    def get_container(self, container_id: str) -> Record | None:
        """The record of one full 64-hex container ID, or None."""

    def task_of_container(self, container_id: str) -> str | None:
        """The task ID of one full container ID, or None. Backends that can read less than the record override it."""
        record = self.get_container(container_id)
        return record["task_id"] if record else None

    @abstractmethod
    def find_containers(self, prefix: str, limit: int) -> list[Record]:
        """Records whose container ID starts with ``prefix`` (lowercase hex, 12 to 64 digits).

        Returns at most ``limit`` records, ordered by container ID.
        """

    @abstractmethod
    def containers_of_task(self, task_id: str) -> list[Record]:
        """Every record of one task, ordered by container name, then container ID."""

    def statuses_of_task(self, task_id: str) -> list[tuple[str, str]]:
        """The container ID and ``known_status`` of every record of one task, ordered as ``containers_of_task``.
        Backends that can read less than the records override it."""
        return [(r["container_id"], r.get("known_status", "")) for r in self.containers_of_task(task_id)]

    @abstractmethod
    def containers_of_service(self, cluster_name: str, service_name: str) -> list[Record]:
        """Every record whose ``cluster_name`` and ``service_name`` match, ordered by task ID, then name."""

    @abstractmethod
    def running_containers(self) -> list[Record]:
        """Every record whose ``known_status`` is RUNNING, in any order, read by a few queries, never a scan."""

    @abstractmethod
    def address_holders(self, key: str, at: str | None, limit: int) -> list[Record]:
        """The records found under ``key`` in the address index (``server.store.address_index``): a canonical
        address (``address_index.canonical``) or an EC2 instance (``address_index.instance_key``).

        Of the index entries of ``key`` whose ``since`` is at most ``at`` (every entry when ``at`` is None), the
        newest ``limit`` by ``since``, newest first; each record once, as stored now. One range read of the index
        (one Select on SimpleDB), then the records by ID, never a scan. Whether a record held the address at ``at``
        is for the caller to decide from the record (``server.addresses``).
        """

    @abstractmethod
    def update_container(self, container_id: str, fields: Record) -> None:
        """Set ``fields`` (cached lookups such as ``newrelic_url``) on one existing record; no-op if absent."""

    @abstractmethod
    def update_task(self, task_id: str, fields: Record) -> None:
        """Set ``fields`` (such as ``service_name``) on every record of one task."""

    def update_tasks(self, fields_by_task: Mapping[str, Record]) -> None:
        """``update_task`` for many tasks; backends that can write them together (one transaction) do."""
        for task_id, fields in fields_by_task.items():
            self.update_task(task_id, fields)

    @abstractmethod
    def events_of_container(self, container_id: str) -> list[Event]:
        """The container's events, oldest first (by timestamp, then arrival)."""

    @abstractmethod
    def events_of_task(self, task_id: str) -> list[Event]:
        """The events of every container of the task, oldest first (by timestamp, then arrival)."""

    @abstractmethod
    def prune(self, limit: int) -> int:
        """Remove up to ``limit`` expired containers with their events; returns how many containers went.

        A container expires ``retention_days`` (given when the store is opened; 0 keeps everything) after it was
        last reported (``last_seen``). An agent reports every container it sees at each resync, so a running
        container never expires however old; a stopped one expires that long after it vanished from its host.
        Backends that expire items themselves (DynamoDB's TTL) return 0.
        """

    def count_containers(self) -> int | None:
        """How many container records the store holds, or None where it cannot tell without reading them all.

        ``/metrics`` asks at scrape time (each process at most every few seconds), so it must be cheap: one
        request or an index count, never a scan of every record.
        """
        return None

    @abstractmethod
    def ping(self) -> None:
        """Return if the backend answers; raise StoreUnavailable if it does not."""

    def close(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing to release
        """Release connections."""
