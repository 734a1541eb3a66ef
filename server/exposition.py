"""``GET /metrics``: the server's metrics in Prometheus text format, summed over every gunicorn worker, and the
gauges read from the store when scraped."""

from __future__ import annotations

import os

from flask import Blueprint, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess

from server.metrics import MULTIPROC_DIR, REGISTRY
from server.state import state

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def metrics() -> Response:
    if os.environ.get(MULTIPROC_DIR):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # reads every worker's files, this one's included
    else:
        registry = REGISTRY
    from_store = CollectorRegistry()
    from_store.register(state().containers_on_record)
    from_store.register(state().running_on_record)
    return Response(generate_latest(registry) + generate_latest(from_store), content_type=CONTENT_TYPE_LATEST)
