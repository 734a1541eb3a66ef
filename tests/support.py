"""Helpers for tests that start real processes on loopback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, timeout: float = 20.0, process: subprocess.Popen | None = None) -> requests.Response:
    """GET ``url`` until it answers at all; fail if ``process`` exits first or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return requests.get(url, timeout=2)
        except (requests.ConnectionError, requests.Timeout):  # not listening yet, or a worker still booting
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"process exited with {process.returncode} before {url} answered") from None
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


class ServerProcess:
    """``python -m server`` (gunicorn) on a free loopback port, as users start it; or ``command`` with
    ``{bind}`` in it standing for the address, such as gunicorn serving the app factory itself."""

    def __init__(
        self, env: Mapping[str, str], log_path: Path, port: int | None = None, command: Sequence[str] | None = None
    ):
        self.port = port or free_port()
        self.command = [part.format(bind=f"127.0.0.1:{self.port}") for part in command or ["-m", "server"]]
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "ECS_ID_MAPPER_BIND": f"127.0.0.1:{self.port}", **env}
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    def start(self) -> ServerProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child writes to it for its whole life
        self.process = subprocess.Popen(
            [sys.executable, *self.command], cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        try:
            wait_for(f"{self.url}/health", process=self.process)
        except BaseException:
            self.stop()  # never leave a server running behind a failed start
            raise
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Moto:
    """moto's HTTP server on one loopback port that can be stopped and started again (its data stays)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server: Any = None

    def start(self) -> Moto:
        from moto.server import ThreadedMotoServer  # here: most tests that use this module need no moto

        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


class AgentProcess:
    """``python -m agent`` reading a simulated host and reporting to ``server_url``, as hosts run it."""

    def __init__(self, server_url: str, sim: Any, token: str, log_path: Path, **settings: str):
        self.env = {
            "PATH": "/usr/bin:/bin",
            "NO_PROXY": "127.0.0.1",
            "ECS_ID_MAPPER_SERVER_URL": server_url,
            "ECS_ID_MAPPER_TOKEN": token,
            "ECS_ID_MAPPER_ECS_AGENT_URL": sim.ecs_url,
            "ECS_ID_MAPPER_IMDS_URL": sim.imds_url,
            "ECS_ID_MAPPER_POLL_INTERVAL": "0.2",
            "ECS_ID_MAPPER_START_SPREAD": "0",  # one host: its first report at once
            "ECS_ID_MAPPER_LOG_LEVEL": "DEBUG",
            **{f"ECS_ID_MAPPER_{name.upper()}": value for name, value in settings.items()},
        }
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    def start(self) -> AgentProcess:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "agent"], cwd=ROOT, env=self.env, stdout=log, stderr=log
            )
        return self

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        """Send ``signum`` and wait for the exit status (killed after ``timeout`` seconds)."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signum)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def eventually(check: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    """The first truthy result of `check`, asked every 0.1 s; fails naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
        except requests.ConnectionError:
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.1)
