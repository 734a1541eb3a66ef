"""The page for people, through the app: searches by every input form, the container and task views, hostile
records escaped, links under the configured templates only, and the security headers."""

from __future__ import annotations

import re

import pytest

from server.state import state
from tests.server.samples import API_ID, ARN_OLD, AUTH, SIDECAR_ID, TASK_LONG, TASK_UUID, container, event

OTHER_ID = API_ID[:12] + "f" * 52
HOSTILE = '"><img src=x onerror="window.pwned=1"><script>window.pwned=1</script>'


@pytest.fixture
def settings(settings):
    return {
        **settings,
        "graylog_url": "https://graylog.example/search?q={short_id}",
        "link_logs": "https://logs.example/{container_name}",
    }


@pytest.fixture
def recorded(report):
    events = [event("e1", timestamp="2026-11-25T14:59:00.000Z", **{"from": "PENDING", "to": "RUNNING"})]
    report(container(), container(SIDECAR_ID, name="envoy"), events=events)


def location(response) -> str:
    return response.headers["Location"]


def test_the_empty_search_is_the_form_with_every_security_header(client):
    response = client.get("/")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert '<form class="search" role="search"' in page and 'name="q"' in page
    csp = response.headers["Content-Security-Policy"]
    assert "unsafe-inline" not in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert "<script>" not in page and " style=" not in page and "<style" not in page  # nothing inline


def test_static_files_are_served_with_long_cache_headers_under_a_content_digest(client):
    page = client.get("/").get_data(as_text=True)
    css = re.search(r'href="(/page-static/page\.css\?v=[0-9a-f]{12})"', page)
    js = re.search(r'src="(/page-static/page\.js\?v=[0-9a-f]{12})"', page)
    assert css and js
    for url in (css[1], js[1]):
        with client.get(url) as response:
            assert response.status_code == 200
            assert "max-age=31536000" in response.headers["Cache-Control"]
            assert response.headers["X-Content-Type-Options"] == "nosniff"
    with client.get(js[1]) as response:
        assert response.mimetype in ("text/javascript", "application/javascript")


def test_a_full_container_id_opens_its_view(client, recorded):
    response = client.get(f"/?q={API_ID}")
    assert response.status_code == 302
    assert location(response).startswith(f"/container/{API_ID}?q=")
    view = client.get(location(response))
    page = view.get_data(as_text=True)
    assert view.status_code == 200
    assert "Understood as <strong>a full Docker container ID</strong>" in page
    assert f'href="/task/{TASK_LONG}"' in page
    assert ">running<" in page and "envoy" in page  # the status and the sibling
    assert "<svg" in page and "status PENDING → RUNNING" in page  # the timeline and its moments
    assert "10.0.1.17" in page and "i-0123456789abcdef0" in page and "8000/tcp → host 49153" in page
    assert f'data-copy="{API_ID}"' in page


@pytest.mark.parametrize(
    ("given", "opens"),
    [
        (API_ID[:12], f"/container/{API_ID}"),
        (API_ID.upper(), f"/container/{API_ID}"),
        (TASK_LONG, f"/task/{TASK_LONG}"),
        (f"arn:aws:ecs:eu-central-1:210987654321:task/default/{TASK_LONG}", f"/task/{TASK_LONG}"),
        ("ecs-api-42-api-c8e9f0a1b2c3d4e5f6a7", f"/container/{API_ID}"),
    ],
)
def test_each_form_that_names_one_thing_opens_it(client, recorded, given, opens):
    response = client.get("/", query_string={"q": given})
    assert response.status_code == 302
    assert location(response).split("?")[0] == opens


def test_an_old_arn_opens_its_task_view(client, report):
    report(container(MIGRATE := "5" * 64, name="migrate", task_arn=ARN_OLD))
    response = client.get("/", query_string={"q": ARN_OLD})
    assert location(response).split("?")[0] == f"/task/{TASK_UUID}"
    page = client.get(location(response)).get_data(as_text=True)
    assert "Understood as <strong>a task ARN (the old form, without a cluster)</strong>" in page
    assert f"/container/{MIGRATE}" in page


def test_several_matches_are_listed_running_first(client, report):
    report(container(), container(OTHER_ID, name="old", known_status="STOPPED", desired_status="STOPPED"))
    response = client.get("/", query_string={"q": API_ID[:12]})
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "2 matching containers" in page and "give more digits" in page
    assert page.index(f"/container/{API_ID}") < page.index(f"/container/{OTHER_ID}")


def test_an_instance_lists_what_ran_on_it_stopped_containers_too(client, report):
    report(container(), container(OTHER_ID, name="old", known_status="STOPPED", desired_status="STOPPED"))
    page = client.get("/", query_string={"q": "i-0123456789abcdef0"}).get_data(as_text=True)
    assert "an EC2 instance ID" in page and f"/container/{API_ID}" in page and f"/container/{OTHER_ID}" in page
    assert page.index(f"/container/{API_ID}") < page.index(f"/container/{OTHER_ID}")  # running first


def test_a_cluster_slash_service_lists_the_services_containers(app, client, recorded):
    state(app).store.update_task(TASK_LONG, {"service_name": "api"})
    page = client.get("/", query_string={"q": "default/api"}).get_data(as_text=True)
    assert "service api of cluster default" in page and f"/container/{API_ID}" in page
    by_name = client.get("/", query_string={"q": "default"}).get_data(as_text=True)
    assert "a cluster or service name" in by_name and f"/container/{API_ID}" in by_name


@pytest.mark.parametrize("given", ["3f2a9c1d", "<script>x</script>", "i-12ab34"])
def test_malformed_input_is_a_400_saying_why_never_an_error_page(client, given):
    response = client.get("/", query_string={"q": given})
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert "Malformed:" in page and "<script>x" not in page


def test_nothing_on_record_says_so_and_why(client):
    response = client.get("/", query_string={"q": API_ID})
    assert response.status_code == 404
    page = response.get_data(as_text=True)
    assert "Not on record" in page and "pruned" in page and "30 days" in page


def test_an_address_lists_who_held_it_newest_first(client, report):
    awsvpc = [{"network_mode": "awsvpc", "ipv4_addresses": ["10.0.5.9"]}]
    report(container(networks=awsvpc, started_at="2026-11-25T14:00:00.000Z"))
    report(container(SIDECAR_ID, name="envoy", started_at="2026-11-25T15:00:00.000Z"))
    page = client.get("/", query_string={"q": "::ffff:10.0.5.9"}).get_data(as_text=True)
    assert "an IPv4 address" in page and "Who held 10.0.5.9" in page and "the task's own address" in page
    assert f"/container/{API_ID}" in page and f"/container/{SIDECAR_ID}" not in page
    on_instance = client.get("/", query_string={"q": "10.0.1.17"}).get_data(as_text=True)
    assert "its instance's address, host port 49153" in on_instance and "still holds it" in on_instance
    assert f"/container/{SIDECAR_ID}" in on_instance
    by_port = client.get("/", query_string={"q": "10.0.1.17:49153"}).get_data(as_text=True)
    assert "an IPv4 address and port 49153" in by_port and f"/container/{SIDECAR_ID}" in by_port
    other_port = client.get("/", query_string={"q": "10.0.1.17:49154"})
    assert other_port.status_code == 404


def test_an_address_nobody_held_is_not_on_record(client, recorded):
    response = client.get("/", query_string={"q": "192.0.2.1"})
    assert response.status_code == 404 and "Not on record" in response.get_data(as_text=True)


def test_the_task_view_draws_its_containers_side_by_side(client, recorded):
    page = client.get(f"/task/{TASK_LONG}").get_data(as_text=True)
    assert page.count('<g class="life') == 2 and "api" in page and "envoy" in page


def test_a_stopped_container_says_its_exit_code_and_reason(app, client, recorded):
    stopped = {"known_status": "STOPPED", "exit_code": "137", "reason": "OutOfMemoryError: Container killed"}
    state(app).store.update_container(API_ID, stopped)
    page = client.get(f"/container/{API_ID}").get_data(as_text=True)
    assert "stopped with exit code 137: OutOfMemoryError: Container killed" in page


def test_hostile_values_are_escaped_and_links_stay_under_their_templates(client, report):
    report(container(name="x" + HOSTILE[:40], image=HOSTILE, task_name="javascript:alert(1)"))
    page = client.get(f"/container/{API_ID}").get_data(as_text=True)
    assert "<script>window.pwned" not in page and "<img src=x" not in page
    assert "&lt;script&gt;" in page or "&#34;&gt;&lt;img" in page
    assert 'href="javascript:' not in page
    follow = client.get(f"/container/{API_ID}/go/logs")
    assert follow.status_code == 302
    assert follow.headers["Location"].startswith("https://logs.example/x%22%3E%3Cimg")


def test_a_link_is_followed_as_the_apis_redirect(client, recorded):
    page = client.get(f"/container/{API_ID}/go/graylog")
    api = client.get(f"/query/container_id/{API_ID}/graylog?redir=true")
    assert page.status_code == api.status_code == 302
    assert page.headers["Location"] == api.headers["Location"] == f"https://graylog.example/search?q={API_ID[:12]}"
    assert client.get(f"/container/{API_ID}/go/nope").status_code == 404


def test_a_malformed_or_unknown_view_is_an_html_page(client):
    for url, status in ((f"/container/{API_ID[:12]}", 400), (f"/container/{API_ID}", 404), ("/task/nope", 400)):
        response = client.get(url)
        assert response.status_code == status
        assert response.mimetype == "text/html"
        assert response.headers["Content-Security-Policy"]


class TestSignIn:
    @pytest.fixture
    def settings(self, settings):
        return {**settings, "read_token": "r3ad-token"}

    def test_the_page_asks_for_the_token_and_health_stays_open(self, client):
        response = client.get(f"/?q={API_ID}")
        assert response.status_code == 303
        assert location(response).startswith("/sign-in?next=")
        assert client.get("/health").status_code in (200, 503)
        with client.get("/page-static/page.css") as static:
            assert static.status_code == 200
        form = client.get("/sign-in").get_data(as_text=True)
        assert 'type="password"' in form

    def test_a_wrong_token_is_refused_without_saying_which_part(self, client):
        for wrong in ("r3ad-toke", "r3ad-token-", "x", ""):
            response = client.post("/sign-in", data={"token": wrong, "next": "/"})
            assert response.status_code == 403
            assert "That token is not accepted." in response.get_data(as_text=True)
            assert "Set-Cookie" not in response.headers

    @pytest.mark.parametrize(
        ("token", "proto", "secure"), [("r3ad-token", "http", False), ("s3cret-token", "https", True)]
    )
    def test_the_read_or_report_token_signs_in_with_a_strict_cookie(self, client, recorded, token, proto, secure):
        response = client.post(
            "/sign-in",
            data={"token": token, "next": f"/?q={API_ID}"},
            headers={"Origin": "http://localhost", "X-Forwarded-Proto": proto},
        )
        assert response.status_code == 303 and location(response) == f"/?q={API_ID}"
        cookie = response.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and ("Secure" in cookie) is secure
        assert client.get(f"/?q={API_ID}").status_code == 302

    def test_a_sign_in_from_another_site_or_to_another_site_is_refused(self, client):
        response = client.post("/sign-in", data={"token": "r3ad-token"}, headers={"Origin": "https://evil.example"})
        assert response.status_code == 403 and "Set-Cookie" not in response.headers
        null = client.post("/sign-in", data={"token": "r3ad-token"}, headers={"Sec-Fetch-Site": "cross-site"})
        assert null.status_code == 403
        away = client.post("/sign-in", data={"token": "r3ad-token", "next": "//evil.example/"})
        assert location(away) == "/"

    def test_a_bearer_token_reads_the_page_as_it_reads_the_api(self, client, recorded):
        assert client.get(f"/container/{API_ID}", headers={"Authorization": "Bearer r3ad-token"}).status_code == 200
        assert client.get(f"/container/{API_ID}", headers=AUTH).status_code == 200


def test_a_store_that_does_not_answer_is_a_503_page(app, client, recorded, monkeypatch):
    from server.store import StoreUnavailable

    def down(*args):
        raise StoreUnavailable("connection refused")

    monkeypatch.setattr(state(app).store, "get_container", down)
    for url in (f"/?q={API_ID}", f"/container/{API_ID}"):
        response = client.get(url)
        assert response.status_code == 503 and response.mimetype == "text/html"
        assert "did not answer" in response.get_data(as_text=True)


class TestLostHost:
    @pytest.fixture
    def settings(self, settings):
        return {**settings, "host_lease": 0.5}

    def test_a_container_whose_host_went_silent_is_lost_not_running(self, client, recorded):
        import time

        time.sleep(0.7)  # the lease lapses: no report renewed it
        page = client.get(f"/container/{API_ID}").get_data(as_text=True)
        assert "lost with its host since" in page and ">running<" not in page
        assert "lost with its host" in page.split('id="life-heading"')[1]  # a moment of its timeline too
