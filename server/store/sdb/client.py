"""The SimpleDB store's requests: its three domains (created where missing), reads by item name, puts that SimpleDB
may refuse on a condition or a full item, and Selects."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from botocore.exceptions import ClientError

from server.store.aws_store import AwsStore, new_client
from server.store.base import StoreError, StoreUnavailable
from server.store.sdb import items

log = logging.getLogger(__name__)

DOMAINS = ("containers", "indexes", "events")

#: SimpleDB's answers to a conditional put whose condition no longer holds: someone else wrote first.
CONFLICTS = frozenset({"ConditionalCheckFailed", "AttributeDoesNotExist"})
#: SimpleDB's answers to a put that would take an item past 256 name-value pairs.
CROWDED = frozenset({"NumberItemAttributesExceeded", "NumberSubmittedAttributesExceeded"})


class Refused(StoreUnavailable):
    """SimpleDB refused a write as asked (``code``: a failed condition, a full item).

    The store handles the codes it expects; any other refusal that escapes is a 503 and the client retries.
    """

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


class SimpleDBClient(AwsStore):
    """The requests of the SimpleDB store, by domain (``containers``, ``indexes``, ``events``) and item name."""

    service = "sdb"
    title = "SimpleDB"
    #: The domain of each name in ``DOMAINS``.
    domains: dict[str, str]

    def _new_client(self) -> Any:
        return new_client("sdb", self.region, self.endpoint_url, self.config)

    def _refused(self, operation: str, code: str, exc: ClientError) -> None:
        if code in CONFLICTS | CROWDED:
            raise Refused(code, f"SimpleDB {operation} refused: {exc}") from exc

    def _ensure_domains(self) -> None:
        if self._ready:
            return
        with self._lock:
            if self._ready:
                return
            present: set[str] = set()
            params: dict[str, Any] = {}
            while True:
                page = self._call("list_domains", **params)
                present.update(page.get("DomainNames", []))
                if not page.get("NextToken"):
                    break
                params["NextToken"] = page["NextToken"]
            # Only the missing ones: CreateDomain on an existing domain is a paid no-op on AWS (and wipes it
            # in moto).
            for domain in self.domains.values():
                if domain not in present:
                    log.info("creating SimpleDB domain %s", domain)
                    self._call("create_domain", DomainName=domain)
            self._ready = True

    def _ready_to_use(self) -> None:
        self._forked()
        self._ensure_domains()

    def _get(self, domain: str, item: str, attributes: Sequence[str] = ()) -> dict[str, str]:
        """One consistent GetAttributes: the item whole, or only its ``attributes``."""
        params: dict[str, Any] = {"DomainName": self.domains[domain], "ItemName": item, "ConsistentRead": True}
        if attributes:
            params["AttributeNames"] = list(attributes)
        answer = self._call("get_attributes", **params)
        return {a["Name"]: a["Value"] for a in answer.get("Attributes", [])}

    def _put(self, domain: str, item: str, attrs: dict[str, str], expected: dict[str, Any] | None = None) -> None:
        """One PutAttributes replacing ``attrs``; with ``expected``, only if that condition holds (else Refused)."""
        if not attrs:
            return
        too_long = [s for s in (item, *attrs, *attrs.values()) if len(s.encode()) > items.MAX_BYTES]
        if too_long or len(attrs) > 256:  # a layout bug, never input: every name and value is bounded above
            raise StoreError(f"SimpleDB item {item!r} would break a limit")
        params: dict[str, Any] = {
            "DomainName": self.domains[domain],
            "ItemName": item,
            "Attributes": [{"Name": n, "Value": v, "Replace": True} for n, v in attrs.items()],
        }
        if expected is not None:
            params["Expected"] = expected
        self._call("put_attributes", **params)

    def _puts(self, writes: Sequence[tuple[str, str, dict[str, str]]]) -> None:
        self.pool.map(lambda w: self._put(*w), writes)

    def _select_items(self, condition: str, attributes: Sequence[str] = ()) -> list[tuple[str, dict[str, str]]]:
        """Items of the containers domain that meet ``condition``, whole or only their ``attributes``: one
        consistent Select, page by page (SimpleDB answers at most 2,500 items or 1 MB at a time)."""
        output = ", ".join(attributes) or "*"
        params: dict[str, Any] = {
            "SelectExpression": f"select {output} from `{self.domains['containers']}` where {condition} limit 2500",
            "ConsistentRead": True,
        }
        found = []
        while True:
            page = self._call("select", **params)
            for item in page.get("Items", []):
                found.append((item["Name"], {a["Name"]: a["Value"] for a in item.get("Attributes", [])}))
            if not page.get("NextToken"):
                return found
            params["NextToken"] = page["NextToken"]

    def _select_names(self, condition: str, limit: int) -> list[str]:
        """The names of the items of the containers domain that meet ``condition``: one consistent Select of at most
        ``limit`` (1 to 2,500) items."""
        query = f"select itemName() from `{self.domains['containers']}` where {condition} limit {limit}"
        answer = self._call("select", SelectExpression=query, ConsistentRead=True)
        return [item["Name"] for item in answer.get("Items", [])]

    def _delete(
        self,
        domain: str,
        item: str,
        attributes: list[dict[str, str]] | None = None,
        expected: dict[str, Any] | None = None,
    ) -> None:
        """One DeleteAttributes: ``attributes`` (the whole item if None); with ``expected``, only if that condition
        holds (else Refused)."""
        params: dict[str, Any] = {"DomainName": self.domains[domain], "ItemName": item}
        if attributes is not None:
            params["Attributes"] = attributes
        if expected is not None:
            params["Expected"] = expected
        self._call("delete_attributes", **params)

    def ping(self) -> None:
        self._ready_to_use()
        self._get("containers", "!ping")


def quoted(value: str) -> str:
    """A SimpleDB Select string literal: single quotes, an inner quote doubled."""
    return "'" + value.replace("'", "''") + "'"
