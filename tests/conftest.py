"""Shared fixtures: a clean environment for every test, so that nothing reaches real AWS or a proxy."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator

import pytest

from simhost import SimHostServer, SimulatedHost

CLEARED_PREFIXES = ("ECS_ID_MAPPER_", "AWS_")
#: The server's background threads: each must be stopped (its app closed) by the end of its test.
BACKGROUND_WORKERS = ("service-names", "task-definitions", "container-instances", "retention")
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
    # The server's service-name, task-definition and container-instance workers call ECS (and EC2) in the
    # background: a closed loopback port, never AWS, and stopped (by closing its app) before this environment is
    # undone.
    monkeypatch.setenv("AWS_ENDPOINT_URL_ECS", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_ENDPOINT_URL_EC2", "http://127.0.0.1:9")
    yield
    workers = [t for t in threading.enumerate() if t.name in BACKGROUND_WORKERS and t.is_alive()]
    assert not workers, "a background worker outlived its test: close its app with state(app).close()"


@pytest.fixture
def make_app():
    """``create_app`` for a test: every app made is closed (worker stopped, store closed) after the test."""
    from server import create_app  # here, so that the agent's tests need no server dependencies
    from server.state import state

    made = []

    def make(config=None, **collaborators):
        app = create_app(config, **collaborators)
        made.append(app)
        return app

    yield make
    for app in made:
        state(app).close()


@pytest.fixture
def ecs_host() -> Iterator[SimHostServer]:
    """A simulated ECS host (introspection API and IMDSv2) on loopback ports, with no tasks until a test starts some."""
    with SimHostServer(SimulatedHost(seed=5)) as sim:
        yield sim
