"""Stores for the contract suite: SQLite; SimpleDB and DynamoDB, each through moto in-process and through moto's
HTTP server.

The clean environment (no real AWS variables, fake credentials) comes from the autouse fixture in
``tests/conftest.py``. Every SimpleDB store made here checks each PutAttributes against SimpleDB's limits and,
after the test, that no item holds more than 256 name-value pairs. moto enforces neither, nor conditional
puts: ``strict_moto`` makes it refuse both as SimpleDB does. moto serves neither ``DeleteAttributes`` nor
``Select``, which retention and service discovery need: ``strict_moto`` adds both, ``Select`` for the two query
shapes the store sends.
"""

from __future__ import annotations

import re
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from botocore.retries.standard import ExponentialBackoff
from moto import mock_aws
from moto.core.responses import ActionResult, EmptyResult
from moto.sdb.models import sdb_backends
from moto.sdb.responses import SimpleDBResponse
from moto.server import ThreadedMotoServer

from server.store.base import Store
from server.store.dynamodb import DynamoDBStore
from server.store.sdb import SimpleDBStore
from server.store.sqlite import SQLiteStore

REGION = "us-west-2"  # moto does not intercept SimpleDB in us-east-1
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


def check_put_limits(params: dict, **_: Any) -> None:
    """Fail the test if a PutAttributes breaks a SimpleDB limit."""
    assert len(params["ItemName"].encode()) <= 1024, params["ItemName"][:80]
    assert len(params["Attributes"]) <= 256
    for attr in params["Attributes"]:
        assert len(attr["Name"].encode()) <= 1024, attr["Name"][:80]
        assert len(attr["Value"].encode()) <= 1024, (attr["Name"], len(attr["Value"].encode()))


def moto_items() -> Iterator[tuple[str, str, list[dict]]]:
    """Every item moto holds: (domain, item name, attributes)."""
    for regions in sdb_backends.values():
        for backend in regions.values():
            for domain in backend.domains.values():
                for name, item in domain.items.items():
                    yield domain.name, name, item.attributes


def _refusal(status: int, code: str, message: str) -> tuple[str, dict]:
    """SimpleDB's error answer (moto's own errors warn about codes missing from botocore's model)."""
    body = (
        f'<?xml version="1.0"?><Response><Errors><Error><Code>{code}</Code><Message>{message}</Message>'
        "<BoxUsage>0.0000219907</BoxUsage></Error></Errors><RequestID>strict-moto</RequestID></Response>"
    )
    return body, {"status": status, "Content-Type": "text/xml"}


def _strict_put_attributes(self: SimpleDBResponse) -> Any:
    """moto's PutAttributes, made to honour what real SimpleDB enforces and moto does not: the ``Expected``
    condition and the 256 name-value pairs of an item. Both answer with SimpleDB's error codes."""
    domain = self.sdb_backend._get_domain(self._get_param("DomainName"))
    with _STRICT_LOCK:
        held = domain.items.get(self._get_param("ItemName"))
        pairs = {(a["Name"], a["Value"]) for a in (held.attributes if held else [])}
        refusal = _refused(held, self._get_param("Expected") or {})
        if refusal:
            return refusal
        new = self._get_param("Attributes") or []
        replaced = {a["Name"] for a in new if a.get("Replace")}
        after = {p for p in pairs if p[0] not in replaced} | {(a["Name"], a["Value"]) for a in new}
        if len(after) > 256:
            return _refusal(409, "NumberItemAttributesExceeded", "Too many attributes in this item")
        return _MOTO_PUT_ATTRIBUTES(self)


def _refused(held: Any, expected: dict) -> tuple[str, dict] | None:
    """SimpleDB's refusal when ``expected`` does not hold for the item ``held`` (None: it holds)."""
    values = {a["Value"] for a in (held.attributes if held else []) if a["Name"] == expected.get("Name")}
    if expected.get("Exists") is False and values:
        return _refusal(409, "ConditionalCheckFailed", "Conditional check failed. Attribute exists.")
    if "Value" in expected and not values:
        return _refusal(404, "AttributeDoesNotExist", f"Attribute ({expected['Name']}) does not exist")
    if "Value" in expected and expected["Value"] not in values:
        return _refusal(409, "ConditionalCheckFailed", "Conditional check failed. Value mismatch.")
    return None


def _delete_attributes(self: SimpleDBResponse) -> Any:
    """SimpleDB's DeleteAttributes: the named attributes (by name, or name and value), else the whole item."""
    domain = self.sdb_backend._get_domain(self._get_param("DomainName"))
    name = self._get_param("ItemName")
    with _STRICT_LOCK:
        held = domain.items.get(name)
        refusal = _refused(held, self._get_param("Expected") or {})
        if refusal:
            return refusal
        if held is not None:
            doomed = self._get_param("Attributes") or []

            def named(a: dict) -> bool:
                return any(a["Name"] == d["Name"] and d.get("Value", a["Value"]) == a["Value"] for d in doomed)

            held.attributes = [a for a in held.attributes if doomed and not named(a)]
            if not held.attributes:
                del domain.items[name]
    return EmptyResult()


SELECT_EXPIRED = re.compile(r"select itemName\(\) from `([^`]+)` where last_seen < '([^']*)' limit (\d+)")
SELECT_WHOLE = re.compile(r"select \* from `([^`]+)` where (known_status|host) = '([^']*)' limit (\d+)")
#: Items per page of whole items: fewer than asked, as SimpleDB answers when a page passes 1 MB, so that the
#: contract suite follows NextToken.
SELECT_PAGE = 3


def _select(self: SimpleDBResponse) -> Any:
    """SimpleDB's Select, for the queries the store sends: the item names whose ``last_seen`` is below a value
    (retention), and the whole items whose ``known_status`` is RUNNING (service discovery) or whose ``host`` is
    one host's (its heartbeat and records), paged."""
    expression = self._get_param("SelectExpression")
    expired, whole = SELECT_EXPIRED.fullmatch(expression), SELECT_WHOLE.fullmatch(expression)
    assert expired or whole, expression
    domain = self.sdb_backend._get_domain((expired or whole)[1])
    if expired:
        with _STRICT_LOCK:
            found = sorted(
                name
                for name, item in domain.items.items()
                if any(a["Name"] == "last_seen" and a["Value"] < expired[2] for a in item.attributes)
            )
        return ActionResult({"Items": [{"Name": name, "Attributes": []} for name in found[: int(expired[3])]]})
    with _STRICT_LOCK:
        hits = [
            {"Name": name, "Attributes": [{"Name": a["Name"], "Value": a["Value"]} for a in item.attributes]}
            for name, item in sorted(domain.items.items())
            if any(a["Name"] == whole[2] and a["Value"] == whole[3] for a in item.attributes)
        ]
    start = int(self._get_param("NextToken") or 0)
    end = start + min(int(whole[4]), SELECT_PAGE)
    return ActionResult({"Items": hits[start:end], **({"NextToken": str(end)} if end < len(hits) else {})})


_MOTO_PUT_ATTRIBUTES = SimpleDBResponse.put_attributes
_STRICT_LOCK = threading.Lock()


@contextmanager
def strict_simpledb(page: int = SELECT_PAGE) -> Iterator[None]:
    """moto's SimpleDB as SimpleDB answers the store: conditions and item sizes checked, DeleteAttributes and the
    store's Selects served (whole items in pages of ``page``). Also for the request-counting benchmarks."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(SimpleDBResponse, "put_attributes", _strict_put_attributes)
        patch.setattr(SimpleDBResponse, "delete_attributes", _delete_attributes, raising=False)
        patch.setattr(SimpleDBResponse, "select", _select, raising=False)
        patch.setattr(sys.modules[__name__], "SELECT_PAGE", page)
        yield


@pytest.fixture(scope="session", autouse=True)
def strict_moto() -> Iterator[None]:
    """Every moto SimpleDB in the tests (in-process or HTTP server) checks conditions and item sizes."""
    with strict_simpledb():
        yield


@pytest.fixture
def whole_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    """Select answers whole pages (up to the query's limit), as SimpleDB does while a page stays under 1 MB: for
    tests that count requests."""
    monkeypatch.setattr(sys.modules[__name__], "SELECT_PAGE", 2500)


def assert_items_within_limits() -> None:
    for domain, name, attributes in moto_items():
        assert len(attributes) <= 256, f"{domain}/{name} holds {len(attributes)} pairs"


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
