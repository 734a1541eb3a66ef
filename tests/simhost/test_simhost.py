"""The simulated ECS host: task lives on a controlled clock, the payload shapes, IMDSv2 and the fault switch."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest
import requests

from agent.ecs import parse_tasks
from simhost import SimHostServer, SimulatedHost
from tests.agent.fakes import FakeClock
from tests.support import ROOT


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def listing(host: SimulatedHost) -> dict[str, dict]:
    return {t["Arn"]: t for t in host.tasks_payload()["Tasks"]}


def test_a_task_steps_through_its_life(clock):
    host = SimulatedHost(clock=clock)
    task = host.start_task("api", containers=2)
    assert listing(host)[task.arn] == {
        "Arn": task.arn, "DesiredStatus": "RUNNING", "KnownStatus": "PENDING", "Family": "api",
        "Version": task.version,
    }  # fmt: skip
    host.advance(task, "created")
    (entry,) = listing(host).values()
    assert [c["Name"] for c in entry["Containers"]] == ["api", "sidecar-1"]
    assert all("StartedAt" not in c for c in entry["Containers"])
    clock.advance(3)
    host.advance(task, "running")
    assert {c["StartedAt"] for c in listing(host)[task.arn]["Containers"]} == {host.iso(clock())}
    statuses = []
    for step in ("stopping", "stopped"):
        host.advance(task, step)
        statuses.append((listing(host)[task.arn]["DesiredStatus"], listing(host)[task.arn]["KnownStatus"]))
    assert statuses == [("STOPPED", "RUNNING"), ("STOPPED", "STOPPED")]
    clock.advance(600)
    assert task.arn in listing(host)  # a stopped task stays listed until it is cleaned up
    host.advance(task, "vanished")
    assert listing(host) == {}


def test_churn_replaces_stopped_tasks_and_lists_every_kind(clock):
    host = SimulatedHost(seed=4, clock=clock, churn=3, run_seconds=(10, 20), linger_seconds=5)
    arns, kinds = set(), set()
    for _ in range(120):
        for entry in listing(host).values():
            arns.add(entry["Arn"])
            for c in entry.get("Containers", []):
                awsvpc = "Networks" in c
                kinds.add("awsvpc" if awsvpc else "bridge")
                assert (c["Ports"][0]["HostPort"] == c["Ports"][0]["ContainerPort"]) == awsvpc
            if len(entry.get("Containers", [])) > 1:
                kinds.add("multi-container")
        alive = [t for t in host.tasks if t.state(clock()) and t.state(clock())[0] == "RUNNING"]
        assert len(alive) == 3
        clock.advance(1)
    assert kinds == {"awsvpc", "bridge", "multi-container"}
    assert any(arn.count("/") == 2 for arn in arns) and any(arn.count("/") == 1 for arn in arns)  # both ARN forms
    assert len(arns) > 6  # tasks came and went
    assert all(t.moments["vanished"] > clock() for t in host.tasks)  # vanished ones are forgotten


def test_the_same_seed_makes_the_same_host(clock):
    def payloads(seed: int) -> list[str]:
        sim_clock = FakeClock()
        host = SimulatedHost(seed=seed, clock=sim_clock, churn=3, run_seconds=(5, 10))
        host._started_wall = 0.0  # the wall-clock origin is the only thing a seed does not fix
        out = []
        for _ in range(30):
            out.append(json.dumps(host.tasks_payload(), sort_keys=True))
            sim_clock.advance(1)
        return out

    assert payloads(7) == payloads(7)
    assert payloads(7) != payloads(8)


def test_the_agent_reads_every_container_it_lists(clock):
    host = SimulatedHost(clock=clock)
    tasks = [host.start_task(containers=2), host.start_task(awsvpc=True), host.start_task(old_arn=True)]
    for task in tasks:
        host.advance(task, "running")
    snapshot = parse_tasks(host.tasks_payload())
    assert set(snapshot.containers) == set(host.listed()) and len(snapshot.containers) == 4
    awsvpc = next(r for r in snapshot.containers.values() if r["task_arn"] == tasks[1].arn)
    assert awsvpc["networks"] == [{"network_mode": "awsvpc", "ipv4_addresses": [tasks[1].awsvpc_ip],
                                   "ipv6_addresses": []}]  # fmt: skip
    assert {r["task_id"] for r in snapshot.containers.values()} == {t.task_id for t in tasks}


@pytest.fixture
def served(clock):
    host = SimulatedHost(clock=clock)
    with SimHostServer(host) as sim:
        yield host, sim


def test_imds_needs_a_token(served):
    host, sim = served
    assert requests.get(f"{sim.imds_url}/latest/meta-data/instance-id", timeout=5).status_code == 401
    assert requests.put(f"{sim.imds_url}/latest/api/token", timeout=5).status_code == 400
    token = requests.put(
        f"{sim.imds_url}/latest/api/token", headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"}, timeout=5
    ).text
    answer = requests.get(
        f"{sim.imds_url}/latest/meta-data/instance-id", headers={"X-aws-ec2-metadata-token": token}, timeout=5
    )
    assert (answer.status_code, answer.text) == (200, host.instance["instance-id"])
    host.clock.advance(61)
    expired = requests.get(
        f"{sim.imds_url}/latest/meta-data/instance-id", headers={"X-aws-ec2-metadata-token": token}, timeout=5
    )
    assert expired.status_code == 401


def test_the_fault_switch_answers_an_error_for_a_while(served, clock):
    _, sim = served
    assert requests.get(f"{sim.ecs_url}/v1/metadata", timeout=5).json()["Cluster"] == "default"
    sim.fail(500, seconds=30)
    assert requests.get(f"{sim.ecs_url}/v1/tasks", timeout=5).status_code == 500
    clock.advance(30)
    assert requests.get(f"{sim.ecs_url}/v1/tasks", timeout=5).json() == {"Tasks": []}
    assert requests.put(f"{sim.ecs_url}/simhost/fault?status=503", timeout=5).status_code == 200
    assert requests.get(f"{sim.ecs_url}/v1/metadata", timeout=5).status_code == 503
    assert requests.delete(f"{sim.ecs_url}/simhost/fault", timeout=5).status_code == 200
    assert requests.get(f"{sim.ecs_url}/v1/metadata", timeout=5).status_code == 200
    assert requests.put(f"{sim.ecs_url}/simhost/fault?status=200", timeout=5).status_code == 400


def test_python_m_simhost_serves_until_sigterm():
    process = subprocess.Popen(
        [sys.executable, "-m", "simhost", "--seed", "2", "--tasks", "2"], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        urls = json.loads(process.stdout.readline())
        assert requests.get(f"{urls['ecs_agent_url']}/v1/metadata", timeout=5).status_code == 200
        assert requests.get(f"{urls['imds_url']}/latest/meta-data/local-ipv4", timeout=5).status_code == 401
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0
    finally:
        process.kill()
        process.stdout.close()
