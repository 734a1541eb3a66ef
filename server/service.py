"""``/query/service/…``: an ECS service's tasks, from the ECS API joined with the record, and its New Relic link.

Also attaches the upstream clients (ECS API, New Relic) and the service-name worker to the app, and maps their
errors to the one JSON error shape.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from flask import Blueprint, Flask, Response, current_app, jsonify, redirect

from server import newrelic
from server.ecs import EcsClient, EcsError, EcsUnavailable, task_id_of
from server.enrich import ServiceNames
from server.errors import ApiError, error_response
from server.newrelic import NewRelicClient, NewRelicError
from server.query import flag, full_record, state, text, wants_redirect
from server.store import Record

bp = Blueprint("service", __name__, url_prefix="/query/service")

EXTENSION = "ecs_id_mapper_upstreams"
#: ECS cluster and service names: letters, digits, hyphens and underscores, at most 255.
ECS_NAME = re.compile(r"[A-Za-z0-9_-]{1,255}")


@dataclass
class Upstreams:
    """The outside services the routes ask, kept in ``app.extensions[EXTENSION]``."""

    ecs: EcsClient
    newrelic: NewRelicClient
    service_names: ServiceNames


def init_app(app: Flask) -> None:
    """Attach the ECS and New Relic clients and the service-name worker; register the routes and errors."""
    app_state = app.extensions["ecs_id_mapper"]
    ecs = EcsClient()  # makes its boto3 client on first use, never here
    app.extensions[EXTENSION] = Upstreams(
        ecs, newrelic.from_config(app_state.config), ServiceNames(ecs, app_state.store)
    )
    app.register_blueprint(bp)
    app.register_error_handler(EcsError, upstream_error)
    app.register_error_handler(NewRelicError, upstream_error)


def upstreams() -> Upstreams:
    return current_app.extensions[EXTENSION]


def upstream_error(exc: EcsError | NewRelicError) -> Response:
    extra = getattr(exc, "extra", {})
    response = error_response(exc.status, str(exc), **extra)
    if isinstance(exc, EcsUnavailable) and exc.retry_after:
        response.headers["Retry-After"] = str(exc.retry_after)
    return response


def submit_new_records(created: list[Record]) -> None:
    """Queue the tasks of newly stored records for their service name; returns at once."""
    if state().config.service_names:
        upstreams().service_names.submit(created)


def newrelic_instance_url(record: Record) -> str:
    """The container's New Relic application-instance URL, looked up once and then cached in its record."""
    url = upstreams().newrelic.instance_url(record["container_id"][:12])
    state().store.update_container(record["container_id"], {"newrelic_url": url})
    return url


def ecs_name(value: str, what: str) -> str:
    if not ECS_NAME.fullmatch(value):
        raise ApiError(f"{what} name {value!r} is malformed: expected up to 255 letters, digits, '-' or '_'")
    return value


@bp.get("/<cluster>/<service>/_all")
def service_all(cluster: str, service: str) -> Response:
    cluster, service = ecs_name(cluster, "cluster"), ecs_name(service, "service")
    include_stopped = flag("include_stopped")
    running = [task_id_of(arn) for arn in upstreams().ecs.service_tasks(cluster, service)]
    store = state().store

    by_task: dict[str, list[Record]] = {}
    for record in store.containers_of_service(cluster, service):
        by_task.setdefault(record["task_id"], []).append(record)

    tasks, missing = [], []
    for task_id in running:
        found = by_task.get(task_id)
        if found is None:
            # Not enriched yet: ECS has just told us the service, so the record learns it now (a name the
            # record already has came from the task's own group and stays).
            found = store.containers_of_task(task_id)
            if found and not any(r.get("service_name") for r in found):
                store.update_task(task_id, {"service_name": service})
                found = [{**r, "service_name": service} for r in found]
        if found:
            tasks.append({"task_id": task_id, "containers": [full_record(r) for r in found]})
        else:
            missing.append(task_id)
    if include_stopped:
        listed = set(running)
        tasks.extend(
            {"task_id": task_id, "containers": [full_record(r) for r in found]}
            for task_id, found in by_task.items()
            if task_id not in listed
        )
    return jsonify({"cluster_name": cluster, "service_name": service, "tasks": tasks, "missing": missing})


@bp.get("/<cluster>/<service>/newrelic")
def service_newrelic(cluster: str, service: str) -> Response:
    ecs_name(cluster, "cluster")
    redirecting = wants_redirect()  # a bad flag is a 400 before any outside lookup
    url = upstreams().newrelic.application_url(ecs_name(service, "service"))
    return redirect(url, 302) if redirecting else text(url)
