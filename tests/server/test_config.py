from __future__ import annotations

import re
import subprocess
import sys

import pytest

from server import config
from server.config import ConfigError
from tests.support import ROOT


def test_defaults():
    cfg = config.load(environ={})
    assert cfg.bind == "127.0.0.1:5001"
    assert cfg.store.startswith("sqlite:///")
    assert cfg.allow_anonymous_reports is False
    assert cfg.cadvisor_url == "http://{instance_ip}:8080/docker/{container_id}"
    assert cfg.graylog_url == ""
    assert cfg.retention_days == 30
    assert config.load(environ={"ECS_ID_MAPPER_RETENTION_DAYS": "0"}).retention_days == 0
    assert cfg.host_lease == 540
    assert config.load(environ={"ECS_ID_MAPPER_HOST_LEASE": "2.5"}).host_lease == 2.5
    assert cfg.discovery_refresh == 0
    assert config.load(environ={"ECS_ID_MAPPER_DISCOVERY_REFRESH": "1.5"}).discovery_refresh == 1.5


def test_gunicorn_keeps_idle_connections_longer_than_a_load_balancer():
    from server.__main__ import ServerApplication

    assert ServerApplication(config.load(environ={})).cfg.keepalive == 75
    assert ServerApplication(config.load(environ={"ECS_ID_MAPPER_KEEPALIVE": "5"})).cfg.keepalive == 5


def test_gunicorn_gathers_no_access_line_of_its_own():
    """The app logs every request: gunicorn's logger must not also read each answer for a line it drops."""
    from server.__main__ import AppLogsRequests, ServerApplication

    assert ServerApplication(config.load(environ={})).cfg.logger_class is AppLogsRequests
    logger = AppLogsRequests.__new__(AppLogsRequests)  # not set up: that would configure this process's logging
    assert logger.access(None, None, {}, None) is None  # gunicorn's own would read the response's status


def test_environment_then_overrides():
    environ = {"ECS_ID_MAPPER_TOKEN": "from-env", "ECS_ID_MAPPER_ALLOW_ANONYMOUS_REPORTS": "Yes"}
    cfg = config.load({"ECS_ID_MAPPER_WORKERS": "3", "bind": "0.0.0.0:80"}, environ=environ)
    assert (cfg.token, cfg.allow_anonymous_reports, cfg.workers, cfg.bind) == ("from-env", True, 3, "0.0.0.0:80")
    assert config.load({"token": "override"}, environ=environ).token == "override"


def test_the_report_pool_listens_on_the_next_port_unless_told():
    assert config.load(environ={}).report_workers == 0
    assert config.load(environ={}).reuse_port is True
    cfg = config.load(environ={"ECS_ID_MAPPER_BIND": "0.0.0.0:5001", "ECS_ID_MAPPER_REPORT_WORKERS": "2"})
    assert (cfg.report_workers, cfg.report_bind) == (2, "0.0.0.0:5002")
    given = {"ECS_ID_MAPPER_REPORT_WORKERS": "1", "ECS_ID_MAPPER_REPORT_BIND": "unix:/run/reports.sock"}
    assert config.load(environ=given).report_bind == "unix:/run/reports.sock"
    cfg = config.load(environ={"ECS_ID_MAPPER_REPORT_MAX_WAIT": "0", "ECS_ID_MAPPER_REPORT_CONCURRENCY": "0"})
    assert (cfg.report_max_wait, cfg.report_concurrency) == (0.0, 0)


@pytest.mark.parametrize(
    "environ",
    [
        {"ECS_ID_MAPPER_REPORT_WORKERS": "1", "ECS_ID_MAPPER_BIND": "unix:/run/mapper.sock"},
        {"ECS_ID_MAPPER_REPORT_WORKERS": "1", "ECS_ID_MAPPER_BIND": "127.0.0.1:65535"},
        {"ECS_ID_MAPPER_REPORT_WORKERS": "1", "ECS_ID_MAPPER_REPORT_BIND": "127.0.0.1:5001"},
    ],
)
def test_a_report_pool_without_a_place_of_its_own_is_refused(environ):
    with pytest.raises(config.ConfigError, match="ECS_ID_MAPPER_REPORT_BIND"):
        config.load(environ=environ)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("ECS_ID_MAPPER_REPORT_WORKERS", "-1"),
        ("ECS_ID_MAPPER_REPORT_WORKERS", "one"),
        ("ECS_ID_MAPPER_REPORT_BIND", "reports"),
        ("ECS_ID_MAPPER_REPORT_MAX_WAIT", "-1"),
        ("ECS_ID_MAPPER_REPORT_CONCURRENCY", "-2"),
        ("ECS_ID_MAPPER_REUSE_PORT", "sometimes"),
        ("ECS_ID_MAPPER_ALLOW_ANONYMOUS_REPORTS", "sometimes"),
        ("ECS_ID_MAPPER_BIND", "localhost"),
        ("ECS_ID_MAPPER_BIND", "127.0.0.1:99999"),
        ("ECS_ID_MAPPER_STORE", "postgres://db"),
        ("ECS_ID_MAPPER_STORE", "sqlite://relative-without-third-slash"),
        ("ECS_ID_MAPPER_STORE", "sqlite:///:memory:"),
        ("ECS_ID_MAPPER_WORKERS", "0"),
        ("ECS_ID_MAPPER_WORKERS", "two"),
        ("ECS_ID_MAPPER_KEEPALIVE", "0"),
        ("ECS_ID_MAPPER_HEALTH_INTERVAL", "-1"),
        ("ECS_ID_MAPPER_HEALTH_INTERVAL", "nan"),
        ("ECS_ID_MAPPER_HEALTH_INTERVAL", "inf"),
        ("ECS_ID_MAPPER_MAX_BODY_BYTES", "1e9"),
        ("ECS_ID_MAPPER_LOG_LEVEL", "LOUD"),
        ("ECS_ID_MAPPER_RETENTION_DAYS", "-1"),
        ("ECS_ID_MAPPER_RETENTION_DAYS", "a month"),
        ("ECS_ID_MAPPER_RETENTION_DAYS", "inf"),
        ("ECS_ID_MAPPER_HOST_LEASE", "0"),
        ("ECS_ID_MAPPER_HOST_LEASE", "nine minutes"),
        ("ECS_ID_MAPPER_HOST_LEASE", "inf"),
        ("ECS_ID_MAPPER_DISCOVERY_REFRESH", "-1"),
        ("ECS_ID_MAPPER_DISCOVERY_REFRESH", "soon"),
        ("ECS_ID_MAPPER_CADVISOR_URL", "ftp://{instance_ip}/"),
        ("ECS_ID_MAPPER_CADVISOR_URL", "http://{instance_ip}:8080/{nonsense}"),
        ("ECS_ID_MAPPER_GRAYLOG_URL", "https://graylog/{container_id"),
        ("ECS_ID_MAPPER_GRAYLOG_URL", "https://graylog/{container_id.__class__}"),
        ("ECS_ID_MAPPER_CADVISOR_URL", "http://x/{container_id!r}"),
        ("ECS_ID_MAPPER_CADVISOR_URL", "http://x/{short_id:>30}"),
        ("ECS_ID_MAPPER_CADVISOR_URL", "http://"),
        ("ECS_ID_MAPPER_CADVISOR_URL", "https:///docker/{container_id}"),
        ("ECS_ID_MAPPER_CADVISOR_URL", "http://{instance_ip}:70000/docker/{container_id}"),
        ("ECS_ID_MAPPER_CADVISOR_URL", "http://{instance_ip}:/docker/{container_id}"),
        ("ECS_ID_MAPPER_CADVISOR_URL", "http://{instance_ip}:http/docker/{container_id}"),
        ("ECS_ID_MAPPER_GRAYLOG_URL", "https://graylog.example/search\r\nSet-Cookie: x=1?q={short_id}"),
        ("ECS_ID_MAPPER_GRAYLOG_URL", "https://graylog.example/search?q={short_id}\nx"),
        ("ECS_ID_MAPPER_GRAYLOG_URL", "https://graylog.example/search?q= {short_id}"),
        ("ECS_ID_MAPPER_GRAYLOG_URL", "https://graylog.example/\x85{short_id}"),
        ("ECS_ID_MAPPER_NEWRELIC_INSTANCE_URL", "https://rpm.newrelic.com:0/{application_id}"),
        ("ECS_ID_MAPPER_NEWRELIC_API_URL", "api.newrelic.com"),
        ("ECS_ID_MAPPER_NEWRELIC_INSTANCE_URL", "https://rpm.newrelic.com/{container_id}"),
        ("ECS_ID_MAPPER_SERVICE_NAMES", "maybe"),
        ("ECS_ID_MAPPER_TOKEN", "a b"),
        ("ECS_ID_MAPPER_TOKEN", "tökén"),
    ],
)
def test_bad_value_names_the_variable(variable, value):
    with pytest.raises(ConfigError, match=variable):
        config.load(environ={variable: value})


def test_unknown_override_is_refused():
    with pytest.raises(ConfigError, match="ECS_ID_MAPPER_COLOUR"):
        config.load({"colour": "blue"}, environ={})


def test_overrides_that_are_not_strings_are_checked_too(make_app, settings):
    with pytest.raises(ConfigError, match="ECS_ID_MAPPER_WORKERS"):
        make_app({**settings, "workers": 0})
    client = make_app({**settings, "token": 12345, "allow_anonymous_reports": False}).test_client()
    response = client.post("/report/event", json={"events": []}, headers={"Authorization": "Bearer 12345"})
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("variable", "value"),
    [("ECS_ID_MAPPER_WORKERS", "many"), ("ECS_ID_MAPPER_STORE", "mysql://x"), ("ECS_ID_MAPPER_BIND", ":")],
)
def test_python_m_server_stops_with_the_variable_name(tmp_path, variable, value):
    env = {"PATH": "/usr/bin:/bin", variable: value}
    result = subprocess.run(
        [sys.executable, "-m", "server"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert variable in result.stderr
    assert "Traceback" not in result.stderr


def test_unwritable_store_path_stops_the_server(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    env = {"PATH": "/usr/bin:/bin", "ECS_ID_MAPPER_STORE": f"sqlite:///{blocker}/sub/db.sqlite3"}
    result = subprocess.run(
        [sys.executable, "-m", "server"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "ECS_ID_MAPPER_STORE" in result.stderr


def test_links_come_from_link_variables_lower_cased_and_sorted():
    environ = {
        "ECS_ID_MAPPER_LINK_KIBANA": "https://kibana.example/app/discover#/?q={short_id}",
        "ECS_ID_MAPPER_LINK_GRAFANA_EXPLORE": " https://grafana.example/explore?task={task_id} ",
        "ECS_ID_MAPPER_LINK_DATADOG": "",  # empty: no link
    }
    cfg = config.load({"link_cloudwatch": "https://console.aws.amazon.com/?s={task_id}"}, environ=environ)
    assert list(cfg.links) == ["cloudwatch", "grafana_explore", "kibana"]
    assert cfg.links["grafana_explore"] == "https://grafana.example/explore?task={task_id}"
    assert config.load(environ={}).links == {}


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("ECS_ID_MAPPER_LINK_URLS", "https://x.example/", "'urls' is taken"),
        ("ECS_ID_MAPPER_LINK__ALL", "https://x.example/", "'_all' must be a letter"),
        ("ECS_ID_MAPPER_LINK_EVENTS", "https://x.example/", "'events' is taken"),
        ("ECS_ID_MAPPER_LINK_CONTAINERS", "https://x.example/", "'containers' is taken"),
        ("ECS_ID_MAPPER_LINK_NEWRELIC", "https://x.example/", "'newrelic' is taken"),
        ("ECS_ID_MAPPER_LINK_CADVISOR", "https://x.example/", "set ECS_ID_MAPPER_CADVISOR_URL instead"),
        ("ECS_ID_MAPPER_LINK_GRAF-ANA", "https://x.example/", "must be a letter"),
        ("ECS_ID_MAPPER_LINK_", "https://x.example/", "must be a letter"),
        ("ECS_ID_MAPPER_LINK_GRAFANA", "ftp://x.example/{short_id}", "http(s) URL template"),
        ("ECS_ID_MAPPER_LINK_GRAFANA", "https://x.example/{nonsense}", "unknown placeholder(s) nonsense"),
        ("ECS_ID_MAPPER_LINK_GRAFANA", "https://x.example/{task_id!r}", "no conversion or format spec"),
        ("ECS_ID_MAPPER_LINK_GRAFANA", "https://x.example/{task_id", "malformed template"),
    ],
)
def test_bad_link_names_and_templates_name_the_variable(variable, value, message):
    with pytest.raises(ConfigError, match=re.escape(variable) + ".*" + re.escape(message)):
        config.load(environ={variable: value})
