"""Exponential backoff with a cap and optional jitter: how long to leave an outside service alone after a failure."""

from __future__ import annotations

import random
import time
from collections.abc import Callable


class Backoff:
    """Delays that double from ``base`` up to ``cap``; with ``jitter``, each drawn from its upper half.

    ``delay(attempt)`` serves callers that count attempts themselves (one count per retried item); ``fail()``,
    ``active()`` and ``succeed()`` keep one count here, for a whole service that asked us to slow down.
    """

    def __init__(
        self,
        base: float,
        cap: float,
        *,
        jitter: bool = True,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ):
        self.base, self.cap, self.jitter, self.clock = base, cap, jitter, clock
        self._rng = rng or random.Random()
        self.failures = 0
        self.until = 0.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failure number ``attempt`` (1 for the first)."""
        delay = min(self.cap, self.base * 2 ** max(0, attempt - 1))
        if self.jitter:
            delay *= self._rng.uniform(0.5, 1.0)  # so that retries from many places do not come in step
        return delay

    def fail(self) -> float:
        """Count a failure and start waiting; returns how long."""
        self.failures += 1
        delay = self.delay(self.failures)
        self.until = self.clock() + delay
        return delay

    def active(self) -> bool:
        return self.clock() < self.until

    def remaining(self) -> float:
        return max(0.0, self.until - self.clock())

    def succeed(self) -> None:
        self.failures = 0
        self.until = 0.0
