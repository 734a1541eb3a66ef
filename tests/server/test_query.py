from __future__ import annotations

import time

import pytest

from server.records import event_id
from server.state import state
from tests.server import samples
from tests.server.samples import API_ID, ARN_OLD, AUTH, MIGRATE_ID, SIDECAR_ID, TASK_LONG, TASK_UUID

UNKNOWN_ID = "f" * 64
UNKNOWN_TASK = "f" * 32
#: Whitespace and control characters around an ID (URL-quoted where a path needs it): the grammar has no room.
WHITESPACE_AROUND = [("%20", ""), ("", "%0A"), ("%1F", ""), ("", "\u00a0"), ("\u3000", ""), ("", "\u0085"), ("%09", "")]


def error_of(response) -> dict:
    body = response.get_json()
    assert set(body) >= {"error", "message"}, body
    return body


@pytest.fixture
def recorded(report):
    report(
        samples.container(API_ID, "api"),
        samples.container(SIDECAR_ID, "aaa-sidecar", ports=[]),
        samples.container(MIGRATE_ID, "migrate", task_arn=ARN_OLD, known_status="STOPPED", desired_status=""),
    )


class TestByContainerId:
    @pytest.mark.parametrize("given", [API_ID, API_ID[:12], API_ID[:20].upper()])
    def test_task_id_as_text(self, client, recorded, given):
        response = client.get(f"/query/container_id/{given}")
        assert response.status_code == 200
        assert response.mimetype == "text/plain"
        assert response.get_data(as_text=True) == f"{TASK_LONG}\n"

    def test_old_arn_form_task_id(self, client, recorded):
        assert client.get(f"/query/container_id/{MIGRATE_ID}").get_data(as_text=True) == f"{TASK_UUID}\n"

    @pytest.mark.parametrize(
        ("given", "fragment"),
        [
            ("zz" * 10, "not hexadecimal"),
            ("abc123", "too short"),
            ("a" * 11, "too short"),
            ("a" * 65, "too long"),
            ("9f8e7d6c5b4a-3928", "not hexadecimal"),
            *((f"{pad[0]}{API_ID[:12]}{pad[1]}", "not hexadecimal") for pad in WHITESPACE_AROUND),
        ],
    )
    def test_malformed_id_is_400(self, client, recorded, given, fragment):
        response = client.get(f"/query/container_id/{given}")
        assert response.status_code == 400
        assert fragment in error_of(response)["message"]

    @pytest.mark.parametrize("suffix", ["", "/_all", "/cadvisor", "/graylog", "/newrelic", "/urls", "/events"])
    def test_unknown_is_404_on_every_route(self, client, recorded, suffix):
        response = client.get(f"/query/container_id/{UNKNOWN_ID}{suffix}")
        assert response.status_code == 404
        assert error_of(response)["error"] == "not_found"

    @pytest.mark.parametrize("suffix", ["", "/_all", "/cadvisor", "/events"])
    def test_malformed_is_400_on_every_route(self, client, recorded, suffix):
        assert client.get(f"/query/container_id/xyz{suffix}").status_code == 400

    def test_ambiguous_prefix_is_409_listing_matches(self, client, report):
        twin = API_ID[:20] + "0" * 44
        report(samples.container(API_ID, "api"), samples.container(twin, "twin"))
        response = client.get(f"/query/container_id/{API_ID[:12]}")
        assert response.status_code == 409
        assert error_of(response)["matches"] == sorted([API_ID, twin])
        # a longer prefix settles it
        assert client.get(f"/query/container_id/{API_ID[:21]}").status_code == 200

    def test_all_attributes(self, client, recorded):
        body = client.get(f"/query/container_id/{API_ID[:12]}/_all").get_json()
        assert body["container_id"] == API_ID
        assert body["task_id"] == TASK_LONG
        assert body["task_arn"] == samples.ARN_LONG
        assert body["container_port"] == "8000"
        assert body["instance_port"] == "49153"
        assert body["ports"] == [{"container_port": 8000, "host_port": 49153, "protocol": "tcp"}]
        assert body["cadvisor_url"] == f"http://10.0.1.17:8080/docker/{API_ID}"
        assert "graylog_url" not in body  # not configured
        for name in ("instance_id", "instance_ip", "instance_type", "instance_az", "host_name", "cluster_name",
                     "ecs_agent_version", "sample_time", "first_seen", "last_seen", "desired_status"):  # fmt: skip
            assert body[name], name

    def test_cadvisor_url_and_redirect(self, client, recorded):
        url = f"http://10.0.1.17:8080/docker/{API_ID}"
        response = client.get(f"/query/container_id/{API_ID}/cadvisor")
        assert (response.status_code, response.get_data(as_text=True)) == (200, f"{url}\n")
        for flag in ("true", "1", "yes", "TRUE", "Yes"):
            response = client.get(f"/query/container_id/{API_ID}/cadvisor?redir={flag}")
            assert (response.status_code, response.headers["Location"]) == (302, url)
        assert client.get(f"/query/container_id/{API_ID}/cadvisor?redir=false").status_code == 200
        assert client.get(f"/query/container_id/{API_ID}/cadvisor?redir=perhaps").status_code == 400

    def test_graylog_unconfigured_says_which_variable(self, client, recorded):
        response = client.get(f"/query/container_id/{API_ID}/graylog")
        assert response.status_code == 404
        assert "ECS_ID_MAPPER_GRAYLOG_URL" in error_of(response)["message"]

    def test_newrelic_without_cached_url_is_404(self, client, recorded):
        response = client.get(f"/query/container_id/{API_ID}/newrelic?redir=true")
        assert response.status_code == 404
        assert "New Relic" in error_of(response)["message"]

    def test_newrelic_cached_url_and_redirect(self, app, client, recorded):
        url = "https://rpm.newrelic.com/accounts/1/applications/2/instances/3"
        state(app).store.update_container(API_ID, {"newrelic_url": url})
        assert client.get(f"/query/container_id/{API_ID}/newrelic").get_data(as_text=True) == f"{url}\n"
        assert client.get(f"/query/container_id/{API_ID}/newrelic?redir=1").headers["Location"] == url

    def test_urls_lists_configured_links(self, client, recorded):
        assert client.get(f"/query/container_id/{API_ID}/urls").get_json() == {
            "cadvisor": f"http://10.0.1.17:8080/docker/{API_ID}"
        }

    def test_events_oldest_first(self, client, report):
        later = samples.event("e-2", timestamp="2026-11-25T15:00:05Z", **{"from": "RUNNING", "to": "STOPPED"})
        earlier = samples.event("e-1", timestamp="2026-11-25T15:00:01Z")
        report(samples.container(), events=[later, earlier])
        body = client.get(f"/query/container_id/{API_ID[:12]}/events").get_json()
        # The server records the appearance the report did not name, at the container's first sighting.
        assert [e["event_id"] for e in body] == [event_id(API_ID, "appeared", "", ""), "e-1", "e-2"]
        # Signed with the name of the token that wrote it (the single report token's is "token").
        assert body[2] == {**later, "timestamp": "2026-11-25T15:00:05.000Z", "by": "token"}

    def test_status_is_read_fresh_after_the_task_id_is_cached(self, client, report):
        report(samples.container())
        assert client.get(f"/query/container_id/{API_ID}").status_code == 200
        report(samples.container(known_status="STOPPED", sample_time="2026-11-25T16:00:00Z"))
        assert client.get(f"/query/container_id/{API_ID}/_all").get_json()["known_status"] == "STOPPED"


class TestByTaskId:
    def test_container_ids_ordered_by_name(self, client, recorded):
        response = client.get(f"/query/task_id/{TASK_LONG}")
        assert response.mimetype == "text/plain"
        assert response.get_data(as_text=True) == f"{SIDECAR_ID}\n{API_ID}\n"  # aaa-sidecar sorts before api

    def test_a_running_task_is_read_fresh_and_a_stopped_one_is_remembered(self, app, client, report):
        store = state(app).store
        asked = []
        real = store.statuses_of_task
        store.statuses_of_task = lambda task_id: asked.append(task_id) or real(task_id)
        report(samples.container(API_ID, "api"), samples.container(SIDECAR_ID, "aaa-sidecar"))
        for _ in range(2):
            assert client.get(f"/query/task_id/{TASK_LONG}").get_data(as_text=True) == f"{SIDECAR_ID}\n{API_ID}\n"
        assert len(asked) == 2

        stop = {"known_status": "STOPPED", "sample_time": "2026-11-25T16:00:00Z"}
        report(samples.container(API_ID, "api", **stop))  # one of two stopped: still read fresh
        client.get(f"/query/task_id/{TASK_LONG}")
        assert len(asked) == 3
        report(samples.container(SIDECAR_ID, "aaa-sidecar", **stop))
        for given in (TASK_LONG, TASK_LONG.upper(), TASK_LONG):
            assert client.get(f"/query/task_id/{given}").get_data(as_text=True) == f"{SIDECAR_ID}\n{API_ID}\n"
        assert len(asked) == 4
        assert client.get(f"/query/task_id/{TASK_LONG}/_all").get_json()["known_status"] == "STOPPED"

    def test_uuid_task_id_any_case(self, client, recorded):
        response = client.get(f"/query/task_id/{TASK_UUID.upper()}")
        assert response.get_data(as_text=True) == f"{MIGRATE_ID}\n"

    @pytest.mark.parametrize(
        "given",
        [
            "abc", "g" * 32, "0" * 31, "0" * 33, "3e4f5a6b7c8d-4e9f-a0b1-c2d3e4f5a6b7",
            *(f"{pad[0]}{TASK_LONG}{pad[1]}" for pad in WHITESPACE_AROUND),
        ],
    )  # fmt: skip
    def test_malformed_task_id_is_400(self, client, given):
        response = client.get(f"/query/task_id/{given}")
        assert response.status_code == 400
        assert "task ID" in error_of(response)["message"]

    @pytest.mark.parametrize(
        "suffix", ["", "/_all", "/containers", "/cadvisor", "/graylog", "/newrelic", "/urls", "/events"]
    )
    def test_unknown_is_404(self, client, recorded, suffix):
        assert client.get(f"/query/task_id/{UNKNOWN_TASK}{suffix}").status_code == 404

    def test_all_is_first_container_by_name_with_task_containers(self, client, recorded):
        body = client.get(f"/query/task_id/{TASK_LONG}/_all").get_json()
        assert body["container_name"] == "aaa-sidecar"
        assert body["task_containers"] == ["aaa-sidecar", "api"]
        assert body["cadvisor_url"] == f"http://10.0.1.17:8080/docker/{SIDECAR_ID}"

    def test_all_for_a_named_container(self, client, recorded):
        body = client.get(f"/query/task_id/{TASK_LONG}/_all?container=api").get_json()
        assert body["container_id"] == API_ID
        response = client.get(f"/query/task_id/{TASK_LONG}/_all?container=nope")
        assert response.status_code == 404
        assert "aaa-sidecar, api" in error_of(response)["message"]

    def test_containers_lists_every_record(self, client, recorded):
        body = client.get(f"/query/task_id/{TASK_LONG}/containers").get_json()
        assert [r["container_id"] for r in body] == [SIDECAR_ID, API_ID]

    def test_links_and_redirects(self, make_app, settings):
        settings["graylog_url"] = "https://graylog.example/search?q=container_name:{short_id}&c={cluster_name}"
        client = make_app(settings).test_client()
        client.post("/report/map", json=samples.map_report(samples.container()),
                    headers={"Authorization": "Bearer s3cret-token"})  # fmt: skip
        url = f"https://graylog.example/search?q=container_name:{API_ID[:12]}&c=default"
        assert client.get(f"/query/task_id/{TASK_LONG}/graylog").get_data(as_text=True) == f"{url}\n"
        response = client.get(f"/query/task_id/{TASK_LONG}/graylog?redir=true")
        assert (response.status_code, response.headers["Location"]) == (302, url)
        response = client.get(f"/query/task_id/{TASK_LONG}/cadvisor?redir=yes")
        assert response.headers["Location"] == f"http://10.0.1.17:8080/docker/{API_ID}"
        assert client.get(f"/query/task_id/{TASK_LONG}/newrelic").status_code == 404

    def test_events_of_every_container(self, client, report):
        report(
            samples.container(),
            samples.container(SIDECAR_ID, "sidecar"),
            events=[
                samples.event("b", SIDECAR_ID, timestamp="2026-11-25T15:00:02Z"),
                samples.event("a", API_ID, timestamp="2026-11-25T15:00:01Z"),
            ],
        )
        body = client.get(f"/query/task_id/{TASK_LONG}/events").get_json()
        named = [e["event_id"] for e in body if e["event"] != "appeared"]  # appearances the server recorded itself
        assert named == ["a", "b"]


class TestLinks:
    def test_values_are_url_quoted(self, make_app, settings, report):
        settings["graylog_url"] = "https://graylog.example/search?q={container_name}"
        client = make_app(settings).test_client()
        client.post("/report/map", json=samples.map_report(samples.container(name="a b&c=d/../x")),
                    headers={"Authorization": "Bearer s3cret-token"})  # fmt: skip
        url = client.get(f"/query/container_id/{API_ID}/graylog").get_data(as_text=True).strip()
        assert url == "https://graylog.example/search?q=a%20b%26c%3Dd%2F..%2Fx"

    def test_missing_value_says_which_field(self, client, report):
        report(samples.container(), host={**samples.HOST, "instance_ip": ""})
        response = client.get(f"/query/container_id/{API_ID}/cadvisor?redir=true")
        assert response.status_code == 404
        assert "instance_ip" in error_of(response)["message"]


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


def test_a_bad_redir_flag_is_400_before_any_lookup(client, report):
    report(samples.container())
    for route in (f"/query/container_id/{API_ID}/newrelic", f"/query/task_id/{samples.TASK_LONG}/newrelic",
                  "/query/service/default/api/newrelic"):  # fmt: skip
        response = client.get(f"{route}?redir=maybe")
        assert response.status_code == 400
        assert "redir" in response.get_json()["message"]


def test_unknown_route_answers_json_404(client):
    response = client.get("/query/nothing/here")
    assert response.status_code == 404
    assert error_of(response)["error"] == "not_found"


def test_wrong_method_answers_json_405(client):
    response = client.post(f"/query/container_id/{API_ID}")
    assert response.status_code == 405
    assert error_of(response)["error"] == "method_not_allowed"


@pytest.mark.parametrize("path", ["/query/container_id//_all", "/query/task_id//containers", "/query//"])
def test_empty_path_parts_are_json_404(client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert response.get_json()["error"] == "not_found"


@pytest.mark.parametrize(
    ("template", "field", "value"),
    [
        ("https://{cluster_name}.graylog.example/search", "cluster_name", "2001:db8::1"),
        ("https://{cluster_name}.graylog.example/search", "cluster_name", "10.0.0.1"),
        ("http://cadvisor.example{container_name}", "container_name", "2001:db8::1"),
        ("https://graylog.example:8443{image}/x", "image", "2001:db8::1"),
        ("https://graylog.example:8443{image}/x", "image", "@evil.example"),
        ("https://graylog.example:{image}/x", "image", "99999"),
    ],
)
def test_a_value_can_only_be_a_whole_host_never_a_piece_of_one(make_app, settings, template, field, value):
    settings["graylog_url"] = template
    client = make_app(settings).test_client()
    container = {**samples.container(), field: value}
    body = samples.map_report(container, host={**samples.HOST, field: value} if field == "cluster_name" else None)
    assert client.post("/report/map", json=body, headers=AUTH).status_code == 200
    response = client.get(f"/query/container_id/{API_ID}/graylog?redir=true")
    assert response.status_code == 404, response.headers.get("Location")
    assert "ECS_ID_MAPPER_GRAYLOG_URL" in response.get_json()["message"]
    assert "Location" not in response.headers


def test_host_name_labels_may_be_a_piece_of_a_host(make_app, settings):
    settings["graylog_url"] = "https://{cluster_name}.graylog.example:8443/search?c={cluster_name}"
    client = make_app(settings).test_client()
    body = samples.map_report(samples.container(), host={**samples.HOST, "cluster_name": "prod-eu"})
    assert client.post("/report/map", json=body, headers=AUTH).status_code == 200
    response = client.get(f"/query/container_id/{API_ID}/graylog?redir=true")
    assert (response.status_code, response.headers["Location"]) == (
        302, "https://prod-eu.graylog.example:8443/search?c=prod-eu",
    )  # fmt: skip


def test_the_all_answers_show_containers_whose_host_stopped_reporting_as_lost(make_app, settings):
    app = make_app({**settings, "host_lease": "0.05"})
    client = app.test_client()
    body = samples.map_report(
        samples.container(API_ID, "api"), samples.container(SIDECAR_ID, "sidecar", known_status="STOPPED")
    )
    assert client.post("/report/map", json=body, headers=AUTH).status_code == 200
    state(app).leases.interval = 0
    time.sleep(0.1)

    shown = [
        client.get(f"/query/container_id/{API_ID}/_all").get_json(),
        client.get(f"/query/task_id/{TASK_LONG}/_all?container=api").get_json(),
        *client.get(f"/query/task_id/{TASK_LONG}/containers").get_json(),
    ]

    lost = [s for s in shown if "lost_since" in s]
    assert [s["container_name"] for s in lost] == ["api", "api", "api"]  # a stopped container is never lost
    assert {s["known_status"] for s in lost} == {"RUNNING"}
    assert {s["lost_reason"][:47] for s in lost} == {"its host stopped reporting: lease last renewed "}
    assert "lost_reason" not in shown[-1] and shown[-1]["container_name"] == "sidecar"
