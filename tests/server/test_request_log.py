"""One log line per request, and the X-Request-ID header: the client's when sane, a new one otherwise."""

from __future__ import annotations

import json
import logging
import re

import pytest

from server.config import ConfigError, load
from server.logs import JsonFormatter
from tests.server.samples import API_ID, AUTH


@pytest.fixture
def request_lines(caplog):
    caplog.set_level(logging.INFO, logger="server.requests")
    return lambda: [record for record in caplog.records if record.name == "server.requests"]


@pytest.mark.parametrize("given", ["abc-123", "a" * 128, "1-5759e988-bd862e3fe1be46a994272793", "x.y_z:1"])
def test_a_sane_request_id_is_kept(client, request_lines, given):
    response = client.get(f"/query/container_id/{API_ID}", headers={"X-Request-ID": given})
    assert response.headers["X-Request-ID"] == given
    (line,) = request_lines()
    assert line.request_id == given


@pytest.mark.parametrize("given", [None, "", "a" * 129, "has space", "semi;colon", "caf\u00e9", "a/b", "${jndi}"])
def test_anything_else_gets_a_new_request_id(client, request_lines, given):
    headers = {} if given is None else {"X-Request-ID": given}
    response = client.get("/health", headers=headers)
    made = response.headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", made)
    assert request_lines()[-1].request_id == made


def test_each_request_gets_its_own_id(client):
    assert client.get("/health").headers["X-Request-ID"] != client.get("/health").headers["X-Request-ID"]


def test_the_line_names_the_route_template_not_the_path(client, request_lines):
    client.get(f"/query/container_id/{API_ID}/_all?redir=maybe")
    client.post("/report/map", json={"containers": "no"}, headers=AUTH)
    client.get("/no/such/route")
    lines = [(r.method, r.route, r.status) for r in request_lines()]
    assert lines == [
        ("GET", "/query/container_id/<container_id>/_all", 404),
        ("POST", "/report/map", 400),
        ("GET", "-", 404),
    ]
    for record in request_lines():
        assert record.duration_ms >= 0
        assert API_ID not in record.getMessage()


def test_an_error_answer_carries_the_request_id_too(client):
    response = client.post("/report/map", json={}, headers={"X-Request-ID": "r-1"})
    assert (response.status_code, response.headers["X-Request-ID"]) == (401, "r-1")


def test_a_json_line_has_the_request_fields(client, request_lines):
    client.get("/health", headers={"X-Request-ID": "r-2"})
    line = json.loads(JsonFormatter().format(request_lines()[-1]))
    assert {key: line[key] for key in ("level", "logger", "method", "route", "status", "request_id")} == {
        "level": "INFO",
        "logger": "server.requests",
        "method": "GET",
        "route": "/health",
        "status": 200,
        "request_id": "r-2",
    }
    assert isinstance(line["duration_ms"], float)
    assert line["time"].endswith("+00:00")


def test_log_format_is_text_or_json():
    assert load(environ={}).log_format == "text"
    assert load(environ={"ECS_ID_MAPPER_LOG_FORMAT": "JSON"}).log_format == "json"
    with pytest.raises(ConfigError, match=r"^ECS_ID_MAPPER_LOG_FORMAT: "):
        load(environ={"ECS_ID_MAPPER_LOG_FORMAT": "xml"})
