"""Fault drills on real processes: each ends with the server's record equal to what the simulated host listed.

Nothing lost, nothing doubled, no container falsely marked stopped (`check_record`), whatever failed meanwhile:
the server killed mid-stream, the store frozen, the ECS agent failing, the agent restarted while the server is
down, the agent killed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests

from tests.drills.loop import Churn, Loop, check_record
from tests.store.conftest import REGION
from tests.support import eventually, free_port, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def loops() -> Iterator[list[Loop]]:
    """Loops to close after the test, whatever happened."""
    started: list[Loop] = []
    yield started
    for loop in started:
        loop.close()


def converge(loop: Loop, timeout: float = 60.0) -> None:
    """Wait until the record equals what the host lists; fail with the differences if it never does."""
    problems: list[str] = []

    def agreed() -> bool:
        nonlocal problems
        problems = check_record(loop)
        return not problems

    try:
        eventually(agreed, "the record to equal the host", timeout)
    except pytest.fail.Exception:
        pytest.fail("record differs from the host:\n" + "\n".join(problems))
    assert "Traceback" not in loop.server.log() + loop.agent.log()
    assert '"POST /report/map HTTP/1.1" 500' not in loop.agent.log()  # the server never answered a report with a 500


def churn_for(loop: Loop, seconds: float, seed: int = 1) -> None:
    churn = Churn(loop.host, seed)
    churn.start()
    time.sleep(seconds)
    churn.stop()


def kill_server(loop: Loop) -> None:
    """SIGKILL gunicorn's arbiter and its workers at once, as an out-of-memory kill or a lost host would."""
    arbiter = loop.server.process
    assert arbiter is not None
    workers = Path(f"/proc/{arbiter.pid}/task/{arbiter.pid}/children").read_text().split()
    for pid in [arbiter.pid, *map(int, workers)]:
        os.kill(pid, signal.SIGKILL)
    arbiter.wait()


def test_server_killed_mid_stream_then_restarted(tmp_path, loops):
    loop = Loop(tmp_path, f"sqlite:///{tmp_path}/drill.sqlite3")
    loops.append(loop)
    loop.start_server()
    loop.start_agent()
    churn = Churn(loop.host, seed=2, tick=0.1)  # a change every poll or so: reports are always on their way
    churn.start()
    time.sleep(4)
    kill_server(loop)
    time.sleep(3)
    loop.start_server()
    time.sleep(3)
    churn.stop()
    converge(loop)


def test_ecs_agent_answering_500_for_30_s(tmp_path, loops):
    loop = Loop(tmp_path, f"sqlite:///{tmp_path}/drill.sqlite3")
    loops.append(loop)
    loop.start_server()
    loop.start_agent()
    churn_for(loop, 3, seed=3)
    converge(loop)
    loop.sim.fail(500, seconds=30)
    churn = Churn(loop.host, seed=4)  # tasks start and stop while the agent cannot see them
    churn.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        # Unreadable is not "all stopped": nothing the host still runs is ever marked stopped meanwhile.
        assert not [p for p in check_record(loop) if "falsely stopped" in p]
        time.sleep(2)
    churn.stop()
    converge(loop)
    assert loop.agent.log().count("cannot read the ECS agent") == 1


def test_agent_restarted_with_its_spool_while_the_server_is_down(tmp_path, loops):
    loop = Loop(tmp_path, f"sqlite:///{tmp_path}/drill.sqlite3")
    loops.append(loop)
    loop.start_server()
    agent = loop.start_agent()
    churn_for(loop, 3, seed=5)
    loop.server.stop()
    churn_for(loop, 3, seed=6)
    assert agent.stop(signal.SIGTERM) == 0  # its flush fails: what is pending stays in the spool
    churn_for(loop, 2, seed=7)  # no agent running
    loop.start_agent()
    churn_for(loop, 3, seed=8)
    loop.start_server()
    converge(loop)


def test_agent_restarted_without_a_spool_doubles_no_event(tmp_path, loops):
    loop = Loop(tmp_path, f"sqlite:///{tmp_path}/drill.sqlite3", spool=False)
    loops.append(loop)
    loop.start_server()
    for seed in (9, 10):
        agent = loop.start_agent()
        churn_for(loop, 3, seed=seed)
        loop.polls()
        assert agent.stop(signal.SIGTERM) == 0
    loop.start_agent()
    converge(loop)


def test_sigkill_of_the_agent_loses_at_most_its_last_poll(tmp_path, loops):
    """With a spool, what the agent read before its last poll interval survives a SIGKILL with its own times.

    The server is down, so every change waits in the agent. Changes made two polls before the kill must reach
    the server with the time they were seen; the last one, read in the interval the kill cut short, may instead
    be read again by the restarted agent: its state arrives, stamped after the restart.
    """
    loop = Loop(tmp_path, f"sqlite:///{tmp_path}/drill.sqlite3")
    loops.append(loop)
    host = loop.host
    loop.start_server()
    agent = loop.start_agent()
    tasks = [host.start_task(containers=2 if n == 0 else 1, awsvpc=n == 1) for n in range(3)]
    for task in tasks:
        host.advance(task, "running")
    loop.polls()
    loop.server.stop()
    for task, step in ((tasks[0], "stopping"), (tasks[1], "stopped"), (tasks[0], "stopped")):
        host.advance(task, step)
        loop.polls()  # read, and written to the spool, before the last interval
    before_last_interval = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    host.advance(tasks[2], "stopped")  # the last change: the kill may come before or after the agent reads it
    assert agent.stop(signal.SIGKILL) == -signal.SIGKILL
    killed_at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    loop.start_agent()
    loop.start_server()
    converge(loop)

    def stops(task) -> list[dict]:
        cid = task.containers[0].docker_id
        return [e for e in loop.get(f"/query/container_id/{cid}/events").json() if e["to"] == "STOPPED"]

    early = [e for task in tasks[:2] for e in stops(task)]  # desired and known status of each
    assert len(early) == 4 and all(e["timestamp"] < before_last_interval for e in early), early
    last = stops(tasks[2])
    # Seen in the interval the kill cut short, or again after the restart: stamped after that interval began.
    assert len(last) == 2 and all(e["timestamp"] >= before_last_interval for e in last)
    assert killed_at > before_last_interval


class MotoProcess:
    """moto's server as a process of its own, so that it can be frozen with SIGSTOP."""

    def __init__(self, log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=log, stderr=log,
            )  # fmt: skip
        wait_for(f"{self.url}/moto-api/", process=self.process)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGCONT)
        self.process.kill()
        self.process.wait()


def test_store_frozen_for_20_s_answers_503_json_never_500(tmp_path, loops):
    moto = MotoProcess(tmp_path / "moto.log")
    try:
        store = (
            f"sdb://drill{uuid.uuid4().hex[:8]}?region={REGION}&endpoint_url={moto.url}"
            "&max_attempts=1&connect_timeout=1&read_timeout=1"
        )
        loop = Loop(tmp_path, store)
        loops.append(loop)
        loop.start_server()
        loop.start_agent()
        churn_for(loop, 3, seed=11)
        converge(loop)
        known = loop.host.tasks[0]
        paths = [
            "/health",
            f"/query/container_id/{known.containers[0].docker_id}/_all",
            f"/query/task_id/{known.task_id}",
            f"/query/task_id/{known.task_id}/events",
        ]
        churn = Churn(loop.host, seed=12)
        churn.start()
        moto.process.send_signal(signal.SIGSTOP)
        answers: list[tuple[str, int, dict]] = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            for path in paths:
                response = requests.get(f"{loop.url}{path}", timeout=30)
                answers.append((path, response.status_code, response.json()))
        moto.process.send_signal(signal.SIGCONT)
        churn.stop()
        assert {status for _, status, _ in answers} == {503}, sorted({(p, s) for p, s, _ in answers})
        assert all(set(body) >= {"error", "message"} for _, _, body in answers)
        assert len(answers) >= 4 * len(paths)
        converge(loop, timeout=90)  # the agent's backoff grew during the freeze
    finally:
        moto.stop()
