"""Stores for the contract suite: SQLite, SimpleDB through moto in-process, SimpleDB through moto's HTTP server.

The clean environment (no real AWS variables, fake credentials) comes from the autouse fixture in
``tests/conftest.py``. Every SimpleDB store made here checks each PutAttributes against SimpleDB's limits and,
after the test, that no item holds more than 256 name-value pairs. moto enforces neither, nor conditional
puts: ``strict_moto`` makes it refuse both as SimpleDB does, and serves the store's one Select, which moto lacks.
"""

from __future__ import annotations

import re
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from moto import mock_aws
from moto.core.responses import ActionResult
from moto.sdb.models import sdb_backends
from moto.sdb.responses import SimpleDBResponse
from moto.server import ThreadedMotoServer

from server.store.base import Store
from server.store.sdb import SimpleDBStore
from server.store.sqlite import SQLiteStore

REGION = "us-west-2"  # moto does not intercept SimpleDB in us-east-1
BACKENDS = ("sqlite", "sdb-mock", "sdb-server")


class Requests:
    """Counts the SimpleDB requests one client makes, by operation, through botocore's event hooks."""

    def __init__(self, client: Any):
        self.counts: Counter[str] = Counter()
        client.meta.events.register("before-call.sdb", self._count)

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
        expected = self._get_param("Expected") or {}
        if expected:
            values = {value for name, value in pairs if name == expected["Name"]}
            if expected.get("Exists") is False and values:
                return _refusal(409, "ConditionalCheckFailed", "Conditional check failed. Attribute exists.")
            if "Value" in expected and not values:
                return _refusal(404, "AttributeDoesNotExist", f"Attribute ({expected['Name']}) does not exist")
            if "Value" in expected and expected["Value"] not in values:
                return _refusal(409, "ConditionalCheckFailed", "Conditional check failed. Value mismatch.")
        new = self._get_param("Attributes") or []
        replaced = {a["Name"] for a in new if a.get("Replace")}
        after = {p for p in pairs if p[0] not in replaced} | {(a["Name"], a["Value"]) for a in new}
        if len(after) > 256:
            return _refusal(409, "NumberItemAttributesExceeded", "Too many attributes in this item")
        return _MOTO_PUT_ATTRIBUTES(self)


_MOTO_PUT_ATTRIBUTES = SimpleDBResponse.put_attributes
_STRICT_LOCK = threading.Lock()

#: The one Select the store makes; moto serves no Select at all.
_SELECT = re.compile(r"select \* from `([^`]+)` where (\w+) = '([^']*)' limit (\d+)")
#: Items per page of the Select below: fewer than asked, as SimpleDB answers when a page passes 1 MB, so that
#: the contract suite follows NextToken.
SELECT_PAGE = 3


def _select(self: SimpleDBResponse) -> Any:
    """Select for the store's one query shape (an attribute equal to a value), paged by ``SELECT_PAGE``."""
    match = _SELECT.fullmatch(self._get_param("SelectExpression"))
    if not match:
        return _refusal(400, "InvalidQueryExpression", "only the store's own query shape is emulated")
    domain_name, attribute, value, limit = match.groups()
    domain = self.sdb_backend._get_domain(domain_name)
    with _STRICT_LOCK:
        hits = [
            {"Name": name, "Attributes": [{"Name": a["Name"], "Value": a["Value"]} for a in item.attributes]}
            for name, item in sorted(domain.items.items())
            if any(a["Name"] == attribute and a["Value"] == value for a in item.attributes)
        ]
    start = int(self._get_param("NextToken") or 0)
    end = start + min(int(limit), SELECT_PAGE)
    return ActionResult({"Items": hits[start:end], **({"NextToken": str(end)} if end < len(hits) else {})})


@pytest.fixture(scope="session", autouse=True)
def strict_moto() -> Iterator[None]:
    """Every moto SimpleDB in the tests (in-process or HTTP server) checks conditions and item sizes."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(SimpleDBResponse, "put_attributes", _strict_put_attributes)
        patch.setattr(SimpleDBResponse, "select", _select, raising=False)
        yield


def assert_items_within_limits() -> None:
    for domain, name, attributes in moto_items():
        assert len(attributes) <= 256, f"{domain}/{name} holds {len(attributes)} pairs"


def watched(store: SimpleDBStore) -> SimpleDBStore:
    store.client.meta.events.register("before-parameter-build.sdb.PutAttributes", check_put_limits)
    return store


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


@pytest.fixture(params=BACKENDS)
def make_store(request: pytest.FixtureRequest, tmp_path) -> Callable[[], Store]:
    """Makes stores of one backend; two calls in one test give two handles on the same data."""
    if request.param == "sqlite":
        path = tmp_path / "store.sqlite3"
        opened: list[Store] = []

        def make_sqlite() -> Store:
            opened.append(SQLiteStore(str(path)))
            return opened[-1]

        request.addfinalizer(lambda: [s.close() for s in opened])
        return make_sqlite
    factory = request.getfixturevalue("sdb_mock" if request.param == "sdb-mock" else "sdb_server")
    prefix = f"t{uuid.uuid4().hex[:12]}"
    return lambda: factory(prefix)


@pytest.fixture
def store(make_store: Callable[[], Store]) -> Store:
    return make_store()
