"""A simulated ECS host on loopback: the ECS agent's introspection API and IMDSv2, for end-to-end tests."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from tests.agent.fakes import INSTANCE, METADATA, tasks


class EcsHost(ThreadingHTTPServer):
    """The ECS agent's introspection API and an IMDSv2-only metadata service on one loopback port."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.tasks: Any = tasks()
        self.url = f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: EcsHost

    def _answer(self, status: int, body: bytes, content_type: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_PUT(self) -> None:
        if self.path == "/latest/api/token" and self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
            self._answer(200, b"imds-token")
        else:
            self._answer(400, b"")

    def do_GET(self) -> None:
        if self.path == "/v1/metadata":
            self._answer(200, json.dumps(METADATA).encode(), "application/json")
        elif self.path == "/v1/tasks":
            self._answer(200, json.dumps(self.server.tasks).encode(), "application/json")
        elif self.path.removeprefix("/latest/") in INSTANCE:
            if self.headers.get("X-aws-ec2-metadata-token") != "imds-token":
                self._answer(401, b"")  # IMDSv2 required, as on current AMIs
            else:
                self._answer(200, INSTANCE[self.path.removeprefix("/latest/")].encode())
        else:
            self._answer(404, b"")

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def ecs_host() -> Iterator[EcsHost]:
    host = EcsHost()
    thread = threading.Thread(target=host.serve_forever, daemon=True)
    thread.start()
    yield host
    host.shutdown()
    host.server_close()


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
