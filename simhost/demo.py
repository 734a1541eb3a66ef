"""`make demo` (`python -m simhost.demo`): the server, a simulated ECS host and the real agent, on one machine.

The server runs under gunicorn (`python -m server`) on a throwaway SQLite file, the agent (`python -m agent`) polls
the simulated host every second and reports to it; then the demo prints `curl` commands with the IDs the host
lists. Ctrl-C (or SIGTERM) stops the agent, then the server and the host, and removes the throwaway directory.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

from simhost.host import SimTask, SimulatedHost
from simhost.server import SimHostServer

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PORT = 5001  # as `make run`; any free port when it is taken
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0


def free_port(preferred: int) -> int:
    """`preferred` if nothing listens there (0: none preferred), else a free loopback port."""
    for port in (preferred, 0) if preferred else (0,):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return sock.getsockname()[1]
    raise OSError("no free loopback port")


class Child:
    """A process of the demo, its output in a log file of the demo's directory."""

    def __init__(self, name: str, module: str, env: dict[str, str], log: Path) -> None:
        self.name = name
        self.log = log
        with log.open("ab") as out:
            # A session of its own: Ctrl-C reaches the demo alone, which stops the children in order.
            self.process = subprocess.Popen(
                [sys.executable, "-m", module], cwd=ROOT, env={**os.environ, **env}, stdout=out, stderr=out,
                start_new_session=True,
            )  # fmt: skip

    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if self.running():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def tail(self, lines: int = 20) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def cast(host: SimulatedHost) -> tuple[SimTask, SimTask]:
    """Two tasks that run for the whole demo: an awsvpc task with a sidecar (long ARN), a bridge task (old ARN)."""
    api = host.start_task("api", containers=2, awsvpc=True, old_arn=False)
    billing = host.start_task("billing", old_arn=True)
    for task in (api, billing):
        host.advance(task, "created")
        task.moments["running"] = host.clock() + 3  # PENDING first, so that its history shows the start
    return api, billing


def curl_commands(url: str, api: SimTask, billing: SimTask, churning: SimTask) -> list[tuple[str, str]]:
    """(what it shows, the command) for the IDs the simulated host lists."""
    full = api.containers[0].docker_id
    short = full[:12]
    commands = [
        ("the task of a container, by its full Docker ID", f"curl -s {url}/query/container_id/{full}"),
        ("the same by its 12-hex short ID, as docker ps shows it", f"curl -s {url}/query/container_id/{short}"),
        ("every attribute of the container, as JSON", f"curl -s {url}/query/container_id/{short}/_all"),
        ("its history", f"curl -s {url}/query/container_id/{short}/events"),
        ("the containers of a task (awsvpc, with a sidecar)", f"curl -s {url}/query/task_id/{api.task_id}"),
        ("a task in the old ARN form, as JSON", f"curl -s {url}/query/task_id/{billing.task_id}/_all"),
        (
            "a dashboard link: 302 to the container's cAdvisor page",
            f"curl -sI '{url}/query/container_id/{short}/cadvisor?redir=true'",
        ),
        ("the load balancer's health check", f"curl -s {url}/health"),
    ]
    cid = churning.containers[0].docker_id[:12]
    commands.append(
        ("a container that stops within a minute: watch known_status and stopped_at",
         f"curl -s {url}/query/container_id/{cid}/_all"),
    )  # fmt: skip
    return commands


def wait_until_reported(url: str, tasks: list[SimTask], children: list[Child]) -> None:
    """Return once the server answers for every container of `tasks`; SystemExit if a child dies or time runs out."""
    deadline = time.monotonic() + READY_TIMEOUT
    wanted = [c.docker_id for task in tasks for c in task.containers]
    while True:
        for child in children:
            if not child.running():
                raise SystemExit(f"the {child.name} stopped (exit {child.process.returncode}):\n{child.tail()}")
        try:
            if all(requests.get(f"{url}/query/container_id/{cid}", timeout=2).ok for cid in wanted):
                return
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"the agent's first report did not reach the server in {READY_TIMEOUT:.0f} s")
        time.sleep(0.2)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m simhost.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="server port (0: any free one)")
    parser.add_argument("--poll", type=float, default=1.0, help="the agent's poll interval in seconds")
    parser.add_argument("--seed", type=int, default=1, help="the simulated host's seed (same seed, same IDs)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())

    directory = Path(tempfile.mkdtemp(prefix="ecs-id-mapper-demo-"))
    host = SimulatedHost(args.seed, churn=2, run_seconds=(20.0, 60.0), linger_seconds=20.0)
    api, billing = cast(host)
    sim = SimHostServer(host).start()
    children: list[Child] = []
    try:
        port = free_port(args.port)
        url = f"http://127.0.0.1:{port}"
        token = secrets.token_urlsafe(24)
        children.append(Child("server", "server", {
            "ECS_ID_MAPPER_BIND": f"127.0.0.1:{port}",
            "ECS_ID_MAPPER_STORE": f"sqlite:///{directory}/demo.sqlite3",
            "ECS_ID_MAPPER_TOKEN": token,
            "ECS_ID_MAPPER_WORKERS": "1",
            "ECS_ID_MAPPER_SERVICE_NAMES": "false",  # no ECS API here to ask for service names
            "ECS_ID_MAPPER_GRAYLOG_URL": "https://graylog.example/search?q=container_id%3A{short_id}",
        }, directory / "server.log"))  # fmt: skip
        children.append(Child("agent", "agent", {
            "ECS_ID_MAPPER_SERVER_URL": url,
            "ECS_ID_MAPPER_TOKEN": token,
            "ECS_ID_MAPPER_ECS_AGENT_URL": sim.ecs_url,
            "ECS_ID_MAPPER_IMDS_URL": sim.imds_url,
            "ECS_ID_MAPPER_POLL_INTERVAL": str(args.poll),
            "ECS_ID_MAPPER_START_SPREAD": "0",  # one host, no fleet to spread: report at once
            "ECS_ID_MAPPER_SPOOL_DIR": str(directory / "spool"),
        }, directory / "agent.log"))  # fmt: skip
        host.tasks_payload()  # the host starts its own short-lived tasks when first read
        churning = next(t for t in host.tasks if t not in (api, billing))
        wait_until_reported(url, [api, billing, churning], children)
        print(f"ECS ID Mapper demo: the server on {url}, and the agent polling a simulated ECS host every")
        print(f"{args.poll:g} s (introspection API {sim.ecs_url}, IMDSv2 {sim.imds_url}).")
        print("Tasks start and stop as you go; every record stays queryable after its task is gone.")
        print(f"Throwaway data and logs (server.log, agent.log): {directory}\n")
        for what, command in curl_commands(url, api, billing, churning):
            print(f"  # {what}\n  {command}")
        print(f"\nIn a browser, the page at {url}/ takes any of these IDs; this container's view:")
        print(f"  {url}/?q={api.containers[0].docker_id[:12]}")
        print("\nCtrl-C stops the demo.", flush=True)
        stop.wait()
    finally:
        for child in reversed(children):  # the agent first, so that its last changes reach the server
            child.stop()
        sim.stop()
        shutil.rmtree(directory, ignore_errors=True)
    print(f"Stopped; removed {directory}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
