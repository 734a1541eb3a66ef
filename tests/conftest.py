"""Shared fixtures: a clean environment for every test, so that nothing reaches real AWS or a proxy."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest

CLEARED_PREFIXES = ("ECS_ID_MAPPER_", "AWS_")
CLEARED = ("endpoint", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith(CLEARED_PREFIXES) or name in CLEARED:
            monkeypatch.delenv(name)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-west-2")
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    # The server's service-name worker calls ECS in the background: a closed loopback port, never AWS,
    # and stopped before this environment is undone.
    monkeypatch.setenv("AWS_ENDPOINT_URL_ECS", "http://127.0.0.1:9")
    yield
    for name in ("server.enrich", "server.retention"):
        module = sys.modules.get(name)
        if module is not None:
            module.stop_all()
