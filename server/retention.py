"""Retention for the stores that do not expire items themselves: a bounded prune in the background.

Every worker runs one daemon thread that, every ``interval`` seconds, asks the store to remove a few batches of
expired containers (see ``Store.prune``). It never runs inside a request, and each batch is small, so requests
wait at most for one short write. A process forked after the pruner started (a worker of ``gunicorn --preload``)
starts its own.
"""

from __future__ import annotations

import logging
import random
import threading
import time

from server.background import BackgroundJob
from server.store import Store, StoreError

log = logging.getLogger(__name__)

#: Seconds between prunes; containers removed per batch; batches per prune (the rest waits for the next one).
INTERVAL = 600.0
BATCH = 200
BATCHES = 10


class Pruner:
    """Removes expired containers from ``store`` in the background."""

    def __init__(self, store: Store, interval: float = INTERVAL, batch: int = BATCH, batches: int = BATCHES):
        self.store = store
        self.interval = interval
        self.batch = batch
        self.batches = batches
        # Started again in a forked child: no request starts it there, unlike the other jobs.
        self._job = BackgroundJob("retention", self._run, restart_after_fork=True)

    def run_once(self) -> int:
        """Prune up to ``batches`` batches; how many containers were removed."""
        removed = 0
        for _ in range(self.batches):
            if self._job.stopped:
                break
            count = self.store.prune(self.batch)
            removed += count
            if count < self.batch:
                break
        if removed:
            log.info("retention: removed %d expired containers and their events", removed)
        return removed

    def start(self) -> Pruner:
        self._job.start()
        return self

    def _run(self, stopping: threading.Event) -> None:
        # Workers started together spread their first prune over the interval.
        delay = random.uniform(0.1, 1.0) * self.interval
        while not stopping.wait(delay):
            started = time.monotonic()
            try:
                self.run_once()
            except StoreError as exc:
                log.warning("retention: prune failed, will try again: %s", exc)
            delay = max(0.0, self.interval - (time.monotonic() - started))

    def stop(self, timeout: float = 5.0) -> None:
        self._job.stop(timeout)
