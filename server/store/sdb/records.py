"""The SimpleDB store's container records in their slot items, and the sharded index families that lead to them:
reading both, and writing records on a condition on their revision with the index entries they need."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from server.lru import LRU
from server.store.base import Record
from server.store.sdb import addresses, hosts, items
from server.store.sdb.client import CONFLICTS, CROWDED, Refused, SimpleDBClient


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
        held = record_item_attributes(self.record)
        return sum(1 for name in attrs if name not in held) + (0 if self.revision else 3)

    @property
    def item(self) -> str:
        return items.slot_item(self.bucket, self.slot)

    @property
    def expected(self) -> dict[str, Any]:
        """The condition under which a write merged against this copy may land: nobody wrote since."""
        return unchanged_since(self.revision)

    @property
    def next_revision(self) -> str:
        return str(int(self.revision or 0) + 1)


@dataclass(frozen=True)
class ItemEvents:
    """A container's new events as they go into its record item with the record's next write."""

    attrs: dict[str, str]
    keys: frozenset[str]
    arrival: int


def unchanged_since(revision: str | None) -> dict[str, Any]:
    """The condition of a write on an item read at ``revision`` (None: written without one, or not at all)."""
    if revision is None:
        return {"Name": items.REVISION, "Exists": False}
    return {"Name": items.REVISION, "Value": revision}


def record_item_attributes(record: Record) -> dict[str, str]:
    """A record's attributes, labelled with its host (if it names one) so that a Select finds a host's records,
    and with its address index attributes (``sdb.addresses``)."""
    key = hosts.host_key(record)
    return {
        **items.record_attributes(record),
        **({hosts.HOST: key} if key else {}),
        **addresses.address_attributes(record),
    }


class Records(SimpleDBClient):
    """Reading and writing records, and their task and service index entries."""

    #: What blind puts learnt of a family's shard 0: "counted" (holds the count 1), "crowded" (full, or more
    #: shards: entries for it go by reading).
    _families_seen: LRU[tuple[str, str], str]
    _cache: LRU[str, Held]

    # --- reading records -----------------------------------------------------------------------------------

    def _read_buckets(self, names: Iterable[str]) -> dict[str, list[dict[str, str]]]:
        """The slot items of each bucket, slot 0 first (two rounds: slot 0, then slots it says exist)."""
        names = list(dict.fromkeys(names))
        first = self.pool.map(lambda b: self._get("containers", b), names)
        slots = {name: [attrs] for name, attrs in zip(names, first, strict=True)}
        more = [(n, s) for n, a in slots.items() for s in range(1, int(a[0].get(items.SLOTS, "1")))]
        for (name, _), attrs in zip(
            more, self.pool.map(lambda m: self._get("containers", items.slot_item(*m)), more), strict=True
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

    # --- sharded families ----------------------------------------------------------------------------------

    def _read_families(self, domain: str, names: Iterable[str]) -> dict[str, items.Family]:
        names = list(dict.fromkeys(names))
        first = self.pool.map(lambda f: self._get(domain, f), names)
        families = {n: items.Family(n, [a]) for n, a in zip(names, first, strict=True)}
        more = [(n, s) for n, f in families.items() for s in range(1, int(f.shards[0].get(items.SHARDS, "1")))]
        for (name, _), attrs in zip(
            more, self.pool.map(lambda m: self._get(domain, items.shard_item(*m)), more), strict=True
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

        return {name for name in self.pool.map(put, list(additions)) if name}

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
        puts = [(held, new, record_item_attributes(new), events.get(new["container_id"])) for held, new in changes]
        self._index(self._index_entries(changes))
        landed = self.pool.map(lambda p: self._write_record(*p), puts)
        lost = {new["container_id"] for (_, new, _, _), ok in zip(puts, landed, strict=True) if not ok}
        grown: dict[str, int] = {}
        for held, new in changes:
            if held.record is None and held.slot > 0 and new["container_id"] not in lost:
                grown[held.bucket] = max(grown.get(held.bucket, 0), held.slot + 1)
        self._puts([("containers", name, {items.SLOTS: str(count)}) for name, count in grown.items()])
        return lost

    # --- a task's records ----------------------------------------------------------------------------------

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
