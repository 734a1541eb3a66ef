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

A fourth, ``by_host`` (``host``, ``sk``), sparse and keys only, names the not-stopped containers of each host
(``server.liveness.host_key``): a host's full snapshot is reconciled against it with one Query, and whatever
the snapshot no longer lists is stopped as vanished in its record's put. Transitions a report does not name
(``server.records.untold``) ride in their record's put too. Host leases are items in one partition, ``H``, read
in one paged Query; notes are items of their own (``hosts``). Writes that change what service discovery shows
move a sharded counter (``shown``).

``items`` lays records and events out in items; ``client`` makes the table ready (its keys and indexes) and
the requests; ``hosts`` keeps leases and notes and finds a host's containers; ``DynamoDBStore`` here merges
reports into records and answers the lookups.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Collection, Iterable
from typing import Any

from server.liveness import host_key
from server.lru import LRU
from server.records import seen_since, untold, vanished
from server.store.aws_store import changed_beyond_liveness, flag, reject_unknown, worth_writing
from server.store.base import Event, Record, StoreUnavailable
from server.store.dynamodb.addresses import AddressIndex
from server.store.dynamodb.hosts import REMEMBERED_HOSTS
from server.store.dynamodb.items import (
    EVENT_EXTRAS,
    EVENT_FIELDS,
    OLD_RUNNING_KEY,
    RUNNING,
    RUNNING_SHARDS,
    TTL_ATTRIBUTE,
    Held,
    decode,
    decode_events,
    encode,
    encode_events,
    in_order,
    record_key,
    running_key,
    service_key,
    write_units,
)
from server.store.dynamodb.shown import ShownGeneration

__all__ = ["DynamoDBStore"]


class DynamoDBStore(ShownGeneration, AddressIndex):
    """The store in one DynamoDB table; each lookup is a read by key or one Query."""

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
        reject_unknown("dynamodb", unknown)
        if not (3 <= len(table) <= 255 and all(c.isascii() and (c.isalnum() or c in "_.-") for c in table)):
            raise ValueError(f"invalid DynamoDB table name {table!r} (3 to 255 of A-Z a-z 0-9 _ . -)")
        self.table = table
        self.create = create if isinstance(create, bool) else flag("dynamodb", "create", create)
        self.keep_for(retention_days, clock)
        self._renewals = LRU(REMEMBERED_HOSTS)
        self.connect(
            region,
            endpoint_url,
            max_workers=max_workers,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            max_attempts=max_attempts,
            last_seen_resolution=last_seen_resolution,
            cache_size=cache_size,
        )
        self.start()

    # --- reading records -----------------------------------------------------------------------------------

    def _held_of(self, item: dict[str, Any] | None) -> Held:
        if item is None:
            return Held(None)
        version = int(item["v"]["N"])
        if not self._live(item):
            return Held(None, version)
        record = decode(item)
        return Held(record, version, decode_events(item, record), item.get("ix", {}).get("S", ""))

    def _read_held(self, container_ids: Iterable[str]) -> dict[str, Held]:
        """Each container's record as stored now (Held(None) when there is none), remembered for the next report."""
        wanted = list(dict.fromkeys(container_ids))
        found = {item["sk"]["S"]: self._held_of(item) for item in self._get_items([record_key(c) for c in wanted])}
        held = {c: found.get(c, Held(None)) for c in wanted}
        for container_id, copy in held.items():
            if copy.record is not None:
                self._cache.put(container_id, copy)
        return held

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

    def _item(
        self, record: Record, version: int, events: tuple[tuple[Event, str], ...] = (), indexed: str = ""
    ) -> dict[str, Any]:
        item: dict[str, Any] = {
            **record_key(record["container_id"]),
            "v": {"N": str(version)},
            "r": {"B": encode(record)},
        }
        if indexed:
            item["ix"] = {"S": indexed}
        if events:
            item["ev"] = {"B": encode_events(record, events)}
        if record.get("task_id"):
            item["task"] = {"S": record["task_id"]}
        if record.get("service_name"):
            item["svc"] = {"S": service_key(record.get("cluster_name", ""), record["service_name"])}
        if record.get("known_status") == RUNNING:
            item["run"] = {"S": running_key(record["container_id"])}
        if record.get("known_status") != "STOPPED" and (host := host_key(record)):
            item["host"] = {"S": host}
        item.update(self._expires(record.get("last_seen", "")))
        return item

    def _write(self, held: Held, new: Record, events: tuple[tuple[Event, str], ...] | None = None) -> bool:
        """Put ``new`` with ``events`` (by default those held) if the record is still as ``held`` says; False (and
        forget it) if someone wrote first."""
        version = (held.version or 0) + 1
        events = held.events if events is None else events
        indexed = self._index(held, new)
        if not self._put(self._item(new, version, events, indexed), **held.condition):
            self._cache.drop(new["container_id"])
            return False
        self._cache.put(new["container_id"], Held(new, version, events, indexed))
        return True

    def _save(self, changes: list[tuple[Held, Record]]) -> set[str]:
        """Write changed records ``(held, new)``; the IDs whose conditional put lost a race."""
        landed = self.pool.map(lambda change: self._write(*change), changes)
        self._count_shown((held.record, new) for (held, new), ok in zip(changes, landed, strict=True) if ok)
        return {new["container_id"] for (_, new), ok in zip(changes, landed, strict=True) if not ok}

    # --- the interface -------------------------------------------------------------------------------------

    def upsert_containers(self, records: Iterable[Record], now: str) -> list[Record]:
        return self._record(list(records), [], now, told_only=True)[0]

    def add_events(self, events: Iterable[Event]) -> int:
        return self._record([], list(events), "", told_only=True)[1]

    def record_report(
        self, records: list[Record], events: list[Event], now: str, full: bool = False, host: Record | None = None
    ) -> tuple[list[Record], int]:
        """Each container's merged record and its new events in one conditional put, with the transitions the
        report did not name (``server.records.untold``) and, for a full snapshot, its host's unlisted containers
        stopped as vanished (found through ``by_host``) with theirs; the events that do not fit in their record's
        item (see ``_placed``) as items of their own. Then the host's lease, when due (``_renew``)."""
        return self._record(records, events, now, full, host)

    def _record(
        self,
        records: list[Record],
        events: list[Event],
        now: str,
        full: bool = False,
        host: Record | None = None,
        told_only: bool = False,
    ) -> tuple[list[Record], int]:
        """``record_report``; with ``told_only``, the report's own events and no others (``upsert_containers``,
        ``add_events``)."""
        self._ready_to_use()
        key = host_key(host or {})
        reports: dict[str, list[Record]] = {}
        for entry in records:
            reports.setdefault(entry["container_id"], []).append(entry)
        arrival = time.time_ns()
        own: dict[str, dict[str, tuple[Event, str]]] = {}
        for n, event in enumerate(events):
            own.setdefault(event["container_id"], {}).setdefault(event["event_id"], (event, f"{arrival:020d}{n:06d}"))
        gone = self._unlisted(key, reports) if full and key else []
        moment = max((entry.get("sample_time", "") for entry in records), default="") or now
        pending = list(dict.fromkeys([*reports, *own, *gone]))
        created: list[Record] = []
        stored = 0
        apart: list[tuple[Event, str]] = []
        known = self._cached_or_read_held(pending)
        for attempt in range(self.MERGE_TRIES):
            if attempt:  # another writer changed these since they were read (or remembered): read them again
                known = self._read_held(pending)
            changes, first = self._merged({cid: reports[cid] for cid in pending if cid in reports}, known, now)
            derived = [] if told_only else untold([(held.record, new) for held, new in changes], events)
            for cid in (cid for cid in gone if cid in pending and cid not in reports):
                held = known[cid]
                record = held.record
                stopping = record and record.get("known_status") != "STOPPED" and not seen_since(record, moment)
                if stopping and host_key(record) == key:
                    stopped, said = vanished(record, moment)
                    changes.append((held, stopped))
                    derived += said
            told = {cid: dict(own.get(cid, {})) for cid in pending}
            for n, event in enumerate(derived, start=len(events)):
                told[event["container_id"]].setdefault(event["event_id"], (event, f"{arrival:020d}{n:06d}"))
            merged = {new["container_id"]: new for _, new in changes}
            writes, spills = [], {}
            for cid in pending:
                held, record = known[cid], merged.get(cid, known[cid].record)
                kept, spills[cid] = self._placed(held, record, list(told[cid].values()))
                if record is not None and (cid in merged or len(kept) > len(held.events)):
                    writes.append((held, record, kept))
            lost = self._save_with_events(writes)
            created += [record for cid, record in first.items() if cid not in lost]
            stored += sum(
                1
                for held, new, kept in writes
                if new["container_id"] not in lost
                for event, _ in kept[len(held.events) :]
                if event["event_id"] in own.get(new["container_id"], {})
            )
            apart += [spill for cid in pending if cid not in lost for spill in spills[cid]]
            pending = [cid for cid in pending if cid in lost]
            if not pending:
                landed = self.pool.map(lambda spill: self._put_event(*spill), apart)
                stored += sum(
                    1
                    for (event, _), new in zip(apart, landed, strict=True)
                    if new and event["event_id"] in own.get(event["container_id"], {})
                )
                self._renew(key, now)
                return created, stored
        raise StoreUnavailable("records kept changing under this report; try again")

    def _merged(
        self, reports: dict[str, list[Record]], known: dict[str, Any], now: str, carried: Collection[str] = ()
    ) -> tuple[list[tuple[Any, Record]], dict[str, Record]]:
        """As every merging store, but a record whose only change is when it was sampled (``sample_time``, new in
        every snapshot an agent sends) and seen is written only once ``last_seen`` is older than the resolution:
        else every resync would rewrite every record it lists."""
        changes, first = super()._merged(reports, known, now, carried)
        return [
            (held, new)
            for held, new in changes
            if held.record is None
            or changed_beyond_liveness(held.record, new)
            or worth_writing({**held.record, "sample_time": ""}, {**new, "sample_time": ""}, self.last_seen_resolution)
        ], first

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
        units = write_units(self._item(record, (held.version or 0) + 1, (), held.indexed))
        for event, arrival in new:
            shaped = EVENT_FIELDS <= set(event) <= EVENT_FIELDS | EVENT_EXTRAS
            fits = shaped and event["task_id"] == record.get("task_id")
            grown = self._item(record, (held.version or 0) + 1, (*kept, (event, arrival)), held.indexed)
            if fits and write_units(grown) == units:
                kept += ((event, arrival),)
            else:
                apart.append((event, arrival))
        return kept, apart

    def _save_with_events(self, writes: list[tuple[Held, Record, tuple[tuple[Event, str], ...]]]) -> set[str]:
        """Write records with their events ``(held, new, events)``; the IDs whose conditional put lost a race."""
        landed = self.pool.map(lambda write: self._write(*write), writes)
        self._count_shown((held.record, new) for (held, new, _), ok in zip(writes, landed, strict=True) if ok)
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
        return self._put(
            item,
            ConditionExpression=f"attribute_not_exists(pk) OR {TTL_ATTRIBUTE} < :now",
            ExpressionAttributeValues={":now": {"N": str(int(self.clock()))}},
        )

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
        pages = self.pool.map(self._running_at, keys)
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
