"""``/report/…``: where agents send what they saw. Bodies are checked whole before anything is stored."""

from __future__ import annotations

import json
import logging
from typing import Any

from flask import Blueprint, Response, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from server import ecs_events, liveness, schema, shedding
from server.auth import authorize_report
from server.errors import ApiError
from server.metrics import EVENTS_STORED
from server.records import seen_since, utc_now, with_event_times
from server.state import state
from server.store import Event, Record, Store

bp = Blueprint("report", __name__, url_prefix="/report")
log = logging.getLogger(__name__)


bp.before_request(authorize_report)
bp.before_request(shedding.admit_report)
bp.teardown_request(shedding.report_done)


def body() -> Any:
    if request.content_length is None:
        # A chunked body: Werkzeug would cut it at the limit without a word, so read one byte more ourselves.
        limit = state().config.max_body_bytes
        raw = request.environ["wsgi.input"].read(limit + 1)
        if len(raw) > limit:
            raise RequestEntityTooLarge()
    else:
        raw = request.get_data(cache=False)
    try:
        return json.loads(raw)
    except RecursionError:
        raise ApiError("the body is nested too deeply") from None
    except ValueError:
        raise ApiError("the body is not JSON") from None


@bp.post("/map")
def report_map() -> Response:
    raw = body()
    containers, events, full = schema.map_report(raw)
    app_state = state()
    store = app_state.store
    if app_state.config.task_definitions:
        containers = app_state.task_definitions.enrich(containers)
    host = schema.report_host(raw)
    entries = with_event_times(containers, events) + vanishings(store, containers, events, host)
    created, new_events = store.record_report(entries, events, utc_now(), full, host=host)
    if app_state.config.service_names:
        app_state.service_names.submit(created)  # queued for the worker; returns at once
    if app_state.config.task_definitions:
        app_state.task_definitions.submit(created)
    EVENTS_STORED.inc(new_events)
    log.debug(
        "map report: %d containers (%d new, full=%s), %d new events", len(containers), len(created), full, new_events
    )
    return jsonify({"containers": len(containers), "events": new_events})


def vanishings(store: Store, containers: list[Record], events: list[Event], host: Record) -> list[Record]:
    """Entries that stop the containers this host's agent says vanished (its ``vanished`` events) while the record
    still has them running: what a full snapshot would reconcile, done at once. One read per such container; an
    agent sends none unless a container it listed is gone."""
    key = liveness.host_key(host)
    listed = {c["container_id"] for c in containers}
    gone = {e["container_id"]: e["timestamp"] for e in events if e["event"] == "vanished"}
    entries = []
    for container_id, moment in gone.items():
        record = None if not key or container_id in listed else store.get_container(container_id)
        if record is None or record.get("known_status") == "STOPPED" or liveness.host_key(record) != key:
            continue
        if not seen_since(record, moment):
            entries.append({**record, "known_status": "STOPPED", "sample_time": moment, "stopped_at": moment})
    return entries


@bp.post("/event")
def report_event() -> Response:
    events = schema.event_report(body())
    _, new_events = state().store.record_report([], events, utc_now())
    EVENTS_STORED.inc(new_events)
    return jsonify({"containers": 0, "events": new_events})


@bp.post("/ecs-events")
def report_ecs_events() -> Response:
    """ECS task state changes as EventBridge delivers them (one event or a list): from an API destination.
    Checked whole, against the store too (a container belongs to its task), before anything is written."""
    app_state = state()
    batch = ecs_events.Batch(app_state.store, utc_now())
    for conversion in ecs_events.convert_all(body()):
        batch.add(conversion)
    task_definitions = app_state.task_definitions if app_state.config.task_definitions else None
    container_instances = app_state.container_instances if app_state.config.container_instances else None
    _, new_events = batch.write(task_definitions, container_instances)
    EVENTS_STORED.inc(new_events)
    return jsonify({"containers": len(batch.records), "events": new_events, "held": batch.held})
