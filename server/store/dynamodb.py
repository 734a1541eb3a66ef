"""The AWS DynamoDB store: one on-demand table whose keys are the API's lookups.

Items (``pk``, ``sk``; full table in docs/dynamodb.md):

- a container's record: ``C#`` + the first 12 characters of its ID, and the full ID. A prefix lookup is one
  ``Query`` with ``begins_with`` on the sort key; a full ID is one ``GetItem``. The record is zlib-compressed JSON
  in ``r`` (a typical record is 1.4 KB of JSON and 0.6 KB compressed: one write unit instead of two), with its
  version ``v``, its task ``task`` and, once it has a service, ``svc``. The container's events travel in the same
  item, compressed in ``ev``, written by the same conditional put as the record: a report costs one write per
  container, not one per event;
- an event that does not fit there (it would make the item cost a second write unit, or it names another task,
  or its container has no record): ``E#`` + its task ID, and its container ID ``#`` its ``event_id``, put only if
  absent, so a resent event is stored once; ``n`` is the arrival order among equal timestamps.

Two global secondary indexes hold keys only, so that rewriting a record costs no index write: ``by_task``
(``task``, ``sk``) lists a task's containers, and ``by_service`` (``svc``, ``task``), sparse, a service's tasks.
Index queries are eventually consistent; the records they lead to are read strongly consistent. A third,
``running`` (``run``, ``sk``), sparse, holds the records (``r``, not the events) of the running containers, for
service discovery: a write of a running container's record also writes its index copy. Its key is one of
``RUNNING_SHARDS`` values, by container ID, so that no single key takes every running container's writes.

Every record write is a ``PutItem`` conditional on the version it was merged against, so replicas never lose each
other's changes: the loser re-reads and merges again. Because of that each process may merge a report against
the copy it last read or wrote (a bounded LRU) without reading first. Retention is DynamoDB's TTL on
``expires_at``; since TTL deletes lag by up to about two days, reads skip expired items themselves.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, WaiterError

from server.flags import parse_bool
from server.lru import LRU
from server.records import event_id
from server.store.aws_store import MergingStore, Pool, client_config, new_client, number
from server.store.base import Event, Record, StoreError, StoreUnavailable

log = logging.getLogger(__name__)

#: The deploy file that creates the table, named when the table is missing.
DEPLOY_FILE = "deploy/cloudformation.yaml"
TTL_ATTRIBUTE = "expires_at"
#: (attribute, key type) of the table and of each index; every key attribute is a string.
TABLE_KEYS = (("pk", "HASH"), ("sk", "RANGE"))
INDEXES = {
    "by_task": (("task", "HASH"), ("sk", "RANGE")),
    "by_service": (("svc", "HASH"), ("task", "RANGE")),
    "running": (("run", "HASH"), ("sk", "RANGE")),
}
#: What each index holds besides its keys. ``running`` (sparse: running containers only) carries the record, so
#: that service discovery reads every running container in a few paged Queries and no further read.
PROJECTIONS = {"running": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["r", TTL_ATTRIBUTE]}}
RUNNING = "RUNNING"
#: Key values of the ``running`` index, queried side by side: one partition key takes at most 1,000 writes a
#: second, so the running containers' index writes are spread over this many.
RUNNING_SHARDS = 10
#: The one ``running`` key of items written before it was sharded; they move at their next write.
OLD_RUNNING_KEY = RUNNING
#: The bytes one write unit covers: a record takes events in while its item still costs the same units.
WRITE_UNIT = 1024
#: The fields of an event kept in its record's item (the container's ID and task are the record's).
EVENT_FIELDS = frozenset(("event_id", "container_id", "task_id", "event", "from", "to", "timestamp"))
#: DynamoDB's most keys per BatchGetItem, and rounds for the keys it leaves unprocessed under load.
BATCH_KEYS = 100
BATCH_ROUNDS = 5


@dataclass(frozen=True)
class Held:
    """A record as last read or written, its version and the events its item holds (each with its arrival).
    ``version`` None: no item (a new container); a version with ``record`` None: an expired item that TTL has not
    deleted yet, overwritten as new."""

    record: Record | None
    version: int | None = None
    events: tuple[tuple[Event, str], ...] = ()

    @property
    def condition(self) -> dict[str, Any]:
        """Under what a write merged against this copy may land: nobody wrote since."""
        if self.version is None:
            return {"ConditionExpression": "attribute_not_exists(pk)"}
        return {"ConditionExpression": "v = :v", "ExpressionAttributeValues": {":v": {"N": str(self.version)}}}


def record_key(container_id: str) -> dict[str, dict[str, str]]:
    return {"pk": {"S": "C#" + container_id[:12]}, "sk": {"S": container_id}}


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
    not the one derived from the change (the agent's and ECS's are): an ID is 45 bytes no compression shrinks."""
    rows = []
    for event, arrival in events:
        row = [event["event"], event["from"], event["to"], event["timestamp"], arrival]
        if event["event_id"] != event_id(record["container_id"], *row[:3]):
            row.append(event["event_id"])
        rows.append(row)
    return zlib.compress(json.dumps(rows, ensure_ascii=True, separators=(",", ":")).encode("ascii"), 9)


def decode_events(item: dict[str, Any], record: Record) -> tuple[tuple[Event, str], ...]:
    if "ev" not in item:
        return ()
    cid, task = record["container_id"], record.get("task_id", "")
    found = []
    for kind, old, new, moment, arrival, *given in json.loads(zlib.decompress(item["ev"]["B"])):
        named = given[0] if given else event_id(cid, kind, old, new)
        event = {"event_id": named, "container_id": cid, "task_id": task, "event": kind, "from": old, "to": new}
        found.append(({**event, "timestamp": moment}, arrival))
    return tuple(found)


def in_order(events: Iterable[tuple[Event, str]]) -> list[Event]:
    """Events oldest first (by timestamp, then arrival), each container's ``event_id`` once."""
    unique = {(event["container_id"], event["event_id"]): (event, arrival) for event, arrival in events}
    ordered = sorted(unique.values(), key=lambda pair: (pair[0].get("timestamp") or "", pair[1]))
    return [event for event, _ in ordered]


def epoch(moment: str) -> int:
    return int(datetime.fromisoformat(moment).timestamp())


class DynamoDBStore(MergingStore):
    kind = "dynamodb"
    expires_itself = True  # TTL on expires_at

    def __init__(
        self,
        table: str,
        region: str | None = None,
        endpoint_url: str | None = None,
        *,
        create: bool | str = False,
        max_workers: int | str = 8,
        connect_timeout: float | str = 2.0,
        read_timeout: float | str = 5.0,
        max_attempts: int | str = 3,
        last_seen_resolution: float | str = 3600.0,
        cache_size: int | str = 10_000,
        retention_days: float = 0,
        clock: Callable[[], float] | None = None,
        **unknown: str,
    ):
        """Open the store in ``table``; with ``create`` true, create the table when it is missing.

        ``region`` and ``endpoint_url`` go straight to boto3 (which also reads ``AWS_REGION`` and
        ``AWS_ENDPOINT_URL_DYNAMODB``). ``max_attempts`` counts the first try; throttling and 5xx answers are
        retried with botocore's standard mode. ``last_seen_resolution`` (seconds): an otherwise unchanged record is
        rewritten only when its ``last_seen`` is older than this (an hour: retention counts in days), so that most
        resyncs cost nothing.
        ``cache_size``: records this process remembers to merge the next report against without a read (0: none).
        ``retention_days`` (0: keep everything): a record expires that long after its ``last_seen``, an event that
        long after its ``timestamp``.
        """
        if unknown:
            raise ValueError(f"unknown dynamodb store option(s): {', '.join(sorted(unknown))}")
        if not (3 <= len(table) <= 255 and all(c.isascii() and (c.isalnum() or c in "_.-") for c in table)):
            raise ValueError(f"invalid DynamoDB table name {table!r} (3 to 255 of A-Z a-z 0-9 _ . -)")
        self.table = table
        self.region = region or None
        self.endpoint_url = endpoint_url or None
        self.create = create if isinstance(create, bool) else _flag("create", create)
        workers = max(1, number("dynamodb", "max_workers", max_workers, int))
        self.last_seen_resolution = number("dynamodb", "last_seen_resolution", last_seen_resolution, float)
        self.keep_for(retention_days, clock)
        self.config = client_config("dynamodb", max_attempts, connect_timeout, read_timeout, workers)
        self._cache: LRU[str, Held] = LRU(number("dynamodb", "cache_size", cache_size, int))
        self._pool = Pool(workers, "dynamodb")
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._ready = False
        self.client = self._new_client()
        try:
            self._ensure_table()
        except StoreUnavailable as exc:
            # The process still starts: /health answers 503 and the next call tries again.
            log.warning("DynamoDB not reachable at start, will retry: %s", exc)

    # --- plumbing ------------------------------------------------------------------------------------------

    def _new_client(self) -> Any:
        return new_client("dynamodb", self.region, self.endpoint_url, self.config)

    def _forked(self) -> None:
        # A client made before gunicorn forked is not safe to use in the worker.
        if self._pid != os.getpid():
            with self._lock:
                if self._pid != os.getpid():
                    self.client, self._pid = self._new_client(), os.getpid()

    def _call(self, operation: str, **params: Any) -> dict[str, Any]:
        """One request; a refused condition is raised as is, anything else that fails as StoreUnavailable."""
        try:
            return getattr(self.client, operation)(**params)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code == "ConditionalCheckFailedException":
                raise
            if code == "ResourceNotFoundException":
                self._ready = False
                raise StoreUnavailable(self._missing()) from exc
            raise StoreUnavailable(f"DynamoDB {operation} failed: {exc}") from exc
        except BotoCoreError as exc:
            raise StoreUnavailable(f"DynamoDB {operation} failed: {exc}") from exc

    def _missing(self) -> str:
        return (
            f"DynamoDB table {self.table!r} does not exist: create it with {DEPLOY_FILE}"
            " (or add create=true to ECS_ID_MAPPER_STORE)"
        )

    def _ensure_table(self) -> None:
        if self._ready:
            return
        with self._lock:
            if self._ready:
                return
            try:
                table = self.client.describe_table(TableName=self.table)["Table"]
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                    raise StoreUnavailable(f"DynamoDB describe_table failed: {exc}") from exc
                if not self.create:
                    raise StoreMissing(self._missing()) from None
                table = self._create_table()
            except BotoCoreError as exc:
                raise StoreUnavailable(f"DynamoDB describe_table failed: {exc}") from exc
            self._check_keys(table)
            self._ready = True

    def _create_table(self) -> dict[str, Any]:
        log.info("creating DynamoDB table %s (on-demand)", self.table)
        names = {name for keys in (TABLE_KEYS, *INDEXES.values()) for name, _ in keys}
        create = dict(
            TableName=self.table,
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"} for n in sorted(names)],
            KeySchema=_key_schema(TABLE_KEYS),
            GlobalSecondaryIndexes=[
                {
                    "IndexName": name,
                    "KeySchema": _key_schema(keys),
                    "Projection": PROJECTIONS.get(name, {"ProjectionType": "KEYS_ONLY"}),
                }
                for name, keys in INDEXES.items()
            ],
        )
        try:
            self.client.create_table(**create)
        except ClientError as exc:  # another process creating it at the same moment is fine: wait for it
            if exc.response.get("Error", {}).get("Code") != "ResourceInUseException":
                raise StoreUnavailable(f"DynamoDB create_table failed: {exc}") from exc
        except BotoCoreError as exc:
            raise StoreUnavailable(f"DynamoDB create_table failed: {exc}") from exc
        try:
            self.client.get_waiter("table_exists").wait(TableName=self.table, WaiterConfig={"Delay": 2})
        except WaiterError as exc:
            raise StoreUnavailable(f"DynamoDB table {self.table!r} did not become active: {exc}") from exc
        self._call(
            "update_time_to_live",
            TableName=self.table,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE},
        )
        return self._call("describe_table", TableName=self.table)["Table"]

    def _check_keys(self, table: dict[str, Any]) -> None:
        types = {a["AttributeName"]: a["AttributeType"] for a in table.get("AttributeDefinitions", [])}
        found = {"table": _keys_of(table.get("KeySchema", []))}
        found.update({i["IndexName"]: _keys_of(i["KeySchema"]) for i in table.get("GlobalSecondaryIndexes", [])})
        wanted = {"table": TABLE_KEYS, **INDEXES}
        wrong = [name for name, keys in wanted.items() if found.get(name) != keys]
        wrong += [f"{n} type {types[n]}" for keys in wanted.values() for n, _ in keys if types.get(n, "S") != "S"]
        if wrong:
            raise StoreMissing(
                f"DynamoDB table {self.table!r} does not have the expected keys ({', '.join(wrong)}): "
                f"expected {_describe(wanted)}, as {DEPLOY_FILE} creates it"
            )

    def _ready_to_use(self) -> None:
        self._forked()
        self._ensure_table()

    def _expires(self, moment: str) -> dict[str, dict[str, str]]:
        if not self.retention:
            return {}
        return {TTL_ATTRIBUTE: {"N": str(epoch(moment) + int(self.retention))}}

    def _live(self, item: dict[str, Any]) -> bool:
        """Whether an item has not expired (TTL deletes it some time later, up to about two days)."""
        expires = item.get(TTL_ATTRIBUTE)
        return expires is None or not self.retention or float(expires["N"]) > self.clock()

    def _pages(self, **params: Any) -> Iterator[dict[str, Any]]:
        while True:
            page = self._call("query", TableName=self.table, **params)
            yield from page.get("Items", [])
            if "LastEvaluatedKey" not in page:
                return
            params["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    # --- reading records -----------------------------------------------------------------------------------

    def _held_of(self, item: dict[str, Any] | None) -> Held:
        if item is None:
            return Held(None)
        version = int(item["v"]["N"])
        if not self._live(item):
            return Held(None, version)
        record = decode(item)
        return Held(record, version, decode_events(item, record))

    def _get_items(self, keys: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The items at ``keys`` that exist, read strongly consistent (BatchGetItem, 100 keys a request)."""
        chunks = [keys[i : i + BATCH_KEYS] for i in range(0, len(keys), BATCH_KEYS)]
        return [item for found in self._pool.map(self._get_chunk, chunks) for item in found]

    def _get_chunk(self, keys: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if len(keys) == 1:
            item = self._call("get_item", TableName=self.table, Key=keys[0], ConsistentRead=True).get("Item")
            return [item] if item else []
        found: list[dict[str, Any]] = []
        request = {self.table: {"Keys": keys, "ConsistentRead": True}}
        for round_ in range(BATCH_ROUNDS):
            answer = self._call("batch_get_item", RequestItems=request)
            found += answer.get("Responses", {}).get(self.table, [])
            request = answer.get("UnprocessedKeys") or {}
            if not request:
                return found
            time.sleep(0.05 * 2**round_)  # DynamoDB left keys over under load: back off before asking again
        raise StoreUnavailable(f"DynamoDB left keys unread after {BATCH_ROUNDS} rounds; try again")

    def _read_held(self, container_ids: Iterable[str]) -> dict[str, Held]:
        """Each container's record as stored now (Held(None) when there is none), remembered for the next report."""
        wanted = list(dict.fromkeys(container_ids))
        found = {item["sk"]["S"]: self._held_of(item) for item in self._get_items([record_key(c) for c in wanted])}
        held = {c: found.get(c, Held(None)) for c in wanted}
        for container_id, copy in held.items():
            if copy.record is not None:
                self._cache.put(container_id, copy)
        return held

    def _cached_or_read_held(self, container_ids: list[str]) -> dict[str, Held]:
        """Records as this process last saw them where it remembers them, else as read now."""
        hits = {c: held for c in container_ids if (held := self._cache.get(c)) is not None}
        return {**hits, **self._read_held([c for c in container_ids if c not in hits])}

    def _records_at(self, index: str, condition: str, values: dict[str, Any], also: Iterable[str] = ()) -> list[Held]:
        """The live records an index query names (and the container IDs in ``also``), read strongly consistent."""
        keys = {
            item["sk"]["S"]: {"pk": item["pk"], "sk": item["sk"]}
            for item in self._pages(IndexName=index, KeyConditionExpression=condition, ExpressionAttributeValues=values)
        }
        keys.update({cid: record_key(cid) for cid in also if cid not in keys})
        found = (self._held_of(item) for item in self._get_items(list(keys.values())))
        return [held for held in found if held.record is not None]

    def _of_task(self, task_id: str, also: Iterable[str] = ()) -> list[Held]:
        if not task_id:
            return []
        found = self._records_at("by_task", "task = :t", {":t": {"S": task_id}}, also)
        return [held for held in found if held.record and held.record.get("task_id") == task_id]

    # --- writing records -----------------------------------------------------------------------------------

    def _item(self, record: Record, version: int, events: tuple[tuple[Event, str], ...] = ()) -> dict[str, Any]:
        item: dict[str, Any] = {
            **record_key(record["container_id"]),
            "v": {"N": str(version)},
            "r": {"B": encode(record)},
        }
        if events:
            item["ev"] = {"B": encode_events(record, events)}
        if record.get("task_id"):
            item["task"] = {"S": record["task_id"]}
        if record.get("service_name"):
            item["svc"] = {"S": service_key(record.get("cluster_name", ""), record["service_name"])}
        if record.get("known_status") == RUNNING:
            item["run"] = {"S": running_key(record["container_id"])}
        item.update(self._expires(record.get("last_seen", "")))
        return item

    def _write(self, held: Held, new: Record, events: tuple[tuple[Event, str], ...] | None = None) -> bool:
        """Put ``new`` with ``events`` (by default those held) if the record is still as ``held`` says; False (and
        forget it) if someone wrote first."""
        version = (held.version or 0) + 1
        events = held.events if events is None else events
        try:
            self.client.put_item(TableName=self.table, Item=self._item(new, version, events), **held.condition)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                self._call_failed("put_item", exc)
            self._cache.drop(new["container_id"])
            return False
        except BotoCoreError as exc:
            raise StoreUnavailable(f"DynamoDB put_item failed: {exc}") from exc
        self._cache.put(new["container_id"], Held(new, version, events))
        return True

    def _call_failed(self, operation: str, exc: ClientError) -> None:
        if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            self._ready = False
            raise StoreUnavailable(self._missing()) from exc
        raise StoreUnavailable(f"DynamoDB {operation} failed: {exc}") from exc

    def _save(self, changes: list[tuple[Held, Record]]) -> set[str]:
        """Write changed records ``(held, new)``; the IDs whose conditional put lost a race."""
        landed = self._pool.map(lambda change: self._write(*change), changes)
        return {new["container_id"] for (_, new), ok in zip(changes, landed, strict=True) if not ok}

    # --- the interface -------------------------------------------------------------------------------------

    def upsert_containers(self, records: Iterable[Record], now: str) -> list[Record]:
        return self.record_report(list(records), [], now)[0]

    def add_events(self, events: Iterable[Event]) -> int:
        return self.record_report([], list(events), "")[1]

    def record_report(
        self, records: list[Record], events: list[Event], now: str, full: bool = False
    ) -> tuple[list[Record], int]:
        """Each container's merged record and its new events in one conditional put; the events that do not fit
        there (see ``_placed``) as items of their own. ``full`` changes nothing here."""
        self._ready_to_use()
        reports: dict[str, list[Record]] = {}
        for entry in records:
            reports.setdefault(entry["container_id"], []).append(entry)
        arrival = time.time_ns()
        incoming: dict[str, dict[str, tuple[Event, str]]] = {}
        for n, event in enumerate(events):
            incoming.setdefault(event["container_id"], {}).setdefault(
                event["event_id"], (event, f"{arrival:020d}{n:06d}")
            )
        pending = list(dict.fromkeys([*reports, *incoming]))
        created: list[Record] = []
        stored = 0
        apart: list[tuple[Event, str]] = []
        known = self._cached_or_read_held(pending)
        for attempt in range(self.MERGE_TRIES):
            if attempt:  # another writer changed these since they were read (or remembered): read them again
                known = self._read_held(pending)
            changes, first = self._merged({cid: reports[cid] for cid in pending if cid in reports}, known, now)
            merged = {new["container_id"]: new for _, new in changes}
            writes, spills = [], {}
            for cid in pending:
                held, record = known[cid], merged.get(cid, known[cid].record)
                kept, spills[cid] = self._placed(held, record, list(incoming.get(cid, {}).values()))
                if record is not None and (cid in merged or len(kept) > len(held.events)):
                    writes.append((held, record, kept))
            lost = self._save_with_events(writes)
            created += [record for cid, record in first.items() if cid not in lost]
            stored += sum(len(kept) - len(held.events) for held, new, kept in writes if new["container_id"] not in lost)
            apart += [spill for cid in pending if cid not in lost for spill in spills[cid]]
            pending = [cid for cid in pending if cid in lost]
            if not pending:
                return created, stored + sum(self._pool.map(lambda spill: self._put_event(*spill), apart))
        raise StoreUnavailable("records kept changing under this report; try again")

    def _placed(
        self, held: Held, record: Record | None, events: list[tuple[Event, str]]
    ) -> tuple[tuple[tuple[Event, str], ...], list[tuple[Event, str]]]:
        """The events the record's item will hold (those held, then the new ones that fit) and those that go
        apart: when the record is absent, when an event names another task or has other fields, or when taking
        it in would make the item cost more write units than the record alone."""
        known = {event["event_id"] for event, _ in held.events}
        new = [(event, arrival) for event, arrival in events if event["event_id"] not in known]
        if record is None or not new:
            return held.events, new
        kept, apart = held.events, []
        units = write_units(self._item(record, (held.version or 0) + 1))
        for event, arrival in new:
            fits = set(event) == EVENT_FIELDS and event["task_id"] == record.get("task_id")
            if fits and write_units(self._item(record, (held.version or 0) + 1, (*kept, (event, arrival)))) == units:
                kept += ((event, arrival),)
            else:
                apart.append((event, arrival))
        return kept, apart

    def _save_with_events(self, writes: list[tuple[Held, Record, tuple[tuple[Event, str], ...]]]) -> set[str]:
        """Write records with their events ``(held, new, events)``; the IDs whose conditional put lost a race."""
        landed = self._pool.map(lambda write: self._write(*write), writes)
        return {new["container_id"] for (_, new, _), ok in zip(writes, landed, strict=True) if not ok}

    def _put_event(self, event: Event, arrival: str) -> bool:
        """Put one event as an item of its own unless it is stored (and not expired); whether it was new."""
        item = {
            "pk": {"S": "E#" + event.get("task_id", "")},
            "sk": {"S": f"{event['container_id']}#{event['event_id']}"},
            "e": {"S": json.dumps(event, ensure_ascii=True, separators=(",", ":"))},
            "n": {"S": arrival},
            **self._expires(event.get("timestamp", "")),
        }
        try:
            self.client.put_item(
                TableName=self.table,
                Item=item,
                ConditionExpression=f"attribute_not_exists(pk) OR {TTL_ATTRIBUTE} < :now",
                ExpressionAttributeValues={":now": {"N": str(int(self.clock()))}},
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            self._call_failed("put_item", exc)
        except BotoCoreError as exc:
            raise StoreUnavailable(f"DynamoDB put_item failed: {exc}") from exc
        return True

    def get_container(self, container_id: str) -> Record | None:
        self._ready_to_use()
        return self._read_held([container_id])[container_id].record

    def find_containers(self, prefix: str, limit: int) -> list[Record]:
        self._ready_to_use()
        items = self._pages(
            KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
            ExpressionAttributeValues={":pk": {"S": "C#" + prefix[:12]}, ":prefix": {"S": prefix}},
            ConsistentRead=True,
        )
        found = [decode(item) for item in items if self._live(item)]
        return found[:limit]  # the sort key orders them by container ID

    def containers_of_task(self, task_id: str) -> list[Record]:
        self._ready_to_use()
        found = [held.record for held in self._of_task(task_id) if held.record]
        return sorted(found, key=lambda r: (r.get("container_name", ""), r["container_id"]))

    def containers_of_service(self, cluster_name: str, service_name: str) -> list[Record]:
        self._ready_to_use()
        if not service_name:
            return []
        found = [
            held.record
            for held in self._records_at(
                "by_service", "svc = :s", {":s": {"S": service_key(cluster_name, service_name)}}
            )
            if held.record
            and held.record.get("cluster_name", "") == cluster_name
            and held.record.get("service_name", "") == service_name
        ]
        return sorted(found, key=lambda r: (r.get("task_id", ""), r.get("container_name", ""), r["container_id"]))

    def running_containers(self) -> list[Record]:
        # One paged Query per key of the sparse index, side by side; the index carries the records. Index reads
        # are eventually consistent: a container stopped a moment ago may still be listed, which the next
        # refresh corrects.
        self._ready_to_use()
        keys = [f"{RUNNING}#{shard}" for shard in range(RUNNING_SHARDS)] + [OLD_RUNNING_KEY]
        pages = self._pool.map(self._running_at, keys)
        found = [decode(item) for items in pages for item in items if self._live(item)]
        return [record for record in found if record.get("known_status") == RUNNING]

    def _running_at(self, key: str) -> list[dict[str, Any]]:
        return list(
            self._pages(
                IndexName="running",
                KeyConditionExpression="#run = :running",
                ExpressionAttributeNames={"#run": "run"},
                ExpressionAttributeValues={":running": {"S": key}},
            )
        )

    def update_container(self, container_id: str, fields: Record) -> None:
        self._ready_to_use()
        self._set_fields(lambda: self._read_held([container_id]).values(), fields)

    def update_task(self, task_id: str, fields: Record) -> None:
        # The service-name worker sets a task's fields moments after this process wrote its new records, maybe
        # before the index lists them: the records this process remembers for the task are read too.
        self._ready_to_use()
        self._set_fields(lambda: self._of_task(task_id, self._remembered(task_id)), fields)

    def _remembered(self, task_id: str) -> list[str]:
        return [cid for cid, held in self._cache.items() if held.record and held.record.get("task_id") == task_id]

    def _events_apart(self, task_id: str, container_id: str = "") -> list[tuple[Event, str]]:
        """The events stored as items of their own (see ``_placed``), of a task or of one of its containers."""
        condition, values = "pk = :pk", {":pk": {"S": "E#" + task_id}}
        if container_id:
            condition += " AND begins_with(sk, :c)"
            values[":c"] = {"S": container_id + "#"}
        items = self._pages(KeyConditionExpression=condition, ExpressionAttributeValues=values, ConsistentRead=True)
        return [(json.loads(item["e"]["S"]), item["n"]["S"]) for item in items if self._live(item)]

    def events_of_container(self, container_id: str) -> list[Event]:
        # Most events are in the record's item; the record says under which task to look for the others.
        self._ready_to_use()
        held = self._read_held([container_id])[container_id]
        if held.record is None:
            return []
        return in_order([*held.events, *self._events_apart(held.record.get("task_id", ""), container_id)])

    def events_of_task(self, task_id: str) -> list[Event]:
        # The task's records name its containers (with those this process wrote, which the index may not list
        # yet); their items hold most events, the task's partition the others.
        self._ready_to_use()
        kept = [pair for held in self._of_task(task_id, self._remembered(task_id)) for pair in held.events]
        return in_order([*kept, *self._events_apart(task_id)])

    def prune(self, limit: int) -> int:
        return 0  # DynamoDB's TTL deletes expired items; reads skip them meanwhile

    def ping(self) -> None:
        self._ready_to_use()
        self._call("get_item", TableName=self.table, Key={"pk": {"S": "!ping"}, "sk": {"S": "!ping"}})

    def close(self) -> None:
        self._pool.close()


class StoreMissing(StoreError, ValueError):
    """The table is missing or has other keys: the process stops at start with this message."""


def _flag(name: str, value: str) -> bool:
    try:
        return parse_bool(value)
    except ValueError as exc:
        raise ValueError(f"dynamodb store option {name}: {exc}") from None


def _key_schema(keys: tuple[tuple[str, str], ...]) -> list[dict[str, str]]:
    return [{"AttributeName": name, "KeyType": kind} for name, kind in keys]


def _keys_of(schema: list[dict[str, str]]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(((k["AttributeName"], k["KeyType"]) for k in schema), key=lambda k: k[1] != "HASH"))


def _describe(wanted: Mapping[str, tuple[tuple[str, str], ...]]) -> str:
    return "; ".join(f"{name}: {', '.join(f'{a} {k}' for a, k in keys)}" for name, keys in wanted.items())
