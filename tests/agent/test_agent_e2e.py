"""The real agent process against the real server on loopback, with a simulated ECS host (introspection + IMDSv2)."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from simhost import SimHostServer

try:
    import server  # noqa: F401 - only to know whether the server is in this checkout
    from tests.support import ROOT, ServerProcess, eventually
except ImportError:  # pragma: no cover - an agent-only checkout
    pytest.skip("the server package is not importable", allow_module_level=True)

pytestmark = pytest.mark.slow

TOKEN = "e2e-token"


def start_agent(server_url: str, ecs_host: SimHostServer, spool: Path, log_path: Path) -> subprocess.Popen:
    env = {
        "PATH": "/usr/bin:/bin",
        "NO_PROXY": "127.0.0.1",
        "ECS_ID_MAPPER_SERVER_URL": server_url,
        "ECS_ID_MAPPER_TOKEN": TOKEN,
        "ECS_ID_MAPPER_ECS_AGENT_URL": ecs_host.ecs_url,
        "ECS_ID_MAPPER_IMDS_URL": ecs_host.imds_url,
        "ECS_ID_MAPPER_POLL_INTERVAL": "0.2",
        "ECS_ID_MAPPER_SPOOL_DIR": str(spool),
        "ECS_ID_MAPPER_LOG_LEVEL": "DEBUG",
    }
    with open(log_path, "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "agent"], cwd=ROOT, env=env, stdout=log, stderr=log)


def test_agent_reports_a_lifecycle_to_the_server_across_a_server_restart(tmp_path, ecs_host):
    server_env = {"ECS_ID_MAPPER_STORE": f"sqlite:///{tmp_path}/mapper.sqlite3", "ECS_ID_MAPPER_TOKEN": TOKEN}
    agent_log = tmp_path / "agent.log"
    host = ecs_host.host
    sim_task = host.start_task(awsvpc=True)
    host.advance(sim_task, "created")
    cid = sim_task.containers[0].docker_id
    server = ServerProcess(server_env, tmp_path / "server.log").start()
    agent = start_agent(server.url, ecs_host, tmp_path / "spool", agent_log)
    try:

        def get(path: str) -> requests.Response | None:
            response = requests.get(f"{server.url}{path}", timeout=5)
            return response if response.status_code == 200 else None

        answer = eventually(lambda: get(f"/query/container_id/{cid[:12]}"), "the container to be reported")
        assert answer.text.strip() == sim_task.task_id
        record = get(f"/query/container_id/{cid}/_all").json()
        assert (record["known_status"], record["instance_id"]) == ("PENDING", host.instance["instance-id"])

        host.advance(sim_task, "running")
        eventually(lambda: get(f"/query/container_id/{cid}/_all").json()["known_status"] == "RUNNING", "RUNNING")

        server.stop()  # the server goes away; the agent keeps what changes meanwhile
        host.advance(sim_task, "stopped")
        eventually(lambda: b"cannot report" in agent_log.read_bytes(), "the agent to notice the server is gone")
        host.advance(sim_task, "vanished")
        server = ServerProcess(server_env, tmp_path / "server.log", port=server.port).start()

        def events() -> list | None:
            found = get(f"/query/container_id/{cid}/events")
            return found.json() if found is not None and len(found.json()) >= 5 else None

        history = eventually(events, "every event to arrive")
        assert sorted((e["event"], e["from"] or "", e["to"] or "") for e in history) == sorted([
            ("appeared", "", "PENDING"),
            ("known_status", "PENDING", "RUNNING"),
            ("desired_status", "RUNNING", "STOPPED"),
            ("known_status", "RUNNING", "STOPPED"),
            ("vanished", "STOPPED", ""),
        ])  # fmt: skip
        assert get(f"/query/container_id/{cid}/_all").json()["known_status"] == "STOPPED"
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
