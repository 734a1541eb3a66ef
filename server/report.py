"""``/report/…``: where agents send what they saw. Bodies are checked whole before anything is stored."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from flask import Blueprint, Response, g, jsonify

from server import ecs_events, liveness, rate_limit, schema, shedding, writing
from server.auth import authorize_report, refuse
from server.metrics import EVENTS_STORED
from server.records import seen_since, utc_now, with_event_times
from server.respond import json_body
from server.state import state
from server.store import Event, Record, Store
from server.token_file import Token

bp = Blueprint("report", __name__, url_prefix="/report")
log = logging.getLogger(__name__)


bp.before_request(authorize_report)
bp.before_request(shedding.admit_report)
bp.teardown_request(shedding.report_done)


def body() -> Any:
    return json_body(state().config.max_body_bytes)


@bp.post("/map")
def report_map() -> Response:
    raw = body()
    containers, events, full = schema.map_report(raw)
    host = schema.report_host(raw)
    rate_limit.check_report(host)  # 429 past the sending token's bound
    app_state = state()
    store = app_state.store
    token: Token = g.token
    if not token.report:
        raise refuse(token, "may not report: it has no report scope")
    if not token.may_report(host["cluster_name"]):
        raise refuse(token, f"may not report for cluster {host['cluster_name']!r}")
    listed = {c["container_id"] for c in containers}
    others = others_on_record(store, token, events, listed, bool(liveness.host_key(host)))
    if app_state.config.task_definitions:
        containers = app_state.task_definitions.enrich(containers)
    with writing_as(token, None if token.reports_anywhere else token.may_change_by_report):
        events = [writing.sign(event) for event in events]
        entries = with_event_times(containers, events) + vanishings(others, listed, events, host)
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


@contextmanager
def writing_as(token: Token, may_change: Callable[[Record], bool] | None) -> Iterator[None]:
    """Write as ``token`` (its name signs the events) within its scope: a stored record outside it is a 403 and
    nothing of the write is kept (``server.writing``)."""
    try:
        with writing.writing(token.name, may_change):
            yield
    except writing.OutOfScope as exc:
        raise refuse(token, f"may not change container {exc.container_id} of cluster {exc.cluster_name!r}") from None


def others_on_record(
    store: Store, token: Token, events: list[Event], listed: set[str], host_known: bool = False
) -> dict[str, Record | None]:
    """The stored records of the containers the events name that the report does not list (what its host's agent
    says vanished), read once each: a 403 when one is outside ``token``'s report scope. Only a scoped token's
    other events are read; anyone's ``vanished`` ones from a known host, which may stop a record (``vanishings``)."""
    wanted = {
        e["container_id"]
        for e in events
        if e["container_id"] not in listed and ((host_known and e["event"] == "vanished") or not token.reports_anywhere)
    }
    found = {container_id: store.get_container(container_id) for container_id in sorted(wanted)}
    for record in found.values():
        if record is not None and not token.may_change_by_report(record):
            raise refuse(
                token, f"may not change container {record['container_id']} of cluster {record.get('cluster_name')!r}"
            )
    return found


def vanishings(stored: dict[str, Record | None], listed: set[str], events: list[Event], host: Record) -> list[Record]:
    """Entries that stop the containers this host's agent says vanished (its ``vanished`` events) while the record
    (``stored``, read by ``others_on_record``) still has them running: what a full snapshot would reconcile, done at
    once. An agent sends none unless a container it listed is gone."""
    key = liveness.host_key(host)
    gone = {e["container_id"]: e["timestamp"] for e in events if e["event"] == "vanished"}
    entries = []
    for container_id, moment in gone.items():
        record = None if not key or container_id in listed else stored.get(container_id)
        if record is None or record.get("known_status") == "STOPPED" or liveness.host_key(record) != key:
            continue
        if not seen_since(record, moment):
            entries.append({**record, "known_status": "STOPPED", "sample_time": moment, "stopped_at": moment})
    return entries


@bp.post("/event")
def report_event() -> Response:
    events = schema.event_report(body())
    token: Token = g.token
    if not token.report:
        raise refuse(token, "may not report: it has no report scope")
    store = state().store
    others_on_record(store, token, events, set())
    with writing_as(token, None if token.reports_anywhere else token.may_change_by_report):
        _, new_events = store.record_report([], [writing.sign(event) for event in events], utc_now())
    EVENTS_STORED.inc(new_events)
    return jsonify({"containers": 0, "events": new_events})


@bp.post("/ecs-events")
def report_ecs_events() -> Response:
    """ECS task state changes as EventBridge delivers them (one event or a list): from an API destination.
    Checked whole, against the store too (a container belongs to its task), before anything is written."""
    app_state = state()
    token: Token = g.token
    if not token.events:
        raise refuse(token, "may not send ECS events: it has no events scope")
    conversions = ecs_events.convert_all(body())
    for conversion in conversions:
        if not token.may_send_events(conversion.accounts, conversion.regions, conversion.cluster):
            raise refuse(
                token,
                f"may not send ECS events of account {'/'.join(sorted(conversion.accounts))}, region "
                f"{'/'.join(sorted(conversion.regions))}, cluster {conversion.cluster!r}",
            )
    batch = ecs_events.Batch(app_state.store, utc_now())
    task_definitions = app_state.task_definitions if app_state.config.task_definitions else None
    container_instances = app_state.container_instances if app_state.config.container_instances else None
    with writing_as(token, None if token.sends_events_anywhere else token.may_change_by_event):
        for conversion in conversions:
            batch.add(conversion)
        _, new_events = batch.write(task_definitions, container_instances)
    EVENTS_STORED.inc(new_events)
    return jsonify({"containers": len(batch.records), "events": new_events, "held": batch.held})
