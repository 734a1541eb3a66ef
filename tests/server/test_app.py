"""The app factory: the collaborators passed in are the ones the routes and the worker use; close() ends them."""

from __future__ import annotations

import threading

from server.newrelic import NewRelicClient
from server.state import state
from tests.server import samples


class FakeEcs:
    """ECS as the server asks it: every task of the service ``api``."""

    def service_tasks(self, cluster: str, service: str, desired_status: str = "RUNNING") -> list[str]:
        return [samples.ARN_LONG]

    def describe_tasks(self, cluster: str, tasks: list[str]) -> tuple[list[dict], list[dict]]:
        return [{"taskArn": task, "group": "service:api"} for task in tasks], []


class FakeNewRelic(NewRelicClient):
    def instance_url(self, short_container_id: str) -> str:
        return f"https://nr.example/instances/{short_container_id}"

    def application_url(self, name: str) -> str:
        return f"https://nr.example/apps/{name}"


def test_the_collaborators_passed_in_serve_the_routes_and_the_worker(make_app, settings):
    app = make_app({**settings, "service_names": True}, ecs=FakeEcs(), newrelic=FakeNewRelic())
    client = app.test_client()
    body = samples.map_report(samples.container())
    assert client.post("/report/map", json=body, headers=samples.AUTH).status_code == 200
    assert state(app).service_names.wait_idle(5)

    record = client.get(f"/query/container_id/{samples.API_ID}/_all").get_json()
    assert record["service_name"] == "api"
    tasks = client.get("/query/service/default/api/_all").get_json()["tasks"]
    assert [t["task_id"] for t in tasks] == [samples.TASK_LONG]
    url = client.get(f"/query/container_id/{samples.API_ID}/newrelic").get_data(as_text=True)
    assert url == f"https://nr.example/instances/{samples.API_ID[:12]}\n"
    assert state(app).store.get_container(samples.API_ID)["newrelic_url"] == url.strip()
    assert client.get("/query/service/default/api/newrelic").get_data(as_text=True) == "https://nr.example/apps/api\n"


def test_close_stops_the_service_name_worker(make_app, settings):
    app = make_app({**settings, "service_names": True}, ecs=FakeEcs())
    client = app.test_client()
    client.post("/report/map", json=samples.map_report(samples.container()), headers=samples.AUTH)
    assert any(t.name == "service-names" for t in threading.enumerate())

    state(app).close()

    assert not any(t.name == "service-names" for t in threading.enumerate())
