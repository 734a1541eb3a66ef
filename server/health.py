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
    return jsonify({"status": "ok", "store": kind})
