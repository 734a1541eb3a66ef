"""The agent's configuration, read once from the environment at start; a bad value names its variable."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

PREFIX = "ECS_ID_MAPPER_"
LEGACY_SERVER_URL = "endpoint"  # the 2016 agent's variable; deployments still set it
LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
START_SPREAD_POLLS = 12
MAX_START_SPREAD = 60.0


class ConfigError(ValueError):
    """A variable is missing or malformed; the message starts with its name."""


@dataclass(frozen=True)
class Config:
    server_url: str
    token: str = ""
    #: A file holding the token, read again when it changes; preferred over ``token`` when both are set.
    token_file: Path | None = None
    ecs_agent_url: str = "http://127.0.0.1:51678"
    imds_url: str = "http://169.254.169.254"
    poll_interval: float = 5.0
    resync_interval: float = 600.0
    # With nothing to report for this long, an empty report keeps the host's lease (server.liveness) alive.
    keepalive_interval: float = 60.0
    # After a start, the first report waits a random time within this window, so that a fleet whose agents all
    # restart at once (an AMI roll, an agent upgrade) does not send every full snapshot in the same second.
    # None: 12 poll intervals, at most 60 s (60 s at the default interval); 0: report at once.
    start_spread: float | None = None
    spool_dir: Path | None = None
    log_level: str = "INFO"
    log_format: str = "text"
    metrics_address: tuple[str, int] | None = None
    # A PEM file of the CAs that may sign the server's certificate (a private CA), instead of the system's.
    ca_bundle: str | None = None

    @property
    def start_window(self) -> float:
        """Seconds within which the first report after a start is sent (``start_spread``, or its default)."""
        if self.start_spread is not None:
            return self.start_spread
        return min(MAX_START_SPREAD, START_SPREAD_POLLS * self.poll_interval)

    # Not in the environment: fixed choices that tests and the benchmark may override.
    ecs_timeout: tuple[float, float] = (2.0, 10.0)
    imds_timeout: tuple[float, float] = (1.0, 2.0)
    server_timeout: tuple[float, float] = (5.0, 30.0)
    flush_timeout: float = 10.0
    backoff_base: float = 1.0
    backoff_cap: float = 300.0
    imds_retry_interval: float = 300.0
    max_containers: int = 10_000
    max_events: int = 50_000


#: What an HTTP header can carry as a bearer token.
TOKEN = re.compile(r"[\x21-\x7e]*")


def _url(name: str, value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{name}: expected an http:// or https:// URL, got {value!r}")
    return value.rstrip("/")


def _seconds(name: str, value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise ConfigError(f"{name}: expected a number of seconds, got {value!r}") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError(f"{name}: expected a positive number of seconds, got {value!r}")
    return seconds


def _not_negative(name: str, value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise ConfigError(f"{name}: expected a number of seconds, got {value!r}") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise ConfigError(f"{name}: expected 0 or more seconds, got {value!r}")
    return seconds


def _spool_dir(name: str, value: str) -> Path:
    path = Path(value)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{name}: cannot create {value!r}: {exc.strerror}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(f"{name}: {value!r} is not writable")
    return path


def _ca_bundle(name: str, value: str) -> str:
    """A readable PEM file with at least one certificate: checked at start, so a wrong path is not a TLS error
    on every report later."""
    try:
        text = Path(value).read_text(encoding="ascii", errors="replace")
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read {value!r}: {exc.strerror}") from None
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise ConfigError(f"{name}: {value!r} holds no PEM certificate (-----BEGIN CERTIFICATE-----)")
    return value


def _token_file(name: str, value: str) -> Path:
    """A readable file holding one token (what ``agent.credentials`` reads again when it changes)."""
    path = Path(value)
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{name}: cannot read {value!r}: {exc}") from None
    if not token or not TOKEN.fullmatch(token):
        raise ConfigError(f"{name}: {value!r} holds no token (printable ASCII without spaces, on one line)")
    return path


def _address(name: str, value: str) -> tuple[str, int]:
    """``PORT`` (on 127.0.0.1) or ``HOST:PORT``, where the agent answers ``GET /metrics``."""
    host, _, port = value.rpartition(":")
    try:
        number = int(port)
    except ValueError:
        number = 0
    if not 0 < number < 65536:
        raise ConfigError(f"{name}: expected PORT or HOST:PORT, got {value!r}")
    return host or "127.0.0.1", number


def load_config(environ: Mapping[str, str] | None = None) -> Config:
    """The configuration in `environ` (default: the process environment); ConfigError for a bad value."""
    env = os.environ if environ is None else environ

    def get(key: str) -> str:
        return env.get(PREFIX + key, "").strip()

    settings: dict[str, Any] = {}
    server_url = get("SERVER_URL")
    name = PREFIX + "SERVER_URL"
    if not server_url and env.get(LEGACY_SERVER_URL, "").strip():
        server_url, name = env[LEGACY_SERVER_URL].strip(), LEGACY_SERVER_URL
    if not server_url:
        raise ConfigError(f"{PREFIX}SERVER_URL: required (the URL of the ECS ID Mapper server)")
    settings["server_url"] = _url(name, server_url)
    settings["token"] = get("TOKEN")
    if not TOKEN.fullmatch(settings["token"]):
        raise ConfigError(f"{PREFIX}TOKEN: expected printable ASCII without spaces (it goes in an HTTP header)")
    if get("TOKEN_FILE"):
        settings["token_file"] = _token_file(PREFIX + "TOKEN_FILE", get("TOKEN_FILE"))
    for key, field in (("ECS_AGENT_URL", "ecs_agent_url"), ("IMDS_URL", "imds_url")):
        if get(key):
            settings[field] = _url(PREFIX + key, get(key))
    for key, field in (
        ("POLL_INTERVAL", "poll_interval"),
        ("RESYNC_INTERVAL", "resync_interval"),
        ("KEEPALIVE_INTERVAL", "keepalive_interval"),
    ):
        if get(key):
            settings[field] = _seconds(PREFIX + key, get(key))
    if get("START_SPREAD"):
        settings["start_spread"] = _not_negative(PREFIX + "START_SPREAD", get("START_SPREAD"))
    if get("SPOOL_DIR"):
        settings["spool_dir"] = _spool_dir(PREFIX + "SPOOL_DIR", get("SPOOL_DIR"))
    if get("LOG_LEVEL"):
        level = get("LOG_LEVEL").upper()
        if level not in LOG_LEVELS:
            raise ConfigError(f"{PREFIX}LOG_LEVEL: expected one of {', '.join(LOG_LEVELS)}, got {get('LOG_LEVEL')!r}")
        settings["log_level"] = level
    if get("LOG_FORMAT"):
        log_format = get("LOG_FORMAT").lower()
        if log_format not in LOG_FORMATS:
            raise ConfigError(
                f"{PREFIX}LOG_FORMAT: expected one of {', '.join(LOG_FORMATS)}, got {get('LOG_FORMAT')!r}"
            )
        settings["log_format"] = log_format
    if get("CA_BUNDLE"):
        settings["ca_bundle"] = _ca_bundle(PREFIX + "CA_BUNDLE", get("CA_BUNDLE"))
    if get("METRICS_PORT"):
        settings["metrics_address"] = _address(PREFIX + "METRICS_PORT", get("METRICS_PORT"))
    return Config(**settings)
