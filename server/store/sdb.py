"""The AWS SimpleDB store: every lookup by ID is a consistent GetAttributes by name; only retention (records not seen
for long) and the running containers (for service discovery) are found with a Select.

Three domains, ``PREFIX.containers``, ``PREFIX.indexes`` and ``PREFIX.events`` (layout in ``sdb_items``):

- a container's record lives in the bucket item named by its 12-hex short ID (slot 0), or in slot item
  ``SHORT/N`` when other containers share that short ID, so a full ID or a 12-hex prefix costs one read;
- ``indexes`` holds ``task/TASK`` (the task's container IDs) and ``service/DIGEST`` (the service's task IDs);
- a container's events live in its record item and go out in the record's own conditional put; ``events`` holds
  ``task/TASK``, the task's event log, for the events that cannot (see ``record_report``), and is read with them.

Sets and logs that can grow are sharded families: shard 0 says how many shards there are.

Concurrency and cost: every record write is a PutAttributes conditional on the record's revision (``!rev``) as
read, so replicas that merge the same container at once never lose a change: the loser re-reads and re-merges.
Because of that, each process may remember (a bounded LRU) the records it last read or wrote and merge a later
report against that copy without reading: a stale copy only costs a refused write and a re-read. Entries that
hardly ever fill an item (a container in its task's index: ECS allows 10 per task) are put into shard 0
without reading the family first; only when SimpleDB refuses the put (item full, or the family has more
shards) is the family read. Helpers named ``_read_*`` always read SimpleDB; ``_cached_or_read_held``, on the
write path only, is the one that consults the cache, so lookups answer the same on every replica. Details and
request costs: docs/simpledb.md.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError

from server.lru import LRU
from server.records import format_time
from server.store import sdb_hosts as hosts
from server.store import sdb_items as items
from server.store.aws_store import MergingStore, client_config, new_client, number
from server.store.base import Event, Record, StoreError, StoreUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

DOMAINS = ("containers", "indexes", "events")

#: SimpleDB's answers to a conditional put whose condition no longer holds: someone else wrote first.
CONFLICTS = frozenset({"ConditionalCheckFailed", "AttributeDoesNotExist"})
#: SimpleDB's answers to a put that would take an item past 256 name-value pairs.
CROWDED = frozenset({"NumberItemAttributesExceeded", "NumberSubmittedAttributesExceeded"})
#: Seconds a worker reads host reports record by record after a host's Select failed.
SELECT_PAUSE = 600.0


class Refused(StoreUnavailable):
    """SimpleDB refused a write as asked (``code``: a failed condition, a full item).

    The store handles the codes it expects; any other refusal that escapes is a 503 and the client retries.
    """

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Held:
    """A container's record as last read or written, the slot item it lives in, its revision and host label.

    ``record`` None: a new container and the free slot it will take. ``revision`` None: no revision written yet
    (a new record, or one written before revisions existed). ``host``: the item's host attribute, by which a
    Select finds the records of one host ("" for a record written before it existed).
    """

    record: Record | None
    bucket: str
    slot: int
    revision: str | None = None
    host: str = ""
    #: The keys of the events the item holds, the pairs they take and their highest arrival number.
    events: frozenset[str] = frozenset()
    event_pairs: int = 0
    arrival: int = 0
    #: Whether the item's share for events was used up: the container's later events go to the task's log.
    logged: bool = False
    #: Name-value pairs in the item as read (after a write by this process: at most this many).
    pairs: int = 0

    @classmethod
    def read(cls, record: Record | None, bucket: str, slot: int, attrs: dict[str, str]) -> Held:
        texts = items.events_in(attrs)
        return cls(
            record,
            bucket,
            slot,
            attrs.get(items.REVISION),
            attrs.get(hosts.HOST, ""),
            frozenset(texts),
            items.event_pairs(attrs),
            items.last_arrival(texts.values()),
            items.EVENTS_LOGGED in attrs,
            len(attrs),
        )

    def pairs_added(self, attrs: dict[str, str]) -> int:
        """At most how many pairs the item gains when ``attrs`` (a record's) and a revision replace its record.

        A record written before revisions existed may lack its plain ``last_seen`` and ``known_status`` too.
        """
        if self.record is None:
            return len(attrs) + 1
        held = _record_attributes(self.record)
        return sum(1 for name in attrs if name not in held) + (0 if self.revision else 3)

    @property
    def item(self) -> str:
        return items.slot_item(self.bucket, self.slot)

    @property
    def expected(self) -> dict[str, Any]:
        """The condition under which a write merged against this copy may land: nobody wrote since."""
        return _unchanged_since(self.revision)

    @property
    def next_revision(self) -> str:
        return str(int(self.revision or 0) + 1)


@dataclass(frozen=True)
class ItemEvents:
    """A container's new events as they go into its record item with the record's next write."""

    attrs: dict[str, str]
    keys: frozenset[str]
    arrival: int


class SimpleDBStore(MergingStore):
    kind = "sdb"

    def __init__(
        self,
        prefix: str,
        region: str | None = None,
        endpoint_url: str | None = None,
        *,
        max_workers: int | str = 8,
        connect_timeout: float | str = 2.0,
        read_timeout: float | str = 5.0,
        max_attempts: int | str = 3,
        last_seen_resolution: float | str = 300.0,
        cache_size: int | str = 10_000,
        retention_days: float = 0,
        clock: Callable[[], float] | None = None,
        **unknown: str,
    ):
        """Open the store whose domains start with ``prefix``; create the missing ones.

        ``region`` and ``endpoint_url`` go straight to boto3 (which also reads ``AWS_REGION`` and
        ``AWS_ENDPOINT_URL_SIMPLEDB``). ``max_attempts`` counts the first try; throttling and 5xx answers are
        retried with botocore's standard mode. ``last_seen_resolution`` (seconds): an otherwise unchanged record is
        rewritten only when its ``last_seen`` is older than this, so that a resync costs reads only.
        ``cache_size``: records this process remembers to merge the next report against without a read (0: none).
        ``retention_days``: see ``Store.prune`` (0: keep everything).
        """
        if unknown:
            raise ValueError(f"unknown sdb store option(s): {', '.join(sorted(unknown))}")
        self.keep_for(retention_days, clock)
        self.domains = {name: f"{prefix}.{name}" for name in DOMAINS}
        for domain in self.domains.values():
            if not re.fullmatch(r"[A-Za-z0-9_.-]{3,255}", domain):
                raise ValueError(f"sdb store prefix {prefix!r} makes an invalid domain name {domain!r}")
        self.region = region or None
        self.endpoint_url = endpoint_url or None
        self.max_workers = max(1, number("sdb", "max_workers", max_workers, int))
        self.last_seen_resolution = number("sdb", "last_seen_resolution", last_seen_resolution, float)
        self.config = client_config("sdb", max_attempts, connect_timeout, read_timeout, self.max_workers)
        self._lock = threading.Lock()
        self._cache: LRU[str, Held] = LRU(number("sdb", "cache_size", cache_size, int))
        # Hosts' heartbeats as last read or written here (none when records are not remembered either).
        self._beats: LRU[str, hosts.Heartbeat] = LRU(min(self._cache.size, 4096))
        self._select_paused_until = 0.0
        # What blind puts learnt of a family's shard 0: "counted" (holds the count 1), "crowded" (full, or more
        # shards: entries for it go by reading).
        self._families_seen: LRU[tuple[str, str], str] = LRU(4096)
        self._pid = os.getpid()
        self._pool: ThreadPoolExecutor | None = None
        self.client = self._new_client()
        self._ready = False
        try:
            self._ensure_domains()
        except StoreUnavailable as exc:
            # The process still starts: /health answers 503 and the next call tries again.
            log.warning("SimpleDB not reachable at start, will retry: %s", exc)

    # --- plumbing ------------------------------------------------------------------------------------------

    def _new_client(self) -> Any:
        return new_client("sdb", self.region, self.endpoint_url, self.config)

    def _forked(self) -> None:
        # A client or a thread pool made before gunicorn forked is not safe to use in the worker.
        if self._pid != os.getpid():
            with self._lock:
                if self._pid != os.getpid():
                    self.client, self._pool, self._pid = self._new_client(), None, os.getpid()

    def _call(self, operation: str, **params: Any) -> dict[str, Any]:
        try:
            return getattr(self.client, operation)(**params)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in CONFLICTS | CROWDED:
                raise Refused(code, f"SimpleDB {operation} refused: {exc}") from exc
            raise StoreUnavailable(f"SimpleDB {operation} failed: {exc}") from exc
        except (BotoCoreError, ResponseParserError) as exc:  # an answer that is not SimpleDB's XML too
            raise StoreUnavailable(f"SimpleDB {operation} failed: {exc}") from exc

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

    def _parallel(self, work: Callable[[T], R], inputs: Sequence[T]) -> list[R]:
        """``work`` over ``inputs`` on the bounded pool; waits for all, then raises the first failure."""
        if len(inputs) <= 1:
            return [work(x) for x in inputs]
        if self._pool is None:
            with self._lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(self.max_workers, thread_name_prefix="sdb")
        futures = [self._pool.submit(work, x) for x in inputs]
        wait(futures)
        return [f.result() for f in futures]

    def _get(self, domain: str, item: str) -> dict[str, str]:
        answer = self._call("get_attributes", DomainName=self.domains[domain], ItemName=item, ConsistentRead=True)
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
        self._parallel(lambda w: self._put(*w), writes)

    # --- reading buckets and families ----------------------------------------------------------------------

    def _read_buckets(self, names: Iterable[str]) -> dict[str, list[dict[str, str]]]:
        """The slot items of each bucket, slot 0 first (two rounds: slot 0, then slots it says exist)."""
        names = list(dict.fromkeys(names))
        first = self._parallel(lambda b: self._get("containers", b), names)
        slots = {name: [attrs] for name, attrs in zip(names, first, strict=True)}
        more = [(n, s) for n, a in slots.items() for s in range(1, int(a[0].get(items.SLOTS, "1")))]
        for (name, _), attrs in zip(
            more, self._parallel(lambda m: self._get("containers", items.slot_item(*m)), more), strict=True
        ):
            slots[name].append(attrs)
        return slots

    def _read_records(self, container_ids: Iterable[str]) -> dict[str, Held]:
        """Stored records by container ID, read now (and remembered for the next report); absent ones left out."""
        return self._remember_found(self._read_buckets(items.bucket(c) for c in container_ids), set(container_ids))

    def _remember_found(self, buckets: dict[str, list[dict[str, str]]], wanted: set[str]) -> dict[str, Held]:
        """The records of ``wanted`` containers in buckets just read, put in the cache for the next report."""
        found = {}
        for name, slot_attrs in buckets.items():
            for slot, attrs in enumerate(slot_attrs):
                record = items.record_from(attrs)
                if record and record.get("container_id") in wanted:
                    found[record["container_id"]] = Held.read(record, name, slot, attrs)
        for container_id, held in found.items():
            self._cache.put(container_id, held)
        return found

    def _read_held(self, container_ids: list[str]) -> dict[str, Held]:
        """Each container's record as read now, or for a new one the free slot of its bucket it will take."""
        buckets = self._read_buckets(items.bucket(c) for c in container_ids)
        found = self._remember_found(buckets, set(container_ids))
        # Slot 0 is filled first and never emptied: an empty slot 0 means an empty bucket.
        free = {name: len(slots) if items.RECORD_COUNT in slots[0] else 0 for name, slots in buckets.items()}
        for container_id in container_ids:
            if container_id not in found:
                name = items.bucket(container_id)
                free[name] = self._first_empty(name, free[name])
                found[container_id] = Held(None, name, free[name])
                free[name] += 1
        return found

    def _first_empty(self, bucket: str, slot: int) -> int:
        """``slot`` or the first empty slot after it: a slot past the count may hold a record whose count
        write failed, and a conditional create there would be refused again and again."""
        while slot > 0 and self._get("containers", items.slot_item(bucket, slot)):
            slot += 1
        return slot

    def _cached_or_read_held(self, container_ids: list[str]) -> dict[str, Held]:
        """Like ``_read_held``, but a record this process remembers is taken from its cache without a read.

        Only writes use it: a stale copy costs a refused conditional put, after which ``_read_held`` reads.
        """
        hits = {c: held for c in container_ids if (held := self._cache.get(c)) is not None}
        return {**hits, **self._read_held([c for c in container_ids if c not in hits])}

    def _read_families(self, domain: str, names: Iterable[str]) -> dict[str, items.Family]:
        names = list(dict.fromkeys(names))
        first = self._parallel(lambda f: self._get(domain, f), names)
        families = {n: items.Family(n, [a]) for n, a in zip(names, first, strict=True)}
        more = [(n, s) for n, f in families.items() for s in range(1, int(f.shards[0].get(items.SHARDS, "1")))]
        for (name, _), attrs in zip(
            more, self._parallel(lambda m: self._get(domain, items.shard_item(*m)), more), strict=True
        ):
            families[name].shards.append(attrs)
        return families

    def _append(
        self, domain: str, additions: dict[str, dict[str, str]], read: dict[str, items.Family] | None = None
    ) -> None:
        """Add entries (by family name, then entry key) to sharded families, skipping those already held.

        Entries are written before the shard count that makes them visible: a failure in between leaves
        entries nobody reads, and the retry puts the same entries in the same shard.
        """
        additions = {name: new for name, new in additions.items() if new}
        if not additions:
            return
        families = read if read is not None else self._read_families(domain, additions)
        writes, counts = [], []
        for name, new in additions.items():
            by_item, count = families[name].plan(new)
            writes += [(domain, item, attrs) for item, attrs in by_item.items()]
            if count is not None:
                counts.append((domain, name, {items.SHARDS: str(count)}))
        self._puts(writes)
        self._puts(counts)

    def _put_blind(self, domain: str, additions: dict[str, dict[str, str]]) -> set[str]:
        """Put each family's new entries into its shard 0 without reading it; the names that need reading.

        Readers always read shard 0, so an entry there is seen. The put carries the shard count ``1`` and is
        conditional on it (absent, or ``1``): so it never lands in a family that has grown more shards, and a
        shard 0 filled to SimpleDB's 256 pairs this way always holds its count, which the read path can then
        raise without adding a pair. Past 256 pairs SimpleDB refuses the put whole.
        """

        def put(name: str) -> str | None:
            attrs = {items.SHARDS: "1"}
            for entry_key, text in additions[name].items():
                attrs.update(items.entry_attributes(entry_key, text))
            state = self._families_seen.get((domain, name))
            if len(attrs) > items.SHARD_PAIRS or state == "crowded":
                return name
            conditions: list[dict[str, Any]] = [{"Name": items.SHARDS, "Value": "1"}]
            if state != "counted":
                conditions.insert(0, {"Name": items.SHARDS, "Exists": False})
            for expected in conditions:
                try:
                    self._put(domain, name, attrs, expected=expected)
                except Refused as exc:
                    if exc.code in CROWDED:
                        break
                    continue  # the count is there (try the next condition), or it is not 1
                self._families_seen.put((domain, name), "counted")
                return None
            self._families_seen.put((domain, name), "crowded")
            return name

        return {name for name in self._parallel(put, list(additions)) if name}

    def _index(self, entries: dict[str, dict[str, str]]) -> None:
        """Add index entries. A task holds at most 10 containers, so its shard 0 has room in practice: put blind
        (no read), and read and shard only when SimpleDB says it is full. A service's tasks grow without
        bound, so those entries always go by reading."""
        blind = {name: new for name, new in entries.items() if name.startswith("task/")}
        full = self._put_blind("indexes", blind)
        self._append("indexes", {name: new for name, new in entries.items() if name not in blind or name in full})

    # --- writing records -----------------------------------------------------------------------------------

    def _index_entries(self, changes: list[tuple[Held, Record]]) -> dict[str, dict[str, str]]:
        """The index entries the changed records need: a new container in its task, a task in its service."""
        entries: dict[str, dict[str, str]] = {}
        for held, new in changes:
            stored, task_id = held.record, new.get("task_id", "")
            if stored is None:
                container_id = new["container_id"]
                entries.setdefault(items.task_family(task_id), {})[items.key(container_id)] = items.dumps(container_id)
            place = (new.get("cluster_name", ""), new.get("service_name", ""))
            if place[1] and (
                stored is None or place != (stored.get("cluster_name", ""), stored.get("service_name", ""))
            ):
                entries.setdefault(items.service_family(*place), {})[items.key(task_id)] = items.dumps(task_id)
        return entries

    def _write_record(self, held: Held, new: Record, attrs: dict[str, str], events: ItemEvents | None) -> bool:
        """Put ``new`` (and ``events``) if the record is still as ``held`` says; False (and forget it) if someone
        wrote first, or if the events would take the item past 256 pairs: a fresh read counts them exactly."""
        revision = held.next_revision
        extra = events.attrs if events else {}
        try:
            self._put("containers", held.item, {**attrs, **extra, items.REVISION: revision}, expected=held.expected)
        except Refused as exc:
            if exc.code not in CONFLICTS and not (extra and exc.code in CROWDED):
                raise
            self._cache.drop(new["container_id"])
            return False
        pairs = held.pairs + held.pairs_added(attrs) + len(extra)
        written = replace(held, record=new, revision=revision, host=attrs.get(hosts.HOST, ""), pairs=pairs)
        if events:
            written = replace(
                written,
                events=held.events | events.keys,
                event_pairs=held.event_pairs + items.event_pairs(extra),
                logged=held.logged or items.EVENTS_LOGGED in extra,
                arrival=max(held.arrival, events.arrival),
            )
        self._cache.put(new["container_id"], written)
        return True

    def _save(self, changes: list[tuple[Held, Record]], events: dict[str, ItemEvents] | None = None) -> set[str]:
        """Write changed records ``(held, new)`` with the index entries they need, each with its new ``events``
        (by container ID) in the same put; the IDs that lost a race.

        Order, so that a failure part-way is harmless and a retry completes it: (1) index entries, (2) the
        records, (3) the slot count of a bucket that gained a slot. An index entry without its record is
        skipped by every lookup; a record is visible only once written whole in one PutAttributes (one
        request per item is atomic), and only then does a retried report see it as existing. A record whose
        conditional put was refused is not written; its caller re-reads and merges again.
        """
        if not changes:
            return set()
        # Every record is encoded before anything is written: one too large fails the report untouched.
        events = events or {}
        puts = [(held, new, _record_attributes(new), events.get(new["container_id"])) for held, new in changes]
        self._index(self._index_entries(changes))
        landed = self._parallel(lambda p: self._write_record(*p), puts)
        lost = {new["container_id"] for (_, new, _, _), ok in zip(puts, landed, strict=True) if not ok}
        grown: dict[str, int] = {}
        for held, new in changes:
            if held.record is None and held.slot > 0 and new["container_id"] not in lost:
                grown[held.bucket] = max(grown.get(held.bucket, 0), held.slot + 1)
        self._puts([("containers", name, {items.SLOTS: str(count)}) for name, count in grown.items()])
        return lost

    # --- the interface -------------------------------------------------------------------------------------

    def _record(
        self,
        records: list[Record],
        events: list[Event],
        now: str,
        carried: Collection[str] = (),
        read: Mapping[str, Held] | None = None,
    ) -> tuple[list[Record], int]:
        """Each container's record and its new events go out in one conditional put on its record item
        (``carried`` and ``read``: as ``_upsert`` takes them).

        Events go to the task's event log instead when their container is not on record, when they name another
        task than its record, or when the record item's share for events (``EVENT_PAIRS``) is used up.
        """
        self._ready_to_use()
        reports: dict[str, list[Record]] = {}
        for entry in records:
            reports.setdefault(entry["container_id"], []).append(entry)
        batch: dict[str, dict[str, Event]] = {}
        to_log: list[Event] = []
        unique: dict[str, Event] = {}
        for event in events:
            unique.setdefault(items.key(event["event_id"]), event)
        # Arrival numbers order events of equal timestamps: from the clock and the report's order, so that they
        # also order events kept in different items and logs, as closely as the replicas' clocks agree.
        stamp = int(self.clock() * 1_000_000)
        wanted = {entry_key: stamp + i for i, entry_key in enumerate(unique)}
        for entry_key, event in unique.items():
            if event.get("container_id"):
                batch.setdefault(event["container_id"], {})[entry_key] = event
            else:
                to_log.append(event)
        ids = list(dict.fromkeys([*reports, *batch]))
        created: list[Record] = []
        stored = 0
        given = {cid: held for cid, held in (read or {}).items() if cid in ids}
        unknown = [cid for cid in ids if cid not in given]
        known = {**(self._cached_or_read_held(unknown) if unknown else {}), **given}
        for attempt in range(self.MERGE_TRIES):
            if not ids:
                break
            if attempt:  # another writer changed these since they were read (or remembered): read them again
                known = self._read_held(ids)
            changes, first = self._merged({c: reports[c] for c in ids if c in reports}, known, now, carried)
            writes = {new["container_id"]: (held, new) for held, new in changes}
            placed: dict[str, ItemEvents] = {}
            logged: list[Event] = []
            for cid in (c for c in ids if c in batch):
                held, record = writes.get(cid, (known[cid], known[cid].record))
                fresh = {k: e for k, e in batch[cid].items() if k not in held.events}
                if not fresh:
                    continue
                # An event naming another task than its container's record is kept under the task it names.
                task = (record or {}).get("task_id", "")
                logged += [e for e in fresh.values() if e.get("task_id", "") != task]
                fresh = {k: e for k, e in fresh.items() if e.get("task_id", "") == task}
                if not fresh:
                    continue
                plan = self._item_events(held, record, fresh, wanted)
                if not plan.keys:
                    logged += fresh.values()
                if plan.attrs and record is not None:
                    placed[cid] = plan
                    writes.setdefault(cid, (held, record))
            lost = self._save(list(writes.values()), placed)
            created += [record for cid, record in first.items() if cid not in lost]
            stored += sum(len(plan.keys) for cid, plan in placed.items() if cid not in lost)
            to_log += [event for event in logged if event["container_id"] not in lost]
            ids = [c for c in ids if c in lost]
        stored += self._log_events(to_log, wanted)
        if ids:
            raise StoreUnavailable("records kept changing under this report; try again")
        return created, stored

    def _item_events(
        self, held: Held, record: Record | None, fresh: dict[str, Event], wanted: dict[str, int]
    ) -> ItemEvents:
        """How ``fresh`` events go into the record item with ``record``; with no keys, they go to the task's log.

        The first time an item's share is used up, the item is marked so that every later event of the container
        goes to the log too: a resent event then always meets its first copy, in the item or in the log.
        """
        to_log = ItemEvents({}, frozenset(), held.arrival)
        if record is None or held.logged:
            return to_log
        arrivals = items.arrivals(held.arrival, [wanted[k] for k in fresh])
        attrs: dict[str, str] = {}
        for (entry_key, event), arrival in zip(fresh.items(), arrivals, strict=True):
            attrs.update(items.event_attributes(entry_key, arrival, event))
        record_attrs = _record_attributes(record)
        room = min(
            items.EVENT_PAIRS - held.event_pairs,
            items.SHARD_PAIRS - held.pairs - held.pairs_added(record_attrs),  # in the item
            items.SHARD_PAIRS - len(record_attrs) - 1,  # in the put, with the revision
        )
        if len(attrs) <= room:
            return ItemEvents(attrs, frozenset(fresh), arrivals[-1])
        return ItemEvents({items.EVENTS_LOGGED: "1"}, frozenset(), held.arrival)

    def add_events(self, events: Iterable[Event]) -> int:
        return self._record([], list(events), "")[1]

    def _log_events(self, events: list[Event], wanted: dict[str, int]) -> int:
        """Add events to their tasks' event logs, each ``event_id`` once per log; how many were new.

        ``wanted``: the arrival number each event should get by its key (each log's numbers only grow).
        """
        by_task: dict[str, dict[str, Event]] = {}
        for event in events:
            by_task.setdefault(items.task_family(event.get("task_id", "")), {}).setdefault(
                items.key(event["event_id"]), event
            )
        if not by_task:
            return 0
        # Events are not put blind: SimpleDB takes one condition per put, and both the event's key (so that a
        # resend is not doubled or renumbered) and the shard count (so that shard 0 stays shardable) need one.
        logs = self._read_families("events", by_task)
        additions: dict[str, dict[str, str]] = {}
        for name, batch in by_task.items():
            held = logs[name].entries
            new = {k: e for k, e in batch.items() if k not in held}
            arrivals = items.arrivals(items.last_arrival(held.values()), [wanted[k] for k in new])
            additions[name] = {k: items.dumps([a, e]) for (k, e), a in zip(new.items(), arrivals, strict=True)}
        self._append("events", additions, logs)
        return sum(len(new) for new in additions.values())

    def get_container(self, container_id: str) -> Record | None:
        self._ready_to_use()
        found = self._read_records([container_id])
        record = found[container_id].record if container_id in found else None
        return self._alive([record])[0] if record else None

    def find_containers(self, prefix: str, limit: int) -> list[Record]:
        if not items.is_prefix(prefix):
            raise ValueError(f"expected a container ID or a prefix of at least 12 characters, got {prefix!r}")
        self._ready_to_use()
        (slot_attrs,) = self._read_buckets([prefix[:12]]).values()
        found = [r for r in map(items.record_from, slot_attrs) if r and r.get("container_id", "").startswith(prefix)]
        return self._alive(sorted(found, key=lambda r: r["container_id"])[:limit])

    def running_containers(self) -> list[Record]:
        # No item name leads to the running containers: a Select finds them. Their last_seen is as stored, not
        # as their hosts' heartbeats carry it (service discovery shows neither it nor sample_time).
        self._ready_to_use()
        found = []
        for _, attrs in self._select_items(f"{items.RECORD_STATUS} = 'RUNNING'"):
            record = items.record_from(attrs)
            if record and record.get("known_status") == "RUNNING":
                found.append(record)
        return found

    def _select_items(self, condition: str) -> list[tuple[str, dict[str, str]]]:
        """Whole items of the containers domain that meet ``condition``: one consistent Select, page by page
        (SimpleDB answers at most 2,500 items or 1 MB at a time)."""
        params: dict[str, Any] = {
            "SelectExpression": f"select * from `{self.domains['containers']}` where {condition} limit 2500",
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

    def _task_members(self, task_ids: Iterable[str]) -> dict[str, list[str]]:
        names = {t: items.task_family(t) for t in task_ids}
        families = self._read_families("indexes", names.values())
        return {t: [json.loads(v) for v in families[n].entries.values()] for t, n in names.items()}

    def _of_tasks(self, task_ids: Iterable[str]) -> list[Held]:
        members = self._task_members(task_ids)
        wanted = {cid: task for task, cids in members.items() for cid in cids}
        found = self._read_records(wanted)
        # An index entry whose record was never written (a report that failed part-way) is skipped.
        return [found[c] for c in wanted if c in found and (found[c].record or {}).get("task_id", "") == wanted[c]]

    def _records_of_tasks(self, task_ids: Iterable[str]) -> list[Record]:
        return self._alive([held.record for held in self._of_tasks(task_ids) if held.record])

    def containers_of_task(self, task_id: str) -> list[Record]:
        self._ready_to_use()
        found = self._records_of_tasks([task_id])
        return sorted(found, key=lambda r: (r.get("container_name", ""), r["container_id"]))

    def containers_of_service(self, cluster_name: str, service_name: str) -> list[Record]:
        self._ready_to_use()
        family = items.service_family(cluster_name, service_name)
        tasks = [json.loads(v) for v in self._read_families("indexes", [family])[family].entries.values()]
        found = [
            record
            for record in self._records_of_tasks(tasks)
            if record.get("cluster_name", "") == cluster_name and record.get("service_name", "") == service_name
        ]
        return sorted(found, key=lambda r: (r.get("task_id", ""), r.get("container_name", ""), r["container_id"]))

    def update_container(self, container_id: str, fields: Record) -> None:
        self._ready_to_use()
        self._set_fields(lambda: self._read_records([container_id]).values(), fields)

    def update_task(self, task_id: str, fields: Record) -> None:
        self._ready_to_use()
        self._set_fields(lambda: self._of_tasks([task_id]), fields)

    def _log_entries(self, task_id: str) -> dict[str, list[Any]]:
        """The task's event log: ``[arrival, event]`` by key."""
        name = items.task_family(task_id)
        return {k: json.loads(text) for k, text in self._read_families("events", [name])[name].entries.items()}

    def events_of_container(self, container_id: str) -> list[Event]:
        # In its record item, and in the log of the record's task: events that came before the record, or after
        # the item's share was used up, and every event stored before events moved into record items.
        self._ready_to_use()
        (slots,) = self._read_buckets([items.bucket(container_id)]).values()
        for attrs in slots:
            record = items.record_from(attrs)
            if record and record.get("container_id") == container_id:
                break
        else:
            return []
        logged = self._log_entries(record.get("task_id", ""))
        found = {k: entry for k, entry in logged.items() if entry[1].get("container_id") == container_id}
        found.update(_parsed(items.events_in(attrs)))
        return _ordered(found.values())

    def events_of_task(self, task_id: str) -> list[Event]:
        self._ready_to_use()
        # The task's containers and its event log, side by side; then the containers' record items.
        reads: list[Callable[[], Any]] = [
            lambda: self._task_members([task_id])[task_id],
            lambda: self._log_entries(task_id),
        ]
        members, logged = self._parallel(lambda read: read(), reads)
        found, wanted = dict(logged), set(members)
        for slots in self._read_buckets(items.bucket(c) for c in members).values():
            for attrs in slots:
                record = items.record_from(attrs)
                if record and record.get("container_id") in wanted and record.get("task_id", "") == task_id:
                    found.update(_parsed(items.events_in(attrs)))
        return _ordered(entry for entry in found.values() if entry[1].get("task_id", "") == task_id)

    # --- hosts' heartbeats ---------------------------------------------------------------------------------

    def record_report(
        self, records: list[Record], events: list[Event], now: str, full: bool = False
    ) -> tuple[list[Record], int]:
        """A host's full report keeps its running containers alive through the host's heartbeat item
        (``sdb_hosts``): a running container whose record it would change only by ``last_seen`` and
        ``sample_time`` is not written, and the heartbeat is written when its members change or it is older
        than ``last_seen_resolution``. A replica that has not seen the host reads its heartbeat and records
        in one Select instead of one read per container. Each container's new events go out with its record
        (``_record``)."""
        key = hosts.report_host(records) if full else ""
        if not key:
            return self._record(records, events, now)
        self._ready_to_use()
        ids = list(dict.fromkeys(record["container_id"] for record in records))
        beat = self._beats.get(key)
        read: dict[str, Held] = {}
        # Remembered copies are merged against for one heartbeat interval at most: a record another route changed
        # meanwhile is read again when the heartbeat is due, as a write at the last_seen resolution would.
        if (
            beat is None
            or _age(beat.beat, now) >= self.last_seen_resolution
            or sum(self._cache.get(cid) is None for cid in ids) > 1
        ):
            beat, read = self._read_host_or_beat(key, ids)
        held = {cid: read.get(cid) or self._cache.get(cid) for cid in ids}
        # Only a record labelled with its host is found by the next cold replica's Select: one that is not yet
        # keeps being written at the last_seen resolution, which labels it.
        carried = {cid for cid, copy in held.items() if copy is not None and copy.host == key}
        created, stored = self._record(records, events, now, carried, read)
        self._beat(beat, frozenset(ids), min(record.get("sample_time", "") for record in records), now)
        return created, stored

    def _read_host_or_beat(self, key: str, container_ids: list[str]) -> tuple[hosts.Heartbeat, dict[str, Held]]:
        """``_read_host``; where the Select fails, the heartbeat and the records one by one, and so for
        ``SELECT_PAUSE`` seconds. (moto's server, a usual stand-in for SimpleDB, serves no Select.)"""
        if time.monotonic() >= self._select_paused_until:
            try:
                return self._read_host(key, container_ids)
            except StoreUnavailable as exc:
                log.warning("SimpleDB Select failed, reading host reports record by record for a while: %s", exc)
                self._select_paused_until = time.monotonic() + SELECT_PAUSE
        return self._read_beat(key), self._read_held(container_ids)

    def _read_host(self, key: str, container_ids: Iterable[str]) -> tuple[hosts.Heartbeat, dict[str, Held]]:
        """A host's heartbeat and the records of ``container_ids`` labelled with it, in one Select."""
        wanted = set(container_ids)
        beat = hosts.Heartbeat(key)
        found: dict[str, Held] = {}
        for name, attrs in self._select_items(f"{hosts.HOST} = {_quoted(key)}"):
            if name == beat.item:
                beat = hosts.Heartbeat.from_attributes(key, attrs)
            elif (record := items.record_from(attrs)) and record.get("container_id") in wanted:
                bucket, slot = items.slot_of(name)
                found[record["container_id"]] = Held.read(record, bucket, slot, attrs)
        for container_id, copy in found.items():
            self._cache.put(container_id, copy)
        self._beats.put(key, beat)
        return beat, found

    def _read_beat(self, key: str) -> hosts.Heartbeat:
        return hosts.Heartbeat.from_attributes(key, self._get("containers", hosts.item_name(key)))

    def _beat(self, beat: hosts.Heartbeat, members: frozenset[str], sampled: str, now: str) -> None:
        """Write a host's heartbeat after its full report (``members``, sampled no earlier than ``sampled``), on a
        condition on its revision. The heartbeat of a later report, written meanwhile by another replica, stays.
        A running container that left the report first gets the last_seen the old heartbeat gave it."""
        for _ in range(self.MERGE_TRIES):
            if sampled < beat.sampled:
                return  # a later report's heartbeat is stored
            departed = list(beat.members - members)
            if not departed and members == beat.members and _age(beat.beat, now) < self.last_seen_resolution:
                return
            if departed:
                self._keep_departed(beat, departed)
            new = hosts.Heartbeat(beat.key, now, sampled, members, str(int(beat.revision or 0) + 1))
            try:
                self._put(
                    "containers",
                    new.item,
                    {**new.attributes(), items.REVISION: new.revision or ""},
                    expected=_unchanged_since(beat.revision),
                )
            except Refused as exc:
                if exc.code not in CONFLICTS:
                    raise
                beat = self._read_beat(beat.key)
                continue
            self._beats.put(new.key, new)
            return
        raise StoreUnavailable("a host's heartbeat kept changing under its report; try again")

    def _keep_departed(self, beat: hosts.Heartbeat, departed: list[str]) -> None:
        """Store the last_seen ``beat`` gives the running containers that left its host's report."""
        self._rewrite(lambda: self._read_records(departed).values(), beat.alive, "keeping a host's containers")

    def _alive(self, records: list[Record]) -> list[Record]:
        """``records`` as their hosts' heartbeats carry them. Only a running record whose ``last_seen`` is older
        than ``last_seen_resolution`` can be carried: its host's heartbeat is read (one read per host)."""
        fresh = format_time(datetime.fromtimestamp(self.clock() - self.last_seen_resolution, UTC))
        keys = {
            hosts.host_key(record)
            for record in records
            if record.get("known_status") == "RUNNING" and record.get("last_seen", "") < fresh
        } - {""}
        if not keys:
            return records
        beats = {beat.key: beat for beat in self._parallel(self._read_beat, sorted(keys))}
        return [beats[key].alive(record) if (key := hosts.host_key(record)) in beats else record for record in records]

    # --- retention -----------------------------------------------------------------------------------------

    def prune(self, limit: int) -> int:
        """Expired records are found by one consistent ``Select`` on the plain ``last_seen`` attribute of record
        items; each is read again and deleted on a condition on its revision, so a report that lands meanwhile
        keeps it. A task whose last record went takes its task index, its event log and its service entry along.
        """
        if not self.retention:
            return 0
        self._ready_to_use()
        cutoff = self.cutoff()
        query = (
            f"select itemName() from `{self.domains['containers']}` where {items.LAST_SEEN} < "
            f"{_quoted(cutoff)} limit {max(1, min(limit, 2500))}"
        )
        answer = self._call("select", SelectExpression=query, ConsistentRead=True)
        names = [item["Name"] for item in answer.get("Items", [])]
        gone = [record for record in self._parallel(lambda n: self._delete_expired(n, cutoff), names) if record]
        tasks = {r.get("task_id", ""): r for r in gone}
        self._parallel(lambda task: self._forget_task(*task), list(tasks.items()))
        return len(gone)

    def _delete_expired(self, item: str, cutoff: str) -> Record | None:
        """Delete the record in ``item`` if it is still expired; the record deleted, or None."""
        attrs = self._get("containers", item)
        record = items.record_from(attrs)
        if record is None or record.get("last_seen", "") >= cutoff:
            return None
        key = hosts.host_key(record)
        if key and record.get("known_status") == "RUNNING":
            alive = self._read_beat(key).alive(record)
            if alive["last_seen"] >= cutoff:
                # Its host still reports it. Storing the last_seen the heartbeat gives it keeps the next prune's
                # Select from finding it again (a lost race means someone just wrote it: fresh too).
                bucket, slot = items.slot_of(item)
                self._save([(Held.read(record, bucket, slot, attrs), alive)])
                return None
        expected = _unchanged_since(attrs.get(items.REVISION))
        # Slot 0 keeps its slot count: the other slots of the bucket stay where readers look for them.
        # (botocore's model wants each pair's value, though SimpleDB would take names alone)
        names = [{"Name": name, "Value": value} for name, value in attrs.items() if name != items.SLOTS]
        try:
            self._call(
                "delete_attributes",
                DomainName=self.domains["containers"],
                ItemName=item,
                Attributes=names,
                Expected=expected,
            )
        except Refused:
            return None  # written since it was read: reported again, so not expired
        self._cache.drop(record["container_id"])
        return record

    def _forget_task(self, task_id: str, record: Record) -> None:
        """Once no record of a task is left, delete its index and event log and its entry in its service."""
        if any(held.record for held in self._of_tasks([task_id])):
            return
        for domain in ("indexes", "events"):
            family = self._read_families(domain, [items.task_family(task_id)])[items.task_family(task_id)]
            for shard in range(len(family.shards)):
                self._call(
                    "delete_attributes", DomainName=self.domains[domain], ItemName=items.shard_item(family.name, shard)
                )
        if record.get("service_name"):
            name = items.service_family(record.get("cluster_name", ""), record["service_name"])
            family = self._read_families("indexes", [name])[name]
            for shard, attrs in enumerate(family.shards):
                if items.key(task_id) in attrs:
                    self._call(
                        "delete_attributes",
                        DomainName=self.domains["indexes"],
                        ItemName=items.shard_item(name, shard),
                        Attributes=[{"Name": items.key(task_id), "Value": attrs[items.key(task_id)]}],
                    )

    def ping(self) -> None:
        self._ready_to_use()
        self._get("containers", "!ping")

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self.client.close()


def _unchanged_since(revision: str | None) -> dict[str, Any]:
    """The condition of a write on an item read at ``revision`` (None: written without one, or not at all)."""
    if revision is None:
        return {"Name": items.REVISION, "Exists": False}
    return {"Name": items.REVISION, "Value": revision}


def _record_attributes(record: Record) -> dict[str, str]:
    """A record's attributes, labelled with its host (if it names one) so that a Select finds a host's records."""
    key = hosts.host_key(record)
    return {**items.record_attributes(record), **({hosts.HOST: key} if key else {})}


def _age(earlier: str, later: str) -> float:
    """Seconds from one stored time to another (infinite when either is missing)."""
    try:
        return (datetime.fromisoformat(later) - datetime.fromisoformat(earlier)).total_seconds()
    except ValueError:
        return float("inf")


def _quoted(value: str) -> str:
    """A SimpleDB Select string literal: single quotes, an inner quote doubled."""
    return "'" + value.replace("'", "''") + "'"


def _parsed(texts: dict[str, str]) -> dict[str, list[Any]]:
    return {k: json.loads(text) for k, text in texts.items()}


def _ordered(entries: Iterable[list[Any]]) -> list[Event]:
    """Events of ``[arrival, event]`` entries, oldest first (by timestamp, then arrival)."""
    listed = list(entries)
    listed.sort(key=lambda e: (e[1].get("timestamp") or "", e[0], e[1].get("event_id", "")))
    return [event for _, event in listed]
