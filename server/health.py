"""``/health`` for load balancers: 200 while the store answers, 503 when it does not.

The store is asked at most once per interval, however often the probes come.
"""

from __future__ import annotations

import threading
import time

from flask import Blueprint, Response, current_app, jsonify

from server.errors import error_response
from server.store import Store, StoreError

bp = Blueprint("health", __name__)


class HealthCheck:
    def __init__(self, store: Store, interval: float, clock=time.monotonic):
        self.store = store
        self.interval = interval
        self.clock = clock
        self._lock = threading.Lock()
        self._checked_at: float | None = None
        self._problem: str | None = None

    def problem(self) -> str | None:
        """None when the store answered at the last check, else what went wrong."""
        due = self._checked_at is None or self.clock() - self._checked_at >= self.interval
        # One probe asks the store; probes arriving meanwhile answer from the last check instead of queueing
        # behind a slow store (all but the very first, which has nothing to answer from).
        if due and self._lock.acquire(blocking=self._checked_at is None):
            try:
                try:
                    self.store.ping()
                    self._problem = None
                except StoreError as exc:
                    self._problem = str(exc)
                self._checked_at = self.clock()
            finally:
                self._lock.release()
        return self._problem


@bp.get("/health")
def health() -> Response:
    state = current_app.extensions["ecs_id_mapper"]
    problem = state.health.problem()
    if problem:
        return error_response(503, f"the {state.store.kind} store does not answer", store=state.store.kind)
    return jsonify({"status": "ok", "store": state.store.kind})
