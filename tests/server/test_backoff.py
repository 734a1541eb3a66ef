from __future__ import annotations

import random

from server.backoff import Backoff
from tests.clock import Clock


def test_delays_double_up_to_the_cap():
    backoff = Backoff(base=1, cap=30, jitter=False)
    assert [backoff.delay(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]


def test_jitter_keeps_each_delay_in_its_upper_half():
    backoff = Backoff(base=5, cap=600, rng=random.Random(3))
    for attempt in range(1, 12):
        full = min(600, 5 * 2 ** (attempt - 1))
        assert full / 2 <= backoff.delay(attempt) <= full


def test_a_service_is_left_alone_after_failures_until_it_succeeds():
    clock = Clock()
    backoff = Backoff(base=1, cap=30, jitter=False, clock=clock)
    assert not backoff.active()
    assert (backoff.fail(), backoff.fail()) == (1, 2)
    assert backoff.active() and backoff.remaining() == 2
    clock.advance(2)
    assert not backoff.active()
    backoff.succeed()
    assert backoff.fail() == 1
