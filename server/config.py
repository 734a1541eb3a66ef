"""Server configuration: defaults, then ``ECS_ID_MAPPER_*`` environment variables, then explicit overrides.

Parsed once at start; a bad value raises ConfigError naming the variable, which stops the process.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from server import links
from server.flags import parse_bool
from server.store import validate_url

PREFIX = "ECS_ID_MAPPER_"
#: ``ECS_ID_MAPPER_LINK_<NAME>`` adds a link called ``<name>``.
LINK_PREFIX = "link_"


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the variable."""


@dataclass(frozen=True)
class Config:
    bind: str = "127.0.0.1:5001"
    store: str = "sqlite:///data/ecs-id-mapper.sqlite3"
    token: str = ""
    #: When set, the query, service and discovery routes need it (or the report token) as a bearer token.
    read_token: str = ""
    #: Named tokens with scopes, as SHA-256 hashes (``server.token_file``, docs/tokens.md); re-read on change.
    token_file: str = ""
    allow_anonymous_reports: bool = False
    cadvisor_url: str = "http://{instance_ip}:8080/docker/{container_id}"
    graylog_url: str = ""
    service_names: bool = True
    #: Docker labels and awsvpc container ports from each task definition (DescribeTaskDefinition, once each).
    task_definitions: bool = True
    #: The EC2 instance ID and address of the container instances the ECS events name (DescribeContainerInstances
    #: and DescribeInstances, once each), for the feed's containers on bridge and host networking.
    container_instances: bool = True
    newrelic_api: str = "nerdgraph"
    newrelic_api_key: str = ""
    newrelic_account_id: str = ""
    newrelic_api_url: str = "https://api.newrelic.com"
    newrelic_instance_url: str = (
        "https://rpm.newrelic.com/accounts/{account_id}/applications/{application_id}/instances/{instance_id}"
    )
    newrelic_application_url: str = "https://rpm.newrelic.com/accounts/{account_id}/applications/{application_id}"
    workers: int = 2
    threads: int = 8
    timeout: int = 30
    #: Seconds an idle keep-alive connection stays open: longer than a load balancer's idle timeout (an ALB's is
    #: 60 s by default), so that the balancer, never gunicorn, closes a connection it may be sending on.
    keepalive: int = 75
    max_body_bytes: int = 4 * 1024 * 1024
    #: Each worker listens on a socket of its own (SO_REUSEPORT), so that the kernel deals connections out evenly
    #: instead of the first worker to wake taking most keep-alive connections.
    reuse_port: bool = True
    #: Worker processes of a second pool on ``report_bind`` for ``/report/*`` (0: the one pool takes everything).
    report_workers: int = 0
    #: Where the report pool listens; by default the port after ``bind``'s.
    report_bind: str = ""
    #: Seconds a report may wait for a thread before it is refused with 503 and Retry-After (0: never).
    report_max_wait: float = 1.0
    #: Reports a worker process handles at once; more are refused with 503 and Retry-After (0: no bound).
    report_concurrency: int = 4
    health_interval: float = 5.0
    retention_days: float = 30.0
    #: Seconds after the last renewal of a host's lease before its not-stopped containers are shown as lost. Its
    #: reports renew it (the agent's keep-alive every 60 s), written once per half lease, so a dead host leaves
    #: discovery within this long of its last report plus a refresh: ten minutes (``server.liveness``).
    host_lease: float = 540.0
    #: Seconds between a process's reads of the store's discovery generation (0: at every request): how old a
    #: replica's ``/sd/prometheus`` answer may be (``server.discovery_cache``).
    discovery_refresh: float = 0.0
    log_level: str = "INFO"
    log_format: str = "text"
    #: The SQS queue the ECS event feed (``python -m server.feed``) reads; the server does not use it.
    events_queue_url: str = ""
    #: The bound on a token's map reports (server.rate_limit): a minute's allowance for each host it reports for,
    #: over at most this many hosts; 0 turns it off. An agent sends one report a poll (10 while draining a backlog).
    reports_per_host_minute: float = 600.0
    hosts_per_token: int = 10_000
    #: Links added by ``ECS_ID_MAPPER_LINK_<NAME>=TEMPLATE``: lower-case name → template.
    links: Mapping[str, str] = field(default_factory=dict)


NEWRELIC_PLACEHOLDERS = ("account_id", "application_id", "instance_id")
NEWRELIC_APIS = ("nerdgraph", "rest")
LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _positive(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        value = kind(text)
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"must be greater than 0, got {text!r}")
        return value

    return parse


def _not_negative(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"must be 0 or more, got {text!r}")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(f"must be 0 or more, got {text!r}")
    return value


def _bind(text: str) -> str:
    host, sep, port = text.rpartition(":")
    if text.startswith("unix:"):
        return text
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST:PORT or unix:PATH, got {text!r}")
    return text


def _store(text: str) -> str:
    validate_url(text)
    return text


def _token(text: str) -> str:
    if not re.fullmatch(r"[\x21-\x7e]*", text):
        raise ValueError("expected printable ASCII without spaces (agents send it in an HTTP header)")
    return text


def _choice(choices: tuple[str, ...]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text.lower() not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {text!r}")
        return text.lower()

    return parse


def _account_id(text: str) -> str:
    if text and not (text.isascii() and text.isdigit()):
        raise ValueError(f"expected a numeric New Relic account ID, got {text!r}")
    return text


def _log_level(text: str) -> str:
    if text.upper() not in LOG_LEVELS:
        raise ValueError(f"expected one of {', '.join(LOG_LEVELS)}, got {text!r}")
    return text.upper()


def _url(text: str) -> str:
    if text and not text.startswith(("http://", "https://")):
        raise ValueError(f"expected an http(s) URL, got {text!r}")
    return text.rstrip("/")


PARSERS: dict[str, Callable[[str], Any]] = {
    "bind": _bind,
    "store": _store,
    "token": _token,
    "read_token": _token,
    "token_file": str.strip,
    "allow_anonymous_reports": parse_bool,
    "service_names": parse_bool,
    "task_definitions": parse_bool,
    "container_instances": parse_bool,
    "cadvisor_url": links.validate_template,
    "graylog_url": links.validate_template,
    "newrelic_api": _choice(NEWRELIC_APIS),
    "newrelic_account_id": _account_id,
    "newrelic_api_url": _url,
    "newrelic_instance_url": lambda text: links.validate_template(text, NEWRELIC_PLACEHOLDERS),
    "newrelic_application_url": lambda text: links.validate_template(text, NEWRELIC_PLACEHOLDERS),
    "workers": _positive(int),
    "threads": _positive(int),
    "timeout": _positive(int),
    "keepalive": _positive(int),
    "max_body_bytes": _positive(int),
    "reuse_port": parse_bool,
    "report_workers": _count,
    "report_bind": lambda text: _bind(text) if text else text,
    "report_max_wait": _not_negative,
    "report_concurrency": _count,
    "health_interval": _positive(float),
    "retention_days": _not_negative,
    "host_lease": _positive(float),
    "discovery_refresh": _not_negative,
    "log_level": _log_level,
    "log_format": _choice(LOG_FORMATS),
    "events_queue_url": _url,
    "reports_per_host_minute": _not_negative,
    "hosts_per_token": _positive(int),
}


def load(overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Build the configuration. Override keys are field names (or ``link_<name>``), any case, with or without the
    prefix."""
    environ = os.environ if environ is None else environ
    names = {f.name for f in fields(Config)} - {"links"}
    given: dict[str, tuple[str, Any]] = {}
    for variable, value in environ.items():
        name = variable.removeprefix(PREFIX).lower()
        if variable.startswith(PREFIX) and (name in names or name.startswith(LINK_PREFIX)):
            given[name] = (variable, value)
    for key, value in (overrides or {}).items():
        name = key.upper().removeprefix(PREFIX).lower()
        if name not in names and not name.startswith(LINK_PREFIX):
            raise ConfigError(f"{PREFIX}{name.upper()}: unknown setting")
        given[name] = (PREFIX + name.upper(), value)

    values: dict[str, Any] = {"links": {}}
    for name, (variable, raw) in given.items():
        try:
            if name.startswith(LINK_PREFIX):
                link = links.validate_name(name.removeprefix(LINK_PREFIX))
                if str(raw).strip():
                    values["links"][link] = links.validate_template(str(raw).strip())
            else:
                values[name] = PARSERS.get(name, str.strip)(str(raw).strip())
        except ValueError as exc:
            raise ConfigError(f"{variable}: {exc}") from None
    values["links"] = dict(sorted(values["links"].items()))
    if values.get("report_workers"):
        values["report_bind"] = _report_bind(values.get("bind", Config.bind), values.get("report_bind", ""))
    return Config(**values)


def _report_bind(bind: str, report_bind: str) -> str:
    """Where the report pool listens: as given, or the port after the main one."""
    name = PREFIX + "REPORT_BIND"
    if not report_bind:
        host, _, port = bind.rpartition(":")
        if bind.startswith("unix:") or int(port) >= 65535:
            raise ConfigError(f"{name}: needed with {PREFIX}REPORT_WORKERS when {PREFIX}BIND is {bind!r}")
        report_bind = f"{host}:{int(port) + 1}"
    if report_bind == bind:
        raise ConfigError(f"{name}: must differ from {PREFIX}BIND ({bind!r})")
    return report_bind
