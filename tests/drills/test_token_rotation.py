"""Rotating tokens while everything runs: the real agent and the real server (gunicorn) move from one token to the
next through their token files, with no restart, no report lost and no refusal; and SIGHUP to the server's master
reads the token file again, a bad one leaving the last good in force."""

from __future__ import annotations

import hashlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.drills.loop import POLL, Churn, Loop, check_record
from tests.support import AgentProcess, ServerProcess, eventually

pytestmark = pytest.mark.slow

OLD, NEW = "agents-2026-01-pQ4vW8xZ2kL7mN1r", "agents-2026-02-Hs6Jd3Fg9Tq0Yb5c"


def token_file(*tokens: tuple[str, str]) -> str:
    """A token file of the simulated host's cluster (``default``), reads open for the drill's checks."""
    lines = ["reads: open", "tokens:"]
    for name, token in tokens:
        lines += [f"  {name}:", f"    sha256: {hashlib.sha256(token.encode()).hexdigest()}", "    report: [default]"]
    return "\n".join(lines) + "\n"


def replace(path: Path, text: str) -> None:
    """Write ``text`` as a rotation does: a new file renamed over the old one."""
    fresh = path.with_name(path.name + ".new")
    fresh.write_text(text)
    fresh.replace(path)


@pytest.fixture
def loop(tmp_path) -> Iterator[Loop]:
    loop = Loop(tmp_path, f"sqlite:///{tmp_path}/rotation.sqlite3")
    server_tokens, agent_token = tmp_path / "server-tokens.yaml", tmp_path / "agent-token"
    replace(server_tokens, token_file(("agents-old", OLD)))
    replace(agent_token, OLD + "\n")
    del loop.server_env["ECS_ID_MAPPER_TOKEN"]
    loop.server_env["ECS_ID_MAPPER_TOKEN_FILE"] = str(server_tokens)
    loop.start_server()
    loop.agent = AgentProcess(
        loop.url, loop.sim, "", tmp_path / "agent.log", poll_interval=str(POLL), token_file=str(agent_token),
        spool_dir=str(tmp_path / "spool"),
    ).start()  # fmt: skip
    yield loop
    loop.close()
    assert "Traceback" not in loop.server.log() + loop.agent.log()


def test_the_agent_and_the_server_rotate_their_token_without_a_restart_or_a_lost_report(loop, tmp_path):
    churn = Churn(loop.host, seed=25)
    churn.start()
    loop.polls(4)
    # 1. The server takes both tokens; each worker sees the file within a second.
    replace(tmp_path / "server-tokens.yaml", token_file(("agents-old", OLD), ("agents-new", NEW)))
    time.sleep(2.0)
    # 2. The agent's token file is rotated (as a Secrets Manager rotation writes it): its next report sends the new.
    replace(tmp_path / "agent-token", NEW + "\n")
    loop.polls(6)
    # 3. The old token leaves the server.
    replace(tmp_path / "server-tokens.yaml", token_file(("agents-new", NEW)))
    time.sleep(2.0)
    loop.polls(6)
    churn.stop()
    loop.polls(4)
    assert check_record(loop) == []  # nothing lost, nothing doubled
    agent_log = loop.agent.log()
    assert "refused the report" not in agent_log and "HTTP 401" not in agent_log and "HTTP 403" not in agent_log
    assert "changed: sending its new token" in agent_log
    writers = set()
    for task in loop.host.tasks:
        for container in task.containers:
            events = loop.get(f"/query/container_id/{container.docker_id}/events")
            if events.status_code == 200:
                writers |= {event.get("by") for event in events.json()}
    assert writers == {"agents-old", "agents-new"}
    assert OLD not in loop.server.log() and NEW not in loop.server.log()


def test_sighup_reads_the_token_file_again_and_a_bad_one_leaves_the_last_good(tmp_path):
    path = tmp_path / "tokens.yaml"
    replace(path, token_file(("agents-old", OLD)))
    env = {
        "ECS_ID_MAPPER_STORE": f"sqlite:///{tmp_path}/hup.sqlite3",
        "ECS_ID_MAPPER_TOKEN_FILE": str(path),
        "ECS_ID_MAPPER_WORKERS": "2",
    }

    def status(server: ServerProcess, token: str) -> int:
        body = {"host": {"cluster_name": "default"}, "containers": []}
        headers = {"Authorization": f"Bearer {token}"}
        return requests.post(f"{server.url}/report/map", json=body, headers=headers, timeout=10).status_code

    with ServerProcess(env, tmp_path / "server.log") as server:
        assert server.process is not None
        assert status(server, OLD) == 200
        replace(path, token_file(("agents-old", OLD)) + "  broken:\n    sha256: in-the-clear\n    report: [x]\n")
        os.kill(server.process.pid, signal.SIGHUP)
        eventually(lambda: "stays in force" in server.log(), "the master's word on the bad file")
        assert "line 7: token 'broken'" in server.log() and "in-the-clear" not in server.log()
        time.sleep(1.0)  # the new workers
        assert status(server, OLD) == 200
        replace(path, token_file(("agents-new", NEW)))
        os.kill(server.process.pid, signal.SIGHUP)
        eventually(lambda: status(server, NEW) == 200 and status(server, OLD) == 403, "the new token alone")
        assert server.process.poll() is None
