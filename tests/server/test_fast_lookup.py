"""``server.fast_lookup``: the lookups answered before Flask give the same bytes Flask gives, and leave
everything else (errors, refusals, query strings, other methods) to Flask."""

from __future__ import annotations

import logging

import pytest
from werkzeug.test import Client

from server.fast_lookup import FastLookups
from server.requestlog import RequestLog
from tests.server import samples
from tests.server.samples import API_ID, AUTH, SIDECAR_ID, TASK_LONG, TASK_UUID

READ_TOKEN = "r3ad-only-token"
STOPPED_TASK = "0123456789abcdef0123456789abcdef"
STOPPED_ID = "5" * 64
#: Asked with and without the fast path; each gets its answer (the same) either way.
ASKED = [
    f"/query/container_id/{API_ID}",
    f"/query/container_id/{API_ID.upper()}",
    f"/query/container_id/{API_ID[:12]}",
    f"/query/container_id/{SIDECAR_ID[:16]}",
    f"/query/container_id/{STOPPED_ID}",
    f"/query/task_id/{TASK_LONG}",
    f"/query/task_id/{TASK_UUID}",
    f"/query/task_id/{STOPPED_TASK}",
    f"/query/task_id/{STOPPED_TASK}",  # from the cache of stopped tasks the second time
    f"/query/container_id/{'e' * 64}",  # unknown: 404
    f"/query/container_id/{API_ID[:4]}",  # too short a prefix: 400
    "/query/container_id/not-hex!",
    f"/query/task_id/{'f' * 32}",
    "/query/task_id/%2e%2e",
    f"/query/container_id/{API_ID}?format=json",
    f"/query/container_id/{API_ID}/",
    f"/query/container_id/{API_ID}/_all",
    "/query/container_id/caf%C3%A9",
]
HEADERS = [{}, AUTH, {"Authorization": f"Bearer {READ_TOKEN}"}, {"Authorization": "Bearer wrong"}]


@pytest.fixture(params=[False, True], ids=["open reads", "read token"])
def app(request, make_app, settings):
    made = make_app({**settings, "read_token": READ_TOKEN} if request.param else settings)
    client = made.test_client()
    tasks = [
        samples.container(API_ID, "api", f"arn:aws:ecs:eu-west-1:123456789012:task/default/{TASK_LONG}"),
        samples.container(SIDECAR_ID, "sidecar", f"arn:aws:ecs:eu-west-1:123456789012:task/default/{TASK_LONG}"),
        samples.container("7" * 64, "old", f"arn:aws:ecs:eu-west-1:123456789012:task/{TASK_UUID}"),
        samples.container(
            STOPPED_ID,
            "done",
            f"arn:aws:ecs:eu-west-1:123456789012:task/default/{STOPPED_TASK}",
            known_status="STOPPED",
        ),
    ]
    assert client.post("/report/map", json=samples.map_report(*tasks), headers=AUTH).status_code == 200
    return made


def flask_only(app) -> Client:
    """A client of the app as it would be without the fast path: the request log around Flask alone."""
    fast = app.wsgi_app.app
    assert isinstance(fast, FastLookups)
    return Client(RequestLog(fast.app))


@pytest.mark.parametrize("headers", HEADERS, ids=["none", "report token", "read token", "wrong token"])
def test_every_answer_is_the_same_bytes_with_or_without_the_fast_path(app, headers):
    without = flask_only(app)
    with_it = Client(app.wsgi_app)
    for path in ASKED:
        given = {**headers, "X-Request-ID": "same-id"}
        one, other = with_it.get(path, headers=given), without.get(path, headers=given)
        assert (one.status, one.headers.to_wsgi_list(), one.data) == (
            other.status,
            other.headers.to_wsgi_list(),
            other.data,
        ), path


def test_lookups_never_reach_flask_and_the_rest_do(app, monkeypatch):
    fast = app.wsgi_app.app
    reached: list[str] = []
    flask_app = fast.app
    monkeypatch.setattr(
        fast, "app", lambda environ, start: reached.append(environ["PATH_INFO"]) or flask_app(environ, start)
    )
    client = Client(app.wsgi_app)
    token = {"Authorization": f"Bearer {READ_TOKEN}"}
    assert client.get(f"/query/container_id/{API_ID}", headers=token).data == f"{TASK_LONG}\n".encode()
    assert client.get(f"/query/task_id/{TASK_LONG}", headers=token).data == f"{API_ID}\n{SIDECAR_ID}\n".encode()
    assert client.get(f"/query/container_id/{API_ID}/_all", headers=token).json["task_id"] == TASK_LONG
    assert client.get(f"/query/container_id/{'e' * 64}", headers=token).status_code == 404
    assert client.get("/query/task_id/nope", headers=token).status_code == 400
    assert reached == []  # found or not, asked once, answered here
    client.get(f"/query/container_id/{API_ID}?format=json", headers=token)
    client.head(f"/query/container_id/{API_ID}", headers=token)
    client.get("/health")
    assert reached == [f"/query/container_id/{API_ID}"] * 2 + ["/health"]


def test_an_answer_before_flask_is_logged_and_counted_under_its_route(app, caplog):
    caplog.set_level(logging.INFO, logger="server.requests")
    client = app.test_client()
    token = {"Authorization": f"Bearer {READ_TOKEN}"}
    assert client.get(f"/query/task_id/{TASK_LONG}", headers=token).status_code == 200
    (line,) = [r for r in caplog.records if r.name == "server.requests"]
    assert (line.method, line.route, line.status) == ("GET", "/query/task_id/<task_id>", 200)
    metrics = client.get("/metrics", headers=token).data.decode()
    assert 'route="/query/task_id/<task_id>"' in metrics


def test_a_failure_before_the_answer_leaves_the_request_to_flask(app, monkeypatch, caplog):
    from server import auth

    def broken(*_):
        raise RuntimeError("the read check failed")

    monkeypatch.setattr(auth, "may_read", broken)
    caplog.set_level(logging.INFO, logger="server.requests")
    token = {"Authorization": f"Bearer {READ_TOKEN}"}
    answer = app.test_client().get(f"/query/container_id/{API_ID}", headers=token)
    assert (answer.status_code, answer.data) == (200, f"{TASK_LONG}\n".encode())  # Flask's own read hook let it in
    (line,) = [r for r in caplog.records if r.name == "server.requests"]
    assert line.route == "/query/container_id/<container_id>"
