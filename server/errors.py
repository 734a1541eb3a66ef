"""One JSON error shape for every failure: ``{"error": <slug>, "message": <text>}`` with the right status."""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException
from werkzeug.http import HTTP_STATUS_CODES

from server.store import StoreUnavailable

log = logging.getLogger(__name__)

#: Seconds a client is asked to wait after the store did not answer (503).
STORE_RETRY_AFTER = 2


class ApiError(Exception):
    """An error a route raises, carrying its HTTP status."""

    status = 400

    def __init__(self, message: str, status: int | None = None, **extra: object):
        super().__init__(message)
        self.message = message
        self.status = status or self.status
        self.extra = extra


def error_response(status: int, message: str, **extra: object) -> Response:
    slug = HTTP_STATUS_CODES.get(status, "error").lower().replace(" ", "_").replace("-", "_")
    response = jsonify({"error": slug, "message": message, **extra})
    response.status_code = status
    return response


def register(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def api_error(exc: ApiError) -> Response:
        return error_response(exc.status, exc.message, **exc.extra)

    @app.errorhandler(StoreUnavailable)
    def store_unavailable(exc: StoreUnavailable) -> Response:
        log.error("store unavailable: %s", exc)
        response = error_response(503, "the store is unavailable; try again shortly")
        # Throttling and lost races clear within seconds; agents and scripts wait this long before retrying.
        response.headers["Retry-After"] = str(STORE_RETRY_AFTER)
        return response

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        response = error_response(exc.code or 500, exc.description or exc.name)
        for name, value in exc.get_headers():
            if name != "Content-Type":  # keep Allow, WWW-Authenticate, Retry-After
                response.headers[name] = value
        return response

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Response:
        log.exception("unhandled error")
        return error_response(500, "internal error; the server log has the details")
