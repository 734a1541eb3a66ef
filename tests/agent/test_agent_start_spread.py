"""After a start the first report waits a random part of the start window, so that a fleet restarted at once does
not send every full snapshot in the same second; the host is read meanwhile, and a stop flushes at once."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from agent.config import ConfigError, load_config
from agent.daemon import Agent
from tests.agent.fakes import FakeHost, host_agent

EXAMPLE = (Path(__file__).parent / "payloads" / "ecs-agent-v1-tasks.json").read_bytes()


def started(window: float, seed: int = 0) -> tuple[FakeHost, Agent]:
    host = FakeHost()
    host.tasks = EXAMPLE
    agent = host_agent(host, start_spread=window)
    agent.delivery.backoff.rng = random.Random(seed)
    return host, agent


def test_the_first_report_waits_within_the_window_then_goes_as_one_full_snapshot():
    host, agent = started(30.0)
    assert 0 <= agent.first_report_delay <= 30
    clock = agent.clock
    while clock() < agent.delivery.next_attempt:
        agent.poll_once()
        assert host.reports.bodies == []  # read, not reported yet
        clock.advance(1)  # type: ignore[attr-defined]
    agent.poll_once()
    (body,) = host.reports.bodies
    assert body["full"] is True
    assert len(body["containers"]) == 3


def test_agents_started_together_report_apart():
    delays = []
    for seed in range(100):
        host = FakeHost()
        config_agent = host_agent(host, start_spread=60.0)
        delays.append(Agent(config_agent.config, host, rng=random.Random(seed)).first_report_delay)
    assert all(0 <= delay <= 60 for delay in delays)
    assert max(delays) - min(delays) > 45


def test_zero_reports_at_once():
    host, agent = started(0.0)
    agent.poll_once()
    assert len(host.reports.bodies) == 1


def test_a_stop_during_the_wait_flushes_at_once():
    host, agent = started(60.0)
    agent.first_report_delay = 60.0
    agent.delivery.next_attempt = agent.clock() + 60
    agent.poll_once()
    assert host.reports.bodies == []
    agent.flush(timeout=5)
    assert len(host.reports.bodies) == 1


def test_the_window_setting_and_its_default():
    url = {"ECS_ID_MAPPER_SERVER_URL": "http://127.0.0.1:5001"}
    assert load_config(url).start_window == 60.0  # 12 polls of 5 s
    assert load_config({**url, "ECS_ID_MAPPER_POLL_INTERVAL": "0.5"}).start_window == 6.0
    assert load_config({**url, "ECS_ID_MAPPER_START_SPREAD": "0"}).start_window == 0.0
    assert load_config({**url, "ECS_ID_MAPPER_START_SPREAD": "300"}).start_window == 300.0
    for bad in ("-1", "soon", "inf"):
        with pytest.raises(ConfigError, match="ECS_ID_MAPPER_START_SPREAD"):
            load_config({**url, "ECS_ID_MAPPER_START_SPREAD": bad})
