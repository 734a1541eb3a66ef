"""Fixtures for the ECS API, New Relic and service-name tests: fake AWS credentials, stubbed clients, records."""

from __future__ import annotations

import os

import boto3
import pytest
import responses
from botocore.stub import Stubber

from server.ecs import EcsClient
from server.store.sqlite import SQLiteStore
from tests.clock import Clock
from tests.upstream.helpers import REGION


@pytest.fixture(autouse=True)
def aws_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No real AWS, no proxy: fake credentials and region, set before any client exists."""
    for name in list(os.environ):
        if name.startswith("AWS_") or name.lower() in ("http_proxy", "https_proxy", "all_proxy"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def stubbed():
    """A real boto3 ECS client under botocore's Stubber, which asserts every request's exact parameters."""
    client = boto3.client("ecs", region_name=REGION, endpoint_url="http://127.0.0.1:9")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


@pytest.fixture
def ecs(stubbed, clock) -> EcsClient:
    client, _ = stubbed
    return EcsClient(client_factory=lambda: client, clock=clock)


@pytest.fixture
def stubber(stubbed) -> Stubber:
    return stubbed[1]


@pytest.fixture
def store(tmp_path):
    store = SQLiteStore(str(tmp_path / "mapper.sqlite3"))
    yield store
    store.close()


@pytest.fixture
def nr():
    """New Relic's API mocked: every request must be registered, and every registered one made."""
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        yield mock
