from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest

from server.records import format_time
from server.state import state
from tests.server import samples
from tests.server.samples import API_ID, AUTH, SIDECAR_ID, TASK_LONG


def stored(app) -> dict:
    """Everything the store holds about the sample task, to compare before and after a rejected report."""
    store = state(app).store
    return {
        "containers": store.containers_of_task(TASK_LONG),
        "events": store.events_of_task(TASK_LONG),
        "prefix": store.find_containers(API_ID[:12], 10),
    }


class TestAuth:
    def test_missing_token_is_401(self, client):
        response = client.post("/report/map", json=samples.map_report(samples.container()))
        assert response.status_code == 401
        assert response.get_json()["error"] == "unauthorized"

    @pytest.mark.parametrize(
        ("header", "status"),
        [("Bearer wrong", 403), ("Bearer s3cret-token-and-more", 403), ("Basic s3cret-token", 401), ("Bearer ", 401)],
    )
    def test_wrong_token_is_rejected(self, client, header, status):
        body = samples.map_report(samples.container(), events=[samples.event("e-1")])
        response = client.post("/report/map", json=body, headers={"Authorization": header})
        assert response.status_code == status
        assert client.get(f"/query/container_id/{API_ID}").status_code == 404

    def test_bearer_scheme_any_case(self, client):
        headers = {"Authorization": "bearer s3cret-token"}
        assert client.post("/report/event", json={"events": []}, headers=headers).status_code == 200

    def test_no_token_configured_refuses_reports(self, make_app, store_url):
        client = make_app({"store": store_url}).test_client()
        response = client.post("/report/map", json=samples.map_report(samples.container()))
        assert response.status_code == 403
        assert "ECS_ID_MAPPER_TOKEN" in response.get_json()["message"]

    def test_anonymous_reports_when_switched_on(self, make_app, store_url):
        client = make_app({"store": store_url, "allow_anonymous_reports": "true"}).test_client()
        assert client.post("/report/map", json=samples.map_report(samples.container())).status_code == 200
        assert client.get(f"/query/container_id/{API_ID}").status_code == 200


class TestMap:
    def test_upsert_is_idempotent_and_keeps_first_seen(self, app, client, report):
        assert report(samples.container()) == {"containers": 1, "events": 0}
        first = client.get(f"/query/container_id/{API_ID}/_all").get_json()
        report(samples.container())
        again = client.get(f"/query/container_id/{API_ID}/_all").get_json()
        assert again["first_seen"] == first["first_seen"]
        assert again["last_seen"] >= first["last_seen"]
        assert {k: v for k, v in again.items() if k != "last_seen"} == {
            k: v for k, v in first.items() if k != "last_seen"
        }
        assert len(stored(app)["containers"]) == 1

    def test_status_change_and_stopped_at(self, client, report):
        report(samples.container(known_status="PENDING", sample_time="2026-11-25T15:00:00Z"))
        report(samples.container(known_status="STOPPED", desired_status="STOPPED", sample_time="2026-11-25T15:10:00Z"))
        body = client.get(f"/query/container_id/{API_ID}/_all").get_json()
        assert (body["known_status"], body["stopped_at"]) == ("STOPPED", "2026-11-25T15:10:00.000Z")

    def test_a_late_retry_does_not_roll_back(self, client, report):
        report(samples.container(known_status="STOPPED", sample_time="2026-11-25T15:10:00Z"))
        report(samples.container(known_status="RUNNING", sample_time="2026-11-25T15:00:00Z"))
        assert client.get(f"/query/container_id/{API_ID}/_all").get_json()["known_status"] == "STOPPED"

    def test_task_id_from_arn_or_given(self, client, report):
        report(samples.container(task_arn="", task_id=TASK_LONG.upper()), samples.container(SIDECAR_ID, "sidecar"))
        assert client.get(f"/query/task_id/{TASK_LONG}").get_data(as_text=True) == f"{API_ID}\n{SIDECAR_ID}\n"

    def test_old_agent_fields_absent(self, client, report):
        bare = {"container_id": API_ID.upper(), "container_name": "migrate", "task_arn": samples.ARN_OLD,
                "known_status": "STOPPED", "sample_time": "2026-11-25T15:00:00+02:00"}  # fmt: skip
        report(bare)
        body = client.get(f"/query/container_id/{API_ID}/_all").get_json()
        assert (body["container_port"], body["instance_port"], body["ports"]) == ("", "", [])
        assert body["sample_time"] == "2026-11-25T13:00:00.000Z"
        assert body["desired_status"] == ""

    def test_awsvpc_host_port_defaults_to_container_port(self, client, report):
        networks = [{"network_mode": "awsvpc", "ipv4_addresses": ["172.31.9.44"]}]
        report(samples.container(ports=[{"container_port": 9200}, {"container_port": 9300}], networks=networks))
        body = client.get(f"/query/container_id/{API_ID}/_all").get_json()
        assert (body["container_port"], body["instance_port"]) == ("9200", "9200")
        assert body["networks"] == [{"network_mode": "awsvpc", "ipv4_addresses": ["172.31.9.44"],
                                     "ipv6_addresses": []}]  # fmt: skip
        assert len(body["ports"]) == 2

    def test_events_in_the_map_report_are_stored_once(self, client, report):
        events = [samples.event("e-1"), samples.event("e-2", event="appeared", **{"from": None})]
        assert report(samples.container(), events=events)["events"] == 2
        assert report(samples.container(), events=events)["events"] == 0
        assert len(client.get(f"/query/task_id/{TASK_LONG}/events").get_json()) == 2

    def test_unknown_fields_are_ignored(self, client, report):
        report(samples.container(restart_count=3, volumes=[{"x": 1}]))
        assert "volumes" not in client.get(f"/query/container_id/{API_ID}/_all").get_json()

    def test_an_empty_report_is_fine(self, report):
        assert report() == {"containers": 0, "events": 0}


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


def test_stopped_at_is_the_stop_event_a_delayed_report_carries(client, report):
    """A state sampled after the stop (a later change, a resync) does not move stopped_at past the stop itself."""
    report(samples.container(sample_time="2026-11-25T15:00:00Z"))
    stopped = samples.event("e-3", **{"from": "RUNNING", "to": "STOPPED"}, timestamp="2026-11-25T15:00:05Z")
    desired = samples.event(
        "e-4", event="desired_status", **{"from": "RUNNING", "to": "STOPPED"}, timestamp="2026-11-25T15:00:02Z"
    )
    report(
        samples.container(known_status="STOPPED", desired_status="STOPPED", sample_time="2026-11-25T15:00:20Z"),
        events=[desired, stopped],
    )
    assert client.get(f"/query/container_id/{API_ID}/_all").get_json()["stopped_at"] == "2026-11-25T15:00:05.000Z"


class TestEvent:
    def test_each_event_id_once(self, client):
        body = {"events": [samples.event("e-1"), samples.event("e-2")]}
        assert client.post("/report/event", json=body, headers=AUTH).get_json()["events"] == 2
        assert client.post("/report/event", json=body, headers=AUTH).get_json()["events"] == 0


def too_many(key: str):
    if key == "containers":
        return {"host": {}, "containers": [samples.container()] * 1001}
    return {"events": [samples.event(f"e{i}") for i in range(1001)]}


BAD_MAP_BODIES = {
    "not an object": [],
    "containers missing": {"host": samples.HOST},
    "containers not a list": {"containers": {"a": 1}},
    "host not an object": {"host": "h", "containers": []},
    "host field not a string": {"host": {"instance_ip": 10}, "containers": []},
    "full not a bool": {"containers": [], "full": "yes"},
    "container not an object": {"containers": ["x"]},
    "container_id missing": {"containers": [samples.container(container_id=None)]},
    "container_id short": {"containers": [samples.container(container_id="abc")]},
    "container_id not hex": {"containers": [samples.container(container_id="z" * 64)]},
    "container_id a number": {"containers": [samples.container(container_id=12)]},
    "container_name missing": {"containers": [samples.container(name="")]},
    "no task": {"containers": [samples.container(task_arn="")]},
    "task_arn bad id": {"containers": [samples.container(task_arn="arn:aws:ecs:r:1:task/nothex")]},
    "task id disagrees": {"containers": [samples.container(task_id="1" * 32)]},
    "known_status unknown": {"containers": [samples.container(known_status="EXPLODED")]},
    "known_status lowercase": {"containers": [samples.container(known_status="running")]},
    "known_status missing": {"containers": [samples.container(known_status=None)]},
    "desired_status unknown": {"containers": [samples.container(desired_status="MAYBE")]},
    "sample_time missing": {"containers": [samples.container(sample_time=None)]},
    "sample_time not a time": {"containers": [samples.container(sample_time="yesterday")]},
    "image too long": {"containers": [samples.container(image="r/" + "x" * 1023)]},
    "multibyte too long": {"containers": [samples.container(image="é" * 513)]},
    "nul in a string": {"containers": [samples.container(image="a\x00b")]},
    "task_version a list": {"containers": [samples.container(task_version=[1])]},
    "ports not a list": {"containers": [samples.container(ports="8000")]},
    **{f"ports {v!r}": {"containers": [samples.container(ports=v)]} for v in (0, False, {}, "")},
    **{f"networks {v!r}": {"containers": [samples.container(networks=v)]} for v in (0, False, {}, "")},
    **{
        f"sample_time {t}": {"containers": [samples.container(sample_time=t)]}
        for t in (
            "0999-01-01T00:00:00Z",
            "0001-01-01T00:00:00Z",
            "1999-12-31T23:59:59Z",
            "999-01-01T00:00:00Z",
            "+2026-01-01T00:00:00Z",
        )
    },
    "an ipv4 address that is none": {
        "containers": [samples.container(networks=[{"network_mode": "awsvpc", "ipv4_addresses": ["not-an-ip"]}])]
    },
    "an ipv6 address in the ipv4 list": {
        "containers": [samples.container(networks=[{"network_mode": "awsvpc", "ipv4_addresses": ["2001:db8::1"]}])]
    },
    "101 ports": {"containers": [samples.container(ports=[{"container_port": 80}] * 101)]},
    "port out of range": {"containers": [samples.container(ports=[{"container_port": 70000}])]},
    "port a string": {"containers": [samples.container(ports=[{"container_port": "80"}])]},
    "port a bool": {"containers": [samples.container(ports=[{"container_port": True}])]},
    "port missing": {"containers": [samples.container(ports=[{"host_port": 80}])]},
    "protocol unknown": {"containers": [samples.container(ports=[{"container_port": 80, "protocol": "icmp"}])]},
    "too many ports": {"containers": [samples.container(ports=[{"container_port": 1}] * 101)]},
    "networks addresses not a list": {"containers": [samples.container(networks=[{"ipv4_addresses": "1.2.3.4"}])]},
    "too many containers": too_many("containers"),
    "bad event inside": {"containers": [samples.container()], "events": [samples.event("e", event="boom")]},
}

BAD_EVENT_BODIES = {
    "not an object": "events",
    "events missing": {},
    "events not a list": {"events": "e"},
    "event_id missing": {"events": [samples.event("")]},
    "event_id bad characters": {"events": [samples.event("a b/c")]},
    "event_id too long": {"events": [samples.event("e" * 129)]},
    "event kind unknown": {"events": [samples.event("e", event="exploded")]},
    "from unknown": {"events": [samples.event("e", **{"from": "ASLEEP"})]},
    "timestamp bad": {"events": [samples.event("e", timestamp="noon")]},
    "container_id bad": {"events": [samples.event("e", container_id="abc")]},
    "task_id bad": {"events": [samples.event("e", task_id="abc")]},
    "too many events": too_many("events"),
    "second event bad": {"events": [samples.event("good"), samples.event("bad", event=None)]},
}


@pytest.fixture
def baseline(app, report):
    """A store holding one container and one event, so that a rejected report has something to disturb."""
    report(samples.container(known_status="PENDING"), events=[samples.event("base")])
    return stored(app)


@pytest.mark.parametrize("case", BAD_MAP_BODIES)
def test_bad_map_body_is_400_and_stores_nothing(app, client, baseline, case):
    body = BAD_MAP_BODIES[case]
    if case not in ("too many containers", "not an object", "containers not a list", "host not an object"):
        body = {"host": samples.HOST, **body}
    response = client.post("/report/map", json=body, headers=AUTH)
    assert response.status_code == 400, response.get_json()
    assert set(response.get_json()) == {"error", "message"}
    assert response.get_json()["error"] == "bad_request"
    assert stored(app) == baseline


@pytest.mark.parametrize("case", BAD_EVENT_BODIES)
def test_bad_event_body_is_400_and_stores_nothing(app, client, baseline, case):
    response = client.post("/report/event", json=BAD_EVENT_BODIES[case], headers=AUTH)
    assert response.status_code == 400, response.get_json()
    assert stored(app) == baseline


@pytest.mark.parametrize(
    "raw", [b"", b"{", b"not json", b"\xff\xfe", b"[" * 100_000 + b"]" * 100_000, b'{"containers": NaN}']
)
def test_not_json_is_400(app, client, baseline, raw):
    response = client.post("/report/map", data=raw, headers={**AUTH, "Content-Type": "application/json"})
    assert response.status_code == 400
    assert stored(app) == baseline


@pytest.mark.parametrize("ip", ["10..0.1", ".", "x" * 70, "10.0.0.1; rm -rf", "999.1.1.1"])
def test_instance_ip_must_be_an_address(client, ip):
    response = client.post("/report/map", json=samples.map_report(samples.container(), host={"instance_ip": ip}),
                           headers=AUTH)  # fmt: skip
    assert response.status_code == 400
    assert "instance_ip" in response.get_json()["message"]


def test_deep_nesting_is_named(client):
    raw = '{"containers": [], "x": ' + "[" * 100_000 + "]" * 100_000 + "}"
    response = client.post("/report/map", data=raw, headers={**AUTH, "Content-Type": "application/json"})
    assert response.status_code == 400
    assert "nested too deeply" in response.get_json()["message"]


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


def test_body_over_the_limit_is_413(app, make_app, settings, baseline):
    client = make_app({**settings, "max_body_bytes": "2048"}).test_client()
    body = json.dumps(samples.map_report(*[samples.container()] * 10))
    response = client.post("/report/map", data=body, headers={**AUTH, "Content-Type": "application/json"})
    assert response.status_code == 413
    assert response.get_json()["error"] == "request_entity_too_large"
    assert stored(app) == baseline


def test_a_thousand_containers_are_accepted(client):
    containers = [samples.container(f"{i:064x}", f"c{i:04d}") for i in range(1000)]
    response = client.post("/report/map", json=samples.map_report(*containers), headers=AUTH)
    assert response.get_json() == {"containers": 1000, "events": 0}
    assert client.get(f"/query/task_id/{TASK_LONG}").get_data(as_text=True).count("\n") == 1000


@pytest.mark.parametrize("full", [True, False])
def test_the_store_is_told_whether_a_report_is_the_hosts_whole_snapshot(app, client, monkeypatch, full):
    store, told = state(app).store, []
    record_report = store.record_report

    def spy(records, events, now, full=False, host=None):
        told.append(full)
        return record_report(records, events, now, full, host)

    monkeypatch.setattr(store, "record_report", spy)
    client.post("/report/map", json=samples.map_report(samples.container(), full=full), headers=AUTH)
    assert told == [full]


def test_the_ipv4_check_accepts_exactly_what_the_ipaddress_module_does():
    import ipaddress

    from server import schema
    from server.validation import ValidationError

    octets = [str(n) for n in range(0, 300)] + ["00", "01", "099", "0255", "٣", "1 ", "+1", "-1", "", "0x1"]
    candidates = [f"{o}.2.3.4" for o in octets] + [f"1.2.3.{o}" for o in octets]
    candidates += ["1.2.3", "1.2.3.4.5", "1..3.4", "1.2.3.4\n", " 1.2.3.4", "::ffff:1.2.3.4", "1.2.3.4/32"]
    for text in candidates:
        try:
            valid = ipaddress.ip_address(text).version == 4
        except ValueError:
            valid = False
        entry = samples.container(networks=[{"network_mode": "awsvpc", "ipv4_addresses": [text]}])
        try:
            schema.map_report(samples.map_report(entry))
            accepted = True
        except ValidationError:
            accepted = False
        assert accepted == valid, text


@pytest.mark.parametrize("address", ["fe80::1%eth0", "fe80::1%\r\nX-Evil: 1"])
def test_an_address_with_a_zone_is_refused_and_the_agent_drops_it(client, address):
    from agent import wire

    networks = [{"network_mode": "awsvpc", "ipv6_addresses": [address]}]
    response = client.post("/report/map", json=samples.map_report(samples.container(networks=networks)), headers=AUTH)
    assert response.status_code == 400
    response = client.post("/report/map", json=samples.map_report(samples.container(), host={"instance_ip": address}),
                           headers=AUTH)  # fmt: skip
    assert response.status_code == 400
    assert wire.ip_address(address) == ""
    assert wire.networks([{"NetworkMode": "awsvpc", "IPv6Addresses": [address, "fe80::1"]}])[0]["ipv6_addresses"] == [
        "fe80::1"
    ]


def test_a_container_its_agent_says_vanished_stops_at_once(client, report):
    from server.records import event_id

    report(samples.container())
    moment = "2026-11-25T15:05:00Z"
    gone = samples.event(event_id(API_ID, "vanished", "RUNNING", ""), event="vanished", timestamp=moment,
                         **{"from": "RUNNING", "to": ""})  # fmt: skip
    report(events=[gone])
    shown = client.get(f"/query/container_id/{API_ID}/_all").get_json()
    assert (shown["known_status"], shown["stopped_at"]) == ("STOPPED", "2026-11-25T15:05:00.000Z")
    assert client.get("/sd/prometheus").get_json() == []
    history = [(e["event"], e["from"], e["to"]) for e in client.get(f"/query/container_id/{API_ID}/events").get_json()]
    assert history == [("appeared", "", "RUNNING"), ("vanished", "RUNNING", ""), ("known_status", "RUNNING", "STOPPED")]


def test_a_vanished_event_from_another_host_stops_nothing(client, report):
    report(samples.container())
    gone = samples.event("v-1", event="vanished", timestamp="2026-11-25T15:05:00Z", **{"from": "RUNNING", "to": ""})
    report(events=[gone], host={**samples.HOST, "instance_id": "i-0other", "host_name": "elsewhere"})
    assert client.get(f"/query/container_id/{API_ID}/_all").get_json()["known_status"] == "RUNNING"
