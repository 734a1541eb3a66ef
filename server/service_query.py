"""``/query/service/…``: an ECS service's tasks, from the ECS API joined with the record, and its New Relic link."""

from __future__ import annotations

import re

from flask import Blueprint, Response, jsonify
from werkzeug.wrappers import Response as BaseResponse

from server.enrichment import store_service_name
from server.errors import ApiError
from server.ids import task_id_of_arn
from server.record_links import as_shown, full_record
from server.respond import flag, url_answer, wants_redirect
from server.state import state
from server.store import Record

bp = Blueprint("service", __name__, url_prefix="/query/service")

#: ECS cluster and service names: letters, digits, hyphens and underscores, at most 255.
ECS_NAME = re.compile(r"[A-Za-z0-9_-]{1,255}")


def ecs_name(value: str, what: str) -> str:
    if not ECS_NAME.fullmatch(value):
        raise ApiError(f"{what} name {value!r} is malformed: expected up to 255 letters, digits, '-' or '_'")
    return value


@bp.get("/<cluster>/<service>/_all")
def service_all(cluster: str, service: str) -> Response:
    cluster, service = ecs_name(cluster, "cluster"), ecs_name(service, "service")
    include_stopped = flag("include_stopped")
    app_state = state()
    running = [task_id_of_arn(arn) for arn in app_state.ecs.service_tasks(cluster, service)]
    store = app_state.store

    by_task: dict[str, list[Record]] = {}
    for record in store.containers_of_service(cluster, service):
        by_task.setdefault(record["task_id"], []).append(record)

    tasks, missing = [], []
    for task_id in running:
        found = by_task.get(task_id)
        if found is None:
            # Not enriched yet: ECS has just told us the service, so the record may learn it now.
            found = store.containers_of_task(task_id)
            if found:
                found = store_service_name(store, task_id, service, found)
        if found:
            tasks.append({"task_id": task_id, "containers": [full_record(r) for r in as_shown(found)]})
        else:
            missing.append(task_id)
    if include_stopped:
        listed = set(running)
        tasks.extend(
            {"task_id": task_id, "containers": [full_record(r) for r in as_shown(found)]}
            for task_id, found in by_task.items()
            if task_id not in listed
        )
    return jsonify({"cluster_name": cluster, "service_name": service, "tasks": tasks, "missing": missing})


@bp.get("/<cluster>/<service>/newrelic")
def service_newrelic(cluster: str, service: str) -> BaseResponse:
    ecs_name(cluster, "cluster")
    redirecting = wants_redirect()
    return url_answer(state().newrelic.application_url(ecs_name(service, "service")), redirecting)
