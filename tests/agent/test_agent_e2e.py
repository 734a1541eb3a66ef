"""The real agent process against the real server on loopback, with a simulated ECS host (introspection + IMDSv2)."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.agent.ecs_host import EcsHost, eventually
from tests.agent.fakes import INSTANCE, container, container_id, long_arn, task, tasks

try:
    import server  # noqa: F401 - only to know whether the server is in this checkout
    from tests.support import ROOT, ServerProcess
except ImportError:  # pragma: no cover - an agent-only checkout
    pytest.skip("the server package is not importable", allow_module_level=True)

pytestmark = pytest.mark.slow

TOKEN = "e2e-token"
A = container_id(1)
ARN = long_arn(1)
TASK_ID = ARN.rsplit("/", 1)[1]


def start_agent(server_url: str, ecs_host: EcsHost, spool: Path, log_path: Path) -> subprocess.Popen:
    env = {
        "PATH": "/usr/bin:/bin",
        "NO_PROXY": "127.0.0.1",
        "ECS_ID_MAPPER_SERVER_URL": server_url,
        "ECS_ID_MAPPER_TOKEN": TOKEN,
        "ECS_ID_MAPPER_ECS_AGENT_URL": ecs_host.url,
        "ECS_ID_MAPPER_IMDS_URL": ecs_host.url,
        "ECS_ID_MAPPER_POLL_INTERVAL": "0.2",
        "ECS_ID_MAPPER_SPOOL_DIR": str(spool),
        "ECS_ID_MAPPER_LOG_LEVEL": "DEBUG",
    }
    with open(log_path, "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "agent"], cwd=ROOT, env=env, stdout=log, stderr=log)


def test_agent_reports_a_lifecycle_to_the_server_across_a_server_restart(tmp_path, ecs_host):
    server_env = {"ECS_ID_MAPPER_STORE": f"sqlite:///{tmp_path}/mapper.sqlite3", "ECS_ID_MAPPER_TOKEN": TOKEN}
    agent_log = tmp_path / "agent.log"
    ecs_host.tasks = tasks(task(ARN, "PENDING", container(1)))
    server = ServerProcess(server_env, tmp_path / "server.log").start()
    agent = start_agent(server.url, ecs_host, tmp_path / "spool", agent_log)
    try:

        def get(path: str) -> requests.Response | None:
            response = requests.get(f"{server.url}{path}", timeout=5)
            return response if response.status_code == 200 else None

        answer = eventually(lambda: get(f"/query/container_id/{A[:12]}"), "the container to be reported")
        assert answer.text.strip() == TASK_ID
        record = get(f"/query/container_id/{A}/_all").json()
        assert (record["known_status"], record["instance_id"]) == ("PENDING", INSTANCE["meta-data/instance-id"])

        ecs_host.tasks = tasks(task(ARN, "RUNNING", container(1)))
        eventually(lambda: get(f"/query/container_id/{A}/_all").json()["known_status"] == "RUNNING", "RUNNING")

        server.stop()  # the server goes away; the agent keeps what changes meanwhile
        ecs_host.tasks = tasks(task(ARN, "STOPPED", container(1), desired="STOPPED"))
        eventually(lambda: b"cannot report" in agent_log.read_bytes(), "the agent to notice the server is gone")
        ecs_host.tasks = tasks()
        server = ServerProcess(server_env, tmp_path / "server.log", port=server.port).start()

        def events() -> list | None:
            found = get(f"/query/container_id/{A}/events")
            return found.json() if found is not None and len(found.json()) >= 5 else None

        history = eventually(events, "every event to arrive")
        assert sorted((e["event"], e["from"] or "", e["to"] or "") for e in history) == sorted([
            ("appeared", "", "PENDING"),
            ("known_status", "PENDING", "RUNNING"),
            ("desired_status", "RUNNING", "STOPPED"),
            ("known_status", "RUNNING", "STOPPED"),
            ("vanished", "STOPPED", ""),
        ])  # fmt: skip
        assert get(f"/query/container_id/{A}/_all").json()["known_status"] == "STOPPED"
    finally:
        agent.send_signal(signal.SIGTERM)
        try:
            code = agent.wait(20)
        finally:
            agent.kill()
            server.stop()
    log = agent_log.read_text(errors="replace")
    assert code == 0, log
    assert "Traceback" not in log
    assert "Traceback" not in server.log()
