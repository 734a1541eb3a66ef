"""Prometheus metrics: what the server counts and times (``server.exposition`` serves them).

Under gunicorn each worker counts for itself; ``python -m server`` points ``PROMETHEUS_MULTIPROC_DIR`` at a
directory the workers' values live in, and ``/metrics`` then sums every worker's files. Without it (tests, a
single process) the process's own registry is served. prometheus-client picks its value class when first
imported, so that variable must be set before this module is.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, cast

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily

from server.liveness import Leases, is_running
from server.records import utc_now
from server.store import Store, StoreError

log = logging.getLogger(__name__)

MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"
# The server's own registry, not prometheus-client's global one: importing this module twice (as the import
# tests do) must not register every metric twice.
REGISTRY = CollectorRegistry()
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

REQUESTS = Counter(
    "ecs_id_mapper_requests",
    "HTTP requests answered, by route template and status.",
    ["route", "status"],
    registry=REGISTRY,
)
REQUEST_SECONDS = Histogram(
    "ecs_id_mapper_request_duration_seconds",
    "Time to answer a request, by route template.",
    ["route"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
STORE_SECONDS = Histogram(
    "ecs_id_mapper_store_duration_seconds",
    "Time a store call took, by operation.",
    ["operation"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
STORE_ERRORS = Counter(
    "ecs_id_mapper_store_errors", "Store calls that failed, by operation.", ["operation"], registry=REGISTRY
)
REPORTS = Counter(
    "ecs_id_mapper_reports",
    "Agent reports, by kind (map, event) and outcome (accepted, rejected).",
    ["kind", "outcome"],
    registry=REGISTRY,
)
REPORTS_SHED = Counter(
    "ecs_id_mapper_reports_shed",
    "Reports refused with 503 and Retry-After because the process was behind (server.shedding).",
    registry=REGISTRY,
)
EVENTS_STORED = Counter(
    "ecs_id_mapper_events_stored", "Container events stored (new ones; repeats are not counted).", registry=REGISTRY
)
SERVICE_NAME_LOOKUPS = Counter(
    "ecs_id_mapper_service_name_lookups",
    "Tasks asked of ECS DescribeTasks for their service, by outcome (found, missing, error).",
    ["outcome"],
    registry=REGISTRY,
)
NEWRELIC_LOOKUPS = Counter(
    "ecs_id_mapper_newrelic_lookups",
    "New Relic URL lookups, by outcome (ok, error).",
    ["outcome"],
    registry=REGISTRY,
)


# Store calls worth timing: every data operation of the Store interface.
STORE_OPERATIONS = (
    "record_report",
    "upsert_containers",
    "add_events",
    "get_container",
    "task_of_container",
    "find_containers",
    "containers_of_task",
    "statuses_of_task",
    "containers_of_service",
    "running_containers",
    "address_holders",
    "update_container",
    "update_task",
    "update_tasks",
    "events_of_container",
    "events_of_task",
    "prune",
    "count_containers",
    "host_leases",
    "discovery_generation",
    "get_note",
    "put_note",
    "ping",
)


#: (route, status) → its duration histogram and its counter: ``labels()`` costs as much again as the update.
_request_series: dict[tuple[str, int], tuple[Any, Any]] = {}


def count_request(route: str | None, endpoint: str, status: int, seconds: float) -> None:
    """Count and time one answer (``server.requestlog`` calls this for every request): ``route`` is the template
    of the rule it matched and ``endpoint`` that rule's endpoint; None and '' when no rule matched."""
    route = route or "unmatched"
    found = _request_series.get((route, status))
    if found is None:  # two threads may both get here: labels() hands both the same children
        found = _request_series[route, status] = (REQUEST_SECONDS.labels(route), REQUESTS.labels(route, str(status)))
    found[0].observe(seconds)
    found[1].inc()
    if endpoint.startswith("report."):  # /report/map, /report/event
        REPORTS.labels(route.rsplit("/", 1)[-1], "accepted" if status < 400 else "rejected").inc()


class MeteredStore:
    """A store whose data operations are timed and whose failures are counted; everything else passes through."""

    def __init__(self, store: Store):
        self.store = store
        for operation in STORE_OPERATIONS:
            setattr(self, operation, _metered(operation, getattr(store, operation)))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def __setattr__(self, name: str, value: Any) -> None:
        # Settings such as ``clock`` belong to the wrapped store, which reads them.
        if name == "store" or name in STORE_OPERATIONS:
            object.__setattr__(self, name, value)
        else:
            setattr(self.store, name, value)


def metered(store: Store) -> Store:
    """``store`` with its data operations timed and its failures counted."""
    return cast(Store, MeteredStore(store))


def _metered(operation: str, call: Callable[..., Any]) -> Callable[..., Any]:
    seconds = STORE_SECONDS.labels(operation)
    errors = STORE_ERRORS.labels(operation)

    def metered(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return call(*args, **kwargs)
        except StoreError:
            errors.inc()
            raise
        finally:
            seconds.observe(time.perf_counter() - started)

    return metered


class ContainersOnRecord:
    """The gauge of containers on record, read from the store when scraped.

    Not a gauge each worker sets: the store is shared by every worker and replica, so any of them reads the same
    count. Each process asks the store at most every ``interval`` seconds, however often it is scraped; a store
    that cannot count cheaply (``count_containers`` gives None) or fails leaves the gauge out of that scrape.
    Not a background job (``server.background``): the scrape asks, so a worker nobody scrapes asks nothing and the
    count served is as fresh as ``interval`` allows.
    """

    NAME = "ecs_id_mapper_containers_on_record"

    def __init__(self, store: Store, interval: float = 15.0, clock: Callable[[], float] = time.monotonic):
        self.store = store
        self.interval = interval
        self.clock = clock
        self._count: int | None = None
        self._asked_at = -float("inf")
        self._lock = threading.Lock()  # a worker's threads may be scraped at once: one asks, the others wait

    def count(self) -> int | None:
        with self._lock:
            now = self.clock()
            if now - self._asked_at >= self.interval:
                self._asked_at = now  # a failing store is asked again only after the interval, like a working one
                try:
                    self._count = self.store.count_containers()
                except StoreError as error:
                    log.warning("cannot count the containers on record: %s", error)
                    self._count = None
            return self._count

    def collect(self) -> Iterator[GaugeMetricFamily]:
        count = self.count()
        if count is not None:
            yield GaugeMetricFamily(self.NAME, "Containers the store holds a record of, any status.", value=count)


class RunningOnRecord:
    """The gauge of containers whose last report says RUNNING, split by whether their host still reports
    (``running``) or its lease lapsed (``lost``, ``server.liveness``).

    Read like ``ContainersOnRecord``, from the store when scraped, but from the running records themselves (the
    query discovery makes, on every backend), so each process asks at most every ``interval`` seconds: a minute,
    about what one discovery refresh costs.
    """

    NAME = "ecs_id_mapper_containers_reported_running"

    def __init__(
        self, store: Store, leases: Leases, interval: float = 60.0, clock: Callable[[], float] = time.monotonic
    ):
        self.store = store
        self.leases = leases
        self.interval = interval
        self.clock = clock
        self._counts: dict[str, int] | None = None
        self._asked_at = -float("inf")
        self._lock = threading.Lock()

    def counts(self) -> dict[str, int] | None:
        """``{"running": n, "lost": m}``, or None when the store failed to answer."""
        with self._lock:
            now = self.clock()
            if now - self._asked_at >= self.interval:
                self._asked_at = now
                try:
                    shown = self.leases.annotate(self.store.running_containers(), utc_now())
                except StoreError as error:
                    log.warning("cannot count the running containers on record: %s", error)
                    self._counts = None
                else:
                    running = sum(1 for record in shown if is_running(record))
                    self._counts = {"running": running, "lost": len(shown) - running}
            return self._counts

    def collect(self) -> Iterator[GaugeMetricFamily]:
        counts = self.counts()
        if counts is not None:
            family = GaugeMetricFamily(
                self.NAME,
                "Containers whose last report says RUNNING, by status: running while their host reports, lost once "
                "its lease lapsed.",
                labels=["status"],
            )
            for status, count in counts.items():
                family.add_metric([status], count)
            yield family
