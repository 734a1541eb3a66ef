"""What changed between two snapshots of a host: the changes to report and the events they make. Pure."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from agent.ecs import Snapshot

Record = dict[str, Any]


def event_id(container_id: str, kind: str, old: str, new: str) -> str:
    """The ID of an event, the same whenever the same change is seen again.

    Derived from the change rather than drawn at random, so that a resent report does not double an event on
    the server. A container appears once: an agent restarted without its spool sees it appear again, perhaps in
    a later status, and that is the same appearance, so its ID leaves the statuses out.
    """
    if kind == "appeared":
        old = new = ""
    digest = hashlib.blake2b(f"{container_id}|{kind}|{old}|{new}".encode(), digest_size=16).hexdigest()
    return f"{container_id[:12]}-{digest}"


@dataclass(frozen=True, slots=True)
class Change:
    """One container's record before and after: `old` None when it appeared, `new` None when it vanished."""

    container_id: str
    old: Record | None
    new: Record | None

    def events(self, timestamp: str) -> list[dict[str, str]]:
        """The events this change makes (none for a change of other fields, such as a port being assigned)."""
        if self.old is None:
            assert self.new is not None
            return [self._event("appeared", self.new, "", self.new["known_status"], timestamp)]
        if self.new is None:
            return [self._event("vanished", self.old, self.old["known_status"], "", timestamp)]
        return [
            self._event(kind, self.new, self.old[kind], self.new[kind], timestamp)
            for kind in ("desired_status", "known_status")
            if self.old[kind] != self.new[kind]
        ]

    def _event(self, kind: str, record: Record, old: str, new: str, timestamp: str) -> dict[str, str]:
        return {
            "event_id": event_id(self.container_id, kind, old, new),
            "container_id": self.container_id,
            "task_id": record["task_id"],
            "event": kind,
            "from": old,
            "to": new,
            "timestamp": timestamp,
        }


def diff(old: Snapshot, new: Snapshot) -> tuple[list[Change], Snapshot]:
    """The changes from `old` to `new`, and the snapshot to keep: `new` plus the last state of what it holds.

    A container missing from `new` vanished only if `new` does not hold it (listed, but unreadable this time).
    """
    changes = [
        Change(container_id, old.containers.get(container_id), record)
        for container_id, record in new.containers.items()
        if old.containers.get(container_id) != record
    ]
    kept = new.containers
    for container_id, record in old.containers.items():
        if container_id in new.containers:
            continue
        if new.held_all or container_id in new.held or record["task_arn"] in new.held_tasks:
            if kept is new.containers:
                kept = dict(new.containers)
            kept[container_id] = record
        else:
            changes.append(Change(container_id, record, None))
    if kept is new.containers:
        return changes, new
    return changes, Snapshot(kept, new.held, new.held_tasks, new.held_all)
