"""The SimpleDB store's events: a container's events go out in its record's own conditional put and live in its
record item; those that cannot go to their task's event log, a sharded family in the ``events`` domain."""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any

from server.records import untold
from server.store.base import Event, Record, StoreUnavailable
from server.store.sdb import hosts, items
from server.store.sdb.records import Held, ItemEvents, Records, record_item_attributes


class Events(Records):
    """Reports (records and their events together), and the events of a container or a task."""

    def _record(
        self,
        records: list[Record],
        events: list[Event],
        now: str,
        carried: Collection[str] = (),
        read: Mapping[str, Held] | None = None,
        vanishing: hosts.Vanishing | None = None,
    ) -> tuple[list[Record], int]:
        """Each container's record and its new events go out in one conditional put on its record item
        (``carried`` and ``read``: as ``_upsert`` takes them): the report's own events, and the transitions its
        records made that they do not name (``server.records.untold``), derived from the merge, so at no
        request of their own. ``vanishing``: the containers a host's full snapshot no longer lists, stopped in
        the same way with their events. Returns the new records and how many of the report's own events were new.

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
        own = set(unique)
        # Arrival numbers order events of equal timestamps: from the clock and the report's order, so that they
        # also order events kept in different items and logs, as closely as the replicas' clocks agree.
        stamp = int(self.clock() * 1_000_000)
        wanted = {entry_key: stamp + i for i, entry_key in enumerate(unique)}
        for entry_key, event in unique.items():
            if event.get("container_id"):
                batch.setdefault(event["container_id"], {})[entry_key] = event
            else:
                to_log.append(event)
        told = {_told(event) for event in events}
        gone = vanishing.ids - reports.keys() if vanishing else frozenset()
        ids = list(dict.fromkeys([*reports, *batch, *gone]))
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
            derived = untold([(held.record, new) for held, new in changes], events)
            for cid in (c for c in ids if c in gone):
                if vanishing and (stop := vanishing.change(known[cid].record)):
                    changes.append((known[cid], stop[0]))
                    derived += [e for e in stop[1] if _told(e) not in told]
            news = {cid: dict(found) for cid, found in batch.items()}
            for event in derived:
                entry_key = items.key(event["event_id"])
                wanted.setdefault(entry_key, stamp + len(wanted))
                news.setdefault(event["container_id"], {}).setdefault(entry_key, event)
            writes = {new["container_id"]: (held, new) for held, new in changes}
            placed: dict[str, ItemEvents] = {}
            logged: list[Event] = []
            for cid in (c for c in ids if c in news):
                held, record = writes.get(cid, (known[cid], known[cid].record))
                fresh = {k: e for k, e in news[cid].items() if k not in held.events}
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
            stored += sum(len(plan.keys & own) for cid, plan in placed.items() if cid not in lost)
            to_log += [event for event in logged if event["container_id"] not in lost]
            ids = [c for c in ids if c in lost]
        stored += len(self._log_events(to_log, wanted) & own)
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
        record_attrs = record_item_attributes(record)
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

    def _log_events(self, events: list[Event], wanted: dict[str, int]) -> set[str]:
        """Add events to their tasks' event logs, each ``event_id`` once per log; the keys of those that were new.

        ``wanted``: the arrival number each event should get by its key (each log's numbers only grow).
        """
        by_task: dict[str, dict[str, Event]] = {}
        for event in events:
            by_task.setdefault(items.task_family(event.get("task_id", "")), {}).setdefault(
                items.key(event["event_id"]), event
            )
        if not by_task:
            return set()
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
        return {entry_key for new in additions.values() for entry_key in new}

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
        members, logged = self.pool.map(lambda read: read(), reads)
        found, wanted = dict(logged), set(members)
        for slots in self._read_buckets(items.bucket(c) for c in members).values():
            for attrs in slots:
                record = items.record_from(attrs)
                if record and record.get("container_id") in wanted and record.get("task_id", "") == task_id:
                    found.update(_parsed(items.events_in(attrs)))
        return _ordered(entry for entry in found.values() if entry[1].get("task_id", "") == task_id)


def _told(event: Event) -> tuple[str, str, str, str]:
    """What an event says happened, whatever its ID: as ``server.records.untold`` compares them."""
    return event["container_id"], event["event"], event.get("from") or "", event.get("to") or ""


def _parsed(texts: dict[str, str]) -> dict[str, list[Any]]:
    return {k: json.loads(text) for k, text in texts.items()}


def _ordered(entries: Iterable[list[Any]]) -> list[Event]:
    """Events of ``[arrival, event]`` entries, oldest first (by timestamp, then arrival)."""
    listed = list(entries)
    listed.sort(key=lambda e: (e[1].get("timestamp") or "", e[0], e[1].get("event_id", "")))
    return [event for _, event in listed]
