"""Whether the store answers, asked at most once per interval however often load balancers probe."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from server.store.base import Store, StoreError


class HealthCheck:
    def __init__(self, store: Store, interval: float, clock: Callable[[], float] = time.monotonic):
        self.store = store
        self.interval = interval
        self.clock = clock
        self._lock = threading.Lock()
        self._checked_at: float | None = None
        self._problem: str | None = None

    def problem(self) -> str | None:
        """None when the store answered at the last check, else what went wrong."""
        due = self._checked_at is None or self.clock() - self._checked_at >= self.interval
        # One probe asks the store; probes arriving meanwhile answer from the last check instead of queueing
        # behind a slow store (all but the very first, which has nothing to answer from).
        if due and self._lock.acquire(blocking=self._checked_at is None):
            try:
                try:
                    self.store.ping()
                    self._problem = None
                except StoreError as exc:
                    self._problem = str(exc)
                self._checked_at = self.clock()
            finally:
                self._lock.release()
        return self._problem
