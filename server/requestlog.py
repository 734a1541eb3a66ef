"""What every answer goes through: the ``X-Request-ID`` header (the client's when it is sane, a new one
otherwise), one log line (method, route template, status, duration, request ID) and the request metrics.

It is WSGI middleware around the Flask app rather than ``before_request``/``after_request`` hooks: a cached
lookup's whole answer costs about as much as Flask's hooks did, and one pass reads the route once.

The line names the route template, never the path or query, and no header: nothing a client sends as a
credential reaches the log.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from server import metrics

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

HEADER = "X-Request-ID"
SANE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
#: The environ key in which an answer given before Flask (``server.fast_lookup``) names the rule it matched.
RULE = "ecs_id_mapper.rule"
LINE = "%(method)s %(route)s %(status)d %(duration_ms).1f ms request_id=%(request_id)s"

log = logging.getLogger("server.requests")


def request_id(given: str | None) -> str:
    # 32 random hex digits: what uuid4().hex gave, at a fifth of its cost (the version bits mean nothing here).
    return given if given and SANE_ID.fullmatch(given) else os.urandom(16).hex()


class RequestLog:
    """``app`` with every answer given a request ID, logged and counted."""

    def __init__(self, app: WSGIApplication):
        self.app = app

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        started = time.perf_counter()
        rid = request_id(environ.get("HTTP_X_REQUEST_ID"))
        status, rule = 0, None

        def start(code: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], object]:
            nonlocal status, rule
            status = int(code[:3])
            # Flask's request is in the environ until Flask lets go of it, after this call: its rule is the one
            # the request matched (None for none). A lookup answered before Flask names its rule itself.
            rule = environ.get(RULE) or getattr(environ.get("werkzeug.request"), "url_rule", None)
            headers.append((HEADER, rid))
            return start_response(code, headers, exc_info)

        body = self.app(environ, start)
        seconds = time.perf_counter() - started
        route, endpoint = (rule.rule, rule.endpoint) if rule is not None else (None, "")
        metrics.count_request(route, endpoint, status, seconds)
        if log.isEnabledFor(logging.INFO):
            fields = {
                "method": environ.get("REQUEST_METHOD", ""),
                "route": route or "-",  # '-': no route matched (a 404 or 405)
                "status": status,
                "duration_ms": round(seconds * 1000, 3),
                "request_id": rid,
            }
            # Made by hand: Logger.info would also walk the stack for a caller that no log format prints. The
            # fields are also the record's attributes, as ``extra`` would make them: the JSON lines' fields.
            record = log.makeRecord(log.name, logging.INFO, __file__, 0, LINE, (fields,), None)
            record.__dict__.update(fields)
            log.handle(record)
        return body
