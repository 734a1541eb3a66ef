"""The server as users run it on a shared store (SimpleDB, DynamoDB): two gunicorn processes sharing one moto
server over loopback."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
import requests

from tests.server import samples
from tests.server.samples import AUTH, TOKEN
from tests.store.conftest import REGION
from tests.support import Moto, ServerProcess

pytestmark = pytest.mark.slow


@pytest.fixture
def moto() -> Iterator[Moto]:
    server = Moto()
    server.start()
    yield server
    server.stop()


STORES = {
    "sdb": "sdb://e2e{name}?region={region}&endpoint_url={url}",
    "dynamodb": "dynamodb://e2e{name}?region={region}&endpoint_url={url}&create=true",
}


@pytest.fixture(params=STORES)
def environment(request: pytest.FixtureRequest, moto: Moto) -> dict[str, str]:
    store = STORES[request.param].format(name=uuid.uuid4().hex[:8], region=REGION, url=moto.url)
    return {
        "ECS_ID_MAPPER_STORE": store + "&max_attempts=2&connect_timeout=1&read_timeout=3",
        "ECS_ID_MAPPER_TOKEN": TOKEN,
        "ECS_ID_MAPPER_HEALTH_INTERVAL": "0.2",
    }


def post(server: ServerProcess, body: dict) -> requests.Response:
    return requests.post(f"{server.url}/report/map", json=body, headers=AUTH, timeout=20)


def get(server: ServerProcess, path: str) -> requests.Response:
    return requests.get(f"{server.url}{path}", timeout=20)


def test_a_report_to_one_server_is_answered_by_the_other(tmp_path, environment):
    env = environment
    kind = env["ECS_ID_MAPPER_STORE"].partition(":")[0]
    with ServerProcess(env, tmp_path / "one.log") as one, ServerProcess(env, tmp_path / "two.log") as two:
        body = samples.map_report(samples.container(), events=[samples.event("e-1")])
        assert post(one, body).json() == {"containers": 1, "events": 1}
        assert get(two, f"/query/container_id/{samples.API_ID[:12]}").text == f"{samples.TASK_LONG}\n"
        events = {e["event_id"]: e["event"] for e in get(two, f"/query/task_id/{samples.TASK_LONG}/events").json()}
        assert events.pop("e-1") == "known_status"
        assert list(events.values()) == ["appeared"]  # the server's own: the report named no appearance

        stopped = samples.container(known_status="STOPPED", sample_time="2026-11-25T15:10:00.000Z")
        assert post(two, samples.map_report(stopped)).status_code == 200
        record = get(one, f"/query/container_id/{samples.API_ID}/_all").json()
        assert (record["known_status"], record["stopped_at"]) == ("STOPPED", "2026-11-25T15:10:00.000Z")
        assert get(one, "/health").json() == {"status": "ok", "store": kind}
    assert "Traceback" not in one.log() + two.log()


def test_the_store_down_mid_run_answers_503_then_reports_land_again(tmp_path, moto, environment):
    env = environment
    kind = env["ECS_ID_MAPPER_STORE"].partition(":")[0]
    with ServerProcess(env, tmp_path / "one.log") as one, ServerProcess(env, tmp_path / "two.log") as two:
        assert post(one, samples.map_report(samples.container())).status_code == 200

        moto.stop()
        sidecar = samples.container(samples.SIDECAR_ID, "sidecar")
        answers = [
            post(one, samples.map_report(sidecar)),
            post(two, samples.map_report(sidecar)),
            requests.post(f"{two.url}/report/event", json={"events": [samples.event("e-2")]}, headers=AUTH, timeout=20),
            get(two, f"/query/container_id/{samples.SIDECAR_ID[:12]}"),
            get(one, f"/query/task_id/{samples.TASK_LONG}/containers"),
        ]
        assert [a.status_code for a in answers] == [503] * len(answers)
        assert all(a.headers["Content-Type"] == "application/json" and a.json()["message"] for a in answers)
        assert all(a.headers["Retry-After"] == "2" for a in answers)
        time.sleep(0.3)  # past the health interval
        assert get(one, "/health").status_code == 503
        assert get(one, "/health").json()["store"] == kind

        moto.start()
        time.sleep(0.3)
        assert get(two, "/health").status_code == 200
        assert post(two, samples.map_report(sidecar, events=[samples.event("e-2")])).json() == {
            "containers": 1,
            "events": 1,
        }
        names = get(one, f"/query/task_id/{samples.TASK_LONG}/containers").json()
        assert sorted(c["container_name"] for c in names) == ["api", "sidecar"]
    logs = one.log() + two.log()
    assert "Traceback" not in logs and '" 500 ' not in logs
