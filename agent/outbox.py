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


@dataclass(frozen=True)
class Batch:
    """One report body taken from the outbox, and what to remove from it once the server has taken it."""

    body: bytes
    containers: list[tuple[str, dict[str, Any]]]
    events: list[dict[str, str]]
    full: bool


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
        """The next report: as many pending containers and events, oldest first, as one request may carry."""
        budget = max_bytes - len(_dump(host))
        containers: list[tuple[str, dict[str, Any]]] = []
        parts: list[str] = []
        for container_id, record in self._containers.items():
            part = _dump(record)
            if len(containers) == MAX_ITEMS or (containers and len(part) + 1 > budget):
                break
            budget -= len(part) + 1
            containers.append((container_id, record))
            parts.append(part)
        events: list[dict[str, str]] = []
        event_parts: list[str] = []
        for event in self._events:
            part = _dump(event)
            if len(events) == MAX_ITEMS or ((containers or events) and len(part) + 1 > budget):
                break
            budget -= len(part) + 1
            events.append(event)
            event_parts.append(part)
        full = self.full and len(containers) == len(self._containers)
        body = (
            f'{{"host":{_dump(host)},"containers":[{",".join(parts)}],'
            f'"events":[{",".join(event_parts)}],"full":{"true" if full else "false"}}}'
        )
        return Batch(body.encode(), containers, events, full)

    def remove(self, batch: Batch) -> None:
        """Forget what `batch` carried (the server took it, or refused it for good); newer states stay."""
        for container_id, record in batch.containers:
            if self._containers.get(container_id) is record:
                del self._containers[container_id]
        for event in batch.events:
            if self._events and self._events[0] is event:
                self._events.popleft()
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
