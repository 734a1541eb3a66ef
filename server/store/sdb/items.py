"""How the SimpleDB store lays strings out in items so that every SimpleDB limit holds for any input.

SimpleDB limits: item names, attribute names and values at most 1,024 bytes; at most 256 name-value pairs per
item and per PutAttributes call. Everything here is pure (no requests), so it is tested on its own.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

#: SimpleDB's bound on an item name, an attribute name and an attribute value, in bytes.
MAX_BYTES = 1024
#: Pairs one item may hold (SimpleDB allows 256). The margin absorbs writers that append to the same shard at
#: the same moment without seeing each other, and the directory attribute of shard 0.
SHARD_PAIRS = 240
#: A record is JSON cut into this many values at most: 240 KiB of ASCII, far above what the report schema
#: lets through (every string ≤ 1 KiB, ≤ 100 ports, ≤ 16 networks).
RECORD_MAX_CHUNKS = 240

#: Attribute of shard 0 of a sharded family: how many shards it has (absent: one).
SHARDS = "!shards"
#: Attribute of slot 0 of a container bucket: how many slots the bucket has (absent: one).
SLOTS = "!slots"
#: Attribute of a record's slot item: how many times the record was written. Every write of a record is a
#: PutAttributes conditional on the revision it was merged against, so that concurrent writers never lose
#: each other's changes (absent: never written with a revision, which ``Exists=False`` expects).
REVISION = "!rev"
RECORD_ID = "container_id"
RECORD_COUNT = "record.n"
#: Attribute of a record's slot item: the record's ``last_seen``, plain, so that retention can Select on it.
LAST_SEEN = "last_seen"
#: Attribute of a record's slot item repeating the record's ``known_status``, so that a Select can find the
#: running containers (the record itself is chunked JSON, which no query can look into).
RECORD_STATUS = "known_status"

_PLAIN_KEY = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
#: A container ID or prefix of either form (``server.ids.CONTAINER_PREFIX``: the store does not import the routes').
_PREFIX = re.compile(r"[0-9a-f]{12,64}|[0-9a-f]{32}-[0-9]{0,10}")


def dumps(value: object) -> str:
    """JSON in printable ASCII: every byte is a character, and nothing needs escaping in SimpleDB's XML."""
    return json.dumps(value, ensure_ascii=True, separators=(",", ":"), sort_keys=True)


def chunks(text: str, size: int = MAX_BYTES) -> list[str]:
    """``text`` (ASCII) cut into values of at most ``size`` bytes; an empty text is one empty value."""
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def key(value: str) -> str:
    """A name part for an arbitrary string: itself when short and plain, else ``#`` and its SHA-256.

    Plain keys never contain ``/`` or start with ``#`` or ``!``, so they cannot collide with a digest, a shard
    suffix or a directory attribute.
    """
    if _PLAIN_KEY.fullmatch(value):
        return value
    return "#" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


def bucket(container_id: str) -> str:
    """The item a container's record lives in: its first 12 characters (a Docker ID's short ID, a Fargate runtime
    ID's task ID prefix), shared by every ID with that prefix."""
    if _PREFIX.fullmatch(container_id):
        return container_id[:12]
    return key(container_id)


def is_prefix(prefix: str) -> bool:
    return bool(_PREFIX.fullmatch(prefix))


def slot_item(bucket_name: str, slot: int) -> str:
    return bucket_name if slot == 0 else f"{bucket_name}/{slot}"


def slot_of(item: str) -> tuple[str, int]:
    """The bucket and slot of a slot item's name (``slot_item`` undone)."""
    bucket_name, _, slot = item.partition("/")
    return bucket_name, int(slot or 0)


def shard_item(family: str, shard: int) -> str:
    return family if shard == 0 else f"{family}/{shard}"


def task_family(task_id: str) -> str:
    return "task/" + key(task_id)


def service_family(cluster_name: str, service_name: str) -> str:
    # Both names are free text of up to 1 KiB each: always a digest, so the item name stays short.
    joined = f"{cluster_name}\0{service_name}".encode("utf-8", "surrogatepass")
    return "service/" + hashlib.sha256(joined).hexdigest()


# --- container records -----------------------------------------------------------------------------------


def record_attributes(record: dict[str, str]) -> dict[str, str]:
    """The attributes that hold one record: its ID, the number of chunks, its status and the chunks of its JSON.

    Chunks left over from a longer earlier version stay in the item (there is no delete in the write path) and
    are ignored because ``record.n`` says how many count.
    """
    parts = chunks(dumps(record))
    if len(parts) > RECORD_MAX_CHUNKS:
        raise ValueError(f"record of {record.get('container_id')!r} is {len(parts)} KiB of JSON, too large")
    attrs = {
        RECORD_ID: dumps(record.get("container_id", "")),
        RECORD_COUNT: str(len(parts)),
        LAST_SEEN: record.get("last_seen", ""),
        RECORD_STATUS: record.get("known_status", ""),
    }
    attrs.update({f"record.{i}": part for i, part in enumerate(parts)})
    return attrs


def record_from(attrs: dict[str, str]) -> dict[str, str] | None:
    """The record held by one slot item, or None when the slot is empty or torn."""
    count = attrs.get(RECORD_COUNT)
    if not count:
        return None
    parts = [attrs.get(f"record.{i}") for i in range(int(count))]
    if any(part is None for part in parts):
        return None
    return json.loads("".join(parts))  # type: ignore[arg-type]


# --- sharded families: sets and logs that can grow past one item ------------------------------------------


def entry_attributes(entry_key: str, text: str) -> dict[str, str]:
    """One entry of a family: one attribute, or a ``*N`` head and N chunks when the text is over 1 KiB.

    Entry texts are JSON, which never starts with ``*``.
    """
    if len(text) <= MAX_BYTES:
        return {entry_key: text}
    parts = chunks(text)
    return {entry_key: f"*{len(parts)}", **{f"{entry_key}/{i}": part for i, part in enumerate(parts)}}


def entries_of(attrs: dict[str, str]) -> dict[str, str]:
    """The entries held by one shard, by key."""
    found = {}
    for name, value in attrs.items():
        if name.startswith("!") or "/" in name:
            continue
        if value.startswith("*"):
            parts = [attrs.get(f"{name}/{i}") for i in range(int(value[1:]))]
            if any(part is None for part in parts):
                continue
            value = "".join(parts)  # type: ignore[arg-type]
        found[name] = value
    return found


@dataclass
class Family:
    """What was read of one sharded family: its shards' attributes and their entries."""

    name: str
    shards: list[dict[str, str]] = field(default_factory=lambda: [{}])

    @property
    def entries(self) -> dict[str, str]:
        merged: dict[str, str] = {}
        for attrs in self.shards:
            merged.update(entries_of(attrs))
        return merged

    def plan(self, new: dict[str, str]) -> tuple[dict[str, dict[str, str]], int | None]:
        """Where to put the ``new`` entries not held yet: attributes by item name, and the new shard count.

        Entries go to the last shard while it has room, then to fresh shards; an entry's pairs never span
        two shards. Placement depends only on what was read, so a retry after a failed write puts the same
        entries in the same places.
        """
        last = len(self.shards) - 1
        used = sum(1 for name in self.shards[last] if name != SHARDS)
        held = self.entries
        writes: dict[int, dict[str, str]] = {}
        for entry_key, text in new.items():
            if entry_key in held:
                continue
            attrs = entry_attributes(entry_key, text)
            room = SHARD_PAIRS - (1 if last == 0 else 0)
            if used and used + len(attrs) > room:
                last, used = last + 1, 0
            writes.setdefault(last, {}).update(attrs)
            held[entry_key] = text
            used += len(attrs)
        by_item = {shard_item(self.name, shard): attrs for shard, attrs in writes.items()}
        return by_item, (last + 1 if last + 1 > len(self.shards) else None)


# --- a container's events, kept in its record item ------------------------------------------------------

#: Prefix of the attributes that hold a container's events in its record item (``event.KEY``).
EVENT = "event."
#: Pairs a record item gives its container's events (a life takes about 4; a 1 KiB event takes 1). Every read
#: of the record carries them, so they stay few: later events go to the task's event log, which grows without
#: bound.
EVENT_PAIRS = 32
#: Attribute of a record item whose share for events was used up: the container's later events are in the log.
EVENTS_LOGGED = "!events-logged"


def event_attributes(entry_key: str, arrival: int, event: dict[str, str]) -> dict[str, str]:
    """The pairs that hold one event in a record item: ``[arrival, event]`` as in a task's event log."""
    return entry_attributes(EVENT + entry_key, dumps([arrival, event]))


def events_in(attrs: dict[str, str]) -> dict[str, str]:
    """The events a record item holds, by key, each as ``[arrival, event]`` JSON."""
    return entries_of({name[len(EVENT) :]: value for name, value in attrs.items() if name.startswith(EVENT)})


def event_pairs(attrs: dict[str, str]) -> int:
    return sum(1 for name in attrs if name.startswith(EVENT))


def last_arrival(texts: Iterable[str]) -> int:
    """The highest arrival number among ``[arrival, event]`` texts (0: none)."""
    return max((json.loads(text)[0] for text in texts), default=0)


def arrivals(last: int, wanted: Iterable[int]) -> list[int]:
    """Arrival numbers for new entries after ``last``, in order: each as wanted, or one past the one before."""
    numbers = []
    for number in wanted:
        last = max(last + 1, number)
        numbers.append(last)
    return numbers
