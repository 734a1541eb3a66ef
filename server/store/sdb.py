"""The AWS SimpleDB store: every lookup the API makes is a consistent GetAttributes by name, never a Select.

Three domains, ``PREFIX.containers``, ``PREFIX.indexes`` and ``PREFIX.events`` (layout in ``sdb_items``):

- a container's record lives in the bucket item named by its 12-hex short ID (slot 0), or in slot item
  ``SHORT/N`` when other containers share that short ID, so a full ID or a 12-hex prefix costs one read;
- ``indexes`` holds ``task/TASK`` (the task's container IDs) and ``service/DIGEST`` (the service's task IDs);
- ``events`` holds ``task/TASK``, the task's events keyed by ``event_id``, each with an arrival number.

Sets and logs that can grow are sharded families: shard 0 says how many shards there are.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from datetime import datetime
from typing import Any, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from server import records
from server.store import sdb_items as items
from server.store.base import Event, Record, Store, StoreError, StoreUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

DOMAINS = ("containers", "indexes", "events")


def _number(name: str, value: object, kind: type) -> Any:
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise ValueError(f"sdb store option {name}={value!r} is not a number") from None
    if number < 0:
        raise ValueError(f"sdb store option {name}={value!r} must not be negative")
    return number


class SimpleDBStore(Store):
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
        **unknown: str,
    ):
        """Open the store whose domains start with ``prefix``; create the missing ones.

        ``region`` and ``endpoint_url`` go straight to boto3 (which also reads ``AWS_REGION`` and
        ``AWS_ENDPOINT_URL_SIMPLEDB``). ``max_attempts`` counts the first try; throttling and 5xx answers are
        retried with botocore's standard mode. ``last_seen_resolution`` (seconds): an otherwise unchanged record is
        rewritten only when its ``last_seen`` is older than this, so that a resync costs reads only.
        """
        if unknown:
            raise ValueError(f"unknown sdb store option(s): {', '.join(sorted(unknown))}")
        self.domains = {name: f"{prefix}.{name}" for name in DOMAINS}
        for domain in self.domains.values():
            if not re.fullmatch(r"[A-Za-z0-9_.-]{3,255}", domain):
                raise ValueError(f"sdb store prefix {prefix!r} makes an invalid domain name {domain!r}")
        self.region = region or None
        self.endpoint_url = endpoint_url or None
        self.max_workers = max(1, _number("max_workers", max_workers, int))
        self.last_seen_resolution = _number("last_seen_resolution", last_seen_resolution, float)
        self.config = Config(
            retries={"mode": "standard", "total_max_attempts": max(1, _number("max_attempts", max_attempts, int))},
            connect_timeout=_number("connect_timeout", connect_timeout, float),
            read_timeout=_number("read_timeout", read_timeout, float),
            max_pool_connections=self.max_workers,
        )
        self._lock = threading.Lock()
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
        try:
            return boto3.session.Session().client(
                "sdb", region_name=self.region, endpoint_url=self.endpoint_url, config=self.config
            )
        except BotoCoreError as exc:  # no region, a malformed endpoint: the URL's fault, said at start
            raise ValueError(f"sdb store: {exc} (add ?region=REGION to the store URL)") from exc

    def _forked(self) -> None:
        # A client or a thread pool made before gunicorn forked is not safe to use in the worker.
        if self._pid != os.getpid():
            with self._lock:
                if self._pid != os.getpid():
                    self.client, self._pool, self._pid = self._new_client(), None, os.getpid()

    def _call(self, operation: str, **params: Any) -> dict[str, Any]:
        try:
            return getattr(self.client, operation)(**params)
        except (BotoCoreError, ClientError) as exc:
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

    def _put(self, domain: str, item: str, attrs: dict[str, str]) -> None:
        if not attrs:
            return
        too_long = [s for s in (item, *attrs, *attrs.values()) if len(s.encode()) > items.MAX_BYTES]
        if too_long or len(attrs) > 256:  # a layout bug, never input: every name and value is bounded above
            raise StoreError(f"SimpleDB item {item!r} would break a limit")
        self._call(
            "put_attributes",
            DomainName=self.domains[domain],
            ItemName=item,
            Attributes=[{"Name": n, "Value": v, "Replace": True} for n, v in attrs.items()],
        )

    def _puts(self, writes: Sequence[tuple[str, str, dict[str, str]]]) -> None:
        self._parallel(lambda w: self._put(*w), writes)

    # --- reading buckets and families ----------------------------------------------------------------------

    def _buckets(self, names: Iterable[str]) -> dict[str, list[dict[str, str]]]:
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

    def _records(self, container_ids: Iterable[str]) -> dict[str, tuple[Record, str, int]]:
        """Stored records by container ID, each with its bucket and slot."""
        wanted = set(container_ids)
        found = {}
        for name, slot_attrs in self._buckets(items.bucket(c) for c in wanted).items():
            for slot, attrs in enumerate(slot_attrs):
                record = items.record_from(attrs)
                if record and record.get("container_id") in wanted:
                    found[record["container_id"]] = (record, name, slot)
        return found

    def _families(self, domain: str, names: Iterable[str]) -> dict[str, items.Family]:
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
        families = read if read is not None else self._families(domain, additions)
        writes, counts = [], []
        for name, new in additions.items():
            by_item, count = families[name].plan(new)
            writes += [(domain, item, attrs) for item, attrs in by_item.items()]
            if count is not None:
                counts.append((domain, name, {items.SHARDS: str(count)}))
        self._puts(writes)
        self._puts(counts)

    # --- writing records -----------------------------------------------------------------------------------

    def _save(self, changes: list[tuple[Record | None, Record, str, int]]) -> None:
        """Write changed records ``(stored, new, bucket, slot)`` with the index entries they need.

        Order, so that a failure part-way is harmless and a retry completes it: (1) index entries, (2) the
        records, (3) the slot count of a bucket that gained a slot. An index entry without its record is
        skipped by every lookup; a record is visible only once written whole in one PutAttributes (one
        request per item is atomic), and only then does a retried report see it as existing.
        """
        # Every record is encoded before anything is written: one too large fails the report untouched.
        puts = [("containers", items.slot_item(b, s), items.record_attributes(new)) for _, new, b, s in changes]
        entries: dict[str, dict[str, str]] = {}
        for stored, new, _, _ in changes:
            task_id = new.get("task_id", "")
            if stored is None:
                container_id = new["container_id"]
                entries.setdefault(items.task_family(task_id), {})[items.key(container_id)] = items.dumps(container_id)
            place = (new.get("cluster_name", ""), new.get("service_name", ""))
            if place[1] and (
                stored is None or place != (stored.get("cluster_name", ""), stored.get("service_name", ""))
            ):
                entries.setdefault(items.service_family(*place), {})[items.key(task_id)] = items.dumps(task_id)
        self._append("indexes", entries)
        self._puts(puts)
        grown: dict[str, int] = {}
        for stored, _, name, slot in changes:
            if stored is None and slot > 0:
                grown[name] = max(grown.get(name, 0), slot + 1)
        self._puts([("containers", name, {items.SLOTS: str(count)}) for name, count in grown.items()])

    def _worth_writing(self, stored: Record, new: Record) -> bool:
        if new == stored:
            return False
        if {**new, "last_seen": ""} != {**stored, "last_seen": ""}:
            return True
        # Only last_seen moved: keep the stored one while it is recent enough (a resync then writes nothing).
        try:
            age = _parse(new["last_seen"]) - _parse(stored["last_seen"])
        except (KeyError, ValueError):
            return True
        return age.total_seconds() >= self.last_seen_resolution

    # --- the interface -------------------------------------------------------------------------------------

    def upsert_containers(self, records_: Iterable[Record], now: str) -> list[Record]:
        self._ready_to_use()
        batch = list(records_)
        if not batch:
            return []
        ids = list(dict.fromkeys(r["container_id"] for r in batch))
        buckets = self._buckets(items.bucket(c) for c in ids)
        stored: dict[str, tuple[Record, str, int]] = {}
        free: dict[str, int] = {}  # next empty slot of each bucket
        for name, slot_attrs in buckets.items():
            # Slot 0 is filled first and never emptied: an empty slot 0 means an empty bucket.
            free[name] = len(slot_attrs) if items.RECORD_COUNT in slot_attrs[0] else 0
            for slot, attrs in enumerate(slot_attrs):
                record = items.record_from(attrs)
                if record is not None:
                    stored[record.get("container_id", "")] = (record, name, slot)
        current: dict[str, Record] = {}
        created: list[Record] = []
        for new in batch:
            cid = new["container_id"]
            old = current.get(cid) or (stored[cid][0] if cid in stored else None)
            current[cid] = records.merge(old, new, now)
            if old is None:
                created.append(current[cid])
        changes: list[tuple[Record | None, Record, str, int]] = []
        for cid in ids:
            if cid in stored:
                record, name, slot = stored[cid]
                if self._worth_writing(record, current[cid]):
                    changes.append((record, current[cid], name, slot))
            else:
                name = items.bucket(cid)
                changes.append((None, current[cid], name, free[name]))
                free[name] += 1
        self._save(changes)
        return created

    def add_events(self, events: Iterable[Event]) -> int:
        self._ready_to_use()
        by_task: dict[str, dict[str, Event]] = {}
        for event in events:
            by_task.setdefault(items.task_family(event.get("task_id", "")), {}).setdefault(
                items.key(event["event_id"]), event
            )
        if not by_task:
            return 0
        logs = self._families("events", by_task)
        additions: dict[str, dict[str, str]] = {}
        for name, batch in by_task.items():
            held = logs[name].entries
            arrival = 1 + max((json.loads(text)[0] for text in held.values()), default=0)
            new = {k: e for k, e in batch.items() if k not in held}
            additions[name] = {k: items.dumps([arrival + i, e]) for i, (k, e) in enumerate(new.items())}
        self._append("events", additions, logs)
        return sum(len(new) for new in additions.values())

    def get_container(self, container_id: str) -> Record | None:
        self._ready_to_use()
        found = self._records([container_id])
        return found[container_id][0] if container_id in found else None

    def find_containers(self, prefix: str, limit: int) -> list[Record]:
        if not items.is_hex_prefix(prefix):
            raise ValueError(f"expected 12 to 64 lowercase hex digits, got {prefix!r}")
        self._ready_to_use()
        (slot_attrs,) = self._buckets([prefix[:12]]).values()
        found = [r for r in map(items.record_from, slot_attrs) if r and r.get("container_id", "").startswith(prefix)]
        return sorted(found, key=lambda r: r["container_id"])[:limit]

    def _task_members(self, task_ids: Iterable[str]) -> dict[str, list[str]]:
        names = {t: items.task_family(t) for t in task_ids}
        families = self._families("indexes", names.values())
        return {t: [json.loads(v) for v in families[n].entries.values()] for t, n in names.items()}

    def _of_tasks(self, task_ids: Iterable[str]) -> list[tuple[Record, str, int]]:
        members = self._task_members(task_ids)
        wanted = {cid: task for task, cids in members.items() for cid in cids}
        found = self._records(wanted)
        # An index entry whose record was never written (a report that failed part-way) is skipped.
        return [found[c] for c in wanted if c in found and found[c][0].get("task_id", "") == wanted[c]]

    def containers_of_task(self, task_id: str) -> list[Record]:
        self._ready_to_use()
        found = [record for record, _, _ in self._of_tasks([task_id])]
        return sorted(found, key=lambda r: (r.get("container_name", ""), r["container_id"]))

    def containers_of_service(self, cluster_name: str, service_name: str) -> list[Record]:
        self._ready_to_use()
        family = items.service_family(cluster_name, service_name)
        tasks = [json.loads(v) for v in self._families("indexes", [family])[family].entries.values()]
        found = [
            record
            for record, _, _ in self._of_tasks(tasks)
            if record.get("cluster_name", "") == cluster_name and record.get("service_name", "") == service_name
        ]
        return sorted(found, key=lambda r: (r.get("task_id", ""), r.get("container_name", ""), r["container_id"]))

    def update_container(self, container_id: str, fields: Record) -> None:
        self._ready_to_use()
        found = self._records([container_id])
        if container_id in found:
            record, name, slot = found[container_id]
            if {**record, **fields} != record:
                self._save([(record, {**record, **fields}, name, slot)])

    def update_task(self, task_id: str, fields: Record) -> None:
        self._ready_to_use()
        self._save(
            [
                (record, {**record, **fields}, name, slot)
                for record, name, slot in self._of_tasks([task_id])
                if {**record, **fields} != record
            ]
        )

    def _events(self, task_id: str) -> list[Event]:
        name = items.task_family(task_id)
        entries = [json.loads(text) for text in self._families("events", [name])[name].entries.values()]
        entries.sort(key=lambda e: (e[1].get("timestamp") or "", e[0], e[1].get("event_id", "")))
        return [event for _, event in entries]

    def events_of_container(self, container_id: str) -> list[Event]:
        # Events are kept per task; the record says which task the container belongs to.
        record = self.get_container(container_id)
        if record is None:
            return []
        return [e for e in self._events(record.get("task_id", "")) if e.get("container_id") == container_id]

    def events_of_task(self, task_id: str) -> list[Event]:
        self._ready_to_use()
        return self._events(task_id)

    def ping(self) -> None:
        self._ready_to_use()
        self._get("containers", "!ping")

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self.client.close()


def _parse(moment: str) -> datetime:
    return datetime.fromisoformat(moment)
