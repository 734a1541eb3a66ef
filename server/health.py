"""``/health`` for load balancers: 200 while the store answers, 503 when it does not."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from server.errors import error_response
from server.state import state

bp = Blueprint("health", __name__)


@bp.get("/health")
def health() -> Response:
    app_state = state()
    kind = app_state.store.kind
    if app_state.health.problem():
        return error_response(503, f"the {kind} store does not answer", store=kind)
    answer = {"status": "ok", "store": kind}
    app_state.tokens.current()  # a look at the token file, if due: a worker without traffic learns of it too
    if app_state.tokens.problem:
        # Still serving, with the last good file; which line is wrong is in the log (this route is open to all).
        answer["token_file"] = "the token file on disk is bad; the last good one stays in force (see the log)"
    return jsonify(answer)
