"""``/query/ip/…`` and ``/query/host/…``: who held an address, or ran on an EC2 instance, at a moment or ever.

One question answers as text (the task IDs, one per line) for curl, or as JSON (every holding with its interval);
``POST /query/ip`` answers up to MAX_QUESTIONS of them at once, each on its own, for machines such as the flow-log
annotator (``server.flowlogs``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Blueprint, Response, jsonify, request

from server import addresses, ids, validation
from server.address_questions import (
    MAX_QUESTIONS,
    Question,
    address_text,
    holding_json,
    moment,
    port_number,
    question,
)
from server.errors import ApiError
from server.records import utc_now
from server.respond import json_body, text
from server.state import state
from server.store import Store
from server.validation import ValidationError

bp = Blueprint("address", __name__, url_prefix="/query")

FORMATS = ("text", "json")


def wants_json() -> bool:
    """``?format=json|text``; else the ``Accept`` header: JSON only when preferred to text (curl's ``*/*`` is text)."""
    written = request.args.get("format")
    if written is not None:
        if written.lower() not in FORMATS:
            raise ApiError(f"format: expected one of {', '.join(FORMATS)}, got {written[:40]!r}")
        return written.lower() == "json"
    best = request.accept_mimetypes.best_match(["text/plain", "application/json"], default="text/plain")
    return best == "application/json"


def answer(found: list[addresses.Holding], asked: dict[str, Any], nobody: str) -> Response:
    """The holdings as JSON or as their task IDs (each once, newest first); 404 when there are none."""
    as_json = wants_json()  # a bad format is a 400 even when nobody held the address
    if not found:
        raise ApiError(nobody, 404)
    if as_json:
        return jsonify({**asked, "holdings": [holding_json(h) for h in found]})
    return text(*dict.fromkeys(h.record.get("task_id", "") for h in found))


def optional_at() -> str | None:
    written = request.args.get("at")
    return None if written is None else moment(written, "at")


def when_said(at: str | None) -> str:
    return f" at {at}" if at else ""


@bp.get("/ip/<path:address>")
def who_held(address: str) -> Response:
    where = address_text(address, "address")
    at = optional_at()
    written_port = request.args.get("port")
    port = None if written_port is None else port_number(written_port, "port")
    found = addresses.holdings(state().store, where, at, port, leases=state().leases.current())
    on_port = f" on port {port}" if port is not None else ""
    return answer(
        found, {"address": where, "at": at, "port": port}, f"nobody on record held {where}{on_port}{when_said(at)}"
    )


@bp.get("/host/<instance_id>")
def on_host(instance_id: str) -> Response:
    instance = ids.instance_id(instance_id)
    at = optional_at()
    found = addresses.on_host(state().store, instance, at, leases=state().leases.current())
    return answer(found, {"instance_id": instance, "at": at}, f"nothing on record ran on {instance}{when_said(at)}")


@bp.post("/ip")
def who_held_each() -> Response:
    """Many questions, each answered or refused on its own, in the order asked."""
    asked = body()
    if not isinstance(asked, dict) or not isinstance(asked.get("questions"), list):
        raise ApiError('expected a JSON object {"questions": [{"address": ..., "port": ..., "at": ...}, ...]}')
    questions = asked["questions"]
    if len(questions) > MAX_QUESTIONS:
        raise ApiError(
            f"{len(questions)} questions in one request; at most {MAX_QUESTIONS}: split them over several", 413
        )
    # One reading of the hosts' leases and of the clock for every question, as for one.
    store, leases, now = state().store, state().leases.current(), utc_now()
    return jsonify(
        {"answers": [one_answer(store, asked, f"$.questions[{n}]", leases, now) for n, asked in enumerate(questions)]}
    )


def one_answer(store: Store, asked: Any, path: str, leases: Mapping[str, str] | None, now: str) -> dict[str, Any]:
    try:
        one: Question = question(asked, path)
    except ValidationError as exc:
        return {"error": "bad_request", "message": str(exc)}
    found = addresses.holdings(store, one.address, one.at, one.port, leases=leases, now=now)
    return {"address": one.address, "at": one.at, "port": one.port, "holdings": [holding_json(h) for h in found]}


def body() -> Any:
    """The request's JSON, within ``ECS_ID_MAPPER_MAX_BODY_BYTES``, of plain JSON values only."""
    parsed = json_body(state().config.max_body_bytes)
    validation.plain_json(parsed, "$")
    return parsed
