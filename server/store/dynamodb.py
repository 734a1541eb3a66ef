"""The AWS DynamoDB store: one on-demand table whose keys are the API's lookups.

Items (``pk``, ``sk``; full table in docs/dynamodb.md):

- a container's record: ``C#`` + the first 12 characters of its ID, and the full ID. A prefix lookup is one
  ``Query`` with ``begins_with`` on the sort key; a full ID is one ``GetItem``. The record is zlib-compressed JSON
  in ``r`` (a typical record is 1.4 KB of JSON and 0.6 KB compressed: one write unit instead of two), with its
  version ``v``, its task ``task`` and, once it has a service, ``svc``;
- an event: ``E#`` + its task ID, and its container ID ``#`` its ``event_id``, put only if absent, so a resent
  event is stored once; ``n`` is the arrival order among equal timestamps.

Two global secondary indexes hold keys only, so that rewriting a record costs no index write: ``by_task``
(``task``, ``sk``) lists a task's containers, and ``by_service`` (``svc``, ``task``), sparse, a service's tasks.
Index queries are eventually consistent; the records they lead to are read strongly consistent. A third,
``running`` (``run``, ``sk``), sparse, holds the records of the running containers themselves, for service
discovery: a write of a running container's record also writes its index copy.

Every record write is a ``PutItem`` conditional on the version it was merged against, so replicas never lose each
other's changes: the loser re-reads and merges again. Because of that each process may merge a report against
the copy it last read or wrote (a bounded LRU) without reading first. Retention is DynamoDB's TTL on
``expires_at``; since TTL deletes lag by up to about two days, reads skip expired items themselves.
"""

from __future__ import annotations

import hashlib
import json
import logging
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
from server.store.base import Event, Record, StoreError, StoreUnavailable
from server.store.boto import MergingStore, Pool, client_config, new_client, number

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
#: that service discovery reads every running container in one paged Query and no further read.
PROJECTIONS = {"running": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["r", TTL_ATTRIBUTE]}}
RUNNING = "RUNNING"
#: DynamoDB's most keys per BatchGetItem, and rounds for the keys it leaves unprocessed under load.
BATCH_KEYS = 100
BATCH_ROUNDS = 5


@dataclass(frozen=True)
class Held:
    """A record as last read or written and its version. ``version`` None: no item (a new container); a version
    with ``record`` None: an expired item that TTL has not deleted yet, overwritten as new."""

    record: Record | None
    version: int | None = None

    @property
    def condition(self) -> dict[str, Any]:
        """Under what a write merged against this copy may land: nobody wrote since."""
        if self.version is None:
            return {"ConditionExpression": "attribute_not_exists(pk)"}
        return {"ConditionExpression": "v = :v", "ExpressionAttributeValues": {":v": {"N": str(self.version)}}}


def record_key(container_id: str) -> dict[str, dict[str, str]]:
    return {"pk": {"S": "C#" + container_id[:12]}, "sk": {"S": container_id}}


def service_key(cluster_name: str, service_name: str) -> str:
    # Both names are free text of up to 1 KiB each: a digest keeps the index key short.
    return hashlib.sha256(f"{cluster_name}\0{service_name}".encode("utf-8", "surrogatepass")).hexdigest()


def encode(record: Record) -> bytes:
    text = json.dumps(record, ensure_ascii=True, separators=(",", ":"), sort_keys=True)
    return zlib.compress(text.encode("ascii"), 9)


def decode(item: dict[str, Any]) -> Record:
    return json.loads(zlib.decompress(item["r"]["B"]))


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
        return Held(decode(item) if self._live(item) else None, version)

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

    def _item(self, record: Record, version: int) -> dict[str, Any]:
        item: dict[str, Any] = {
            **record_key(record["container_id"]),
            "v": {"N": str(version)},
            "r": {"B": encode(record)},
        }
        if record.get("task_id"):
            item["task"] = {"S": record["task_id"]}
        if record.get("service_name"):
            item["svc"] = {"S": service_key(record.get("cluster_name", ""), record["service_name"])}
        if record.get("known_status") == RUNNING:
            item["run"] = {"S": RUNNING}
        item.update(self._expires(record.get("last_seen", "")))
        return item

    def _write(self, held: Held, new: Record) -> bool:
        """Put ``new`` if the record is still as ``held`` says; False (and forget it) if someone wrote first."""
        version = (held.version or 0) + 1
        try:
            self.client.put_item(TableName=self.table, Item=self._item(new, version), **held.condition)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                self._call_failed("put_item", exc)
            self._cache.drop(new["container_id"])
            return False
        except BotoCoreError as exc:
            raise StoreUnavailable(f"DynamoDB put_item failed: {exc}") from exc
        self._cache.put(new["container_id"], Held(new, version))
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

    def add_events(self, events: Iterable[Event]) -> int:
        self._ready_to_use()
        unique: dict[tuple[str, str], Event] = {}
        for event in events:
            key = ("E#" + event.get("task_id", ""), f"{event['container_id']}#{event['event_id']}")
            unique.setdefault(key, event)
        arrival = time.time_ns()
        puts = [(key, event, f"{arrival:020d}{n:06d}") for n, (key, event) in enumerate(unique.items())]
        return sum(self._pool.map(lambda put: self._put_event(*put), puts))

    def _put_event(self, key: tuple[str, str], event: Event, arrival: str) -> bool:
        """Put one event unless it is stored (and not expired); whether it was new."""
        item = {
            "pk": {"S": key[0]},
            "sk": {"S": key[1]},
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
        # One paged Query on the sparse index, which carries the records. Index reads are eventually
        # consistent: a container stopped a moment ago may still be listed, which the next refresh corrects.
        self._ready_to_use()
        items = self._pages(
            IndexName="running",
            KeyConditionExpression="#run = :running",
            ExpressionAttributeNames={"#run": "run"},
            ExpressionAttributeValues={":running": {"S": RUNNING}},
        )
        found = [decode(item) for item in items if self._live(item)]
        return [record for record in found if record.get("known_status") == RUNNING]

    def update_container(self, container_id: str, fields: Record) -> None:
        self._ready_to_use()
        self._set_fields(lambda: self._read_held([container_id]).values(), fields)

    def update_task(self, task_id: str, fields: Record) -> None:
        # The service-name worker sets a task's fields moments after this process wrote its new records, maybe
        # before the index lists them: the records this process remembers for the task are read too.
        self._ready_to_use()
        mine = [cid for cid, held in self._cache.items() if held.record and held.record.get("task_id") == task_id]
        self._set_fields(lambda: self._of_task(task_id, mine), fields)

    def _events(self, task_id: str, container_id: str = "") -> list[Event]:
        condition, values = "pk = :pk", {":pk": {"S": "E#" + task_id}}
        if container_id:
            condition += " AND begins_with(sk, :c)"
            values[":c"] = {"S": container_id + "#"}
        items = self._pages(KeyConditionExpression=condition, ExpressionAttributeValues=values, ConsistentRead=True)
        found = [(json.loads(item["e"]["S"]), item["n"]["S"]) for item in items if self._live(item)]
        found.sort(key=lambda pair: (pair[0].get("timestamp") or "", pair[1]))
        return [event for event, _ in found]

    def events_of_container(self, container_id: str) -> list[Event]:
        # Events are kept per task; the record says which task the container belongs to.
        record = self.get_container(container_id)
        if record is None:
            return []
        return self._events(record.get("task_id", ""), container_id)

    def events_of_task(self, task_id: str) -> list[Event]:
        self._ready_to_use()
        return self._events(task_id)

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
