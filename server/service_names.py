"""Service names for records, learnt from ECS DescribeTasks off the request path.

A report hands the tasks of its new records to ``ServiceNames.submit``, which only queues them; one worker
thread per process describes them in batches of up to 100 per cluster and writes ``service_name`` on every
record of a task whose ECS ``group`` is ``service:NAME``, the names of a batch in one store write (a
transaction per task cost more than the rest of the work). Failed lookups are retried later with backoff, and
calls are at most one a second (``min_interval``), so that the tasks of a busy second go out in one batch.

With no AWS region or no credentials at all (a laptop, an SQLite-only install) retrying cannot help: the worker
says so once, drops what it holds, and queues nothing more until the AWS configuration changes (``AWS_*``
variables, the config or credentials file) or ``recheck`` seconds have passed (an instance role may appear).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from server import aws
from server.backoff import Backoff
from server.ecs import DESCRIBE_BATCH, EcsClient, EcsError, EcsNotConfigured, EcsNotFound
from server.enrichment import store_service_names
from server.ids import task_id_of_arn
from server.lru import LRU
from server.metrics import SERVICE_NAME_LOOKUPS
from server.queue_worker import QueueWorker
from server.store import Record, Store, StoreError

log = logging.getLogger(__name__)

SERVICE_GROUP = "service:"


@dataclass
class PendingTask:
    """One task waiting for its service name."""

    cluster: str
    task: str  # what DescribeTasks is given: the ARN when known, else the task ID
    task_id: str
    attempts: int = 0


class ServiceNames(QueueWorker):
    """The queue of tasks whose service is not known yet, and the worker that asks ECS."""

    thread_name = "service-names"
    failure_message = "service-name worker failed; continuing"
    logger = log

    def __init__(
        self,
        ecs: EcsClient,
        store: Store,
        base_delay: float = 5.0,
        max_delay: float = 600.0,
        max_attempts: int = 8,
        max_pending: int = 10_000,
        remembered: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
        autostart: bool = True,
        idle_exit: float = 60.0,
        min_interval: float = 1.0,
        recheck: float = 3600.0,
        aws_configuration: Callable[[], object] = aws.configuration,
    ):
        self.ecs = ecs
        self.autostart = autostart
        self.idle_exit = idle_exit
        self.store = store
        self.backoff = Backoff(base_delay, max_delay)
        self.max_attempts = max_attempts
        self.max_pending = max_pending
        self.clock = clock
        super().__init__()
        self._incoming: deque[PendingTask] = deque()
        self._retries: list[tuple[float, int, PendingTask]] = []
        self._seq = itertools.count()
        self._pending: set[str] = set()  # task IDs queued, waiting to retry or being described
        # task ID → service name ("" for none), so that later containers of a task need no call
        self._known: LRU[str, str] = LRU(remembered)
        self._dropped = 0
        self._last_failure = ""
        self.min_interval = min_interval
        self.recheck = recheck
        self._aws_configuration = aws_configuration
        # While ECS cannot be asked at all: when we found out, and the configuration we found out with.
        self._unusable: tuple[float, object] | None = None

    # The request side: never blocks on ECS or the store.

    def submit(self, records: Iterable[Record]) -> int:
        """Queue the tasks of records that have no service name yet. Returns how many tasks were queued."""
        if self._unusable is not None and not self._may_retry():
            return 0
        queued = 0
        with self._cond:
            for record in records:
                task_id = record.get("task_id") or task_id_of_arn(record.get("task_arn", ""))
                if not task_id or record.get("service_name") or task_id in self._pending:
                    continue
                if len(self._pending) >= self.max_pending:
                    self._dropped += 1
                    if self._dropped == 1 or self._dropped % 1000 == 0:
                        log.warning("service-name queue full (%d tasks); %d dropped", self.max_pending, self._dropped)
                    continue
                cluster = record.get("cluster_name") or "default"
                self._incoming.append(PendingTask(cluster, record.get("task_arn") or task_id, task_id))
                self._pending.add(task_id)
                queued += 1
            if queued:
                self._cond.notify_all()
        if queued and self.autostart:
            self._ensure_worker()
        return queued

    # The worker side.

    def run_once(self) -> int:
        """Describe every task due now and write the service names. Returns how many tasks were asked."""
        now = self.clock()
        with self._cond:
            due = list(self._incoming)
            self._incoming.clear()
            while self._retries and self._retries[0][0] <= now:
                due.append(heapq.heappop(self._retries)[2])
            self._busy = bool(due)
        try:
            return self._process(due)
        finally:
            with self._cond:
                self._busy = False
                self._cond.notify_all()

    def _process(self, due: list[PendingTask]) -> int:
        asked = 0
        known: list[tuple[PendingTask, str]] = []
        by_cluster: dict[str, list[PendingTask]] = defaultdict(list)
        for task in due:
            name = self._known.get(task.task_id)
            if name is not None:
                known.append((task, name))
            else:
                by_cluster[task.cluster].append(task)
        self._write(known)
        for cluster, tasks in by_cluster.items():
            for start in range(0, len(tasks), DESCRIBE_BATCH):
                batch = tasks[start : start + DESCRIBE_BATCH]
                asked += len(batch)
                # Written batch by batch: a backlog's first names need not wait for its last DescribeTasks.
                self._write(self._describe(cluster, batch))
        return asked

    def _describe(self, cluster: str, batch: list[PendingTask]) -> list[tuple[PendingTask, str]]:
        """Ask ECS about one batch; the tasks it described, with their service names ("" for none)."""
        try:
            described, failures = self.ecs.describe_tasks(cluster, [t.task for t in batch])
        except EcsNotConfigured as exc:
            self._give_up(exc, batch)
            return []
        except EcsNotFound as exc:
            log.info("no service names for %d task(s) of cluster %s: %s", len(batch), cluster, exc)
            SERVICE_NAME_LOOKUPS.labels("missing").inc(len(batch))
            for task in batch:
                self._done(task)
            return []
        except EcsError as exc:
            self._warn_once("DescribeTasks failed for %d task(s) of cluster %s: %s", len(batch), cluster, exc)
            SERVICE_NAME_LOOKUPS.labels("error").inc(len(batch))
            for task in batch:
                self._retry(task)
            return []
        self._last_failure = ""
        groups = {task_id_of_arn(t.get("taskArn", "")): t.get("group") or "" for t in described}
        missing = {task_id_of_arn(f.get("arn", "")) for f in failures if f.get("reason") == "MISSING"}
        learnt = []
        outcomes: Counter[str] = Counter()
        for task in batch:
            if task.task_id in groups:
                group = groups[task.task_id]
                name = group[len(SERVICE_GROUP) :] if group.startswith(SERVICE_GROUP) else ""
                outcomes["found"] += 1
                self._remember(task.task_id, name)
                learnt.append((task, name))
            elif task.task_id in missing:
                # ECS forgets stopped tasks after about an hour; asking again will not help.
                outcomes["missing"] += 1
                self._remember(task.task_id, "")
                self._done(task)
            else:
                outcomes["error"] += 1
                self._retry(task)
        for outcome, count in outcomes.items():  # once per batch: each labels() and inc() costs microseconds
            SERVICE_NAME_LOOKUPS.labels(outcome).inc(count)
        return learnt

    def _give_up(self, exc: EcsNotConfigured, batch: list[PendingTask]) -> None:
        """ECS cannot be asked at all: drop every task held and queue none until the configuration changes."""
        self._warn_once(
            "service names are off until the AWS configuration changes: %s "
            "(ECS_ID_MAPPER_SERVICE_NAMES=false turns them off for good)",
            exc,
        )
        self._unusable = (self.clock(), self._aws_configuration())
        with self._cond:
            self._incoming.clear()
            self._retries.clear()
            self._pending.clear()
        for task in batch:
            self._done(task)

    def paused(self) -> bool:
        """True while ECS cannot be asked at all and nothing is queued for it."""
        return self._unusable is not None

    def _write(self, learnt: list[tuple[PendingTask, str]]) -> None:
        """Write the names learnt together: one store write for them all, not one per task."""
        named = {task.task_id: name for task, name in learnt if name}
        if named:
            try:
                store_service_names(self.store, named)
            except StoreError as exc:
                log.warning("could not store the services of %d task(s): %s", len(named), exc)
                for task, name in learnt:
                    if name:
                        self._retry(task)
                    else:
                        self._done(task)
                return
        for task, _ in learnt:
            self._done(task)

    def _done(self, task: PendingTask) -> None:
        with self._cond:
            self._pending.discard(task.task_id)

    def _retry(self, task: PendingTask) -> None:
        task.attempts += 1
        if task.attempts >= self.max_attempts:
            log.warning("gave up on the service name of task %s after %d attempts", task.task_id, task.attempts)
            self._done(task)
            return
        delay = self.backoff.delay(task.attempts)
        with self._cond:
            heapq.heappush(self._retries, (self.clock() + delay, next(self._seq), task))

    def _remember(self, task_id: str, name: str) -> None:
        self._known.put(task_id, name)

    # The thread (server.queue_worker): after a round that asked, wait min_interval; what arrives fills the next.

    def _has_work(self) -> bool:
        return bool(self._incoming)

    def _pause_after(self, asked: int) -> float:
        return self.min_interval if asked else 0.0

    def pending(self) -> int:
        """How many tasks wait for their service name."""
        with self._cond:
            return len(self._pending)
