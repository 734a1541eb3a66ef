"""Stores for the contract suite: SQLite; SimpleDB and DynamoDB, each through moto in-process and through moto's
HTTP server.

The clean environment (no real AWS variables, fake credentials) comes from the autouse fixture in
``tests/conftest.py``. Every SimpleDB store made here checks each PutAttributes against SimpleDB's limits and,
after the test, that no item holds more than 256 name-value pairs. moto enforces neither, nor conditional
puts, and serves neither ``DeleteAttributes`` nor ``Select``: ``strict_moto`` makes every moto SimpleDB of the
session answer as SimpleDB does, with ``testkit.simpledb``.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.retries.standard import ExponentialBackoff
from moto import mock_aws
from moto.server import ThreadedMotoServer

from server.store.base import Store
from server.store.dynamodb import DynamoDBStore
from server.store.sdb import SimpleDBStore
from server.store.sqlite import SQLiteStore
from testkit import simpledb
from testkit.simpledb import REGION, assert_items_within_limits, check_put_limits, strict_simpledb

BACKENDS = ("sqlite", "sdb-mock", "sdb-server", "dynamodb-mock", "dynamodb-server")


class Requests:
    """Counts the requests one client makes, by operation, through botocore's event hooks."""

    def __init__(self, client: Any, service: str = "sdb"):
        self.counts: Counter[str] = Counter()
        client.meta.events.register(f"before-call.{service}", self._count)

    def _count(self, model: Any, **_: Any) -> None:
        self.counts[model.name] += 1

    @property
    def reads(self) -> int:
        return self.counts["GetAttributes"]

    @property
    def writes(self) -> int:
        return self.counts["PutAttributes"]

    def reset(self) -> None:
        self.counts.clear()


@pytest.fixture(scope="session", autouse=True)
def strict_moto() -> Iterator[None]:
    """Every moto SimpleDB in the tests (in-process or HTTP server) checks conditions and item sizes."""
    with strict_simpledb():
        yield


@pytest.fixture
def whole_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    """Select answers whole pages (up to the query's limit), as SimpleDB does while a page stays under 1 MB: for
    tests that count requests."""
    monkeypatch.setattr(simpledb, "SELECT_PAGE", 2500)


def watched(store: SimpleDBStore) -> SimpleDBStore:
    store.client.meta.events.register("before-parameter-build.sdb.PutAttributes", check_put_limits)
    return store


@pytest.fixture
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore retries at once instead of after its exponential backoff."""
    monkeypatch.setattr(ExponentialBackoff, "delay_amount", lambda self, context: 0)


class RawBody:
    """A canned HTTP body for an ``AWSResponse`` returned from a ``before-send`` hook."""

    def __init__(self, body: bytes):
        self.body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.body


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def sdb_mock() -> Iterator[Callable[..., SimpleDBStore]]:
    """Makes SimpleDB stores on moto in-process; each call with no prefix gets fresh domains."""
    made: list[SimpleDBStore] = []
    with mock_aws():

        def make(prefix: str | None = None, **options: Any) -> SimpleDBStore:
            made.append(watched(SimpleDBStore(prefix or f"t{uuid.uuid4().hex[:12]}", region=REGION, **options)))
            return made[-1]

        yield make
        assert_items_within_limits()
        for store in made:
            store.close()


@pytest.fixture
def sdb_server(moto_server: str) -> Iterator[Callable[..., SimpleDBStore]]:
    """Makes SimpleDB stores that reach moto's HTTP server on loopback through ``endpoint_url``."""
    made: list[SimpleDBStore] = []

    def make(prefix: str | None = None, **options: Any) -> SimpleDBStore:
        prefix = prefix or f"t{uuid.uuid4().hex[:12]}"
        made.append(watched(SimpleDBStore(prefix, region=REGION, endpoint_url=moto_server, **options)))
        return made[-1]

    yield make
    assert_items_within_limits()
    for store in made:
        store.close()


@pytest.fixture
def dynamodb_mock() -> Iterator[Callable[..., DynamoDBStore]]:
    """Makes DynamoDB stores on moto in-process; each call with no table name creates a fresh table."""
    made: list[DynamoDBStore] = []
    with mock_aws():

        def make(table: str | None = None, **options: Any) -> DynamoDBStore:
            options.setdefault("create", True)
            made.append(DynamoDBStore(table or f"t{uuid.uuid4().hex[:12]}", region=REGION, **options))
            return made[-1]

        yield make
        for store in made:
            store.close()


@pytest.fixture
def dynamodb_server(moto_server: str) -> Iterator[Callable[..., DynamoDBStore]]:
    """Makes DynamoDB stores that reach moto's HTTP server on loopback through ``endpoint_url``."""
    made: list[DynamoDBStore] = []

    def make(table: str | None = None, **options: Any) -> DynamoDBStore:
        options.setdefault("create", True)
        table = table or f"t{uuid.uuid4().hex[:12]}"
        made.append(DynamoDBStore(table, region=REGION, endpoint_url=moto_server, **options))
        return made[-1]

    yield make
    for store in made:
        store.close()


@pytest.fixture(params=BACKENDS)
def make_store(request: pytest.FixtureRequest, tmp_path) -> Callable[..., Store]:
    """Makes stores of one backend (keyword options: ``retention_days``, ``clock``); two calls in one test give
    two handles on the same data."""
    if request.param == "sqlite":
        path = tmp_path / "store.sqlite3"
        opened: list[Store] = []

        def make_sqlite(**options: Any) -> Store:
            opened.append(SQLiteStore(str(path), **options))
            return opened[-1]

        request.addfinalizer(lambda: [s.close() for s in opened])
        return make_sqlite
    factory = request.getfixturevalue(request.param.replace("-", "_"))
    name = f"t{uuid.uuid4().hex[:12]}"
    return lambda **options: factory(name, **options)


@pytest.fixture
def store(make_store: Callable[..., Store]) -> Store:
    return make_store()
