"""How the DynamoDB store lays records and events out in items: keys, compressed records and events, sizes in
write units. Everything here is pure (no requests)."""

from __future__ import annotations

import hashlib
import json
import math
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from server.records import event_id
from server.store.base import Event, Record

#: The item attribute DynamoDB's TTL deletes items by (seconds since the epoch).
TTL_ATTRIBUTE = "expires_at"
RUNNING = "RUNNING"
#: Key values of the ``running`` index, queried side by side: one partition key takes at most 1,000 writes a
#: second, so the running containers' index writes are spread over this many.
RUNNING_SHARDS = 10
#: The one ``running`` key of items written before it was sharded; they move at their next write.
OLD_RUNNING_KEY = RUNNING
#: The partition of the host leases (``lease_key``).
LEASES = "H"
#: The bytes one write unit covers: a record takes events in while its item still costs the same units.
WRITE_UNIT = 1024
#: The fields of an event kept in its record's item (the container's ID and task are the record's).
EVENT_FIELDS = frozenset(("event_id", "container_id", "task_id", "event", "from", "to", "timestamp"))
#: What else an event kept in its record's item may carry: the name of the token that wrote it.
EVENT_EXTRAS = frozenset(("by",))


@dataclass(frozen=True)
class Held:
    """A record as last read or written, its version and the events its item holds (each with its arrival).
    ``version`` None: no item (a new container); a version with ``record`` None: an expired item that TTL has not
    deleted yet, overwritten as new."""

    record: Record | None
    version: int | None = None
    events: tuple[tuple[Event, str], ...] = ()
    #: What the item says of the record's address index items (``dynamodb.addresses``): "" for none.
    indexed: str = ""

    @property
    def condition(self) -> dict[str, Any]:
        """Under what a write merged against this copy may land: nobody wrote since."""
        if self.version is None:
            return {"ConditionExpression": "attribute_not_exists(pk)"}
        return {"ConditionExpression": "v = :v", "ExpressionAttributeValues": {":v": {"N": str(self.version)}}}


def record_key(container_id: str) -> dict[str, dict[str, str]]:
    return {"pk": {"S": "C#" + container_id[:12]}, "sk": {"S": container_id}}


def lease_key(host: str) -> dict[str, dict[str, str]]:
    """Where a host's lease is: every lease in one partition, so that one paged Query reads them all."""
    return {"pk": {"S": LEASES}, "sk": {"S": host}}


def note_key(key: str) -> dict[str, dict[str, str]]:
    return {"pk": {"S": "N#" + key}, "sk": {"S": "N"}}


def running_key(container_id: str) -> str:
    return f"{RUNNING}#{zlib.crc32(container_id.encode()) % RUNNING_SHARDS}"


def item_size(item: dict[str, Any]) -> int:
    """DynamoDB's size of an item: each attribute's name and value in bytes (a number: 1 byte per 2 digits + 1)."""
    size = 0
    for name, value in item.items():
        ((kind, data),) = value.items()
        size += len(name.encode())
        if kind == "S":
            size += len(data.encode())
        elif kind == "B":
            size += len(data)
        elif kind == "N":
            size += math.ceil(len(data.lstrip("-").replace(".", "").strip("0") or "0") / 2) + 1
    return size


def write_units(item: dict[str, Any]) -> int:
    return math.ceil(item_size(item) / WRITE_UNIT)


def service_key(cluster_name: str, service_name: str) -> str:
    # Both names are free text of up to 1 KiB each: a digest keeps the index key short.
    return hashlib.sha256(f"{cluster_name}\0{service_name}".encode("utf-8", "surrogatepass")).hexdigest()


def encode(record: Record) -> bytes:
    text = json.dumps(record, ensure_ascii=True, separators=(",", ":"), sort_keys=True)
    return zlib.compress(text.encode("ascii"), 9)


def decode(item: dict[str, Any]) -> Record:
    return json.loads(zlib.decompress(item["r"]["B"]))


def encode_events(record: Record, events: Iterable[tuple[Event, str]]) -> bytes:
    """A record's events as rows ``[event, from, to, timestamp, arrival]``, plus the ``event_id`` only where it is
    not the one derived from the change (the agent's and ECS's are): an ID is 45 bytes no compression shrinks;
    then the writer's name (``by``) where there is one, after the ID ("" when derived)."""
    rows = []
    for event, arrival in events:
        row = [event["event"], event["from"], event["to"], event["timestamp"], arrival]
        derived = event["event_id"] == event_id(record["container_id"], *row[:3])
        if not derived or event.get("by"):
            row.append("" if derived else event["event_id"])
        if event.get("by"):
            row.append(event["by"])
        rows.append(row)
    return zlib.compress(json.dumps(rows, ensure_ascii=True, separators=(",", ":")).encode("ascii"), 9)


def decode_events(item: dict[str, Any], record: Record) -> tuple[tuple[Event, str], ...]:
    if "ev" not in item:
        return ()
    cid, task = record["container_id"], record.get("task_id", "")
    found = []
    for kind, old, new, moment, arrival, *given in json.loads(zlib.decompress(item["ev"]["B"])):
        named = given[0] if given and given[0] else event_id(cid, kind, old, new)
        event = {"event_id": named, "container_id": cid, "task_id": task, "event": kind, "from": old, "to": new}
        by = {"by": given[1]} if len(given) > 1 else {}
        found.append(({**event, "timestamp": moment, **by}, arrival))
    return tuple(found)


def in_order(events: Iterable[tuple[Event, str]]) -> list[Event]:
    """Events oldest first (by timestamp, then arrival), each container's ``event_id`` once."""
    unique = {(event["container_id"], event["event_id"]): (event, arrival) for event, arrival in events}
    ordered = sorted(unique.values(), key=lambda pair: (pair[0].get("timestamp") or "", pair[1]))
    return [event for event, _ in ordered]


def epoch(moment: str) -> int:
    return int(datetime.fromisoformat(moment).timestamp())
