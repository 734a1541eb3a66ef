"""The SimpleDB store's notes: a string kept by key for every replica (``Store.put_note``), as chunked JSON in an
item of the indexes domain, ``note/KEY``, and further items ``note/KEY/1``, … for a value too long for one."""

from __future__ import annotations

import hashlib
import json

from server.store.sdb import items
from server.store.sdb.retention import Retention

#: Chunks of a note's JSON per item (of SimpleDB's 256 pairs): a note of up to 200 KiB of JSON is one item.
CHUNKS_PER_ITEM = 200
#: Attributes of a note's first item: how many chunks the note has, and a digest of its JSON.
CHUNK_COUNT = "note.n"
DIGEST = "note.sha256"


def note_item(key: str, part: int = 0) -> str:
    return items.shard_item("note/" + items.key(key), part)


def note_items(value: str) -> list[dict[str, str]]:
    """The attributes of each item that holds ``value``, first item first: its JSON in ASCII (nothing SimpleDB's
    XML cannot carry), cut into chunks, the first item with their count and the JSON's digest."""
    text = items.dumps(value)
    parts = items.chunks(text)
    laid = [
        {f"note.{i}": part for i, part in enumerate(parts) if i // CHUNKS_PER_ITEM == n}
        for n in range(-(-len(parts) // CHUNKS_PER_ITEM))
    ]
    laid[0].update({CHUNK_COUNT: str(len(parts)), DIGEST: hashlib.sha256(text.encode()).hexdigest()})
    return laid


def note_from(attrs: dict[str, str]) -> str | None:
    """The note the attributes of its items hold together, or None when absent or torn (a write of another value
    half done: the digest does not match)."""
    count = attrs.get(CHUNK_COUNT)
    if not count:
        return None
    parts = [attrs.get(f"note.{i}") for i in range(int(count))]
    if any(part is None for part in parts):
        return None
    text = "".join(parts)  # type: ignore[arg-type]
    if hashlib.sha256(text.encode()).hexdigest() != attrs.get(DIGEST):
        return None
    return json.loads(text)


class Notes(Retention):
    """``get_note`` and ``put_note``: one GetAttributes and one PutAttributes for a note of up to 200 KiB of JSON."""

    def get_note(self, key: str) -> str | None:
        self._ready_to_use()
        attrs = self._get("indexes", note_item(key))
        more = range(1, -(-int(attrs.get(CHUNK_COUNT) or 0) // CHUNKS_PER_ITEM))
        for further in self.pool.map(lambda part: self._get("indexes", note_item(key, part)), list(more)):
            attrs.update(further)
        return note_from(attrs)

    def put_note(self, key: str, value: str) -> None:
        """The further items first, then the first one, whose count and digest make the note whole. Chunks left
        from a longer value stay and are ignored."""
        self._ready_to_use()
        first, *further = note_items(value)
        self._puts([("indexes", note_item(key, part), attrs) for part, attrs in enumerate(further, 1)])
        self._put("indexes", note_item(key), first)
