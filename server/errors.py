"""One JSON error shape for every failure: ``{"error": <slug>, "message": <text>}`` with the right status.

Every exception-to-status mapping is registered here. Errors the code raises carry their own status (ApiError
and its subclasses, such as the ECS and New Relic errors); validation's, the store's and Werkzeug's are mapped below.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from flask import Flask, Response, jsonify
from gunicorn.http.errors import ParseException
from werkzeug.exceptions import HTTPException
from werkzeug.http import HTTP_STATUS_CODES

from server.store import StoreUnavailable
from server.validation import ValidationError

log = logging.getLogger(__name__)

#: Seconds a client is asked to wait after the store did not answer (503).
STORE_RETRY_AFTER = 2


class ApiError(Exception):
    """An error answered with its HTTP status, its message, and any ``extra`` JSON fields and ``headers``."""

    status = 400

    def __init__(
        self, message: str, status: int | None = None, *, headers: Mapping[str, str] | None = None, **extra: object
    ):
        super().__init__(message)
        self.message = message
        self.status = status or self.status
        self.headers = dict(headers or {})
        self.extra = extra


def error_slug(status: int) -> str:
    """The ``error`` field for a status: its reason phrase in snake case, such as ``not_found``."""
    return HTTP_STATUS_CODES.get(status, "error").lower().replace(" ", "_").replace("-", "_")


def error_response(status: int, message: str, **extra: object) -> Response:
    response = jsonify({"error": error_slug(status), "message": message, **extra})
    response.status_code = status
    return response


def api_error(exc: ApiError) -> Response:
    response = error_response(exc.status, exc.message, **exc.extra)
    response.headers.update(exc.headers)
    return response


def invalid_body(exc: ValidationError) -> Response:
    """A body broke a rule: 400, the message naming the JSON path."""
    return error_response(400, str(exc))


def store_unavailable(exc: StoreUnavailable) -> Response:
    log.error("store unavailable: %s", exc)
    response = error_response(503, "the store is unavailable; try again shortly")
    # Throttling and lost races clear within seconds; agents and scripts wait this long before retrying.
    response.headers["Retry-After"] = str(STORE_RETRY_AFTER)
    return response


def http_error(exc: HTTPException) -> Response:
    response = error_response(exc.code or 500, exc.description or exc.name)
    for name, value in exc.get_headers():
        if name != "Content-Type":  # keep Allow, WWW-Authenticate, Retry-After
            response.headers[name] = value
    return response


def unreadable_request(exc: ParseException) -> Response:
    """gunicorn reads a chunked body only as a route asks for it: a malformed chunk surfaces here, not as a 500."""
    return error_response(400, f"malformed request body: {exc}")


def unexpected(exc: Exception) -> Response:
    log.exception("unhandled error")
    return error_response(500, "internal error; the server log has the details")


#: Each error's answer; none of these classes derives from another but ``Exception``, which is last.
HANDLERS: tuple[tuple[type[Exception], Callable[[Any], Response]], ...] = (
    (ApiError, api_error),
    (ValidationError, invalid_body),
    (StoreUnavailable, store_unavailable),
    (HTTPException, http_error),
    (ParseException, unreadable_request),
    (Exception, unexpected),
)


def register(app: Flask) -> None:
    for kind, handler in HANDLERS:
        app.register_error_handler(kind, handler)


def answer_to(exc: Exception) -> Response:
    """The answer Flask gives ``exc`` raised by a route, for code that calls a route outside Flask's request
    (``server.fast_lookup``); in an app context."""
    return next(handler(exc) for kind, handler in HANDLERS if isinstance(exc, kind))
