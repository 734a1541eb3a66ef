"""Cases met from outside: odd values that must end in a clear 4xx (or a sane record), never a 500."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest

from server.config import ConfigError
from server.ecs import EcsClient
from server.records import format_time
from server.state import state
from server.store.sdb import SimpleDBStore
from tests.server import samples
from tests.server.conftest import AUTH
from tests.server.samples import API_ID, SIDECAR_ID


@pytest.mark.parametrize("ip", ["10..0.1", ".", "x" * 70, "10.0.0.1; rm -rf", "999.1.1.1"])
def test_instance_ip_must_be_an_address(client, ip):
    response = client.post("/report/map", json=samples.map_report(samples.container(), host={"instance_ip": ip}),
                           headers=AUTH)  # fmt: skip
    assert response.status_code == 400
    assert "instance_ip" in response.get_json()["message"]


@pytest.mark.parametrize("host_name", [".", "a..b", "x" * 70])
def test_a_link_that_is_no_url_is_404_not_500(make_app, settings, host_name):
    settings["graylog_url"] = "https://{host_name}/search"
    client = make_app(settings).test_client()
    body = samples.map_report(samples.container(), host={**samples.HOST, "host_name": host_name})
    assert client.post("/report/map", json=body, headers=AUTH).status_code == 200
    for suffix in ("graylog?redir=true", "graylog"):
        response = client.get(f"/query/container_id/{API_ID}/{suffix}")
        assert response.status_code == 404
        assert "ECS_ID_MAPPER_GRAYLOG_URL" in response.get_json()["message"]
    assert "graylog" not in client.get(f"/query/container_id/{API_ID}/urls").get_json()


def test_a_clock_far_ahead_does_not_freeze_the_record(client, report):
    report(samples.container(known_status="PENDING", sample_time="9999-12-31T23:59:59.999999999Z"))
    report(samples.container(known_status="RUNNING", sample_time="2999-01-01T00:00:00Z"))
    time.sleep(0.01)  # the clamp is 'now + 5 min' at millisecond resolution: let now move on
    report(samples.container(known_status="STOPPED", sample_time=format_time(datetime.now(UTC) + timedelta(minutes=6))))
    body = client.get(f"/query/container_id/{API_ID}/_all").get_json()
    assert body["known_status"] == "STOPPED"
    assert body["sample_time"] < "2100"
    assert body["first_seen"] <= body["stopped_at"]


def test_first_seen_is_the_first_sample_time(client, report):
    report(samples.container(sample_time="2026-11-25T15:00:00Z"))
    assert client.get(f"/query/container_id/{API_ID}/_all").get_json()["first_seen"] == "2026-11-25T15:00:00.000Z"


def test_deep_nesting_is_named(client):
    raw = '{"containers": [], "x": ' + "[" * 100_000 + "]" * 100_000 + "}"
    response = client.post("/report/map", data=raw, headers={**AUTH, "Content-Type": "application/json"})
    assert response.status_code == 400
    assert "nested too deeply" in response.get_json()["message"]


@pytest.mark.parametrize("path", ["/query/container_id//_all", "/query/task_id//containers", "/query//"])
def test_empty_path_parts_are_json_404(client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert response.get_json()["error"] == "not_found"


def test_aws_region_alone_is_enough(monkeypatch):
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.setenv("AWS_REGION", "eu-central-1")
    assert EcsClient().client.meta.region_name == "eu-central-1"
    store = SimpleDBStore("qa", endpoint_url="http://127.0.0.1:9", max_attempts=1, connect_timeout=0.2)
    assert store.client.meta.region_name == "eu-central-1"


@pytest.mark.parametrize(
    ("path", "raw"),
    [
        ("/report/map", '{"host": {"cluster_name": "\\ud800"}, "containers": []}'),
        ("/report/map", json.dumps({"containers": [samples.container(name="x")]}).replace('"x"', '"\\udfff"')),
        ("/report/map", json.dumps({"containers": [samples.container(sample_time="0001-01-01T00:00:00+05:00")]})),
        ("/report/event", json.dumps({"events": [samples.event("e", timestamp="0001-01-01T00:00:00+01:00")]})),
    ],
)
def test_lone_surrogates_and_unrepresentable_times_are_400(app, client, path, raw):
    response = client.post(path, data=raw, headers={**AUTH, "Content-Type": "application/json"})
    assert response.status_code == 400, response.get_json()
    assert state(app).store.find_containers(API_ID[:12], 10) == []


def test_a_bad_redir_flag_is_400_before_any_lookup(client, report):
    report(samples.container())
    for route in (f"/query/container_id/{API_ID}/newrelic", f"/query/task_id/{samples.TASK_LONG}/newrelic",
                  "/query/service/default/api/newrelic"):  # fmt: skip
        response = client.get(f"{route}?redir=maybe")
        assert response.status_code == 400
        assert "redir" in response.get_json()["message"]


def test_overrides_that_are_not_strings_are_checked_too(make_app, settings):
    with pytest.raises(ConfigError, match="ECS_ID_MAPPER_WORKERS"):
        make_app({**settings, "workers": 0})
    client = make_app({**settings, "token": 12345, "allow_anonymous_reports": False}).test_client()
    response = client.post("/report/event", json={"events": []}, headers={"Authorization": "Bearer 12345"})
    assert response.status_code == 200


def test_an_ipv6_instance_gets_a_bracketed_host(client, report):
    report(samples.container(), host={**samples.HOST, "instance_ip": "2001:db8::1"})
    response = client.get(f"/query/container_id/{API_ID}/cadvisor?redir=true")
    assert (response.status_code, response.headers["Location"]) == (302, f"http://[2001:db8::1]:8080/docker/{API_ID}")


@pytest.mark.parametrize("host_name", ["a b", "evil.com/", "h:99", "x@y", "..", "-x"])
def test_a_value_that_is_no_host_name_in_the_host_part_is_404(make_app, settings, host_name):
    settings["cadvisor_url"] = "http://{host_name}:8080/docker/{container_id}"
    client = make_app(settings).test_client()
    body = samples.map_report(samples.container(), host={**samples.HOST, "host_name": host_name})
    assert client.post("/report/map", json=body, headers=AUTH).status_code == 200
    response = client.get(f"/query/container_id/{API_ID}/cadvisor?redir=true")
    assert response.status_code == 404
    assert "host_name" in response.get_json()["message"]


def test_a_host_name_no_dns_could_hold_is_404_every_time(make_app, settings):
    settings["cadvisor_url"] = "http://{host_name}:8080/docker/{container_id}"
    client = make_app(settings).test_client()
    for name, host_name in (("api", "x" * 64 + ".example"), ("sidecar", "ok.example")):
        body = samples.map_report(samples.container(), host={**samples.HOST, "host_name": host_name})
        body["containers"][0].update(container_name=name, container_id=(API_ID if name == "api" else SIDECAR_ID))
        assert client.post("/report/map", json=body, headers=AUTH).status_code == 200
    for _ in range(2):  # the host's verdict is remembered: the second answer must be the same
        assert client.get(f"/query/container_id/{API_ID}/cadvisor").status_code == 404
        assert client.get(f"/query/container_id/{SIDECAR_ID}/cadvisor").get_data(as_text=True) == (
            f"http://ok.example:8080/docker/{SIDECAR_ID}\n"
        )


def test_first_seen_is_the_earliest_event_a_delayed_report_carries(client, report):
    appeared = samples.event("e-1", event="appeared", timestamp="2026-11-25T14:59:00Z", **{"from": ""})
    running = samples.event("e-2", timestamp="2026-11-25T14:59:30Z")
    report(samples.container(sample_time="2026-11-25T15:00:00Z"), events=[running, appeared])
    body = client.get(f"/query/container_id/{API_ID}/_all").get_json()
    assert (body["first_seen"], body["sample_time"]) == ("2026-11-25T14:59:00.000Z", "2026-11-25T15:00:00.000Z")
    # a later report's events never move it
    report(
        samples.container(sample_time="2026-11-25T15:01:00Z"),
        events=[samples.event("e-0", timestamp="2020-01-01T00:00:00Z")],
    )
    assert client.get(f"/query/container_id/{API_ID}/_all").get_json()["first_seen"] == "2026-11-25T14:59:00.000Z"
