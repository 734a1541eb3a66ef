"""Backoff: how long the agent waits after a failure, and what a server's Retry-After adds."""

from __future__ import annotations

import random
from datetime import UTC, datetime

from agent.backoff import FOLLOW_RETRY_AFTER, MAX_RETRY_AFTER, Backoff, retry_after


def test_backoff_doubles_up_to_the_cap_with_jitter_in_the_upper_half():
    backoff = Backoff(base=1, cap=60, rng=random.Random(1))
    delays = [backoff.next_delay() for _ in range(12)]
    for n, delay in enumerate(delays):
        ceiling = min(60, 2**n)
        assert ceiling / 2 <= delay <= ceiling
    assert len(set(delays[-4:])) == 4  # jittered, not in lockstep with every other agent
    backoff.reset()
    assert backoff.next_delay() <= 1


def test_backoff_honours_retry_after_within_reason():
    backoff = Backoff(base=1, cap=60)
    assert 120 <= backoff.next_delay(retry_after=120) <= 180
    assert backoff.next_delay(retry_after=10**9) == MAX_RETRY_AFTER


def test_retry_after_is_jittered_so_that_refused_agents_come_back_apart():
    waits = [Backoff(base=1, cap=60, rng=random.Random(seed)).next_delay(retry_after=10) for seed in range(200)]
    assert all(10 <= wait <= 15 for wait in waits)
    assert max(waits) - min(waits) > 4  # spread over most of the window, not all in one second


def test_the_server_paces_the_first_retries_then_the_backoff_applies_too():
    backoff = Backoff(base=1, cap=60, rng=random.Random(3))
    waits = [backoff.next_delay(retry_after=2) for _ in range(FOLLOW_RETRY_AFTER)]
    assert all(2 <= wait <= 3 for wait in waits)  # a storm: the server knows when it can take the report
    for _ in range(3):
        backoff.next_delay()
    assert backoff.next_delay(retry_after=2) >= 30  # a long outage keeps agents backing off


def test_retry_after_in_seconds_or_as_a_date():
    now = datetime(2026, 11, 25, 15, 0, 0, tzinfo=UTC)
    assert retry_after("30") == 30
    assert retry_after("Wed, 25 Nov 2026 15:01:30 GMT", now) == 90
    assert retry_after("Wed, 25 Nov 2026 14:00:00 GMT", now) == 0
    assert retry_after("soon") is None
    assert retry_after(None) is None
