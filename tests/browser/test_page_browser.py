"""The page in a real browser, against the real server (``python -m server``) with records reported through the API,
hostile ones among them: every input form pasted, links followed, the sign-in, axe-core on every view, no script
from a record ever run, no Content-Security-Policy violation, a screenshot of each view."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from testkit.reports import (
    API_ID,
    ARN_LONG,
    ARN_OLD,
    AUTH,
    HOST,
    SIDECAR_ID,
    TASK_LONG,
    TASK_UUID,
    TOKEN,
    container,
    event,
    map_report,
)
from tests.browser.conftest import AXE
from tests.server import ecs_samples
from tests.support import ServerProcess, free_port

pytestmark = pytest.mark.slow

READ_TOKEN = "page-read-token"
#: What a script smuggled in a record would do if it ever ran.
SETS_FLAG = "window.pwned=1"
HOSTILE_NAME = f'"><img src=x onerror="{SETS_FLAG}">'
HOSTILE_IMAGE = f"<script>{SETS_FLAG}</script>"
HOSTILE_LINKED = f"javascript:{SETS_FLAG}//"
HOSTILE_ID = "7" * 64
MIGRATE_ID = "5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d"
OLD_ID = API_ID[:12] + "e" * 52


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("page-server")
    port = free_port()
    env = {
        "ECS_ID_MAPPER_STORE": f"sqlite:///{folder}/mapper.sqlite3",
        "ECS_ID_MAPPER_TOKEN": TOKEN,
        "ECS_ID_MAPPER_READ_TOKEN": READ_TOKEN,
        "ECS_ID_MAPPER_WORKERS": "1",
        "ECS_ID_MAPPER_SERVICE_NAMES": "false",
        "ECS_ID_MAPPER_TASK_DEFINITIONS": "false",
        "ECS_ID_MAPPER_CONTAINER_INSTANCES": "false",
        # A link back to this server, so that following it stays on loopback; one fed by a hostile field.
        "ECS_ID_MAPPER_LINK_HEALTH": f"http://127.0.0.1:{port}/health?container={{short_id}}",
        "ECS_ID_MAPPER_LINK_LOGS": "https://logs.example/search/{container_name}/{task_name}",
        "NO_PROXY": "127.0.0.1",
    }
    with ServerProcess(env, folder / "server.log", port=port) as running:
        report(running.url)
        yield running


def post(url: str, path: str, body: object) -> None:
    response = requests.post(f"{url}{path}", json=body, headers=AUTH, timeout=10)
    assert response.status_code == 200, response.text


def report(url: str) -> None:
    events = [
        event("a1", timestamp="2026-11-25T14:58:00.000Z", event="appeared", **{"from": "", "to": "PENDING"}),
        event("a2", timestamp="2026-11-25T14:59:00.000Z"),
    ]
    post(url, "/report/map", map_report(container(), container(SIDECAR_ID, name="envoy"), events=events))
    post(url, "/report/map", map_report(container(MIGRATE_ID, name="migrate", task_arn=ARN_OLD)))
    stopped = container(OLD_ID, name="old-api", known_status="STOPPED", desired_status="STOPPED",
                        task_arn=ARN_LONG.replace(TASK_LONG, "1" * 32))  # fmt: skip
    post(url, "/report/map", map_report(stopped))
    hostile = container(
        HOSTILE_ID,
        name=HOSTILE_NAME,
        image=HOSTILE_IMAGE,
        task_name=HOSTILE_LINKED,
        docker_name="ecs-x-1-x-0123456789abcdef0123",
        task_arn=ARN_LONG.replace(TASK_LONG, "2" * 32),
    )
    post(url, "/report/map", map_report(hostile, host={**HOST, "host_name": HOSTILE_LINKED}))
    post(url, "/report/ecs-events", ecs_samples.fargate_lifecycle())


def visit(browser, url: str) -> None:
    browser.get(url)
    assert browser.execute_script("return document.readyState") == "complete"


def search(browser, text: str) -> None:
    """Type ``text`` into the box and submit it, as a person pasting an ID does."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    box = browser.find_element(By.ID, "q")
    box.clear()
    with navigation(browser):
        box.send_keys(text, Keys.ENTER)


@contextmanager
def navigation(browser) -> Iterator[None]:
    """Wait, after what the block does, until the browser has left the page it was on and loaded the next."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.wait import WebDriverWait

    page = browser.find_element(By.TAG_NAME, "html")
    yield
    WebDriverWait(browser, 20).until(expected_conditions.staleness_of(page))
    WebDriverWait(browser, 20).until(lambda b: b.execute_script("return document.readyState") == "complete")


def check_view(browser, screenshots: Path, name: str) -> None:
    """What every view must pass: no script from a record ran, axe-core finds nothing serious, no CSP refusal."""
    assert browser.execute_script("return window.pwned") is None, "a script from a record ran"
    browser.execute_script(AXE.read_text())  # from the test, through the driver: the page never loads it
    result = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {resultTypes: ['violations']})"
        ".then(r => done(JSON.stringify({violations: r.violations, passes: r.passes.length})))"
        ".catch(e => done(JSON.stringify({error: String(e)})));"
    )
    checked = json.loads(result)
    assert "error" not in checked and checked["passes"] > 10, checked  # axe ran its rules over the page
    violations = checked["violations"]
    serious = [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["html"][:120] for n in v["nodes"][:3]]}
        for v in violations
        if v["impact"] in ("serious", "critical")
    ]
    assert serious == [], f"{name}: {serious}"
    console = browser.get_log("browser")
    refused = [entry["message"] for entry in console if "Content Security Policy" in entry["message"]]
    assert refused == [], refused
    path = screenshots / f"{name}.png"
    browser.save_screenshot(str(path))
    print(f"screenshot: {path}")


def signed_in(browser, server) -> None:
    visit(browser, f"{server.url}/")
    if "/sign-in" in browser.current_url:
        from selenium.webdriver.common.by import By

        browser.find_element(By.ID, "token").send_keys(READ_TOKEN)
        with navigation(browser):
            browser.find_element(By.CSS_SELECTOR, "form.sign-in button[type=submit]").click()
        assert "/sign-in" not in browser.current_url


def test_signing_in_refuses_a_wrong_token_then_keeps_the_right_one(browser, server, screenshots):
    from selenium.webdriver.common.by import By

    browser.delete_all_cookies()
    visit(browser, f"{server.url}/container/{API_ID}")
    assert "/sign-in" in browser.current_url
    check_view(browser, screenshots, "sign-in")
    browser.find_element(By.ID, "token").send_keys(READ_TOKEN + "x")
    with navigation(browser):
        browser.find_element(By.CSS_SELECTOR, "form.sign-in button[type=submit]").click()
    assert "That token is not accepted." in browser.find_element(By.TAG_NAME, "main").text, browser.page_source
    check_view(browser, screenshots, "sign-in-refused")
    browser.find_element(By.ID, "token").send_keys(READ_TOKEN)
    with navigation(browser):
        browser.find_element(By.CSS_SELECTOR, "form.sign-in button[type=submit]").click()
    assert browser.current_url == f"{server.url}/container/{API_ID}"
    cookie = browser.get_cookie("ecs_id_mapper_read")
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"
    assert browser.execute_script("return document.cookie") == ""  # no script can read it
    assert requests.get(f"{server.url}/health", timeout=5).status_code == 200  # open without a token


@pytest.mark.parametrize(
    ("pasted", "lands_on", "says"),
    [
        (API_ID, f"/container/{API_ID}", "a full Docker container ID"),
        (API_ID[:12], f"/container/{API_ID}", None),  # two containers share these 12: the list
        (API_ID[:13], f"/container/{API_ID}", "the start of a container ID (13 hex digits)"),
        (ecs_samples.API_RUNTIME_ID, f"/container/{ecs_samples.API_RUNTIME_ID}", "a Fargate runtime ID"),
        (TASK_LONG, f"/task/{TASK_LONG}", "a task ID (32 hex digits)"),
        (TASK_UUID, f"/task/{TASK_UUID}", "a task ID (a UUID"),
        (ARN_LONG, f"/task/{TASK_LONG}", "a task ARN (the long form"),
        (ARN_OLD, f"/task/{TASK_UUID}", "a task ARN (the old form"),
        ("ecs-api-42-api-c8e9f0a1b2c3d4e5f6a7", f"/container/{API_ID}", "a Docker name given by ECS"),
        ("i-0123456789abcdef0", "/?q=", "an EC2 instance ID"),
        ("web/orders-api", "/?q=", "service orders-api of cluster web"),
        ("default", "/?q=", "a cluster or service name"),
        ("10.0.1.17", "/?q=", "an IPv4 address"),
        ("3f2a9c1d", "/?q=", None),
    ],
)
def test_every_input_form_is_understood(browser, server, screenshots, pasted, lands_on, says):
    from selenium.webdriver.common.by import By

    signed_in(browser, server)
    search(browser, pasted)
    path = browser.current_url.removeprefix(server.url)
    main = browser.find_element(By.TAG_NAME, "main").text
    if pasted == "10.0.1.17":
        assert "Who held 10.0.1.17" in main and "api" in main and "envoy" in main
    if pasted == API_ID[:12]:
        assert "2 matching containers" in main and "old-api" in main
    elif pasted == "3f2a9c1d":
        assert "Malformed: 8 hex digits is too short" in main
    else:
        assert path.startswith(lands_on), path
        assert f"Understood as {says}" in main
    check_view(browser, screenshots, "search-" + re.sub(r"[^a-z0-9]+", "-", pasted.lower())[:40])


def test_the_container_view_shows_its_life_and_its_links_lead_where_configured(browser, server, screenshots):
    from selenium.webdriver.common.by import By

    signed_in(browser, server)
    visit(browser, f"{server.url}/container/{API_ID}")
    main = browser.find_element(By.TAG_NAME, "main").text
    assert "running" in main and "envoy" in main and "10.0.1.17" in main
    assert "status PENDING → RUNNING" in main
    assert browser.find_elements(By.CSS_SELECTOR, "figure.timeline svg .bar")
    copy = browser.find_element(By.CSS_SELECTOR, f'button.copy[data-copy="{API_ID}"]')
    assert copy.is_displayed()  # shown by the script, hidden without it
    check_view(browser, screenshots, "container")
    with navigation(browser):
        browser.find_element(By.LINK_TEXT, "health").click()
    assert browser.current_url == f"{server.url}/health?container={API_ID[:12]}"
    visit(browser, f"{server.url}/container/{API_ID}")
    with navigation(browser):
        browser.find_element(By.PARTIAL_LINK_TEXT, TASK_LONG).click()
    assert browser.current_url == f"{server.url}/task/{TASK_LONG}"
    assert len(browser.find_elements(By.CSS_SELECTOR, "figure.timeline g.life")) == 2
    check_view(browser, screenshots, "task")


def test_a_stopped_fargate_container_says_why(browser, server, screenshots):
    from selenium.webdriver.common.by import By

    signed_in(browser, server)
    visit(browser, f"{server.url}/container/{ecs_samples.API_RUNTIME_ID}")
    assert "stopped with exit code 137: OutOfMemoryError: killed" in browser.find_element(By.TAG_NAME, "main").text
    check_view(browser, screenshots, "container-stopped")


def test_a_hostile_record_runs_nothing_and_links_nowhere_else(browser, server, screenshots):
    from selenium.webdriver.common.by import By

    signed_in(browser, server)
    visit(browser, f"{server.url}/container/{HOSTILE_ID}")
    heading = browser.find_element(By.TAG_NAME, "h1").text
    assert HOSTILE_NAME in heading  # shown as text
    assert HOSTILE_IMAGE in browser.find_element(By.TAG_NAME, "main").text
    hrefs = [a.get_attribute("href") for a in browser.find_elements(By.CSS_SELECTOR, "a[href]")]
    assert all(h.startswith(f"{server.url}/") for h in hrefs), hrefs  # every link goes through the server's checks
    assert not browser.find_elements(By.CSS_SELECTOR, "main img, main script")
    check_view(browser, screenshots, "container-hostile")
    browser.find_element(By.LINK_TEXT, "logs").click()
    # The browser resolves no outside name: where it tried to go is all there is to check.
    assert browser.execute_script("return window.pwned") is None
    visit(browser, f"{server.url}/?q={HOSTILE_NAME}")
    check_view(browser, screenshots, "search-hostile")


def test_slash_focuses_the_search_box(browser, server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    signed_in(browser, server)
    visit(browser, f"{server.url}/container/{API_ID}")
    browser.find_element(By.TAG_NAME, "body").send_keys("/")
    assert browser.switch_to.active_element.get_attribute("id") == "q"
    browser.switch_to.active_element.send_keys(Keys.ESCAPE)
