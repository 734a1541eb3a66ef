"""Waiting between failed attempts: capped exponential backoff with jitter, and the server's `Retry-After`."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

MAX_RETRY_AFTER = 3600.0  # a server asking for longer than this is more likely wrong than busy
# A server that sheds load asks every agent it refused in the same second for the same wait: each adds up to half
# as much again at random, so that they do not all come back in the same second either.
RETRY_AFTER_JITTER = 0.5
# A server that says when to come back (429, 503 with Retry-After) is paced by it alone for this many failures in a
# row, however long the backoff has grown: it knows its backlog. Past them the backoff applies too (a long outage).
FOLLOW_RETRY_AFTER = 5


class Backoff:
    """Exponential delay between attempts: doubled per failure up to `cap`, the upper half jittered."""

    def __init__(self, base: float, cap: float, rng: random.Random | None = None) -> None:
        self.base = base
        self.cap = cap
        self.rng = rng or random.Random()
        self.failures = 0

    def next_delay(self, retry_after: float | None = None) -> float:
        """Seconds to wait after one more failure: the jittered backoff; or when the server said how long (429,
        503), that long plus up to half as much again at random (within `MAX_RETRY_AFTER`), and no less than the
        backoff once more than `FOLLOW_RETRY_AFTER` attempts in a row have failed."""
        self.failures += 1
        ceiling = min(self.cap, self.base * 2 ** min(self.failures - 1, 32))
        delay = ceiling / 2 + self.rng.uniform(0, ceiling / 2)
        if retry_after is None:
            return delay
        asked = min(retry_after, MAX_RETRY_AFTER)
        wait = min(asked + self.rng.uniform(0, asked * RETRY_AFTER_JITTER), MAX_RETRY_AFTER)
        return wait if self.failures <= FOLLOW_RETRY_AFTER else max(delay, wait)

    def reset(self) -> None:
        self.failures = 0


def retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds asked for by a `Retry-After` header (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - (now or datetime.now(UTC))).total_seconds())
