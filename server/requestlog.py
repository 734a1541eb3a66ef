"""One log line per request (method, route template, status, duration, request ID) and the ``X-Request-ID``
header: the client's when it is sane, a new one otherwise, returned on every answer.

The line names the route template, never the path or query, and no header: nothing a client sends as a
credential reaches the log.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from flask import Flask, g, request
from flask.wrappers import Response

HEADER = "X-Request-ID"
SANE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

log = logging.getLogger("server.requests")


def request_id(given: str | None) -> str:
    return given if given and SANE_ID.fullmatch(given) else uuid.uuid4().hex


def start() -> None:
    g.request_started = time.perf_counter()
    g.request_id = request_id(request.headers.get(HEADER))


def finish(response: Response) -> Response:
    rid = g.get("request_id") or request_id(None)
    duration_ms = round((time.perf_counter() - g.get("request_started", time.perf_counter())) * 1000, 3)
    route = request.url_rule.rule if request.url_rule else "-"  # '-': no route matched (a 404 or 405)
    response.headers[HEADER] = rid
    log.info(
        "%s %s %d %.1f ms request_id=%s",
        request.method,
        route,
        response.status_code,
        duration_ms,
        rid,
        extra={
            "method": request.method,
            "route": route,
            "status": response.status_code,
            "duration_ms": duration_ms,
            "request_id": rid,
        },
    )
    return response


def register(app: Flask) -> None:
    app.before_request(start)
    app.after_request(finish)
