"""The DynamoDB store's discovery generation: a counter in each of ``GENERATION_SHARDS`` items, each its own
partition so that no single key takes every write, moved (``UpdateItem`` ``ADD``) once per batch of record writes
that changes what service discovery shows (``server.running_set``), and read together in one ``BatchGetItem``."""

from __future__ import annotations

import random
from collections.abc import Iterable

from server import running_set
from server.store.base import Record
from server.store.dynamodb.client import DynamoDBClient

#: Counter items; a report moves one of them, at random.
GENERATION_SHARDS = 8
#: Seconds the sparse ``running`` index (read eventually consistent) is given to show a write.
INDEX_SETTLE = 2.0


def generation_key(shard: int) -> dict[str, dict[str, str]]:
    return {"pk": {"S": f"G#{shard}"}, "sk": {"S": "G"}}


class ShownGeneration(DynamoDBClient):
    """``discovery_generation``, and ``_count_shown`` for the write paths."""

    discovery_settle = INDEX_SETTLE

    def discovery_generation(self) -> str:
        self._ready_to_use()
        keys = [generation_key(shard) for shard in range(GENERATION_SHARDS)]
        found = {item["pk"]["S"]: item["n"]["N"] for item in self._get_items(keys) if "n" in item}
        return ",".join(found.get(key["pk"]["S"], "0") for key in keys)

    def _count_shown(self, changes: Iterable[tuple[Record | None, Record | None]]) -> None:
        """Move the generation once if any (before, after) pair written changes what discovery shows; after the
        records' own writes, so that a reader that sees it moved reads them."""
        if running_set.moved(changes):
            self._add_one(generation_key(random.randrange(GENERATION_SHARDS)), "n")
