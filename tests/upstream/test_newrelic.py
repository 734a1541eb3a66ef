"""The New Relic REST API v2 client, against New Relic scripted with responses."""

from __future__ import annotations

import logging

import pytest
import requests
from responses import matchers

from server.app import newrelic_client
from server.newrelic import (
    NewRelicAmbiguous,
    NewRelicError,
    NewRelicNotConfigured,
    NewRelicNotFound,
    NewRelicUnavailable,
    RestV2Client,
    UnconfiguredClient,
)
from tests.upstream.helpers import config

API = "http://127.0.0.1:9"
KEY = "NRAK-SECRETKEY0123456789"
ACCOUNT = "1234567"
SHORT_ID = "9f8e7d6c5b4a"
APP = {"id": 41, "name": "web", "language": "python", "links": {"application_instances": [7001, 7002]}}
INSTANCE_URL = f"https://rpm.newrelic.com/accounts/{ACCOUNT}/applications/41/instances/7002"


@pytest.fixture
def newrelic() -> RestV2Client:
    return RestV2Client(KEY, ACCOUNT, API, timeout=0.5)


def get(nr, path: str, body: object, params: dict | None = None, status: int = 200) -> None:
    match = [matchers.header_matcher({"X-Api-Key": KEY})]
    if params is not None:
        match.append(matchers.query_param_matcher(params))
    nr.get(f"{API}{path}", json=body, status=status, match=match)


def host(host_id: int, instances: list[int], name: str = SHORT_ID) -> dict:
    return {"id": host_id, "host": name, "application_name": "web", "links": {"application_instances": instances}}


def test_instance_url_through_applications_then_hosts(newrelic, nr):
    get(nr, "/v2/applications.json", {"applications": [APP]}, {"filter[host]": SHORT_ID})
    get(
        nr,
        "/v2/applications/41/hosts.json",
        {"application_hosts": [host(5002, [7002])]},
        {"filter[hostname]": SHORT_ID},
    )

    assert newrelic.instance_url(SHORT_ID.upper()) == INSTANCE_URL


def test_instance_url_asks_for_instances_when_the_host_does_not_name_one(newrelic, nr):
    get(nr, "/v2/applications.json", {"applications": [APP]}, {"filter[host]": SHORT_ID})
    get(nr, "/v2/applications/41/hosts.json", {"application_hosts": [host(5002, [])]}, {"filter[hostname]": SHORT_ID})
    instances = [
        {"id": 7001, "host": "other", "links": {"application": 41, "application_host": 5001}},
        {"id": 7002, "host": SHORT_ID, "links": {"application": 41, "application_host": 5002}},
    ]
    get(nr, "/v2/applications/41/instances.json", {"application_instances": instances}, {"filter[hostname]": SHORT_ID})

    assert newrelic.instance_url(SHORT_ID) == INSTANCE_URL


def test_no_application_on_the_host_is_not_found(newrelic, nr):
    get(nr, "/v2/applications.json", {"applications": []}, {"filter[host]": SHORT_ID})

    with pytest.raises(NewRelicNotFound, match=f"no application on host {SHORT_ID}") as caught:
        newrelic.instance_url(SHORT_ID)
    assert caught.value.status == 404


def test_application_without_that_host_is_not_found(newrelic, nr):
    get(nr, "/v2/applications.json", {"applications": [APP]})
    get(nr, "/v2/applications/41/hosts.json", {"application_hosts": []})

    with pytest.raises(NewRelicNotFound, match="has no host"):
        newrelic.instance_url(SHORT_ID)


def test_several_applications_on_the_host_are_ambiguous_and_listed(newrelic, nr):
    other = {"id": 42, "name": "worker", "links": {}}
    get(nr, "/v2/applications.json", {"applications": [APP, other]}, {"filter[host]": SHORT_ID})

    with pytest.raises(NewRelicAmbiguous, match=r"web \(41\), worker \(42\)") as caught:
        newrelic.instance_url(SHORT_ID)
    assert caught.value.status == 409
    assert [c["name"] for c in caught.value.extra["candidates"]] == ["web", "worker"]
    assert caught.value.extra["candidates"][1]["url"].endswith("/applications/42")


def test_application_url_keeps_the_exact_name(newrelic, nr):
    contains = [{"id": 40, "name": "web-admin"}, {"id": 41, "name": "web"}]
    get(nr, "/v2/applications.json", {"applications": contains}, {"filter[name]": "web"})

    assert newrelic.application_url("web") == f"https://rpm.newrelic.com/accounts/{ACCOUNT}/applications/41"


def test_application_url_of_an_unknown_name_is_not_found(newrelic, nr):
    get(nr, "/v2/applications.json", {"applications": [{"id": 40, "name": "web-admin"}]})

    with pytest.raises(NewRelicNotFound, match="no application named 'web'"):
        newrelic.application_url("web")


def test_follows_next_pages_on_the_same_api_only(newrelic, nr):
    nr.get(
        f"{API}/v2/applications.json",
        json={"applications": []},
        headers={"Link": f'<{API}/v2/applications.json?page=2>; rel="next"'},
        match=[matchers.query_param_matcher({"filter[name]": "web"})],
    )
    get(nr, "/v2/applications.json", {"applications": [{"id": 41, "name": "web"}]}, {"page": "2"})

    assert newrelic.application_url("web").endswith("/applications/41")


@pytest.mark.parametrize(
    ("answer", "error", "status", "message"),
    [
        (requests.ReadTimeout("read timed out"), NewRelicError, 502, "did not answer within 0.5 s"),
        (requests.ConnectionError("refused"), NewRelicUnavailable, 503, "unreachable"),
        (
            {"status": 401, "json": {"error": {"title": "Invalid key " + KEY}}},
            NewRelicError,
            502,
            "refused the API key",
        ),
        ({"status": 500, "json": {"error": {"title": "Oops " + KEY}}}, NewRelicError, 502, "answered 500: Oops"),
        ({"status": 503, "body": "<html>down</html>"}, NewRelicError, 502, "answered 503"),
        ({"status": 429, "json": {}}, NewRelicUnavailable, 503, "rate-limiting"),
        ({"status": 200, "body": "{not json"}, NewRelicError, 502, "malformed JSON"),
        ({"status": 200, "json": {"applications": "none"}}, NewRelicError, 502, "without a list of applications"),
    ],
    ids=["timeout", "unreachable", "401", "500", "503-html", "429", "malformed-json", "wrong-shape"],
)
def test_trouble_upstream(newrelic, nr, caplog, answer, error, status, message):
    caplog.set_level(logging.DEBUG)
    if isinstance(answer, Exception):
        nr.get(f"{API}/v2/applications.json", body=answer)
    else:
        nr.get(f"{API}/v2/applications.json", **answer)

    with pytest.raises(error, match=message) as caught:
        newrelic.instance_url(SHORT_ID)
    assert type(caught.value) is error
    assert caught.value.status == status
    assert KEY not in str(caught.value)
    assert KEY not in caplog.text
    assert KEY not in repr(newrelic)


def test_not_configured_names_the_missing_variables():
    client = newrelic_client(config(newrelic_account_id=ACCOUNT))

    assert isinstance(client, UnconfiguredClient)
    with pytest.raises(NewRelicNotConfigured, match=r"set ECS_ID_MAPPER_NEWRELIC_API_KEY$") as caught:
        client.instance_url(SHORT_ID)
    assert caught.value.status == 404
    with pytest.raises(NewRelicNotConfigured, match="API_KEY and ECS_ID_MAPPER_NEWRELIC_ACCOUNT_ID"):
        newrelic_client(config()).application_url("web")


def test_configured_client_uses_the_configured_api_and_templates(nr):
    client = newrelic_client(
        config(
            newrelic_api="rest",
            newrelic_api_key=KEY,
            newrelic_account_id=ACCOUNT,
            newrelic_api_url=API,
            newrelic_application_url="https://one.eu.newrelic.com/apps/{application_id}?account={account_id}",
        )
    )
    get(nr, "/v2/applications.json", {"applications": [{"id": 41, "name": "web"}]})

    assert client.application_url("web") == f"https://one.eu.newrelic.com/apps/41?account={ACCOUNT}"


MALFORMED_IDS = [[], {}, True, "", 1.5, [7002]]


@pytest.mark.parametrize("bad", MALFORMED_IDS, ids=repr)
def test_a_malformed_application_id_is_a_bad_answer(newrelic, nr, bad):
    get(nr, "/v2/applications.json", {"applications": [{**APP, "id": bad}]}, {"filter[host]": SHORT_ID})

    with pytest.raises(NewRelicError, match="malformed application ID") as caught:
        newrelic.instance_url(SHORT_ID)
    assert caught.value.status == 502


@pytest.mark.parametrize("bad", MALFORMED_IDS, ids=repr)
def test_a_malformed_instance_id_is_a_bad_answer(newrelic, nr, bad):
    get(nr, "/v2/applications.json", {"applications": [APP]}, {"filter[host]": SHORT_ID})
    get(nr, "/v2/applications/41/hosts.json", {"application_hosts": [host(5002, [])]}, {"filter[hostname]": SHORT_ID})
    instances = [{"id": bad, "host": SHORT_ID, "links": {"application": 41, "application_host": [5002]}}]
    get(nr, "/v2/applications/41/instances.json", {"application_instances": instances}, {"filter[hostname]": SHORT_ID})

    with pytest.raises(NewRelicError, match="malformed application instance ID") as caught:
        newrelic.instance_url(SHORT_ID)
    assert caught.value.status == 502


@pytest.mark.parametrize("bad", [[[]], [{}], [True]], ids=repr)
def test_a_host_linking_malformed_instances_is_a_bad_answer(newrelic, nr, bad):
    get(nr, "/v2/applications.json", {"applications": [APP]}, {"filter[host]": SHORT_ID})
    get(nr, "/v2/applications/41/hosts.json", {"application_hosts": [host(5002, bad)]}, {"filter[hostname]": SHORT_ID})

    with pytest.raises(NewRelicError, match="malformed application instance ID") as caught:
        newrelic.instance_url(SHORT_ID)
    assert caught.value.status == 502
