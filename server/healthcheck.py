"""``python -m server.healthcheck``: the images' HEALTHCHECK. Exit 0 when ``/health`` answers 200 where
``ECS_ID_MAPPER_BIND`` says the server listens, 1 otherwise; the standard library alone, so it starts fast."""

from __future__ import annotations

import http.client
import os
import socket
import sys

DEFAULT_BIND = "127.0.0.1:5001"  # server.config's default, which tests/deploy/test_images.py holds it to
WILDCARDS = {"", "0.0.0.0", "::", "[::]", "*"}


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


def connection(bind: str, timeout: float) -> http.client.HTTPConnection:
    """A connection to the address the server binds: a wildcard address is asked on loopback (of its family)."""
    if bind.startswith("unix:"):
        return UnixConnection(bind.removeprefix("unix:"), timeout)
    host, _, port = bind.rpartition(":")
    if host in WILDCARDS:
        host = "::1" if host in ("::", "[::]") else "127.0.0.1"
    return http.client.HTTPConnection(host.strip("[]"), int(port), timeout=timeout)


def check(bind: str, timeout: float = 4.0) -> str | None:
    """None when the server answers healthy, else why not."""
    try:
        conn = connection(bind, timeout)
    except ValueError as exc:
        return f"{bind}: {exc}"
    try:
        conn.request("GET", "/health", headers={"User-Agent": "ecs-id-mapper-healthcheck"})
        answer = conn.getresponse()
        body = answer.read(500).decode(errors="replace")
    except (OSError, http.client.HTTPException) as exc:
        return f"{bind}: {exc}"
    finally:
        conn.close()
    return None if answer.status == 200 else f"{bind}: /health answered {answer.status} {body}"


def main() -> int:
    problem = check(os.environ.get("ECS_ID_MAPPER_BIND") or DEFAULT_BIND)
    if problem:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
