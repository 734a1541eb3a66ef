"""The service routes and New Relic links end to end through the Flask test client; ECS stubbed, New Relic mocked."""

from __future__ import annotations

import threading
import time

import pytest
from responses import matchers

from server.ecs import EcsClient
from server.state import state
from tests.upstream.helpers import CLUSTER, SlowEcs, container_id, described, record, task_arn, task_id

TOKEN = "report-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
NR_API = "http://127.0.0.1:9"
NR_KEY = "NRAK-ROUTE-SECRET"
ACCOUNT = "1234567"
APP_URL = f"https://rpm.newrelic.com/accounts/{ACCOUNT}/applications/41"
INSTANCE_URL = f"{APP_URL}/instances/7002"


@pytest.fixture
def settings(tmp_path) -> dict:
    return {
        "store": f"sqlite:///{tmp_path}/mapper.sqlite3",
        "token": TOKEN,
        "newrelic_api_key": NR_KEY,
        "newrelic_account_id": ACCOUNT,
        "newrelic_api": "rest",
        "newrelic_api_url": NR_API,
    }


@pytest.fixture
def app(make_app, settings, ecs):
    return make_app(settings, ecs=ecs)


@pytest.fixture
def client(app):
    return app.test_client()


def report(client, *records: dict, host: dict | None = None) -> None:
    """POST the records as the agent would, one host (``host``: its fields beyond cluster and region), one
    cluster."""
    wire = ("container_id", "container_name", "task_arn", "task_name", "task_version", "desired_status",
            "known_status", "sample_time")  # fmt: skip
    body = {
        "host": {"cluster_name": records[0]["cluster_name"], "region": records[0]["region"], **(host or {})},
        "containers": [{k: r[k] for k in wire} for r in records],
    }
    response = client.post("/report/map", json=body, headers=AUTH)
    assert response.status_code == 200, response.get_json()


def list_tasks(stubber, numbers: list[int], status: str = "RUNNING", service_name: str = "web") -> None:
    params = {"cluster": CLUSTER, "serviceName": service_name, "desiredStatus": status, "maxResults": 100}
    stubber.add_response("list_tasks", {"taskArns": [task_arn(n) for n in numbers]}, params)


def describe(stubber, numbers: list[int], groups: dict[int, str]) -> None:
    stubber.add_response(
        "describe_tasks",
        {"tasks": [described(n, groups[n]) for n in numbers if n in groups], "failures": []},
        {"cluster": CLUSTER, "tasks": [task_arn(n) for n in numbers]},
    )


def names(app):
    return state(app).service_names


# GET /query/service/<cluster>/<service>/_all


def test_service_tasks_with_their_containers_and_the_missing_ones(app, client, stubber):
    describe(stubber, [1, 2], {1: "service:web", 2: "service:web"})
    report(client, record(1, 0), record(1, 1), record(2))
    assert names(app).wait_idle(5)
    list_tasks(stubber, [1, 2, 3])

    answer = client.get(f"/query/service/{CLUSTER}/web/_all")

    assert answer.status_code == 200
    body = answer.get_json()
    assert (body["cluster_name"], body["service_name"]) == (CLUSTER, "web")
    assert [t["task_id"] for t in body["tasks"]] == [task_id(1), task_id(2)]
    assert [c["container_id"] for c in body["tasks"][0]["containers"]] == [container_id(1, 0), container_id(1, 1)]
    assert body["tasks"][0]["containers"][0]["service_name"] == "web"
    assert body["missing"] == [task_id(3)]


def test_a_listed_task_not_enriched_yet_is_shown_and_learns_its_service(app, client, stubber):
    describe(stubber, [4], {})  # ECS does not answer for it yet: the worker will retry later
    report(client, record(4))
    assert names(app).wait_idle(5)
    list_tasks(stubber, [4])

    body = client.get(f"/query/service/{CLUSTER}/web/_all").get_json()

    assert [t["task_id"] for t in body["tasks"]] == [task_id(4)]
    assert state(app).store.containers_of_task(task_id(4))[0]["service_name"] == "web"


def test_include_stopped_adds_the_service_tasks_ecs_no_longer_lists(app, client, stubber):
    describe(stubber, [5, 6], {5: "service:web", 6: "service:web"})
    report(client, record(5), record(6, known_status="STOPPED", desired_status="STOPPED"))
    assert names(app).wait_idle(5)
    list_tasks(stubber, [5])

    running = client.get(f"/query/service/{CLUSTER}/web/_all").get_json()
    everything = client.get(f"/query/service/{CLUSTER}/web/_all?include_stopped=true").get_json()  # cached

    assert [t["task_id"] for t in running["tasks"]] == [task_id(5)]
    assert [t["task_id"] for t in everything["tasks"]] == [task_id(5), task_id(6)]
    assert everything["tasks"][1]["containers"][0]["known_status"] == "STOPPED"


def test_service_tasks_show_the_containers_of_a_host_that_stopped_reporting_as_lost(make_app, settings, ecs, stubber):
    app = make_app({**settings, "host_lease": "0.05"}, ecs=ecs)
    client = app.test_client()
    describe(stubber, [7], {7: "service:web"})
    report(client, record(7), host={"instance_id": "i-0abc"})
    assert names(app).wait_idle(5)
    list_tasks(stubber, [7])
    state(app).leases.interval = 0
    time.sleep(0.1)

    body = client.get(f"/query/service/{CLUSTER}/web/_all").get_json()

    ((shown,),) = [t["containers"] for t in body["tasks"]]
    assert shown["known_status"] == "RUNNING"  # what the host last said stays, the lapse is said beside it
    assert shown["lost_reason"].startswith("its host stopped reporting: lease last renewed ")
    assert shown["lost_since"] > shown["last_seen"]


def test_unknown_service_is_404(client, stubber):
    stubber.add_client_error("list_tasks", "ServiceNotFoundException", "Service not found.", 400)

    answer = client.get(f"/query/service/{CLUSTER}/nope/_all")

    assert answer.status_code == 404
    assert answer.get_json() == {"error": "not_found", "message": f"ECS knows no service 'nope' in cluster '{CLUSTER}'"}


def test_throttled_without_a_cached_answer_is_503_with_retry_after(client, stubber):
    stubber.add_client_error("list_tasks", "ThrottlingException", "Rate exceeded", 400)

    answer = client.get(f"/query/service/{CLUSTER}/web/_all")

    assert answer.status_code == 503
    assert answer.get_json()["error"] == "service_unavailable"
    assert int(answer.headers["Retry-After"]) >= 1


def test_no_credentials_is_503_naming_them(make_app, settings, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_ENDPOINT_URL_ECS", "http://127.0.0.1:9")
    client = make_app(settings, ecs=EcsClient()).test_client()

    answer = client.get(f"/query/service/{CLUSTER}/web/_all")

    assert answer.status_code == 503
    assert "AWS_ACCESS_KEY_ID" in answer.get_json()["message"]


@pytest.mark.parametrize(
    "path",
    [f"/query/service/{CLUSTER}/we%20b/_all", f"/query/service/{CLUSTER}/web/_all?include_stopped=maybe"],
)
def test_malformed_requests_are_400(client, path):
    assert client.get(path).status_code == 400


# Enrichment through the report route


def test_a_report_returns_before_ecs_answers_and_the_task_gets_its_service(make_app, settings, ecs, stubber):
    describe(stubber, [7, 8], {7: "service:web", 8: "family:batch"})
    release = threading.Event()
    app = make_app(settings, ecs=SlowEcs(ecs, release))
    client = app.test_client()
    try:
        started = time.monotonic()
        report(client, record(7), record(8))
        assert time.monotonic() - started < 2
    finally:
        release.set()
    assert names(app).wait_idle(5)

    store = state(app).store
    assert store.containers_of_task(task_id(7))[0]["service_name"] == "web"
    assert "service_name" not in store.containers_of_task(task_id(8))[0]
    all_answer = client.get(f"/query/container_id/{container_id(7)}/_all").get_json()
    assert all_answer["service_name"] == "web"


def test_a_failed_describe_is_retried_by_the_worker(app, client, stubber):
    stubber.add_client_error("describe_tasks", "ThrottlingException", "Rate exceeded", 400)
    describe(stubber, [9], {9: "service:web"})
    names(app).backoff.base = 0.05

    report(client, record(9))

    store = state(app).store
    deadline = time.monotonic() + 5
    while not store.containers_of_task(task_id(9))[0].get("service_name") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert store.containers_of_task(task_id(9))[0]["service_name"] == "web"


# New Relic links


def nr_instance(nr) -> None:
    key = matchers.header_matcher({"X-Api-Key": NR_KEY})
    short = container_id(10)[:12]
    nr.get(
        f"{NR_API}/v2/applications.json",
        json={"applications": [{"id": 41, "name": "web"}]},
        match=[key, matchers.query_param_matcher({"filter[host]": short})],
    )
    nr.get(
        f"{NR_API}/v2/applications/41/hosts.json",
        json={"application_hosts": [{"id": 5002, "host": short, "links": {"application_instances": [7002]}}]},
        match=[key, matchers.query_param_matcher({"filter[hostname]": short})],
    )


def test_container_newrelic_is_looked_up_once_then_served_from_the_record(app, client, stubber, nr):
    describe(stubber, [10], {10: "service:web"})
    report(client, record(10))
    nr_instance(nr)

    first = client.get(f"/query/container_id/{container_id(10)[:12]}/newrelic")
    second = client.get(f"/query/task_id/{task_id(10)}/newrelic?redir=true")  # no second call: responses asserts

    assert (first.status_code, first.get_data(as_text=True)) == (200, INSTANCE_URL + "\n")
    assert (second.status_code, second.headers["Location"]) == (302, INSTANCE_URL)
    assert len(nr.calls) == 2
    record_now = client.get(f"/query/container_id/{container_id(10)}/_all").get_json()
    assert record_now["newrelic_url"] == INSTANCE_URL
    assert names(app).wait_idle(5)


def test_container_unknown_to_newrelic_is_404(app, client, stubber, nr):
    describe(stubber, [11], {})
    report(client, record(11))
    nr.get(f"{NR_API}/v2/applications.json", json={"applications": []})

    answer = client.get(f"/query/task_id/{task_id(11)}/newrelic")

    assert answer.status_code == 404
    assert "no application on host" in answer.get_json()["message"]
    assert names(app).wait_idle(5)


def test_newrelic_trouble_is_502_without_the_key(app, client, stubber, nr):
    describe(stubber, [12], {})
    report(client, record(12))
    nr.get(f"{NR_API}/v2/applications.json", status=401, json={"error": {"title": "bad key " + NR_KEY}})

    answer = client.get(f"/query/task_id/{task_id(12)}/newrelic")

    assert answer.status_code == 502
    assert NR_KEY not in answer.get_data(as_text=True)
    assert names(app).wait_idle(5)


def test_newrelic_not_configured_is_404_naming_the_variables(make_app, settings):
    app = make_app({**settings, "newrelic_api_key": "", "newrelic_account_id": ""})
    answer = app.test_client().get(f"/query/service/{CLUSTER}/web/newrelic")

    assert answer.status_code == 404
    assert answer.get_json()["message"] == (
        "New Relic is not configured: set ECS_ID_MAPPER_NEWRELIC_API_KEY and ECS_ID_MAPPER_NEWRELIC_ACCOUNT_ID"
    )


def test_service_newrelic_is_the_application_url(client, nr):
    nr.get(
        f"{NR_API}/v2/applications.json",
        json={"applications": [{"id": 41, "name": "web"}, {"id": 40, "name": "web-admin"}]},
        match=[matchers.query_param_matcher({"filter[name]": "web"})],
    )
    nr.get(f"{NR_API}/v2/applications.json", json={"applications": [{"id": 41, "name": "web"}]})

    assert client.get(f"/query/service/{CLUSTER}/web/newrelic").get_data(as_text=True) == APP_URL + "\n"
    redirected = client.get(f"/query/service/{CLUSTER}/web/newrelic?redir=yes")
    assert (redirected.status_code, redirected.headers["Location"]) == (302, APP_URL)


def test_service_newrelic_with_several_applications_is_409_listing_them(client, nr):
    apps = [{"id": 41, "name": "web"}, {"id": 42, "name": "web"}]
    nr.get(f"{NR_API}/v2/applications.json", json={"applications": apps})

    answer = client.get(f"/query/service/{CLUSTER}/web/newrelic")

    assert answer.status_code == 409
    assert [c["id"] for c in answer.get_json()["candidates"]] == [41, 42]
