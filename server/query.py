"""``/query/…``: what users ask of the record, by container ID or by task ID.

Single values answer as text (one per line) for shell scripts; records and lists answer as JSON.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request
from werkzeug.wrappers import Response as BaseResponse

from server import ids
from server.errors import ApiError
from server.record_links import as_shown, configured_links, full_record, link_names, link_url
from server.respond import text, url_answer, wants_redirect
from server.state import state
from server.store import Record

bp = Blueprint("query", __name__, url_prefix="/query")

AMBIGUOUS_SHOWN = 10


def container_record(raw_id: str) -> Record:
    """The one record a container ID or unique prefix names: 404 unknown, 409 ambiguous."""
    prefix = ids.container_prefix(raw_id)
    store = state().store
    if ids.is_full_container_id(prefix):
        record = store.get_container(prefix)
        matches = [record] if record else []
    else:
        matches = store.find_containers(prefix, limit=AMBIGUOUS_SHOWN + 1)
    if not matches:
        raise ApiError(f"no container with ID {prefix!r} is on record", 404)
    if len(matches) > 1:
        shown = [m["container_id"] for m in matches[:AMBIGUOUS_SHOWN]]
        more = " (and more)" if len(matches) > AMBIGUOUS_SHOWN else ""
        raise ApiError(f"container ID prefix {prefix!r} matches several containers{more}", 409, matches=shown)
    return matches[0]


def container_task(raw_id: str) -> tuple[str, str]:
    """The full container ID and the task ID of the container ``raw_id`` names (errors as ``container_record``).

    A full ID reads only its task ID from the store, not the whole record."""
    prefix = ids.container_prefix(raw_id)
    if ids.is_full_container_id(prefix):
        task_id = state().store.task_of_container(prefix)
        if task_id is not None:
            return prefix, task_id
    record = container_record(raw_id)
    return record["container_id"], record["task_id"]


def task_records(raw_id: str) -> list[Record]:
    """Every record of one task, ordered by container name: 404 unknown."""
    task_id = ids.task_id(raw_id)
    found = state().store.containers_of_task(task_id)
    if not found:
        raise unknown_task(task_id)
    return found


def unknown_task(task_id: str) -> ApiError:
    return ApiError(f"no task with ID {task_id!r} is on record", 404)


def task_container(raw_id: str) -> tuple[Record, list[Record]]:
    """The task's container named by ``?container=``, else its first by name; with all of them."""
    found = task_records(raw_id)
    name = request.args.get("container")
    if name is None:
        return found[0], found
    for record in found:
        if record.get("container_name") == name:
            return record, found
    names = ", ".join(r.get("container_name", "") for r in found)
    raise ApiError(f"task has no container named {name!r}; it has: {names}", 404)


def link_name(name: str) -> str:
    """``name`` if it is a link; 404 listing the links otherwise (before any lookup of the record)."""
    if name not in link_names():
        raise ApiError(f"no link is called {name!r}; the links are: {', '.join(link_names())}", 404)
    return name


def link_answer(name: str, record: Record) -> BaseResponse:
    redirecting = wants_redirect()  # a bad flag is a 400 before any outside lookup
    return url_answer(link_url(name, record, lookup=True), redirecting)


# By container ID


@bp.get("/container_id/<container_id>")
def task_of_container(container_id: str) -> Response:
    cache = state().task_of_container
    task_id = cache.get(container_id.lower())
    if task_id is None:
        full_id, task_id = container_task(container_id)
        cache.put(full_id, task_id)
    return text(task_id)


@bp.get("/container_id/<container_id>/_all")
def container_all(container_id: str) -> Response:
    (record,) = as_shown([container_record(container_id)])
    return jsonify(full_record(record))


# Fixed segments (``_all``, ``urls``, ``events``) are matched before this rule; configured link names never
# take one (``links.RESERVED``).
@bp.get("/container_id/<container_id>/<link>")
def container_link(container_id: str, link: str) -> BaseResponse:
    return link_answer(link_name(link), container_record(container_id))


@bp.get("/container_id/<container_id>/urls")
def container_urls(container_id: str) -> Response:
    return jsonify(configured_links(container_record(container_id)))


@bp.get("/container_id/<container_id>/events")
def container_events(container_id: str) -> Response:
    record = container_record(container_id)
    return jsonify(state().store.events_of_container(record["container_id"]))


# By task ID


@bp.get("/task_id/<task_id>")
def containers_of_task(task_id: str) -> Response:
    cache, key = state().containers_of_stopped_task, ids.task_id(task_id)
    found = cache.get(key)
    if found is None:
        statuses = state().store.statuses_of_task(key)  # the IDs and statuses alone, not the whole records
        if not statuses:
            raise unknown_task(key)
        found = tuple(container_id for container_id, _ in statuses)
        if all(status == "STOPPED" for _, status in statuses):
            cache.put(key, found)
    return text(*found)


@bp.get("/task_id/<task_id>/_all")
def task_all(task_id: str) -> Response:
    record, found = task_container(task_id)
    (record,) = as_shown([record])
    return jsonify({**full_record(record), "task_containers": [r.get("container_name", "") for r in found]})


@bp.get("/task_id/<task_id>/containers")
def task_containers(task_id: str) -> Response:
    return jsonify([full_record(r) for r in as_shown(task_records(task_id))])


@bp.get("/task_id/<task_id>/<link>")
def task_link(task_id: str, link: str) -> BaseResponse:
    name = link_name(link)
    record, _ = task_container(task_id)
    return link_answer(name, record)


@bp.get("/task_id/<task_id>/urls")
def task_urls(task_id: str) -> Response:
    record, _ = task_container(task_id)
    return jsonify(configured_links(record))


@bp.get("/task_id/<task_id>/events")
def task_events(task_id: str) -> Response:
    task_records(task_id)
    return jsonify(state().store.events_of_task(ids.task_id(task_id)))
