"""The simulated host on loopback: the ECS agent introspection API on one port, IMDSv2 on another.

Both answer the way the real services do: `/v1/metadata` and `/v1/tasks`;
`PUT /latest/api/token`, then `GET /latest/meta-data/…` with the token, 401 without one. A fault switch makes the
introspection API answer an error status for a while, as an ECS agent that is restarting or broken does.
"""

from __future__ import annotations

import json
import math
import secrets
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from simhost.host import SimulatedHost

TOKEN_TTL_MAX = 21600  # seconds, the longest IMDS grants


class _Handler(BaseHTTPRequestHandler):
    server: _Listener
    protocol_version = "HTTP/1.1"  # keep-alive, as the ECS agent and IMDS answer

    def _answer(self, status: int, body: Any = b"", content_type: str = "text/plain") -> None:
        if not isinstance(body, bytes):
            body, content_type = json.dumps(body).encode(), "application/json"
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self.server.sim.handle(self, "GET")

    def do_PUT(self) -> None:
        self.server.sim.handle(self, "PUT")

    def do_DELETE(self) -> None:
        self.server.sim.handle(self, "DELETE")

    def log_message(self, format: str, *args: Any) -> None:
        pass  # a poll every second would flood the terminal


class _Listener(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, sim: SimHostServer, port: int) -> None:
        self.sim = sim
        super().__init__(("127.0.0.1", port), _Handler)


class SimHostServer:
    """Serves `host` on two loopback ports (0: any free one); `start()` and `stop()` it, or use it as a context."""

    def __init__(
        self,
        host: SimulatedHost,
        ecs_port: int = 0,
        imds_port: int = 0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.host = host
        self.clock = clock or host.clock
        self.ecs = _Listener(self, ecs_port)
        self.imds = _Listener(self, imds_port)
        self.ecs_url = f"http://127.0.0.1:{self.ecs.server_address[1]}"
        self.imds_url = f"http://127.0.0.1:{self.imds.server_address[1]}"
        self._fault: tuple[int, float] | None = None  # (status, until)
        self._tokens: dict[str, float] = {}  # IMDS token → expiry
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self.requests = 0  # answered by the introspection API, faults included
        self.task_reads = 0  # `/v1/tasks` answered with the tasks: each is one poll of the agent that saw them
        self.polled = threading.Condition()

    # --- control --------------------------------------------------------------------------------------------

    def fail(self, status: int = 500, seconds: float = math.inf) -> None:
        """The introspection API answers `status` for `seconds` (until `heal()` by default)."""
        with self._lock:
            self._fault = (status, self.clock() + seconds)

    def heal(self) -> None:
        with self._lock:
            self._fault = None

    def _failing(self) -> int | None:
        with self._lock:
            if self._fault is None:
                return None
            status, until = self._fault
            if self.clock() >= until:
                self._fault = None
                return None
            return status

    def wait_for_polls(self, count: int, timeout: float = 30.0) -> bool:
        """Wait until `/v1/tasks` has been read `count` more times; False if `timeout` seconds pass first.

        Two reads after a change mean the agent has read the change and finished the cycle that reported it.
        """
        with self.polled:
            target = self.task_reads + count
            return self.polled.wait_for(lambda: self.task_reads >= target, timeout)

    # --- requests -------------------------------------------------------------------------------------------

    def handle(self, request: _Handler, method: str) -> None:
        if request.server is self.ecs:
            self._ecs(request, method)
        else:
            self._imds(request, method)

    def _ecs(self, request: _Handler, method: str) -> None:
        path = urlsplit(request.path).path
        if path == "/simhost/fault":
            self._control(request, method)
            return
        self.requests += 1
        if method != "GET":
            request._answer(405, {"error": "method not allowed"})
        elif (status := self._failing()) is not None:
            request._answer(status, b"simulated ECS agent failure\n")
        elif path == "/v1/metadata":
            request._answer(200, self.host.metadata_payload())
        elif path == "/v1/tasks":
            request._answer(200, self.host.tasks_payload())
            with self.polled:
                self.task_reads += 1
                self.polled.notify_all()
        else:
            request._answer(404, b"404 page not found\n")

    def _control(self, request: _Handler, method: str) -> None:
        """`PUT /simhost/fault?status=500&seconds=30` starts a fault, `DELETE /simhost/fault` ends it."""
        if method == "DELETE":
            self.heal()
            request._answer(200, {"fault": None})
            return
        if method != "PUT":
            request._answer(405, {"error": "use PUT or DELETE"})
            return
        query = {k: v[-1] for k, v in parse_qs(urlsplit(request.path).query).items()}
        try:
            status = int(query.get("status", "500"))
            seconds = float(query.get("seconds", "inf"))
        except ValueError:
            request._answer(400, {"error": "status and seconds must be numbers"})
            return
        if not 400 <= status <= 599 or not seconds > 0:
            request._answer(400, {"error": "status must be 400-599 and seconds positive"})
            return
        self.fail(status, seconds)
        request._answer(200, {"fault": {"status": status, "seconds": seconds}})

    def _imds(self, request: _Handler, method: str) -> None:
        if method == "PUT" and request.path == "/latest/api/token":
            ttl = request.headers.get("X-aws-ec2-metadata-token-ttl-seconds", "")
            if not ttl.isdigit() or not 1 <= int(ttl) <= TOKEN_TTL_MAX:
                request._answer(400, b"")
                return
            token = secrets.token_urlsafe(32)
            with self._lock:
                now = self.clock()
                self._tokens = {t: until for t, until in self._tokens.items() if until > now}
                self._tokens[token] = now + int(ttl)
            request._answer(200, token.encode())
            return
        if method != "GET":
            request._answer(405, b"")
            return
        token = request.headers.get("X-aws-ec2-metadata-token", "")
        with self._lock:
            valid = self._tokens.get(token, 0) > self.clock()
        if not valid:
            request._answer(401, b"")  # IMDSv2 required, as on instances launched from current AMIs
            return
        value = self.host.instance.get(request.path.removeprefix("/latest/meta-data/"))
        if not request.path.startswith("/latest/meta-data/") or value is None:
            request._answer(404, b"")
        else:
            request._answer(200, value.encode())

    # --- life -----------------------------------------------------------------------------------------------

    def start(self) -> SimHostServer:
        for listener in (self.ecs, self.imds):
            thread = threading.Thread(target=listener.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        for listener in (self.ecs, self.imds):
            listener.shutdown()
            listener.server_close()
        for thread in self._threads:
            thread.join(5)

    def __enter__(self) -> SimHostServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
