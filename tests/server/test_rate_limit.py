"""The bound on a token's map reports (server.rate_limit): a minute's allowance per host it reports for, 429 with
Retry-After past it, one bucket per token name."""

from __future__ import annotations

import pytest
from flask import g

from server.config import ConfigError
from server.config import load as load_config
from server.rate_limit import ReportLimiter, TooManyReports, check_report
from tests.server import samples
from tests.server.samples import AUTH, HOST


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_a_host_gets_a_minutes_burst_then_its_rate(clock):
    limiter = ReportLimiter(per_host_minute=60, max_hosts=10, clock=clock)
    assert all(limiter.admit("prod", "host-a") is None for _ in range(60))
    wait = limiter.admit("prod", "host-a")
    assert wait == pytest.approx(1.0)  # 60 a minute: one a second
    clock.now += 1.0
    assert limiter.admit("prod", "host-a") is None
    assert limiter.admit("prod", "host-a") is not None


def test_each_host_of_a_token_adds_its_allowance_up_to_the_cap(clock):
    limiter = ReportLimiter(per_host_minute=10, max_hosts=3, clock=clock)
    admitted = sum(limiter.admit("prod", f"host-{n % 5}") is None for n in range(100))
    # Five hosts claimed, three counted: 30 reports, then nothing until time passes.
    assert admitted == 30
    assert limiter.allowance("prod") == 30
    clock.now += 6.0  # 30 a minute: three more
    assert sum(limiter.admit("prod", "host-0") is None for _ in range(10)) == 3


def test_tokens_do_not_share_a_bucket(clock):
    limiter = ReportLimiter(per_host_minute=2, max_hosts=10, clock=clock)
    assert [limiter.admit("dev", "h") for _ in range(3)][2] is not None
    assert limiter.admit("prod", "h") is None
    assert limiter.admit("", "h") is None  # reports without a named token


def test_hosts_quiet_for_the_window_stop_counting(clock):
    limiter = ReportLimiter(per_host_minute=6, max_hosts=10, clock=clock, host_window=600)
    for host in ("a", "b", "c"):
        assert limiter.admit("prod", host) is None
    assert limiter.allowance("prod") == 18
    clock.now += 601
    assert limiter.admit("prod", "a") is None
    assert limiter.allowance("prod") == 6


@pytest.fixture
def settings(settings):
    return {**settings, "reports_per_host_minute": 3}


def test_past_the_bound_the_report_is_refused_with_retry_after_and_not_stored(client, caplog):
    def send(container_id: str, host: dict):
        body = samples.map_report(samples.container(container_id), host=host)
        return client.post("/report/map", json=body, headers=AUTH)

    for n in range(3):
        assert send(f"{n:064x}", HOST).status_code == 200
    refused = send(f"{9:064x}", HOST)
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "20"  # 3 a minute: the next in 20 s
    assert refused.get_json() == {
        "error": "too_many_requests",
        "message": "too many reports for this token: at most 3 a minute for each of its hosts; try again in 20 s",
        "retry_after": 20,
    }
    assert client.get(f"/query/container_id/{9:064x}").status_code == 404
    assert send(f"{11:064x}", HOST).status_code == 429
    # Logged once, with the token's name (the single-token setting's), never its value.
    warnings = [r.getMessage() for r in caplog.records if r.name == "server.rate_limit"]
    assert warnings == ["token 'token' sends more reports than its hosts could (3 a minute): refusing them with 429"]
    assert samples.TOKEN not in caplog.text
    # Another host of the same token brings its own allowance.
    other = {**HOST, "instance_id": "i-0fedcba9876543210", "hostname": "ip-10-0-9-9"}
    assert send(f"{10:064x}", other).status_code == 200


def test_the_bucket_is_the_token_name_authentication_set(app):
    """``flask.g.token_name`` picks the bucket, whoever sets it: reports of one name do not use up another's."""
    for name, expected in (("prod-eu", [None] * 3 + [429]), ("prod-us", [None])):
        with app.test_request_context("/report/map", method="POST"):
            g.token_name = name
            results = []
            for _ in expected:
                try:
                    check_report(HOST)
                    results.append(None)
                except TooManyReports as exc:
                    results.append(exc.status)
                    assert exc.headers["Retry-After"] == "20"
            assert results == expected


def test_zero_turns_the_bound_off(make_app, settings):
    client = make_app({**settings, "reports_per_host_minute": 0}).test_client()
    body = samples.map_report(samples.container(), host=HOST)
    assert all(client.post("/report/map", json=body, headers=AUTH).status_code == 200 for _ in range(10))


def test_bad_settings_name_their_variable():
    with pytest.raises(ConfigError, match=r"^ECS_ID_MAPPER_REPORTS_PER_HOST_MINUTE: "):
        load_config(environ={"ECS_ID_MAPPER_REPORTS_PER_HOST_MINUTE": "-1"})
    with pytest.raises(ConfigError, match=r"^ECS_ID_MAPPER_HOSTS_PER_TOKEN: "):
        load_config(environ={"ECS_ID_MAPPER_HOSTS_PER_TOKEN": "0"})


@pytest.mark.slow
def test_the_real_server_answers_429_past_the_bound(tmp_path):
    """``python -m server`` (gunicorn, one worker so that one count sees every report) with the bound set low."""
    import requests

    from tests.support import ServerProcess

    env = {
        "ECS_ID_MAPPER_STORE": f"sqlite:///{tmp_path}/mapper.sqlite3",
        "ECS_ID_MAPPER_TOKEN": samples.TOKEN,
        "ECS_ID_MAPPER_WORKERS": "1",
        "ECS_ID_MAPPER_REPORTS_PER_HOST_MINUTE": "2",
        "ECS_ID_MAPPER_SERVICE_NAMES": "false",
        "ECS_ID_MAPPER_TASK_DEFINITIONS": "false",
        "ECS_ID_MAPPER_CONTAINER_INSTANCES": "false",
    }
    server = ServerProcess(env, tmp_path / "server.log").start()
    try:
        body = samples.map_report(samples.container(), host=HOST)
        answers = [requests.post(f"{server.url}/report/map", json=body, headers=AUTH, timeout=10) for _ in range(3)]
        assert [a.status_code for a in answers] == [200, 200, 429]
        assert answers[2].headers["Retry-After"] == "30"
        assert answers[2].json()["error"] == "too_many_requests"
    finally:
        server.stop()
    assert "sends more reports than its hosts could" in server.log()
    assert samples.TOKEN not in server.log()
