"""The real agent process against the real server on loopback, with a simulated ECS host (introspection + IMDSv2)."""

from __future__ import annotations

import pytest
import requests

try:
    import server  # noqa: F401 - only to know whether the server is in this checkout
    from tests.support import AgentProcess, ServerProcess, eventually
except ImportError:  # pragma: no cover - an agent-only checkout
    pytest.skip("the server package is not importable", allow_module_level=True)

pytestmark = pytest.mark.slow

TOKEN = "e2e-token"


def test_agent_reports_a_lifecycle_to_the_server_across_a_server_restart(tmp_path, ecs_host):
    server_env = {"ECS_ID_MAPPER_STORE": f"sqlite:///{tmp_path}/mapper.sqlite3", "ECS_ID_MAPPER_TOKEN": TOKEN}
    agent_log = tmp_path / "agent.log"
    host = ecs_host.host
    sim_task = host.start_task(awsvpc=True)
    host.advance(sim_task, "created")
    cid = sim_task.containers[0].docker_id
    server = ServerProcess(server_env, tmp_path / "server.log").start()
    agent = AgentProcess(server.url, ecs_host, TOKEN, agent_log, spool_dir=str(tmp_path / "spool")).start()
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
        code = agent.stop()
        server.stop()
    log = agent.log()
    assert code == 0, log
    assert "Traceback" not in log
    assert "Traceback" not in server.log()
