"""The DynamoDB store's hosts and notes: host leases (one item per host, all in one partition), the not-stopped
containers of a host (the sparse ``by_host`` index) for reconciling its full snapshots, and notes by key."""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Collection

from server.liveness import renewal_due
from server.lru import LRU
from server.store.dynamodb.client import DynamoDBClient, active
from server.store.dynamodb.items import LEASES, lease_key, note_key

log = logging.getLogger(__name__)

#: Hosts whose last renewal this process remembers: a report inside the renewal window then costs no request.
REMEMBERED_HOSTS = 100_000
#: Seconds between looks at a ``by_host`` index that was not ready (an old table's, while DynamoDB backfills it).
INDEX_RECHECK = 60.0


class HostsAndNotes(DynamoDBClient):
    """Leases, the hosts' containers and notes, on the table ``DynamoDBClient`` made ready."""

    _renewals: LRU[str, str] = LRU(0)  # the store's own, made when it opens
    _index_checked_at = -float("inf")

    def _renew(self, host: str, now: str) -> None:
        """Renew ``host``'s lease at ``now`` when it is due (``server.liveness.renewal_due``).

        This process remembers the last renewal it wrote or read per host: inside the window a report costs no
        request. Once due by that memory, the stored renewal is read (eventually consistent: half a read unit), as
        another replica may have written it meanwhile, and written only if it is due too; so the writes stay at
        one per host per half lease however many workers share the host's reports. The put never moves a renewal
        back.
        """
        if not host or not now:
            return
        if not renewal_due(self._renewals.get(host), now, self.lease):
            return
        item = self._call("get_item", TableName=self.table, Key=lease_key(host)).get("Item")
        stored = item["at"]["S"] if item and self._live(item) else None
        if stored and not renewal_due(stored, now, self.lease):
            self._renewals.put(host, stored)
            return
        self._put(
            {**lease_key(host), "at": {"S": now}, **self._expires(now)},
            ConditionExpression="attribute_not_exists(sk) OR #at < :now",
            ExpressionAttributeNames={"#at": "at"},
            ExpressionAttributeValues={":now": {"S": now}},
        )
        self._renewals.put(host, now)  # refused: another replica renewed later than now, which is as good

    def host_leases(self) -> dict[str, str]:
        # One paged Query of the leases' partition, eventually consistent (half the read units): a renewal is
        # written half a lease before the old one would lapse, so a copy a second old is never wrongly lost.
        self._ready_to_use()
        items = self._pages(KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": {"S": LEASES}})
        return {item["sk"]["S"]: item["at"]["S"] for item in items if self._live(item)}

    def _unlisted(self, host: str, listed: Collection[str]) -> list[str]:
        """The containers the ``by_host`` index holds as not stopped on ``host`` and absent from ``listed``: one
        Query of keys. The index lags its table by about a second; what it names is read before it is changed."""
        if not self._hosts_indexed and not self._index_ready():
            return []
        items = self._pages(
            IndexName="by_host",
            KeyConditionExpression="#host = :host",
            ExpressionAttributeNames={"#host": "host"},
            ExpressionAttributeValues={":host": {"S": host}},
        )
        return [cid for item in items if (cid := item["sk"]["S"]) not in listed]

    def _index_ready(self) -> bool:
        now = time.monotonic()
        if now - self._index_checked_at < INDEX_RECHECK:
            return False
        self._index_checked_at = now
        self._hosts_indexed = active(self._call("describe_table", TableName=self.table)["Table"], "by_host")
        if not self._hosts_indexed:
            log.warning("DynamoDB index by_host of %s is not active yet: full snapshots reconcile nothing", self.table)
        return self._hosts_indexed

    def get_note(self, key: str) -> str | None:
        self._ready_to_use()
        item = self._call("get_item", TableName=self.table, Key=note_key(key), ConsistentRead=True).get("Item")
        return zlib.decompress(item["b"]["B"]).decode("utf-8", "surrogatepass") if item else None

    def put_note(self, key: str, value: str) -> None:
        # Compressed: a task definition's JSON shrinks to a fraction, and write units count bytes.
        self._ready_to_use()
        self._put({**note_key(key), "b": {"B": zlib.compress(value.encode("utf-8", "surrogatepass"), 9)}})
