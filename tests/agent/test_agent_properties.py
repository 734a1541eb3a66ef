"""Property tests: whatever the ECS agent answers, a poll survives it and loses nothing it knew."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.agent.fakes import FakeHost, host_agent

EXAMPLE = (Path(__file__).parent / "payloads" / "ecs-agent-v1-tasks.json").read_bytes()
PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(cut=st.integers(0, len(EXAMPLE) - 1), junk=st.binary(max_size=8))
def test_a_truncated_answer_removes_nothing(cut, junk):
    host = FakeHost()
    agent = host_agent(host)
    host.tasks = EXAMPLE
    agent.poll_once()
    host.tasks = EXAMPLE[:cut] + junk
    agent.poll_once()
    host.tasks = EXAMPLE
    agent.poll_once()
    assert [e[1] for e in host.reports.events] == ["appeared"] * 3


@PROPERTY
@given(raw=st.binary(max_size=200))
def test_any_bytes_at_all_are_an_outage_at_worst(raw):
    host = FakeHost()
    agent = host_agent(host)
    host.tasks = host.metadata = raw
    agent.poll_once()
    assert agent.snapshot.containers == {}
