"""The DynamoDB store's address index: an item per (key, since, container) in the table itself, partition
``A#`` + key (an address, or ``instance:`` + an EC2 instance ID; ``server.store.address_index``), sort key
``since#container ID``. A question is one Query of that partition, newest ``since`` first, limited; the records
then come in one BatchGetItem.

Each item is written once per container life (about 120 bytes: one write unit), when its record first has the
address and a start, or an earlier start; the record's item remembers what was written (``ix``: the entries and
their expiry) so that later reports write nothing more. Retention is TTL: an index item carries its record's
``expires_at`` as written then. A record that outlives that (a container running longer than half the retention
past its index write) has its index items written again, with its record's later expiry, once per half retention.
"""

from __future__ import annotations

from typing import Any

from server.store import address_index
from server.store.base import Record
from server.store.dynamodb.hosts import HostsAndNotes
from server.store.dynamodb.items import TTL_ATTRIBUTE, Held, record_key

#: The prefix of the index items' partition key.
PREFIX = "A#"
#: Sorts after the ``#`` between ``since`` and the container ID: the exclusive upper bound of a ``since``.
AFTER = "$"


def index_key(key: str, since: str, container_id: str) -> dict[str, dict[str, str]]:
    return {"pk": {"S": PREFIX + key}, "sk": {"S": f"{since}#{container_id}"}}


def indexed_state(entries: set[tuple[str, str]], expiry: str) -> str:
    """The ``ix`` attribute of a record item: its entries' ``since`` and keys, and their expiry ("" without)."""
    if not entries:
        return ""
    since = min(s for _, s in entries)
    return f"{expiry}|{since}|{','.join(sorted(k for k, _ in entries))}"


def entries_of_state(state: str) -> tuple[set[tuple[str, str]], str]:
    """The entries and expiry an ``ix`` attribute says were written."""
    if not state:
        return set(), ""
    expiry, since, keys = state.split("|", 2)
    return {(key, since) for key in keys.split(",") if key}, expiry


class AddressIndex(HostsAndNotes):
    """Writing a record's index items when it gains an address or a start, and the questions by address."""

    def _index(self, held: Held, new: Record) -> str:
        """Write the index items ``new`` needs that ``held`` does not have (or whose expiry is due for renewal);
        the record item's ``ix`` afterwards. Written before the record's own put: an item for a put that then
        loses its race is harmless (questions are decided on the records) and written again by the retry."""
        expires = self._expires(new.get("last_seen", ""))
        expiry = expires[TTL_ATTRIBUTE]["N"] if expires else ""
        written, written_expiry = entries_of_state(held.indexed)
        # A long life (its items would expire before its record), or retention set since they were written.
        renew = bool(expiry and written) and (
            not written_expiry or int(expiry) - int(written_expiry) > self.retention / 2
        )
        old = held.record
        unchanged = old is not None and all(old.get(f) == new.get(f) for f in address_index.FIELDS)
        if unchanged and not renew and (written or not address_index.entries(new)):
            return held.indexed  # the usual write: nothing the entries are made of changed
        wanted = address_index.entries(new)
        if not wanted:
            return ""
        due = wanted if renew else wanted - written
        if not due:
            return held.indexed
        container_id = new["container_id"]
        puts = [{"PutRequest": {"Item": {**index_key(k, s, container_id), **expires}}} for k, s in sorted(due)]
        deletes = [{"DeleteRequest": {"Key": index_key(k, s, container_id)}} for k, s in sorted(written - wanted)]
        self._write_batch(puts + deletes)
        return indexed_state(wanted, expiry if renew or not written else written_expiry)

    def address_holders(self, key: str, at: str | None, limit: int) -> list[Record]:
        self._ready_to_use()
        condition = "pk = :pk"
        values: dict[str, Any] = {":pk": {"S": PREFIX + key}}
        if at is not None:
            condition += " AND sk < :upper"
            values[":upper"] = {"S": at + AFTER}
        page = self._call(
            "query",
            TableName=self.table,
            KeyConditionExpression=condition,
            ExpressionAttributeValues=values,
            ScanIndexForward=False,
            Limit=max(1, limit),
            ConsistentRead=True,
        )
        ids = [item["sk"]["S"].partition("#")[2] for item in page.get("Items", []) if self._live(item)]
        ids = list(dict.fromkeys(ids))
        found = {}
        for item in self._get_items([record_key(cid) for cid in ids]):
            if self._live(item):
                record = self._held_of(item).record
                if record is not None:
                    found[record["container_id"]] = record
        return [found[cid] for cid in ids if cid in found]

    def _held_of(self, item: dict[str, Any] | None) -> Held:
        raise NotImplementedError  # the store's own: a record item as held
