"""moto's SimpleDB made to answer the store as SimpleDB does, for the tests and the request-counting benchmarks.

moto enforces neither SimpleDB's conditional puts nor its 256 name-value pairs per item, and serves neither
``DeleteAttributes`` nor ``Select``, which retention and service discovery need: ``strict_simpledb`` makes it
refuse both as SimpleDB does and adds both, ``Select`` for the query shapes the store sends.
"""

from __future__ import annotations

import re
import sys
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any
from unittest import mock

from moto.core.responses import ActionResult, EmptyResult
from moto.sdb.models import sdb_backends
from moto.sdb.responses import SimpleDBResponse

REGION = "us-west-2"  # moto does not intercept SimpleDB in us-east-1

SELECT_EXPIRED = re.compile(r"select itemName\(\) from `([^`]+)` where last_seen < '([^']*)' limit (\d+)")
SELECT_WHOLE = re.compile(r"select \* from `([^`]+)` where (known_status|host) = '([^']*)' limit (\d+)")
SELECT_ADDRESS = re.compile(
    r"select \* from `([^`]+)` where (\w+) > '([^']*)' and \2 <= '([^']*)' order by \2 desc limit (\d+)"
)
SELECT_NAMED = re.compile(r"select (\w+(?:, \w+)*) from `([^`]+)` where itemName\(\) like '([^'%]*)%' limit (\d+)")
#: Items per page of whole items: fewer than asked, as SimpleDB answers when a page passes 1 MB, so that the
#: contract suite follows NextToken.
SELECT_PAGE = 3


def check_put_limits(params: dict, **_: Any) -> None:
    """Fail if a PutAttributes breaks a SimpleDB limit (a botocore ``before-parameter-build`` hook)."""
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


def assert_items_within_limits() -> None:
    for domain, name, attributes in moto_items():
        assert len(attributes) <= 256, f"{domain}/{name} holds {len(attributes)} pairs"


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


def _select(self: SimpleDBResponse) -> Any:
    """SimpleDB's Select, for the queries the store sends: the item names whose ``last_seen`` is below a value
    (retention), the whole items whose ``known_status`` is RUNNING (service discovery) or whose ``host`` is one
    host's (its heartbeat and records), and some attributes of the items whose names start with a prefix (the
    hosts' leases), paged."""
    expression = self._get_param("SelectExpression")
    expired, whole = SELECT_EXPIRED.fullmatch(expression), SELECT_WHOLE.fullmatch(expression)
    named = SELECT_NAMED.fullmatch(expression)
    address = SELECT_ADDRESS.fullmatch(expression)
    assert expired or whole or named or address, expression
    if address:
        return _select_address(self, address)
    if named:
        domain = self.sdb_backend._get_domain(named[2])
        output = set(named[1].split(", "))
        with _STRICT_LOCK:
            hits = [
                {
                    "Name": name,
                    "Attributes": [
                        {"Name": a["Name"], "Value": a["Value"]} for a in item.attributes if a["Name"] in output
                    ],
                }
                for name, item in sorted(domain.items.items())
                if name.startswith(named[3])
            ]
        return _page(self, hits, int(named[4]))
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
    return _page(self, hits, int(whole[4]))


def _select_address(self: SimpleDBResponse, query: re.Match) -> Any:
    """The whole items whose attribute lies in (low, high], ordered by it, highest first (the address index)."""
    domain = self.sdb_backend._get_domain(query[1])
    name, low, high = query[2], query[3].replace("''", "'"), query[4].replace("''", "'")
    with _STRICT_LOCK:
        hits = []
        for item_name, item in domain.items.items():
            values = [a["Value"] for a in item.attributes if a["Name"] == name and low < a["Value"] <= high]
            if values:
                attributes = [{"Name": a["Name"], "Value": a["Value"]} for a in item.attributes]
                hits.append((max(values), {"Name": item_name, "Attributes": attributes}))
    ordered = [hit for _, hit in sorted(hits, key=lambda pair: pair[0], reverse=True)]
    return _page(self, ordered, int(query[5]))


def _page(self: SimpleDBResponse, hits: list[dict], limit: int) -> Any:
    """One page of a Select's items, from its NextToken, of ``SELECT_PAGE`` items at most."""
    start = int(self._get_param("NextToken") or 0)
    end = start + min(limit, SELECT_PAGE)
    return ActionResult({"Items": hits[start:end], **({"NextToken": str(end)} if end < len(hits) else {})})


_MOTO_PUT_ATTRIBUTES = SimpleDBResponse.put_attributes
_STRICT_LOCK = threading.Lock()


@contextmanager
def strict_simpledb(page: int = SELECT_PAGE) -> Iterator[None]:
    """moto's SimpleDB as SimpleDB answers the store: conditions and item sizes checked, DeleteAttributes and the
    store's Selects served (whole items in pages of ``page``)."""
    with ExitStack() as patches:
        patches.enter_context(mock.patch.object(SimpleDBResponse, "put_attributes", _strict_put_attributes))
        patches.enter_context(mock.patch.object(SimpleDBResponse, "delete_attributes", _delete_attributes, create=True))
        patches.enter_context(mock.patch.object(SimpleDBResponse, "select", _select, create=True))
        patches.enter_context(mock.patch.object(sys.modules[__name__], "SELECT_PAGE", page))
        yield
