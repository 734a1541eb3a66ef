"""Reading introspection payloads: every field the server bounds is bounded, every odd case survives."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from agent.ecs import EcsUnavailable, parse_metadata, parse_tasks
from agent.wire import text
from tests.agent.fakes import container, container_id, long_arn, old_arn, task, tasks

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
        from agent.ecs import _Warnings

        warn = _Warnings()
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


@pytest.mark.parametrize(
    "payload", [None, [], "Tasks", {}, {"Tasks": None}, {"Tasks": {}}, {"Tasks": [1]}, {"Tasks": [{"Containers": 7}]}]
)
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


def test_ports_are_checked_and_cut_to_what_the_server_stores():
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
    assert 0 < len(kept) < 100
    assert len(json.dumps(kept, separators=(",", ":"))) <= 1024
    assert kept[0] == {"container_port": 1, "host_port": 40001, "protocol": "tcp"}


def test_networks_are_cut_to_what_the_server_stores():
    networks = [{"NetworkMode": "awsvpc", "IPv4Addresses": [f"10.0.{i}.{j}" for j in range(40)]} for i in range(30)]
    networks.append("bridge")
    record = parse_tasks(tasks(task(long_arn(1), "RUNNING", container(1, Networks=networks))))
    kept = record.containers[A]["networks"]
    assert 0 < len(kept) <= 16
    assert all(len(n["ipv4_addresses"]) <= 16 for n in kept)
    assert len(json.dumps(kept, separators=(",", ":"))) <= 1024


def test_metadata_of_an_instance_not_registered_yet():
    host = parse_metadata({"Cluster": "default", "ContainerInstanceArn": None})
    assert host == {"cluster_name": "default", "container_instance_arn": "", "ecs_agent_version": ""}
    with pytest.raises(EcsUnavailable):
        parse_metadata(["default"])
