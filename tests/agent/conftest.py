"""Fixtures for the agent's tests: a controllable clock, agents, scripted HTTP; tests/conftest.py cleans the env."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
import responses
from responses.registries import OrderedRegistry

from agent.config import Config
from agent.daemon import Agent
from tests.agent.fakes import ECS, IMDS, SERVER, TOKEN, FakeClock, Reports, Script


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_config() -> Callable[..., Config]:
    def make(**overrides: Any) -> Config:
        settings: dict[str, Any] = {
            "server_url": SERVER,
            "token": TOKEN,
            "ecs_agent_url": ECS,
            "imds_url": IMDS,
            "backoff_base": 0.0,  # tests move the clock themselves; backoff has its own tests
            "start_spread": 0.0,  # the first report at once; the spread has its own tests
        }
        return Config(**{**settings, **overrides})

    return make


@pytest.fixture
def make_agent(clock: FakeClock, make_config: Callable[..., Config]) -> Callable[..., Agent]:
    def make(session: Any = None, **overrides: Any) -> Agent:
        return Agent(
            make_config(**overrides),
            session or requests.Session(),
            clock=clock,
            now=clock.now,
            rng=random.Random(7),
        )

    return make


@pytest.fixture
def reports() -> Reports:
    return Reports()


@pytest.fixture
def script(reports: Reports) -> Iterator[Script]:
    """Scripted HTTP in order; the test fails if a request comes out of order or a scripted one never does."""
    with responses.RequestsMock(registry=OrderedRegistry, assert_all_requests_are_fired=True) as rsps:
        yield Script(rsps, reports)
