"""The NerdGraph client, against NerdGraph scripted with responses in its documented GraphQL answer shapes."""

from __future__ import annotations

import logging

import pytest
import requests
from responses import matchers

from server.app import newrelic_client
from server.config import ConfigError
from server.nerdgraph import ENTITIES_QUERY, HOST_QUERY, SEARCH_QUERY, NerdGraphClient, quoted
from server.newrelic import (
    NewRelicAmbiguous,
    NewRelicError,
    NewRelicNotFound,
    NewRelicUnavailable,
    RestV2Client,
)
from server.state import state
from tests.upstream.helpers import config, container_id, record, task_id

API = "http://127.0.0.1:9"
ENDPOINT = f"{API}/graphql"
KEY = "NRAK-NERDGRAPHSECRET0123"
ACCOUNT = "1234567"
SHORT_ID = "9f8e7d6c5b4a"
WEB = "MXxBUE18QVBQTElDQVRJT058NDE"
WORKER = "MXxBUE18QVBQTElDQVRJT058NDI"
NRQL = f"SELECT uniques(entityGuid) AS 'guids' FROM Transaction WHERE host = '{SHORT_ID}' SINCE 7 days ago"
SEARCH = f"domain = 'APM' AND type = 'APPLICATION' AND accountId = {ACCOUNT} AND name = 'web'"


def permalink(guid: str) -> str:
    return f"https://one.newrelic.com/redirect/entity/{guid}"


def entity(guid: str, name: str) -> dict:
    return {"guid": guid, "name": name, "permalink": permalink(guid)}


@pytest.fixture
def nerdgraph() -> NerdGraphClient:
    return NerdGraphClient(KEY, ACCOUNT, API, timeout=0.5)


def post(nr, query: str, variables: dict, answer: dict, status: int = 200) -> None:
    """One GraphQL request, matched on the key header and the exact query and variables."""
    nr.post(
        ENDPOINT,
        json=answer,
        status=status,
        match=[
            matchers.header_matcher({"API-Key": KEY}),
            matchers.json_params_matcher({"query": query, "variables": variables}),
        ],
    )


def host_answer(nr, guids: list[str]) -> None:
    results = {"actor": {"account": {"nrql": {"results": [{"guids": guids}]}}}}
    post(nr, HOST_QUERY, {"account": int(ACCOUNT), "nrql": NRQL}, {"data": results})


def entities_answer(nr, guids: list[str], entities: list[dict] | None) -> None:
    post(nr, ENTITIES_QUERY, {"guids": guids}, {"data": {"actor": {"entities": entities}}})


def search_answer(nr, entities: list[dict]) -> None:
    results = {"actor": {"entitySearch": {"results": {"entities": entities}}}}
    post(nr, SEARCH_QUERY, {"search": SEARCH}, {"data": results})


# A container's application


def test_instance_url_is_the_permalink_of_the_application_seen_on_the_host(nerdgraph, nr):
    host_answer(nr, [WEB])
    entities_answer(nr, [WEB], [entity(WEB, "web")])

    assert nerdgraph.instance_url(SHORT_ID.upper()) == permalink(WEB)


def test_no_transactions_on_the_host_is_not_found(nerdgraph, nr):
    host_answer(nr, [])

    with pytest.raises(NewRelicNotFound, match=f"no APM transactions on host {SHORT_ID} in the last 7 days") as caught:
        nerdgraph.instance_url(SHORT_ID)
    assert caught.value.status == 404


def test_empty_results_is_not_found(nerdgraph, nr):
    empty = {"data": {"actor": {"account": {"nrql": {"results": []}}}}}
    post(nr, HOST_QUERY, {"account": int(ACCOUNT), "nrql": NRQL}, empty)

    with pytest.raises(NewRelicNotFound):
        nerdgraph.instance_url(SHORT_ID)


@pytest.mark.parametrize("entities", [[], None], ids=["empty", "null"])
def test_a_guid_without_an_entity_is_not_found(nerdgraph, nr, entities):
    host_answer(nr, [WEB])
    entities_answer(nr, [WEB], entities)

    with pytest.raises(NewRelicNotFound):
        nerdgraph.instance_url(SHORT_ID)


def test_several_applications_on_the_host_are_ambiguous_with_candidates(nerdgraph, nr):
    host_answer(nr, [WORKER, WEB])
    entities_answer(nr, [WEB, WORKER], [entity(WORKER, "worker"), entity(WEB, "web")])

    with pytest.raises(NewRelicAmbiguous, match=f"web \\({WEB}\\), worker \\({WORKER}\\)") as caught:
        nerdgraph.instance_url(SHORT_ID)
    assert caught.value.status == 409
    assert caught.value.extra["candidates"] == [
        {"guid": WEB, "name": "web", "url": permalink(WEB)},
        {"guid": WORKER, "name": "worker", "url": permalink(WORKER)},
    ]


# A service's application


def test_application_url_keeps_the_exact_name(nerdgraph, nr):
    search_answer(nr, [entity(WORKER, "web-admin"), entity(WEB, "web")])

    assert nerdgraph.application_url("web") == permalink(WEB)


def test_application_url_falls_back_to_a_name_equal_but_for_case(nerdgraph, nr):
    search_answer(nr, [entity(WEB, "Web")])

    assert nerdgraph.application_url("web") == permalink(WEB)


def test_application_url_of_an_unknown_name_is_not_found(nerdgraph, nr):
    search_answer(nr, [entity(WORKER, "web-admin")])

    with pytest.raises(NewRelicNotFound, match="no APM application named 'web'"):
        nerdgraph.application_url("web")


def test_two_applications_of_one_name_are_ambiguous(nerdgraph, nr):
    search_answer(nr, [entity(WORKER, "web"), entity(WEB, "web")])

    with pytest.raises(NewRelicAmbiguous) as caught:
        nerdgraph.application_url("web")
    assert [c["guid"] for c in caught.value.extra["candidates"]] == [WEB, WORKER]


def test_names_are_quoted_in_the_search():
    assert quoted("it's") == "'it\\'s'"
    assert quoted("a\\b") == "'a\\\\b'"


def test_a_deprecation_notice_beside_the_data_is_only_a_warning(nerdgraph, nr, caplog):
    results = {"actor": {"entitySearch": {"results": {"entities": [entity(WEB, "web")]}}}}
    notice = {"message": "This field is deprecated! Please use `something` instead."}
    post(nr, SEARCH_QUERY, {"search": SEARCH}, {"data": results, "errors": [notice]})

    assert nerdgraph.application_url("web") == permalink(WEB)
    assert "deprecated" in caplog.text


# Trouble: errors inside a 200 answer, and outside it


def graphql_error(message: str, **extensions: str) -> dict:
    return {"message": message, "path": ["actor", "account", "nrql"], "extensions": extensions}


NULL_NRQL = {"actor": {"account": {"nrql": None}}}


@pytest.mark.parametrize(
    ("answer", "error", "status", "message"),
    [
        (requests.ReadTimeout("read timed out"), NewRelicError, 502, "did not answer within 0.5 s"),
        (requests.ConnectionError("refused"), NewRelicUnavailable, 503, "unreachable"),
        ({"status": 401, "json": {"errors": [{"message": "Invalid key " + KEY}]}}, NewRelicError, 502, "refused"),
        ({"status": 500, "json": {"errors": [{"message": "Oops " + KEY}]}}, NewRelicError, 502, "answered 500: Oops"),
        ({"status": 502, "body": "<html>bad gateway</html>"}, NewRelicError, 502, "answered 502"),
        ({"status": 429, "json": {}}, NewRelicUnavailable, 503, "rate-limiting"),
        ({"status": 200, "body": "{not json"}, NewRelicError, 502, "malformed JSON"),
        ({"status": 200, "json": ["data"]}, NewRelicError, 502, "other than a JSON object"),
        ({"status": 200, "json": {"data": None}}, NewRelicError, 502, "without data"),
        ({"status": 200, "json": {"data": {"actor": None}}}, NewRelicError, 502, "without actor.account"),
        (
            {"status": 200, "json": {"data": {"actor": {"account": {"nrql": {"results": {"guids": []}}}}}}},
            NewRelicError, 502, "without a list of results",
        ),
        (
            {"status": 200, "json": {"data": {"actor": {"account": {"nrql": {"results": [{"guids": "x"}]}}}}}},
            NewRelicError, 502, "not a list of strings",
        ),
        (
            {"json": {"data": NULL_NRQL, "errors": [graphql_error("Query duration exceeded", errorClass="TIMEOUT")]}},
            NewRelicError, 502, "timed out answering NerdGraph: Query duration exceeded",
        ),
        (
            {"json": {"data": None, "errors": [graphql_error("Invalid API key " + KEY, error_code="BAD_API_KEY")]}},
            NewRelicError, 502, "refused the request .*check ECS_ID_MAPPER_NEWRELIC_API_KEY",
        ),
        (
            {"json": {"data": NULL_NRQL, "errors": [graphql_error("Slow down", errorClass="TOO_MANY_REQUESTS")]}},
            NewRelicUnavailable, 503, "rate-limiting",
        ),
        (
            {"json": {"data": NULL_NRQL, "errors": [graphql_error("NRQL Syntax Error: x", errorClass="SERVER_ERROR")]}},
            NewRelicError, 502, "answered NerdGraph with errors: NRQL Syntax Error: x",
        ),
        ({"json": {"errors": "everything"}}, NewRelicError, 502, "malformed errors"),
    ],
    ids=[
        "timeout", "unreachable", "401", "500", "502-html", "429", "malformed-json", "list", "null-data",
        "null-actor", "results-not-list", "guids-not-list", "in-200-timeout", "in-200-bad-key",
        "in-200-throttled", "in-200-nrql-error", "errors-not-list",
    ],
)  # fmt: skip
def test_trouble_upstream(nerdgraph, nr, caplog, answer, error, status, message):
    caplog.set_level(logging.DEBUG)
    if isinstance(answer, Exception):
        nr.post(ENDPOINT, body=answer)
    else:
        nr.post(ENDPOINT, **answer)

    with pytest.raises(error, match=message) as caught:
        nerdgraph.instance_url(SHORT_ID)
    assert type(caught.value) is error
    assert caught.value.status == status
    assert KEY not in str(caught.value)
    assert KEY not in caplog.text
    assert KEY not in repr(nerdgraph)


@pytest.mark.parametrize(
    "link",
    ["http://one.newrelic.com/x", "https://evil.example/newrelic.com", "https://newrelic.com.evil.example/", None, 7],
)
def test_a_permalink_outside_newrelic_is_refused(nerdgraph, nr, link):
    search_answer(nr, [{"guid": WEB, "name": "web", "permalink": link}])

    with pytest.raises(NewRelicError, match=r"without a newrelic\.com permalink") as caught:
        nerdgraph.application_url("web")
    assert caught.value.status == 502


# Configuration


def test_nerdgraph_is_the_default_and_rest_can_be_chosen():
    chosen = newrelic_client(config(newrelic_api_key=KEY, newrelic_account_id=ACCOUNT))
    assert isinstance(chosen, NerdGraphClient)
    assert chosen.endpoint == "https://api.newrelic.com/graphql"
    rest = newrelic_client(config(newrelic_api="REST", newrelic_api_key=KEY, newrelic_account_id=ACCOUNT))
    assert isinstance(rest, RestV2Client)


def test_eu_accounts_set_one_api_url_for_both():
    eu = config(newrelic_api_key=KEY, newrelic_account_id=ACCOUNT, newrelic_api_url="https://api.eu.newrelic.com/")
    assert newrelic_client(eu).endpoint == "https://api.eu.newrelic.com/graphql"


@pytest.mark.parametrize(
    ("setting", "value", "variable"),
    [("newrelic_api", "graphql", "ECS_ID_MAPPER_NEWRELIC_API"), ("newrelic_account_id", "12a", "ACCOUNT_ID")],
)
def test_bad_settings_stop_the_start(setting, value, variable):
    with pytest.raises(ConfigError, match=variable):
        config(**{setting: value})


# Through the routes


@pytest.fixture
def app(make_app, tmp_path):
    settings = {
        "store": f"sqlite:///{tmp_path}/mapper.sqlite3",
        "service_names": "false",
        "newrelic_api_key": KEY,
        "newrelic_account_id": ACCOUNT,
        "newrelic_api_url": API,
    }
    return make_app(settings)


def test_routes_answer_through_nerdgraph_and_cache_the_link(app, nr):
    store = state(app).store
    store.upsert_containers([record(10)], "2026-11-25T15:05:39.000Z")
    short = container_id(10)[:12]
    nrql = NRQL.replace(SHORT_ID, short)
    answer = {"data": {"actor": {"account": {"nrql": {"results": [{"guids": [WEB]}]}}}}}
    post(nr, HOST_QUERY, {"account": int(ACCOUNT), "nrql": nrql}, answer)
    entities_answer(nr, [WEB], [entity(WEB, "web")])
    search_answer(nr, [entity(WEB, "web")])
    client = app.test_client()

    first = client.get(f"/query/container_id/{short}/newrelic")
    second = client.get(f"/query/task_id/{task_id(10)}/newrelic?redir=true")  # from the record: no third call
    service = client.get("/query/service/prod/web/newrelic?redir=true")

    assert (first.status_code, first.get_data(as_text=True)) == (200, permalink(WEB) + "\n")
    assert (second.status_code, second.headers["Location"]) == (302, permalink(WEB))
    assert (service.status_code, service.headers["Location"]) == (302, permalink(WEB))
    assert store.get_container(container_id(10))["newrelic_url"] == permalink(WEB)


def test_errors_inside_a_200_answer_are_502_json_without_the_key(app, nr):
    state(app).store.upsert_containers([record(11)], "2026-11-25T15:05:39.000Z")
    nr.post(ENDPOINT, json={"data": None, "errors": [graphql_error("boom " + KEY, errorClass="SERVER_ERROR")]})

    answer = app.test_client().get(f"/query/task_id/{task_id(11)}/newrelic")

    assert answer.status_code == 502
    assert answer.get_json()["error"] == "bad_gateway"
    assert "boom [api key]" in answer.get_json()["message"]
    assert KEY not in answer.get_data(as_text=True)
