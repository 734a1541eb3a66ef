"""Reading introspection payloads: every field the server bounds is bounded, every odd case survives."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import requests
import responses

from agent.ecs import EcsAgent, EcsUnavailable, parse_metadata, parse_tasks
from agent.wire import text
from tests.agent.fakes import ECS, METADATA, container, container_id, long_arn, old_arn, task, tasks

EXAMPLES = Path(__file__).parent / "payloads"  # the design's example payloads
A = container_id(1)


def test_the_shared_examples_parse_as_documented():
    snapshot = parse_tasks(json.loads((EXAMPLES / "ecs-agent-v1-tasks.json").read_text()))
    by_name = {r["container_name"]: r for r in snapshot.containers.values()}
    assert set(by_name) == {"api", "search", "migrate"}
    assert by_name["api"]["ports"] == [{"container_port": 8000, "host_port": 49153, "protocol": "tcp"}]
    assert by_name["search"]["networks"][0]["ipv4_addresses"] == ["172.31.9.44"]
    assert by_name["migrate"]["task_id"] == "3e4f5a6b-7c8d-4e9f-a0b1-c2d3e4f5a6b7"
    assert (by_name["migrate"]["desired_status"], by_name["migrate"]["known_status"]) == ("", "STOPPED")
    metadata = parse_metadata(json.loads((EXAMPLES / "ecs-agent-v1-metadata.json").read_text()))
    assert metadata["cluster_name"] == "default"


@pytest.mark.parametrize(
    ("ecs", "server"),
    [
        ("NONE", "PENDING"),
        ("MANIFEST_PULLED", "PENDING"),
        ("PULLED", "PENDING"),
        ("CREATED", "PENDING"),
        ("RESOURCES_PROVISIONED", "PENDING"),
        ("PENDING", "PENDING"),
        ("RUNNING", "RUNNING"),
        ("running", "RUNNING"),
        ("STOPPED", "STOPPED"),
        ("ZOMBIE", "STOPPED"),
    ],
)
def test_ecs_statuses_map_onto_the_three_the_server_knows(ecs, server):
    snapshot = parse_tasks(tasks(task(long_arn(1), ecs, container(1), desired=ecs)))
    assert snapshot.containers[A]["known_status"] == server
    assert snapshot.containers[A]["desired_status"] == server


def test_tasks_without_containers_and_containers_without_ids_are_not_reported():
    payload = tasks(task(long_arn(1), "PENDING"), task(long_arn(2), "PENDING", container(2, DockerId=None)))
    payload["Tasks"][1]["Containers"].append({**container(3), "DockerId": ""})
    snapshot = parse_tasks(payload)
    assert snapshot.containers == {}
    assert snapshot.held == frozenset()


def test_a_docker_id_in_capitals_is_lowercased():
    snapshot = parse_tasks(tasks(task(long_arn(1), "RUNNING", container(1, DockerId=A.upper()))))
    assert list(snapshot.containers) == [A]


def test_a_malformed_docker_id_is_skipped_with_one_warning(caplog):
    payload = tasks(task(long_arn(1), "RUNNING", container(1, DockerId="abc123"), container(2)))
    with caplog.at_level(logging.WARNING, logger="agent"):
        from agent.ecs import WarnOnce

        warn = WarnOnce()
        parse_tasks(payload, warn)
        snapshot = parse_tasks(payload, warn)
    assert list(snapshot.containers) == [container_id(2)]
    assert len([r for r in caplog.records if "not 64 hex" in r.getMessage()]) == 1


@pytest.mark.parametrize(
    "broken",
    [
        {"KnownStatus": "HIBERNATING"},
        {"KnownStatus": None},
        {"Arn": "arn:aws:ecs:eu-central-1:1:task/not-a-task-id"},
        {"Arn": 42},
    ],
)
def test_a_container_of_an_unreadable_task_is_held(broken):
    snapshot = parse_tasks(tasks({**task(long_arn(1), "RUNNING", container(1)), **broken}))
    assert snapshot.containers == {}
    assert snapshot.held == {A}


def test_a_container_without_any_name_is_held():
    snapshot = parse_tasks(tasks(task(long_arn(1), "RUNNING", container(1, Name=None, DockerName=None))))
    assert snapshot.held == {A}


def test_a_malformed_container_list_holds_the_task():
    payload = tasks({"Arn": old_arn(1), "KnownStatus": "RUNNING", "Containers": [container(1), "x"]})
    snapshot = parse_tasks(payload)
    assert snapshot.held_tasks == {old_arn(1)}


@pytest.mark.parametrize("unreadable", [None, "task", 1, [], {"Containers": 7}, {"Arn": None, "Containers": "x"}])
def test_an_unreadable_task_entry_holds_everything_missing_and_reports_the_rest(unreadable, caplog):
    payload = tasks(task(long_arn(1), "RUNNING", container(1)))
    payload["Tasks"].insert(0, unreadable)

    snapshot = parse_tasks(payload)

    assert list(snapshot.containers) == [A]
    assert snapshot.held_all
    assert "keeping the rest" in caplog.text


@pytest.mark.parametrize("payload", [None, [], "Tasks", {}, {"Tasks": None}, {"Tasks": {}}])
def test_a_payload_that_is_not_a_task_list_is_an_outage(payload):
    with pytest.raises(EcsUnavailable):
        parse_tasks(payload)


def test_strings_are_cut_to_1024_bytes_without_splitting_a_character():
    assert text("é" * 600) == "é" * 512
    assert len(text("x" * 5000).encode()) == 1024
    assert text("a\x00b") == "ab"
    assert text("bad \ud800 surrogate") == "bad ? surrogate"
    assert (text(42), text(True), text(None), text(1.5), text(["x"])) == ("42", None, None, None, None)
    image = "registry.example/" + "ü" * 2000
    record = parse_tasks(tasks(task(long_arn(1), "RUNNING", container(1, Image=image))))
    assert len(record.containers[A]["image"].encode()) <= 1024


def test_ports_are_checked_and_the_first_hundred_kept():
    ports = [
        {"ContainerPort": 80, "Protocol": "TCP", "HostPort": 32768},
        {"ContainerPort": 53, "Protocol": "udp"},
        {"ContainerPort": "443", "Protocol": "tcp"},
        {"ContainerPort": 70000},
        {"ContainerPort": 8080, "Protocol": "quic"},
        {"ContainerPort": True},
        "8080/tcp",
    ]
    record = parse_tasks(tasks(task(long_arn(1), "RUNNING", container(1, ports=ports))))
    assert record.containers[A]["ports"] == [
        {"container_port": 80, "host_port": 32768, "protocol": "tcp"},
        {"container_port": 53, "host_port": 53, "protocol": "udp"},
    ]
    many = [{"ContainerPort": p, "HostPort": 40000 + p, "Protocol": "tcp"} for p in range(1, 200)]
    record = parse_tasks(tasks(task(long_arn(1), "RUNNING", container(1, ports=many))))
    kept = record.containers[A]["ports"]
    assert kept == [{"container_port": p, "host_port": 40000 + p, "protocol": "tcp"} for p in range(1, 101)]


def test_networks_keep_sixteen_of_each_and_only_ip_addresses():
    v4 = ["not-an-ip", "2001:db8::1", *(f"10.0.0.{j}" for j in range(40))]
    v6 = ["10.0.0.1", "<html>", *(f"2001:db8::{j:x}" for j in range(40))]
    networks = [{"NetworkMode": "awsvpc", "IPv4Addresses": v4, "IPv6Addresses": v6} for i in range(30)]
    record = parse_tasks(tasks(task(long_arn(1), "RUNNING", container(1, Networks=["bridge", *networks]))))
    kept = record.containers[A]["networks"]
    assert len(kept) == 15  # of the first sixteen entries, the string is skipped
    assert kept[0]["ipv4_addresses"] == [f"10.0.0.{j}" for j in range(16)]
    assert kept[0]["ipv6_addresses"] == [f"2001:db8::{j:x}" for j in range(16)]


def test_metadata_of_an_instance_not_registered_yet():
    host = parse_metadata({"Cluster": "default", "ContainerInstanceArn": None})
    assert host == {"cluster_name": "default", "container_instance_arn": "", "ecs_agent_version": ""}
    with pytest.raises(EcsUnavailable):
        parse_metadata(["default"])


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_from_the_ecs_agent_is_an_outage_never_followed(status):
    elsewhere = "http://127.0.0.1:9/v1/tasks"
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get(f"{ECS}/v1/tasks", status=status, headers={"Location": elsewhere})
        followed = mock.get(elsewhere, json={"Tasks": []})
        mock.get(f"{ECS}/v1/metadata", json=METADATA)
        agent = EcsAgent(requests.Session(), ECS, (1.0, 1.0))
        with pytest.raises(EcsUnavailable, match=f"HTTP {status}"):
            agent.read()
    assert followed.call_count == 0
