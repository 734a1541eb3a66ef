"""Load shedding for reports: under a storm of reports a worker answers 503 with ``Retry-After`` at once instead of
letting reports (and the lookups queued behind them) wait until their clients time out.

A report is refused before its body is read when it waited in its worker's queue longer than
``ECS_ID_MAPPER_REPORT_MAX_WAIT`` (``server.gunicorn_worker`` notes each request's wait), or when this process
already handles ``ECS_ID_MAPPER_REPORT_CONCURRENCY`` reports (the other threads stay free for lookups). Nothing of
a refused report is stored; the agent keeps it and sends it again after ``Retry-After``, with jitter.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable

from flask import g

from server.errors import ApiError
from server.gunicorn_worker import queue_wait
from server.metrics import REPORTS_SHED
from server.state import state

#: Seconds over which refusals and acceptances are counted to say how long a client should wait.
WINDOW = 10.0
#: Bounds of the ``Retry-After`` asked for, in seconds.
MIN_RETRY_AFTER, MAX_RETRY_AFTER = 1, 60
FIRST_DURATION, SMOOTHING = 0.1, 0.2


class Pace:
    """Refusals and acceptances of this process over the last ``WINDOW`` seconds, and the reports in flight."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, rng: random.Random | None = None):
        self.clock = clock
        self.rng = rng or random.Random()
        self.lock = threading.Lock()
        self.in_flight = 0
        self.refused: deque[float] = deque()
        self.accepted: deque[float] = deque()
        #: Seconds a report takes here, averaged over the last few (a first guess until one is measured).
        self.duration = FIRST_DURATION

    def _trim(self, now: float) -> None:
        for times in (self.refused, self.accepted):
            while times and times[0] < now - WINDOW:
                times.popleft()

    def enter(self, limit: int) -> float | None:
        """Count one more report in flight, unless ``limit`` are (0: no limit): when it entered, or None."""
        with self.lock:
            if limit and self.in_flight >= limit:
                return None
            self.in_flight += 1
            return self.clock()

    def leave(self, entered: float) -> None:
        with self.lock:
            self.in_flight -= 1
            now = self.clock()
            self.duration += (now - entered - self.duration) * SMOOTHING
            self.accepted.append(now)
            self._trim(now)

    def refuse(self) -> int:
        """Count a refusal; the seconds to ask the client to wait. The reports refused lately would take
        ``backlog`` seconds at the rate this process has been taking them; each client is given a moment at random
        within that time (within bounds), so that the refused come back spread out, not together. Agents add
        their own jitter on top."""
        now = self.clock()
        with self.lock:
            self.refused.append(now)
            self._trim(now)
            first = min(self.refused[0], self.accepted[0]) if self.accepted else self.refused[0]
            taken = len(self.accepted) / min(WINDOW, max(1.0, now - first))
            # Little's law: reports in flight over the time each takes is the rate while busy, which the count
            # of reports taken underestimates in the first seconds of a storm.
            rate = max(taken, max(1, self.in_flight) / max(self.duration, 0.001))
            backlog = len(self.refused) / rate
        longest = max(MIN_RETRY_AFTER, min(MAX_RETRY_AFTER, math.ceil(backlog)))
        return self.rng.randint(MIN_RETRY_AFTER, longest)


PACE = Pace()


def admit_report() -> None:
    """``before_request`` of the report routes: refuse with 503 and ``Retry-After`` when the worker is behind."""
    cfg = state().config
    waited = queue_wait()
    if cfg.report_max_wait and waited > cfg.report_max_wait:
        reason = f"the report waited {waited:.1f} s for a thread"
    elif (entered := PACE.enter(cfg.report_concurrency)) is None:
        reason = f"{cfg.report_concurrency} reports are in progress here"
    else:
        g.report_entered = entered
        return
    REPORTS_SHED.inc()
    retry_after = PACE.refuse()
    raise ApiError(
        f"busy with other reports ({reason}); send it again in {retry_after} s",
        503,
        headers={"Retry-After": str(retry_after)},
    )


def report_done(exc: BaseException | None = None) -> None:
    """``teardown_request`` of the report routes: the report admitted is no longer in flight."""
    entered = g.pop("report_entered", None)
    if entered is not None:
        PACE.leave(entered)
