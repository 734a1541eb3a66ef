"""Scoped tokens on every store (SQLite, SimpleDB and DynamoDB through moto's server): a token of one cluster
changes nothing of another cluster's records, by report, by event or by ECS event; the single-token setting still
writes anywhere; every change is signed with the name of the token that wrote it."""

from __future__ import annotations

import hashlib
import json
import uuid

import pytest

from server.state import state
from tests.server import ecs_samples, samples
from tests.server.samples import AUTH, TASK_LONG
from tests.store.conftest import REGION

PROD_ACCOUNT, DEV_ACCOUNT = "111122223333", "444455556666"
PROD_TOKEN, DEV_TOKEN = "prod-eu-6Zq0cVd3vK0rQe2m", "dev-Jd92kQpL0xWm4aT7"
PROD, DEV = {"Authorization": f"Bearer {PROD_TOKEN}"}, {"Authorization": f"Bearer {DEV_TOKEN}"}
TOKENS = f"""\
tokens:
  prod-eu-agents:
    sha256: {hashlib.sha256(PROD_TOKEN.encode()).hexdigest()}
    report: [prod-eu]
    events:
      - {{account: "{PROD_ACCOUNT}", region: eu-west-1, cluster: prod-eu}}
  dev-agents:
    sha256: {hashlib.sha256(DEV_TOKEN.encode()).hexdigest()}
    report: [dev]
    events:
      - {{account: "{DEV_ACCOUNT}", region: eu-west-1, cluster: "dev*"}}
"""
PROD_ARN = f"arn:aws:ecs:eu-west-1:{PROD_ACCOUNT}:task/prod-eu/{TASK_LONG}"
DEV_ARN = f"arn:aws:ecs:eu-west-1:{DEV_ACCOUNT}:task/dev/{TASK_LONG}"
PROD_HOST = {
    **samples.HOST,
    "cluster_name": "prod-eu",
    "region": "eu-west-1",
    "container_instance_arn": f"arn:aws:ecs:eu-west-1:{PROD_ACCOUNT}:container-instance/prod-eu/{'a' * 32}",
}
#: A dev host that claims to be the prod host (its instance ID and name) to reach its records.
DEV_HOST = {
    **PROD_HOST,
    "cluster_name": "dev",
    "container_instance_arn": f"arn:aws:ecs:eu-west-1:{DEV_ACCOUNT}:container-instance/dev/{'b' * 32}",
}
STORES = {
    "sqlite": "sqlite:///{path}/scopes.sqlite3",
    "sdb": "sdb://s{name}?region={region}&endpoint_url={url}",
    "dynamodb": "dynamodb://d{name}?region={region}&endpoint_url={url}&create=true",
}


@pytest.fixture(params=STORES)
def client(request: pytest.FixtureRequest, tmp_path, make_app):
    url = "" if request.param == "sqlite" else request.getfixturevalue("moto_server")
    store = STORES[request.param].format(path=tmp_path, name=uuid.uuid4().hex[:10], region=REGION, url=url)
    (tmp_path / "tokens.yaml").write_text(TOKENS)
    app = make_app({
        "store": store, "token": samples.TOKEN, "token_file": str(tmp_path / "tokens.yaml"),
        "service_names": False, "task_definitions": False, "container_instances": False,
    })  # fmt: skip
    return app.test_client()


def report(client, auth: dict, *containers: dict, host: dict = PROD_HOST, **kwargs):
    return client.post("/report/map", json=samples.map_report(*containers, host=host, **kwargs), headers=auth)


def on_record(client) -> tuple[dict | None, list[dict]]:
    store = state(client.application).store
    return store.get_container(samples.API_ID), store.events_of_container(samples.API_ID)


def prod_container(**fields) -> dict:
    return samples.container(task_arn=PROD_ARN, **fields)


def ecs_event(account: str, cluster: str, status: str = "RUNNING", version: int = 7) -> dict:
    """An EC2 task's event for the prod container's ID and task, as ``account``'s cluster ``cluster`` tells it."""
    event = ecs_samples.ec2_event(version, status, [ecs_samples.container("api", status, samples.API_ID)])
    text = json.dumps(event).replace(ecs_samples.EC2_TASK, TASK_LONG).replace("eu-central-1", "eu-west-1")
    return json.loads(text.replace("210987654321", account).replace("/default", f"/{cluster}"))


@pytest.fixture
def prod_record(client) -> tuple[dict, list[dict]]:
    """The prod container on record, as the prod agent reported it."""
    answer = report(client, PROD, prod_container(), events=[samples.event("e-run")])
    assert answer.status_code == 200, answer.get_json()
    record, events = on_record(client)
    assert record is not None and record["cluster_name"] == "prod-eu"
    return record, events


def refused(answer, name: str) -> None:
    assert answer.status_code == 403, answer.get_json()
    body = answer.get_json()
    assert body["error"] == "forbidden" and f"token {name!r}" in body["message"]
    assert DEV_TOKEN not in body["message"] and PROD_TOKEN not in body["message"]


def test_a_report_for_a_cluster_outside_the_tokens_scope_is_refused_whole(client):
    refused(report(client, DEV, prod_container(), events=[samples.event("e-1")]), "dev-agents")
    assert on_record(client) == (None, [])
    own = report(client, DEV, samples.container(task_arn=DEV_ARN), host={**DEV_HOST, "instance_id": "i-0d"})
    assert own.status_code == 200


# Every field a report can set, changed one at a time, and a stop.
CHANGES: list[dict] = [
    {"known_status": "STOPPED"},
    {"desired_status": "STOPPED"},
    {"container_name": "evil"},
    {"image": "registry.example/evil:1"},
    {"task_name": "evil", "task_version": "1"},
    {"ports": [{"container_port": 22, "host_port": 22, "protocol": "tcp"}]},
    {"sample_time": "2026-11-25T16:00:00.000Z"},
]


@pytest.mark.parametrize("change", CHANGES, ids=lambda change: "+".join(change))
def test_a_dev_token_changes_no_field_of_a_prod_record_by_report(client, prod_record, change, caplog):
    # Its own cluster on the host, the prod container's ID in the body.
    answer = report(client, DEV, samples.container(task_arn=DEV_ARN, **change), host=DEV_HOST)
    refused(answer, "dev-agents")
    assert on_record(client) == prod_record
    assert "refused token 'dev-agents'" in caplog.text and DEV_TOKEN not in caplog.text


def test_a_dev_token_stops_no_prod_record_by_its_hosts_full_snapshot_or_its_vanished_events(client, prod_record):
    # A full snapshot of "the same host" that lists nothing: what would stop every container of the host.
    assert report(client, DEV, host=DEV_HOST, full=True).status_code == 200
    assert on_record(client) == prod_record
    vanished = samples.event("e-gone", event="vanished", to="", timestamp="2026-11-25T16:00:00.000Z")
    refused(report(client, DEV, host=DEV_HOST, events=[vanished]), "dev-agents")
    assert on_record(client) == prod_record


def test_a_dev_token_adds_no_event_to_a_prod_record(client, prod_record):
    stop = samples.event("e-stop", **{"from": "RUNNING", "to": "STOPPED"})
    refused(client.post("/report/event", json={"events": [stop]}, headers=DEV), "dev-agents")
    refused(report(client, DEV, host=DEV_HOST, events=[stop]), "dev-agents")
    assert on_record(client) == prod_record


@pytest.mark.parametrize("status", ["RUNNING", "STOPPED"])
def test_a_dev_token_changes_no_prod_record_by_ecs_event(client, prod_record, status):
    # Out of its scope by what the event says it is from.
    answer = client.post("/report/ecs-events", json=ecs_event(PROD_ACCOUNT, "prod-eu", status), headers=DEV)
    refused(answer, "dev-agents")
    assert on_record(client) == prod_record
    # In its scope by what the event says, but naming the prod container: the record on file says no.
    answer = client.post("/report/ecs-events", json=ecs_event(DEV_ACCOUNT, "dev", status), headers=DEV)
    refused(answer, "dev-agents")
    assert on_record(client) == prod_record


def test_the_prod_token_writes_its_own_records_by_every_route_and_signs_each_change(client, prod_record):
    _, events = prod_record
    assert {e.get("by") for e in events} == {"prod-eu-agents"}
    answer = client.post("/report/ecs-events", json=ecs_event(PROD_ACCOUNT, "prod-eu", "STOPPED"), headers=PROD)
    assert answer.status_code == 200, answer.get_json()
    stopped, history = on_record(client)
    assert stopped is not None and stopped["known_status"] == "STOPPED"
    assert len(history) > len(events) and {e.get("by") for e in history} == {"prod-eu-agents"}
    shown = client.get(f"/query/container_id/{samples.API_ID}/events", headers=PROD)
    assert shown.status_code == 403  # no read scope
    shown = client.get(f"/query/container_id/{samples.API_ID}/events", headers=AUTH)
    assert [e["by"] for e in shown.get_json()] == [e["by"] for e in history]


def test_the_single_token_setting_still_writes_anywhere_as_token(client, prod_record):
    answer = report(client, AUTH, prod_container(known_status="STOPPED", sample_time="2026-11-25T16:00:00.000Z"))
    assert answer.status_code == 200
    record, events = on_record(client)
    assert record is not None and record["known_status"] == "STOPPED"
    assert [e["by"] for e in events if e["to"] == "STOPPED"] == ["token"]
    dev = samples.container(samples.SIDECAR_ID, "sidecar", task_arn=DEV_ARN)
    assert report(client, AUTH, dev, host=DEV_HOST).status_code == 200
