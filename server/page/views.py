"""``/``: the page for people. One box takes any ID; a container's view, a task's view, lists of matches; sign-in
when a read token is set. Rendered on the server from templates; scripts only enhance."""

from __future__ import annotations

import hashlib
import json
from functools import cache
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, abort, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from server import ids
from server.auth import accepts_read, reads_guarded
from server.errors import ApiError
from server.newrelic import UnconfiguredClient
from server.page import guard, timeline, wording
from server.page.classify import Understood, classify
from server.page.lookup import not_on_record, search
from server.record_links import as_shown, configured_links, link_names, link_url
from server.records import public, utc_now
from server.state import state
from server.store import StoreError

HERE = Path(__file__).parent
STATIC = HERE / "static"
#: Static files are named with a digest of their content in their URL, so a browser may keep them a year.
STATIC_AGE = 365 * 86_400

bp = Blueprint(
    "page",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/page-static",
)


@cache
def _digest(filename: str) -> str:
    return hashlib.sha256((STATIC / filename).read_bytes()).hexdigest()[:12]


@bp.app_template_global()
def asset(filename: str) -> str:
    """The URL of a static file, with a digest of its content so that a change is a new URL."""
    return url_for("page.static", filename=filename, v=_digest(filename))


@bp.context_processor
def signing() -> dict[str, bool]:
    return {"config_read_token": reads_guarded()}


@bp.before_request
def require_sign_in() -> BaseResponse | None:
    if not reads_guarded() or request.endpoint in ("page.sign_in", "page.static"):
        return None
    if guard.signed_in(request):
        return None
    return redirect(url_for("page.sign_in", next=request.full_path.rstrip("?")), 303)


@bp.after_request
def headers(response: Response) -> Response:
    if request.endpoint == "page.static":
        response.cache_control.public = True
        response.cache_control.max_age = STATIC_AGE
        response.cache_control.immutable = True
    return guard.secure_headers(response)


@bp.errorhandler(ApiError)
def api_error(exc: ApiError) -> tuple[str, int]:
    return render_template("page/error.html", message=exc.message, status=exc.status), exc.status


@bp.errorhandler(StoreError)
def store_error(exc: StoreError) -> tuple[str, int, dict[str, str]]:
    message = "The store did not answer. Try again in a moment."
    return render_template("page/error.html", message=message, status=503), 503, {"Retry-After": "2"}


@bp.get("/")
def home() -> BaseResponse | tuple[str, int]:
    raw = request.args.get("q", "")
    understood = classify(raw)
    answer = search(understood)
    if answer.opens is not None:
        view, key = answer.opens
        values: dict[str, Any] = {f"{view}_id": key, "q": raw.strip()}
        return redirect(url_for(f"page.{view}", **values), 302)
    status = 200 if not answer.nothing or understood.kind == "empty" else 404
    if understood.kind == "malformed":
        status = 400
    return render_template("page/search.html", q=raw, answer=answer, now=utc_now(), wording=wording), status


@bp.get("/container/<container_id>")
def container(container_id: str) -> str:
    store = state().store
    full = _full_container_id(container_id)
    record = store.get_container(full)
    if record is None:
        abort(_not_found(not_on_record(f"no container with ID {full}")))
    (shown,) = as_shown([record])
    events = store.events_of_container(full)
    siblings = as_shown(store.containers_of_task(record["task_id"])) if record.get("task_id") else [shown]
    now = utc_now()
    return render_template(
        "page/container.html",
        record=shown,
        fields=public(shown),
        siblings=siblings,
        events=events,
        timeline=timeline.build([(shown, events)], now),
        links=_links(shown),
        now=now,
        wording=wording,
        q=request.args.get("q", ""),
        understood=_understood(),
    )


@bp.get("/task/<task_id>")
def task(task_id: str) -> str:
    store = state().store
    key = _task_id(task_id)
    records = as_shown(store.containers_of_task(key))
    if not records:
        abort(_not_found(not_on_record(f"no task with ID {key}")))
    events = store.events_of_task(key)
    by_container: dict[str, list] = {}
    for event in events:
        by_container.setdefault(event.get("container_id", ""), []).append(event)
    now = utc_now()
    lives = [(r, by_container.get(r["container_id"], [])) for r in records]
    drawn = timeline.build(lives, now, labelled=True)
    return render_template(
        "page/task.html",
        moments=timeline.interleaved(drawn),
        task_id=key,
        records=records,
        first=records[0],
        events=events,
        timeline=drawn,
        now=now,
        wording=wording,
        q=request.args.get("q", ""),
        understood=_understood(),
    )


@bp.get("/container/<container_id>/go/<name>")
def follow(container_id: str, name: str) -> BaseResponse:
    """A configured link, followed: the same checks and redirect as ``/query/container_id/<id>/<name>?redir=true``
    (a New Relic link not on record yet is looked up once)."""
    full = _full_container_id(container_id)
    if name not in link_names():
        abort(_not_found(f"No link is called {name}."))
    record = state().store.get_container(full)
    if record is None:
        abort(_not_found(f"No container with ID {full} is on record."))
    return redirect(_checked(link_url(name, record, lookup=True)), 302)


@bp.route("/sign-in", methods=["GET", "POST"])
def sign_in() -> BaseResponse | tuple[str, int]:
    target = guard.local_path(request.values.get("next", "/"))
    if not reads_guarded():
        return redirect(target, 303)
    if request.method == "GET":
        return render_template("page/sign_in.html", next=target, refused=False), 200
    if not guard.same_origin(request):
        return render_template("page/error.html", message="Sign in from this page only.", status=403), 403
    token = request.form.get("token", "")
    if not accepts_read(token):
        # Which part was wrong (which token, how much of it) is never said.
        return render_template("page/sign_in.html", next=target, refused=True), 403
    response = redirect(target, 303)
    guard.keep_token(response, token, secure=guard.behind_https(request))
    return response


@bp.post("/sign-out")
def sign_out() -> BaseResponse:
    response = redirect(url_for("page.home"), 303)
    if guard.same_origin(request):
        response.delete_cookie(guard.COOKIE, path="/", httponly=True, samesite="Strict")
    return response


def _understood() -> Understood | None:
    """What the search that led here understood, to say it on the view it opened."""
    raw = request.args.get("q", "")
    return classify(raw) if raw.strip() else None


def _full_container_id(raw: str) -> str:
    value = raw.lower()
    if not ids.is_full_container_id(value):
        raise ApiError(f"{raw!r} is no full container ID: search for it from the box above instead", 400)
    return value


def _task_id(raw: str) -> str:
    return ids.task_id(raw)


def _not_found(message: str) -> Response:
    html = render_template("page/error.html", message=message, status=404)
    return Response(html, 404, mimetype="text/html")


def _checked(url: str) -> str:
    """A link's URL, refused unless it is http(s): the templates are checked at start; this holds the cached New
    Relic URL, which came from outside, to the same rule."""
    if not url.startswith(("http://", "https://")):
        raise ApiError("the link is not an http(s) URL", 404)
    return url


def _links(record: dict) -> list[dict[str, str]]:
    """The record's links as the page offers them: each configured one, through ``follow``, with its target."""
    shown = []
    rendered = configured_links(record)
    newrelic_configured = not isinstance(state().newrelic, UnconfiguredClient)
    for name in link_names():
        target = rendered.get(name, "")
        if target and not target.startswith(("http://", "https://")):
            continue
        if not target and not (name == "newrelic" and newrelic_configured):
            continue
        label = {"cadvisor": "cAdvisor", "graylog": "Graylog", "newrelic": "New Relic"}.get(name, name)
        via = url_for("page.follow", container_id=record["container_id"], name=name)
        shown.append({"name": name, "label": label, "target": target, "href": via})
    return shown


@bp.app_template_filter("pretty_json")
def pretty_json(value: object) -> str:
    return json.dumps(value, indent=1, sort_keys=True)
