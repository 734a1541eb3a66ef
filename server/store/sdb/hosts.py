"""A host's heartbeat item in the SimpleDB store: which containers the host's last full report held, and when.

A running container in its host's last full report is alive as long as the host keeps reporting: its
``last_seen`` and ``sample_time`` are the host's (when newer than the record's own), so a resync that changes
nothing writes one item per host instead of one per container. The item lives in the containers domain next
to the records and carries the same plain ``host`` attribute as each record of the host, so that one
``Select`` on it reads a host's heartbeat and records together. The item also holds the host's lease, renewed by
any report that names the host. Everything here is pure (no requests).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from server.liveness import host_key
from server.records import seen_since, vanished
from server.store.sdb import items

#: Plain attribute of record items and heartbeat items: the key of the host that reports the container.
HOST = "host"
#: Attributes of a heartbeat item (never ``last_seen`` or ``known_status``: the store's Selects on record items
#: must not find it).
BEAT = "beat"
SAMPLED = "beat.sample_time"
MEMBER_COUNT = "members.n"
#: Attribute of a heartbeat item: when the host's lease was last renewed (``Store.host_leases``), by any report
#: that names the host, full or not. Written on its own (no revision: it only moves forward in time) or with the
#: heartbeat.
LEASE = "lease"
#: Prefix of the heartbeat items' names: no record item's name has it (a bucket is 12 hex digits or a key
#: without ``/``, and its slot items end in a number).
PREFIX = "host/"


def report_host(records: Iterable[dict[str, str]]) -> str:
    """The host key of a report whose records all come from one named host, else ""."""
    keys = {host_key(record) for record in records}
    return keys.pop() if len(keys) == 1 else ""


def item_name(key: str) -> str:
    return PREFIX + key


def key_of(item: str) -> str:
    """The host key of a heartbeat item's name ("" for any other name)."""
    key = item[len(PREFIX) :] if item.startswith(PREFIX) else ""
    return key if len(key) == 32 and all(c in "0123456789abcdef" for c in key) else ""


def renewal(attrs: dict[str, str]) -> str:
    """When a heartbeat item says its host last reported: its lease, or its last full report if later (an item
    written before leases existed has only that)."""
    return max(attrs.get(LEASE, ""), attrs.get(BEAT, ""))


@dataclass(frozen=True)
class Heartbeat:
    """One host's last full report: when the server got it (``beat``), its oldest ``sample_time`` (no container
    in it was sampled earlier), the containers it held, the item's revision as read or written (None: not
    written yet), and when the host last renewed its lease as read (``renewal``)."""

    key: str
    beat: str = ""
    sampled: str = ""
    members: frozenset[str] = frozenset()
    revision: str | None = None
    renewed: str = ""

    @property
    def item(self) -> str:
        return item_name(self.key)

    def attributes(self) -> dict[str, str]:
        """The item's attributes (without its revision). Chunks left from a longer member list stay and are
        ignored, as with records."""
        parts = items.chunks(items.dumps(sorted(self.members)))
        if len(parts) > items.SHARD_PAIRS - 8:
            raise ValueError(f"host {self.key} reports too many containers for one heartbeat item")
        return {
            HOST: self.key,
            BEAT: self.beat,
            SAMPLED: self.sampled,
            MEMBER_COUNT: str(len(parts)),
            **{f"members.{i}": part for i, part in enumerate(parts)},
        }

    @classmethod
    def from_attributes(cls, key: str, attrs: dict[str, str]) -> Heartbeat:
        """The heartbeat an item holds; an empty or torn item is a host not heard of yet (but keeps its revision,
        so that the next write's condition holds)."""
        revision = attrs.get(items.REVISION)
        count = attrs.get(MEMBER_COUNT)
        parts = [attrs.get(f"members.{i}") for i in range(int(count or 0))]
        if not count or any(part is None for part in parts) or attrs.get(HOST) != key:
            return cls(key, revision=revision, renewed=renewal(attrs))
        members = frozenset(json.loads("".join(parts)))  # type: ignore[arg-type]
        return cls(key, attrs.get(BEAT, ""), attrs.get(SAMPLED, ""), members, revision, renewal(attrs))

    def carries(self, record: dict[str, str]) -> bool:
        """Whether this heartbeat keeps ``record`` alive: running, and in the host's last full report."""
        return (
            record.get("known_status") == "RUNNING"
            and record.get("container_id", "") in self.members
            and host_key(record) == self.key
        )

    def alive(self, record: dict[str, str]) -> dict[str, str]:
        """``record`` as its host's heartbeat carries it: ``last_seen`` and ``sample_time`` no older than the host's."""
        if not self.carries(record):
            return record
        return {
            **record,
            "last_seen": max(record.get("last_seen", ""), self.beat),
            "sample_time": max(record.get("sample_time", ""), self.sampled),
        }


@dataclass(frozen=True)
class Vanishing:
    """What a host's full snapshot of ``moment`` no longer lists: of the containers ``ids`` (the host's previous
    heartbeat ``beat`` and the records its Select found, less the snapshot's), each whose record is of the host
    and not stopped has vanished (``server.records.vanished``)."""

    beat: Heartbeat
    moment: str
    ids: frozenset[str]

    def change(self, record: dict[str, str] | None) -> tuple[dict[str, str], list[dict[str, str]]] | None:
        """The record stopped and its events, or None where ``record`` has not vanished. It first ages from the
        last full report that held it (``Heartbeat.alive``)."""
        if record is None or record.get("known_status") == "STOPPED" or host_key(record) != self.beat.key:
            return None
        if seen_since(record, self.moment):
            return None
        return vanished(self.beat.alive(record), self.moment)
