"""A monotonic clock the test moves, for code that takes ``clock=time.monotonic``."""

from __future__ import annotations


class Clock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
