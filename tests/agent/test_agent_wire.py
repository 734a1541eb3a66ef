"""The wire format's one contract: the agent's limits are the server's, and the server takes all the agent sends."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from agent import wire
from tests.agent.fakes import FakeHost, container_id, host_agent, long_arn
from tests.agent.strategies import instance_answers, metadata_payloads, task_payloads

schema = pytest.importorskip("server.schema", reason="the server package is not importable")
from server import ids, records  # noqa: E402 - only once the server is known to be there
from server.config import Config as ServerConfig  # noqa: E402
from server.validation import ValidationError  # noqa: E402

#: The container fields the server reads (`server.schema`); it ignores any other.
READ_FIELDS = {
    "container_id", "container_name", "task_id", "task_arn", "task_version", "desired_status", "known_status",
    "sample_time", "ports", "networks", *schema.CONTAINER_TEXT_FIELDS,
}  # fmt: skip


def test_the_agents_limits_are_the_servers():
    assert (wire.MAX_BYTES, wire.MAX_ITEMS) == (schema.MAX_BYTES, schema.MAX_ITEMS)
    assert (wire.MAX_PORTS, wire.MAX_NETWORKS, wire.MAX_ADDRESSES) == (
        schema.MAX_PORTS,
        schema.MAX_NETWORKS,
        schema.MAX_ADDRESSES,
    )
    assert wire.PROTOCOLS == schema.PROTOCOLS
    assert set(wire.STATUSES.values()) == set(records.STATUSES)
    assert wire.CONTAINER_ID.pattern == ids.CONTAINER_ID.pattern
    assert wire.TASK_ID.pattern == ids.TASK_ID.pattern
    assert wire.EVENT_ID.pattern == schema.EVENT_ID.pattern
    assert ServerConfig().max_body_bytes > wire.MAX_BODY_BYTES


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    instance=instance_answers,
    polls=st.lists(st.tuples(metadata_payloads, task_payloads), min_size=1, max_size=4),
    max_body=st.sampled_from([None, 2048]),
)
def test_every_report_the_agent_makes_is_one_the_server_takes(instance, polls, max_body):
    host = FakeHost()
    host.instance = instance
    agent = host_agent(host)
    if max_body:
        agent.delivery.max_body = max_body  # reports split as after a 413
    for metadata, tasks in polls:
        host.metadata = json.dumps(metadata).encode()
        host.tasks = json.dumps(tasks).encode()
        agent.poll_once()
    for _ in range(100):  # a report per request, ten requests per cycle: drain what small reports left
        agent.delivery.deliver(agent.outbox, agent.host)
    assert not agent.outbox.pending()
    for body in host.reports.bodies:
        containers, events, full = schema.map_report(body)
        assert (len(containers), len(events), full) == (len(body["containers"]), len(body["events"]), body["full"])
        assert set(body["host"]) <= set(schema.HOST_FIELDS)
        for sent in body["containers"]:
            assert set(sent) <= READ_FIELDS, set(sent) - READ_FIELDS
    event("containers reported" if any(b["containers"] for b in host.reports.bodies) else "no container reported")
    event("instance IP reported" if any(b["host"]["instance_ip"] for b in host.reports.bodies) else "no instance IP")


def test_a_body_from_an_older_agent_with_the_port_fields_is_still_taken():
    # Older agents sent `container_port` and `instance_port` too; the server takes them from `ports` instead.
    entry = {
        "container_id": container_id(1),
        "container_name": "api",
        "task_arn": long_arn(1),
        "task_id": long_arn(1).rsplit("/", 1)[1],
        "known_status": "RUNNING",
        "sample_time": "2026-11-25T15:05:38.123Z",
        "ports": [{"container_port": 8000, "host_port": 49153, "protocol": "tcp"}],
        "container_port": "1",
        "instance_port": "2",
    }
    (record,), _, _ = schema.map_report({"host": {}, "containers": [entry], "events": [], "full": False})
    assert (record["container_port"], record["instance_port"]) == ("8000", "49153")


def test_the_most_ports_and_networks_the_agent_keeps_are_taken_whole():
    ports = [{"ContainerPort": 65535 - p, "HostPort": 65535 - p, "Protocol": "sctp"} for p in range(wire.MAX_PORTS)]
    network = {
        "NetworkMode": "awsvpc",
        "IPv4Addresses": [f"255.255.255.{j}" for j in range(wire.MAX_ADDRESSES)],
        "IPv6Addresses": [f"2001:db8:ffff:ffff:ffff:ffff:ffff:{j:04x}" for j in range(wire.MAX_ADDRESSES)],
    }
    entry = {
        "container_id": container_id(1),
        "container_name": "api",
        "task_arn": long_arn(1),
        "known_status": "RUNNING",
        "sample_time": "2026-11-25T15:05:38.123Z",
        "ports": wire.ports(ports, awsvpc=False),
        "networks": wire.networks([network] * wire.MAX_NETWORKS),
    }
    assert (len(entry["ports"]), len(entry["networks"])) == (wire.MAX_PORTS, wire.MAX_NETWORKS)

    (record,), _, _ = schema.map_report({"host": {}, "containers": [entry], "events": [], "full": False})

    assert json.loads(record["ports"]) == entry["ports"]
    assert json.loads(record["networks"]) == entry["networks"]
    too_many = {**entry, "ports": [*entry["ports"], entry["ports"][0]]}
    with pytest.raises(ValidationError, match="at most 100"):
        schema.map_report({"host": {}, "containers": [too_many]})
