"""Property tests: whatever the ECS agent answers, no exception escapes a poll and every report is valid."""

from __future__ import annotations

import json
import random
from pathlib import Path

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from agent.config import Config
from agent.daemon import Agent
from tests.agent.fakes import (
    ECS,
    IMDS,
    METADATA,
    SERVER,
    TOKEN,
    FakeClock,
    FakeSession,
    Reports,
    container_id,
    long_arn,
    old_arn,
    response,
)

EXAMPLE = (Path(__file__).parent / "payloads" / "ecs-agent-v1-tasks.json").read_bytes()
PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
odd_text = st.one_of(
    st.text(max_size=30),
    st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1, max_size=3),
    st.just("x\x00y"),
    st.builds(lambda n, c: c * n, st.integers(500, 1100), st.sampled_from(["x", "é", "\U0001f433"])),
)
statuses = st.sampled_from(["PENDING", "RUNNING", "STOPPED", "NONE", "PULLED", "CREATED", "ZOMBIE", "running", "?"])
docker_ids = st.sampled_from([container_id(n) for n in range(6)] + [container_id(9).upper(), "abc", ""])
arns = st.sampled_from([long_arn(1), long_arn(2), old_arn(3), long_arn(4), "arn:aws:ecs:eu-central-1:1:task/x", "task"])


def maybe(valid: st.SearchStrategy, odds: int = 3) -> st.SearchStrategy:
    """Mostly a plausible value (`odds` to 1), sometimes any JSON at all."""
    return st.integers(0, odds).flatmap(lambda pick: valid if pick < odds else json_values)


MANY_PORTS = [{"ContainerPort": p, "HostPort": 30000 + p, "Protocol": "udp"} for p in range(150)]
MANY_NETWORKS = [{"NetworkMode": "awsvpc", "IPv4Addresses": [f"10.0.{i}.{j}" for j in range(30)]} for i in range(20)]
ports = st.fixed_dictionaries(
    {},
    optional={
        "ContainerPort": maybe(st.integers(-1, 70000)),
        "HostPort": maybe(st.integers(-1, 70000)),
        "Protocol": maybe(st.sampled_from(["tcp", "udp", "sctp", "TCP", "icmp"])),
    },
)
networks = st.fixed_dictionaries(
    {},
    optional={
        "NetworkMode": maybe(odd_text),
        "IPv4Addresses": maybe(st.lists(odd_text, max_size=20)),
        "IPv6Addresses": maybe(st.lists(odd_text, max_size=3)),
    },
)
containers = st.fixed_dictionaries(
    {"DockerId": maybe(docker_ids, 20), "Name": maybe(st.text(min_size=1, max_size=10) | odd_text, 20)},
    optional={
        "DockerName": maybe(odd_text),
        "Image": maybe(odd_text),
        "ImageID": maybe(odd_text),
        "CreatedAt": maybe(odd_text),
        "StartedAt": maybe(odd_text),
        "Ports": maybe(st.lists(ports, max_size=5) | st.just(MANY_PORTS)),
        "Networks": maybe(st.lists(networks, max_size=3) | st.just(MANY_NETWORKS)),
    },
)
task_entries = st.fixed_dictionaries(
    {
        "Arn": maybe(arns, 20),
        "KnownStatus": maybe(statuses, 20),
        "Containers": maybe(st.lists(containers, min_size=1, max_size=4), 20),
    },
    optional={
        "DesiredStatus": maybe(statuses),
        "Family": maybe(odd_text),
        "Version": maybe(st.integers() | odd_text),
    },
)
task_payloads = maybe(st.fixed_dictionaries({"Tasks": st.lists(task_entries, max_size=5)}), 10)
metadata_payloads = maybe(st.fixed_dictionaries({}, optional={k: maybe(odd_text) for k in METADATA}), 10)


class FakeHost(FakeSession):
    """An ECS host whose agent answers whatever the test sets, and a server that checks every report."""

    def __init__(self) -> None:
        super().__init__()
        self.reports = Reports()
        self.tasks: bytes = b'{"Tasks": []}'
        self.metadata: bytes = json.dumps(METADATA).encode()
        self.route("GET", f"{ECS}/v1/tasks", lambda _kw: response(200, self.tasks))
        self.route("GET", f"{ECS}/v1/metadata", lambda _kw: response(200, self.metadata))
        self.route("POST", f"{SERVER}/report/map", self._report)

    def _report(self, kwargs):
        self.reports.take(kwargs["data"], kwargs["headers"])
        return response(200, {})


def make_agent(host: FakeHost) -> Agent:
    config = Config(server_url=SERVER, token=TOKEN, ecs_agent_url=ECS, imds_url=IMDS, backoff_base=0.0)
    clock = FakeClock()
    return Agent(config, host, clock=clock, now=clock.now, rng=random.Random(0))


@PROPERTY
@given(polls=st.lists(st.tuples(metadata_payloads, task_payloads), min_size=1, max_size=4))
def test_any_payload_leaves_the_cycle_whole_and_every_report_valid(polls):
    host = FakeHost()
    agent = make_agent(host)
    for metadata, tasks in polls:
        host.metadata = json.dumps(metadata).encode()
        host.tasks = json.dumps(tasks).encode()
        agent.poll_once()  # a report the server would refuse fails check_report inside the fake server
    assert not agent.outbox.pending()
    event("containers reported" if any(b["containers"] for b in host.reports.bodies) else "no container reported")


@PROPERTY
@given(cut=st.integers(0, len(EXAMPLE) - 1), junk=st.binary(max_size=8))
def test_a_truncated_answer_removes_nothing(cut, junk):
    host = FakeHost()
    agent = make_agent(host)
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
    agent = make_agent(host)
    host.tasks = host.metadata = raw
    agent.poll_once()
    assert agent.snapshot.containers == {}
