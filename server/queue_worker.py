"""The worker thread shared by the queues that learn from AWS off the request path (``server.service_names``,
``server.task_definitions``, ``server.container_instances``): one ``BackgroundJob`` per queue, started by the first
thing queued, retired after ``idle_exit`` seconds with nothing to do, and pacing its calls to ``min_interval``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from server.background import BackgroundJob

log = logging.getLogger(__name__)


class QueueWorker:
    """A queue under ``_cond`` and the thread that works it: ``run_once`` takes everything due, while ``_busy``.

    A subclass says what its thread is called (``thread_name``), what it logs when a round fails
    (``failure_message``, to ``logger``), whether work is queued (``_has_work``; retries wait in ``_retries``, a heap of
    ``(due, seq, item)``) and how long to pause after a round (``_pause_after``).
    """

    thread_name = "queue-worker"
    failure_message = "worker failed; continuing"
    logger = log  # a subclass logs under its own module's name
    idle_exit: float
    clock: Callable[[], float]
    _retries: list[tuple[float, int, Any]]
    #: How long an AWS found unusable (no region, no credentials) is left alone unless its configuration changes.
    recheck: float
    _aws_configuration: Callable[[], object]
    _unusable: tuple[float, object] | None  # since when, and under which configuration
    _last_failure: str

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._busy = False
        # Started by the first thing queued, and again in a forked child (gunicorn --preload) or after it idled out.
        self._worker = BackgroundJob(self.thread_name, self._run, wake=self._notify_all)

    def run_once(self) -> int:
        """Work off everything due now; how many calls' worth it asked."""
        raise NotImplementedError

    def _has_work(self) -> bool:
        """Whether something is queued now (under ``_cond``)."""
        raise NotImplementedError

    def _pause_after(self, asked: int) -> float:
        """Seconds to wait after a round that asked ``asked``, to bound the call rate (0 for none)."""
        raise NotImplementedError

    def _may_retry(self) -> bool:
        """While AWS is unusable: whether the configuration changed, or ``recheck`` passed, since we found out."""
        assert self._unusable is not None
        since, configuration = self._unusable
        if self.clock() - since < self.recheck and self._aws_configuration() == configuration:
            return False
        self._unusable = None
        return True

    def _warn_once(self, message: str, *args: object) -> None:
        # The same failure (no credentials, say) repeats for every round: warn when it changes, else debug.
        reason = str(args[-1])
        level = logging.DEBUG if reason == self._last_failure else logging.WARNING
        self._last_failure = reason
        self.logger.log(level, message, *args)

    def _ensure_worker(self) -> None:
        with self._cond:  # the lock the worker retires under: nothing queued meanwhile is left without one
            self._worker.start(after_stop=True)

    def _notify_all(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _run(self, stopping: threading.Event) -> None:
        idle_since = time.monotonic()
        while not stopping.is_set():
            with self._cond:
                if not self._has_work():
                    self._cond.wait(timeout=self._idle_wait())
                if self._has_work() or self._retries:
                    idle_since = time.monotonic()
                elif time.monotonic() - idle_since > self.idle_exit:
                    self._worker.retire()  # nothing to do for a while; the next submit starts a new worker
                    return
            if stopping.is_set():
                break
            try:
                asked = self.run_once()
            except Exception:  # the worker must outlive any one bad round
                self.logger.exception(self.failure_message)
                stopping.wait(1.0)
                continue
            pause = self._pause_after(asked)
            if pause > 0:
                stopping.wait(pause)

    def _idle_wait(self) -> float:
        if not self._retries:
            return 1.0
        return min(1.0, max(0.0, self._retries[0][0] - self.clock()))

    def wait_idle(self, timeout: float) -> bool:
        """Wait until nothing is queued or being taken (retries may still wait). True if it got there."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._has_work() or self._busy:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(timeout=remaining)
        return True

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the worker thread; what is queued is left."""
        self._worker.stop(timeout)
