"""What the server has not acknowledged yet: container states (latest wins) and events (in order), bounded."""

from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from agent.wire import MAX_BODY_BYTES, MAX_ITEMS

log = logging.getLogger(__name__)


def _dump(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _list(value: Any) -> list:
    return value if isinstance(value, list) else []


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and bool(value)


def same_state(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two records of a container say the same, whenever each was sampled."""
    return {**a, "sample_time": ""} == {**b, "sample_time": ""}


@dataclass(frozen=True)
class Batch:
    """One report body taken from the outbox, and what to remove from it once the server has taken it."""

    body: bytes
    containers: list[tuple[str, dict[str, Any]]]
    events: list[dict[str, str]]
    full: bool


class _Packing:
    """What one report carries so far, within the server's bounds on items and the byte budget."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.containers: dict[str, str] = {}  # container ID → its record as JSON
        self.records: list[tuple[str, dict[str, Any]]] = []
        self.events: list[dict[str, str]] = []
        self.event_parts: list[str] = []
        self.event_ids: set[int] = set()

    def add(self, records: list[tuple[str, dict[str, Any]]], events: list[dict[str, str]]) -> bool:
        """Add records and events together, or nothing (False) if they do not fit; the first always fits."""
        if len(self.records) + len(records) > MAX_ITEMS or len(self.events) + len(events) > MAX_ITEMS:
            return False
        record_parts = [_dump(record) for _, record in records]
        event_parts = [_dump(event) for event in events]
        size = sum(len(part) + 1 for part in record_parts + event_parts)
        if (self.records or self.events) and size > self.budget:
            return False
        self.budget -= size
        for (cid, record), part in zip(records, record_parts, strict=True):
            self.containers[cid] = part
            self.records.append((cid, record))
        self.events += events
        self.event_parts += event_parts
        self.event_ids.update(id(event) for event in events)
        return True


class Outbox:
    """Pending container records, keyed by container ID, and pending events; past a bound, oldest dropped."""

    def __init__(self, max_containers: int = 10_000, max_events: int = 50_000) -> None:
        self.max_containers = max_containers
        self.max_events = max_events
        self._containers: dict[str, dict[str, Any]] = {}
        self._events: deque[dict[str, str]] = deque()
        self.full = False  # the pending containers include the host's whole snapshot
        self.dropped_containers = 0
        self.dropped_events = 0

    def __len__(self) -> int:
        return len(self._containers) + len(self._events)

    def pending(self) -> bool:
        """Whether there is a report to send: changes, or a whole snapshot (even of no containers)."""
        return self.full or bool(self._containers) or bool(self._events)

    def put(self, records: Iterable[dict[str, Any]], events: Iterable[dict[str, str]], full: bool = False) -> None:
        """Add container records (each replacing any pending one of its container) and events."""
        for record in records:
            pending = self._containers.get(record["container_id"])
            if pending is not None and same_state(pending, record):
                continue  # a resync or restart sees it again: its sample time stays when this state was first seen
            # Re-inserting moves it to the end: the front holds the longest-unchanged, dropped first.
            self._containers.pop(record["container_id"], None)
            self._containers[record["container_id"]] = record
        self._events.extend(events)
        self.full = self.full or full
        dropped_containers = max(0, len(self._containers) - self.max_containers)
        for container_id in list(self._containers)[:dropped_containers]:
            del self._containers[container_id]
        dropped_events = max(0, len(self._events) - self.max_events)
        for _ in range(dropped_events):
            self._events.popleft()
        if dropped_containers:
            self.full = False
        if dropped_containers or dropped_events:
            self.dropped_containers += dropped_containers
            self.dropped_events += dropped_events
            log.warning(
                "outbox full: dropped %d container states and %d events (%d and %d since start)",
                dropped_containers, dropped_events, self.dropped_containers, self.dropped_events,
            )  # fmt: skip

    def take(self, host: dict[str, str], max_bytes: int = MAX_BODY_BYTES) -> Batch:
        """The next report: as many pending events and containers, oldest first, as one request may carry.

        A container's record goes together with all of its pending events, or waits: the server takes when a
        container appeared (``first_seen``) and stopped from the events that come with its record.
        """
        of_container: dict[str, list[dict[str, str]]] = {}
        for event in self._events:
            of_container.setdefault(event.get("container_id", ""), []).append(event)
        packing = _Packing(max_bytes - len(_dump(host)))
        for event in self._events:
            if id(event) in packing.event_ids:
                continue
            cid = event.get("container_id", "")
            record = self._containers.get(cid)
            if record is None or len(of_container[cid]) > MAX_ITEMS:
                unit: tuple[list, list] = ([], [event])
            else:
                unit = ([(cid, record)], of_container[cid])
            if not packing.add(*unit):
                break
        for cid, record in self._containers.items():
            if cid not in packing.containers and cid not in of_container and not packing.add([(cid, record)], []):
                break
        full = self.full and len(packing.containers) == len(self._containers)
        body = (
            f'{{"host":{_dump(host)},"containers":[{",".join(packing.containers.values())}],'
            f'"events":[{",".join(packing.event_parts)}],"full":{"true" if full else "false"}}}'
        )
        return Batch(body.encode(), packing.records, packing.events, full)

    def remove(self, batch: Batch) -> None:
        """Forget what `batch` carried (the server took it, or refused it for good); newer states stay."""
        for container_id, record in batch.containers:
            if self._containers.get(container_id) is record:
                del self._containers[container_id]
        if batch.events:
            sent = {id(event) for event in batch.events}
            self._events = deque(event for event in self._events if id(event) not in sent)
        if batch.containers or batch.full:
            self.full = False  # what is left after a partial batch is not the whole snapshot either

    def state(self) -> dict[str, Any]:
        """The pending records and events, for the spool."""
        return {
            "containers": list(self._containers.values()),
            "events": list(self._events),
            "full": self.full,
        }

    def restore(self, state: Any) -> None:
        """Take back, into an empty outbox, what `state()` saved; anything malformed is left out."""
        if not isinstance(state, dict):
            return
        records = [r for r in _list(state.get("containers")) if isinstance(r, dict) and _is_text(r.get("container_id"))]
        events = [e for e in _list(state.get("events")) if isinstance(e, dict) and _is_text(e.get("event_id"))]
        self.put(records, events, full=state.get("full") is True)
