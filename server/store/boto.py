"""What the stores on AWS (SimpleDB, DynamoDB) share: their URL options, a fork-safe pool, when a write is worth it."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from datetime import datetime
from typing import Any, TypeVar

from botocore.config import Config

from server.store.base import Record

T = TypeVar("T")
R = TypeVar("R")


def number(store: str, name: str, value: object, kind: type) -> Any:
    """A URL option as a non-negative number; ValueError naming the option otherwise."""
    try:
        parsed = kind(value)
    except (TypeError, ValueError):
        raise ValueError(f"{store} store option {name}={value!r} is not a number") from None
    if parsed < 0 or parsed != parsed:
        raise ValueError(f"{store} store option {name}={value!r} must not be negative")
    return parsed


def client_config(store: str, max_attempts: object, connect_timeout: object, read_timeout: object, pool: int) -> Config:
    """botocore's settings: standard retry mode (throttling and 5xx retried with backoff), bounded timeouts."""
    return Config(
        retries={"mode": "standard", "total_max_attempts": max(1, number(store, "max_attempts", max_attempts, int))},
        connect_timeout=number(store, "connect_timeout", connect_timeout, float),
        read_timeout=number(store, "read_timeout", read_timeout, float),
        max_pool_connections=pool,
    )


class Pool:
    """Runs requests side by side on a bounded thread pool, made again after a fork (gunicorn workers)."""

    def __init__(self, size: int, name: str):
        self.size = size
        self.name = name
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._executor: ThreadPoolExecutor | None = None

    def map(self, work: Callable[[T], R], inputs: Sequence[T]) -> list[R]:
        """``work`` over ``inputs``; waits for all, then raises the first failure."""
        if len(inputs) <= 1:
            return [work(x) for x in inputs]
        with self._lock:
            if self._executor is None or self._pid != os.getpid():
                self._executor = ThreadPoolExecutor(self.size, thread_name_prefix=self.name)
                self._pid = os.getpid()
            executor = self._executor
        futures = [executor.submit(work, x) for x in inputs]
        wait(futures)
        return [f.result() for f in futures]

    def close(self) -> None:
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None and self._pid == os.getpid():
            executor.shutdown(wait=True)


def worth_writing(stored: Record, new: Record, last_seen_resolution: float) -> bool:
    """Whether ``new`` differs from ``stored`` by more than a ``last_seen`` younger than the resolution (seconds).

    Keeping a recent ``last_seen`` instead of moving it makes an unchanged resync cost no write.
    """
    if new == stored:
        return False
    if {**new, "last_seen": ""} != {**stored, "last_seen": ""}:
        return True
    try:
        age = datetime.fromisoformat(new["last_seen"]) - datetime.fromisoformat(stored["last_seen"])
    except (KeyError, ValueError):
        return True
    return age.total_seconds() >= last_seen_resolution
