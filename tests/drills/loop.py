"""The whole loop on loopback, for drills: a simulated host, the real agent process, the real server under gunicorn.

`Loop` starts and stops the parts; `Churn` moves the host's tasks along in the background; `check_record` says
whether the server's record is what the host listed: nothing lost, nothing doubled, nothing falsely stopped.
"""

from __future__ import annotations

import itertools
import random
import threading
from collections import Counter
from pathlib import Path

import requests

from simhost import SimHostServer, SimTask, SimulatedHost
from simhost.host import STEPS
from tests.support import AgentProcess, ServerProcess

TOKEN = "drill-token"
POLL = 0.5  # the agent's poll interval in seconds
LINGER = 45.0  # a stopped task stays listed this long: longer than any outage in the drills, as ECS keeps them hours


class Loop:
    """One simulated host, one agent, one server; `store` is the server's store URL."""

    def __init__(self, tmp_path: Path, store: str, spool: bool = True, seed: int = 1) -> None:
        self.tmp_path = tmp_path
        self.host = SimulatedHost(seed)
        self.sim = SimHostServer(self.host).start()
        self.server_env = {
            "ECS_ID_MAPPER_STORE": store,
            "ECS_ID_MAPPER_TOKEN": TOKEN,
            "ECS_ID_MAPPER_WORKERS": "1",
            "ECS_ID_MAPPER_SERVICE_NAMES": "false",
            "ECS_ID_MAPPER_HEALTH_INTERVAL": "0.5",
        }
        self.server = ServerProcess(self.server_env, tmp_path / "server.log")
        self.spool = {"spool_dir": str(tmp_path / "spool")} if spool else {}
        self.agent: AgentProcess | None = None

    @property
    def url(self) -> str:
        return self.server.url

    def start_server(self) -> None:
        self.server = ServerProcess(self.server_env, self.tmp_path / "server.log", port=self.server.port).start()

    def start_agent(self) -> AgentProcess:
        self.agent = AgentProcess(
            self.url, self.sim, TOKEN, self.tmp_path / "agent.log", poll_interval=str(POLL), **self.spool
        ).start()
        return self.agent

    def polls(self, count: int = 2) -> None:
        """Wait for `count` more polls of the agent (two after a change: it has been read and reported)."""
        assert self.sim.wait_for_polls(count), "the agent stopped polling"

    def get(self, path: str) -> requests.Response:
        return requests.get(f"{self.url}{path}", timeout=10, allow_redirects=False)

    def close(self) -> None:
        if self.agent is not None:
            self.agent.stop()
        self.server.stop()
        self.sim.stop()


class Churn(threading.Thread):
    """Moves the host on every `tick` seconds: starts tasks, steps them through their lives, lets stopped ones
    vanish after `LINGER`. Seeded, so a failing drill can be replayed."""

    def __init__(self, host: SimulatedHost, seed: int = 1, tick: float = 0.3, alive: int = 6) -> None:
        super().__init__(daemon=True)
        self.host = host
        self.rng = random.Random(seed)
        self.tick = tick
        self.alive = alive
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(self.tick):
            self.step()

    def step(self) -> None:
        host = self.host
        with host.lock:
            now = host.clock()
            for task in host.tasks:
                if now - task.moments["stopped"] >= LINGER:
                    host.advance(task, "vanished")
            live = [t for t in host.tasks if t.moments["stopped"] > now]
            if len(live) < self.alive:
                n = self.rng.randrange(6)
                host.start_task(containers=1 + (n == 0), awsvpc=n == 1)
            elif live:
                task = self.rng.choice(live)
                next_step = next(step for step in STEPS if task.moments[step] > now)
                host.advance(task, next_step)

    def stop(self) -> None:
        self.halt.set()
        self.join()


def expected(task: SimTask, now: float) -> tuple[str, str] | None:
    """(desired, known) the record of the task's containers must end with; None if no agent could see them."""
    if task.moments["created"] > now:
        return None  # no Docker ID yet
    state = task.state(now)
    return ("STOPPED", "STOPPED") if state is None else state  # a vanished task was listed STOPPED first


def check_record(loop: Loop) -> list[str]:
    """What differs between the server's record and what the host listed; empty when they agree."""
    problems: list[str] = []
    now = loop.host.clock()
    for task in loop.host.tasks:
        want = expected(task, now)
        if want is None:
            continue
        for container in task.containers:
            cid = container.docker_id
            answer = loop.get(f"/query/container_id/{cid}/_all")
            if answer.status_code != 200:
                problems.append(f"{cid[:12]}: no record ({answer.status_code})")
                continue
            record = answer.json()
            if (record["desired_status"], record["known_status"]) != want:
                problems.append(f"{cid[:12]}: {record['desired_status']}/{record['known_status']}, host {want}")
            problems += check_history(record, loop.get(f"/query/container_id/{cid}/events").json(), task, now)
    return problems


def check_history(record: dict, events: list[dict], task: SimTask, now: float) -> list[str]:
    """The container's events: each change once, a chain of statuses ending in the record's, stops only if stopped."""
    cid = record["container_id"][:12]
    problems = []
    doubled = [key for key, n in Counter((e["event"], e["from"], e["to"]) for e in events).items() if n > 1]
    if doubled or sum(e["event"] == "appeared" for e in events) != 1:
        problems.append(f"{cid}: doubled or missing events {doubled or events}")
    known = [e for e in events if e["event"] in ("appeared", "known_status")]
    chain = [e["to"] for e in known]
    if any(a["to"] != b["from"] for a, b in itertools.pairwise(known)) or chain[-1:] != [record["known_status"]]:
        problems.append(f"{cid}: known_status events {chain} do not lead to {record['known_status']}")
    stopped = task.moments["stopped"] <= now
    if not stopped and ("STOPPED" in chain or record.get("stopped_at")):
        problems.append(f"{cid}: falsely stopped")
    if stopped and not record.get("stopped_at"):
        problems.append(f"{cid}: stopped without stopped_at")
    vanished = [e for e in events if e["event"] == "vanished"]
    if len(vanished) != (task.moments["vanished"] <= now):
        problems.append(f"{cid}: {len(vanished)} vanished events")
    if events and record["first_seen"] > min(e["timestamp"] for e in events):
        problems.append(f"{cid}: first_seen {record['first_seen']} after its first event")
    return problems
