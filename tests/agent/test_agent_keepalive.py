"""Reports never go out on a pooled connection the server may be closing as an idle keep-alive connection.

A server closes a keep-alive connection once it has been idle for its keep-alive timeout (gunicorn's default:
2 s). A request that reaches it at that moment is reset, and requests does not retry a POST. The server here
makes that race certain: it resets any kept-alive connection on which a request arrives after `KEEPALIVE`.
"""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import requests

from agent.backoff import Backoff
from agent.delivery import Delivery
from agent.outbox import Outbox
from tests.agent.fakes import TOKEN, container_id

KEEPALIVE = 0.3
ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


class ClosingServer:
    """HTTP/1.1 with keep-alive; resets a connection whose next request comes `KEEPALIVE` s or more after the last."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.answered = 0
        self.resets = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        idle_since = None
        with conn:
            while True:
                conn.settimeout(None)
                data = conn.recv(1, socket.MSG_PEEK)
                if not data:
                    return
                if idle_since is not None and time.monotonic() - idle_since >= KEEPALIVE:
                    self.resets += 1
                    return  # closed with the request unread: the client sees a reset
                request = b""
                while b"\r\n\r\n" not in request:
                    request += conn.recv(65536)
                head, _, body = request.partition(b"\r\n\r\n")
                length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length")))  # fmt: skip
                while len(body) < length:
                    body += conn.recv(65536)
                conn.sendall(ANSWER)
                self.answered += 1
                idle_since = time.monotonic()

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def server() -> Iterator[ClosingServer]:
    server = ClosingServer()
    yield server
    server.close()


def deliver_twice(server: ClosingServer, **delivery_options: float) -> list[bool]:
    """Two reports, the second after the connection has been idle longer than the server keeps it."""
    outbox = Outbox()
    results = []
    with requests.Session() as session:
        delivery = Delivery(session, server.url, TOKEN, (1, 2), Backoff(0, 0, random.Random(1)), **delivery_options)
        for n in (1, 2):
            outbox.put([{"container_id": container_id(n), "known_status": "RUNNING"}], [])
            results.append(delivery.deliver(outbox, {}))
            time.sleep(KEEPALIVE + 0.2)
    return results


def test_the_race_is_real_when_an_idle_connection_is_reused(server):
    assert deliver_twice(server, max_idle_reuse=60.0) == [True, False]
    assert server.resets == 1


def test_a_report_after_an_idle_pause_goes_on_a_new_connection(server):
    assert deliver_twice(server, max_idle_reuse=KEEPALIVE / 2) == [True, True]
    assert (server.answered, server.resets) == (2, 0)
