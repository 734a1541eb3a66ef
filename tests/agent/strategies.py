"""Hypothesis strategies for what an ECS host may answer: the introspection API and instance metadata."""

from __future__ import annotations

from hypothesis import strategies as st

from tests.agent.fakes import INSTANCE, METADATA, container_id, long_arn, old_arn

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
addresses = st.one_of(st.ip_addresses().map(str), st.sampled_from(["", "10.0.1.17\n10.0.1.18", "<html>"]), odd_text)
instance_answers = st.fixed_dictionaries(
    {path: st.just(value) | odd_text for path, value in INSTANCE.items() if path != "meta-data/local-ipv4"}
    | {"meta-data/local-ipv4": addresses}
)
