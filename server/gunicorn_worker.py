"""The gunicorn worker ``python -m server`` runs: gthread, with gunicorn's own error pages in the JSON error shape,
noting how long each request waited for a thread (what ``server.shedding`` refuses late reports by).

gunicorn answers a request it cannot parse (a request line over ``limit_request_line``, too many or too large
headers, a bad ``Content-Length``, invalid bytes in the request line) before the app sees it, with an HTML page.
Its ``Worker.handle_error`` picks the status, logs and then writes the page with ``gunicorn.util.write_error``, the
only caller of that function: this worker swaps the writer in its own process for one that writes
``{"error", "message"}``, so gunicorn keeps deciding the status while the body matches every other error.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from typing import Any

from gunicorn import util
from gunicorn.workers.gthread import ThreadWorker

from server.errors import error_slug

_waits = threading.local()


def queue_wait() -> float:
    """Seconds the request this thread handles waited for a thread (0 outside this worker)."""
    return getattr(_waits, "seconds", 0.0)


def note_queue_wait(seconds: float) -> None:
    """Say how long the request this thread is about to handle waited for it."""
    _waits.seconds = seconds


def write_json_error(sock: socket.socket, status: int, reason: str, message: str) -> None:
    """gunicorn's ``write_error``, answering JSON; the connection is closed after it, as gunicorn does."""
    body = json.dumps({"error": error_slug(status), "message": message or reason}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\n"
        "Connection: close\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "\r\n"
    )
    util.write_nonblock(sock, head.encode("latin-1") + body)


class JsonErrorWorker(ThreadWorker):
    """gunicorn's threaded worker; its parse errors answer in the app's JSON error shape."""

    def init_process(self) -> None:
        util.write_error = write_json_error  # in this worker process only: see the module's docstring
        super().init_process()

    # How long each request waits for a thread, for the report routes' load shedding (``server.shedding``): the
    # poller hands a connection to the thread pool when its request arrives; the pool's queue has no bound.

    def enqueue_req(self, conn: Any) -> None:
        conn.queued_at = time.monotonic()
        super().enqueue_req(conn)

    def handle(self, conn: Any) -> Any:
        note_queue_wait(time.monotonic() - getattr(conn, "queued_at", time.monotonic()))
        return super().handle(conn)
