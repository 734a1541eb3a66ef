"""``ECS_ID_MAPPER_READ_TOKEN``: the read routes need a bearer token (the read or the report token); /health never."""

from __future__ import annotations

import hashlib
import hmac
from unittest.mock import patch

import pytest

from server.config import ConfigError, load
from tests.server import samples
from tests.server.samples import API_ID, AUTH, TASK_LONG, TOKEN

READ_TOKEN = "r3ad-only-token"
READ_AUTH = {"Authorization": f"Bearer {READ_TOKEN}"}
#: One route of every protected family, each answering 200 once the sample container is reported; the service
#: route asks ECS, which tests point at a closed port, so an authorized read of it is that route's own 503.
ANSWERS = {
    f"/query/container_id/{API_ID}": 200,
    f"/query/container_id/{API_ID}/_all": 200,
    f"/query/container_id/{API_ID}/events": 200,
    f"/query/task_id/{TASK_LONG}/containers": 200,
    "/query/service/default/web/_all": 503,
    "/sd/prometheus": 200,
}
PROTECTED = list(ANSWERS)


@pytest.fixture
def client(make_app, settings):
    app = make_app({**settings, "read_token": READ_TOKEN})
    test_client = app.test_client()
    container = samples.container(cluster="default", service_name="web")
    assert test_client.post("/report/map", json=samples.map_report(container), headers=AUTH).status_code == 200
    return test_client


@pytest.mark.parametrize("path", PROTECTED)
def test_a_read_without_a_token_is_401_with_a_bearer_challenge(client, path):
    response = client.get(path)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.get_json()["error"] == "unauthorized"


@pytest.mark.parametrize("path", PROTECTED)
@pytest.mark.parametrize("header", [f"Bearer {READ_TOKEN}x", "Bearer wrong", f"Bearer {READ_TOKEN[:-1]}"])
def test_a_read_with_a_wrong_token_is_403(client, path, header):
    response = client.get(path, headers={"Authorization": header})
    assert (response.status_code, response.get_json()["error"]) == (403, "forbidden")


@pytest.mark.parametrize("path", PROTECTED)
@pytest.mark.parametrize("headers", [READ_AUTH, AUTH, {"Authorization": f"bearer {READ_TOKEN}"}])
def test_the_read_token_or_the_report_token_reads(client, path, headers):
    assert client.get(path, headers=headers).status_code == ANSWERS[path]


def test_basic_auth_is_no_bearer_token(client):
    response = client.get(f"/query/container_id/{API_ID}", auth=(READ_TOKEN, ""))
    assert response.status_code == 401


def test_health_stays_open(client):
    assert client.get("/health").status_code == 200


def test_the_read_token_does_not_report(client):
    body = samples.map_report(samples.container())
    assert client.post("/report/map", json=body, headers=READ_AUTH).status_code == 403


def test_without_a_read_token_reads_are_open(make_app, settings):
    client = make_app(settings).test_client()
    assert client.get("/sd/prometheus").status_code == 200
    assert client.get(f"/query/container_id/{API_ID}").status_code == 404


def test_a_report_without_a_token_gets_the_bearer_challenge(make_app, settings):
    response = make_app(settings).test_client().post("/report/map", json={})
    assert (response.status_code, response.headers["WWW-Authenticate"]) == (401, "Bearer")


@pytest.mark.parametrize("value", ["with space", "two\nlines", "t\u00f6ken"])
def test_a_bad_read_token_names_its_variable(value):
    with pytest.raises(ConfigError, match=r"^ECS_ID_MAPPER_READ_TOKEN: "):
        load(environ={"ECS_ID_MAPPER_READ_TOKEN": value})


def test_every_token_is_compared_in_constant_time(client):
    with patch("hmac.compare_digest", wraps=hmac.compare_digest) as compare:
        assert client.get("/sd/prometheus", headers=AUTH).status_code == 200
    # The SHA-256 of what was given against both tokens' hashes, each with compare_digest, even though one of them
    # did not match and the other did.
    digests = sorted(hashlib.sha256(token.encode()).digest() for token in (READ_TOKEN, TOKEN))
    assert sorted(call.args[1] for call in compare.call_args_list) == digests
    assert {call.args[0] for call in compare.call_args_list} == {hashlib.sha256(TOKEN.encode()).digest()}
