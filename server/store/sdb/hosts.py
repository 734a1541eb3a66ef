"""A host's heartbeat item in the SimpleDB store: which containers the host's last full report held, and when.

A running container in its host's last full report is alive as long as the host keeps reporting: its
``last_seen`` and ``sample_time`` are the host's (when newer than the record's own), so a resync that changes
nothing writes one item per host instead of one per container. The item lives in the containers domain next
to the records and carries the same plain ``host`` attribute as each record of the host, so that one
``Select`` on it reads a host's heartbeat and records together. Everything here is pure (no requests).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass

from server.store.sdb import items

#: Plain attribute of record items and heartbeat items: the key of the host that reports the container.
HOST = "host"
#: Attributes of a heartbeat item (never ``last_seen`` or ``known_status``: the store's Selects on record items
#: must not find it).
BEAT = "beat"
SAMPLED = "beat.sample_time"
MEMBER_COUNT = "members.n"

#: Fields of a record that name its host. The cluster alone is no host; any of the others with it is one.
HOST_FIELDS = ("cluster_name", "container_instance_arn", "instance_id", "host_name")


def host_key(record: dict[str, str]) -> str:
    """The key of the host that reports ``record`` ("" when the record names none): a digest of its host fields,
    so that a host whose identity changes (its instance ARN known after registration) gets a new item."""
    fields = [record.get(name, "") for name in HOST_FIELDS]
    if not any(fields[1:]):
        return ""
    return hashlib.sha256(json.dumps(fields).encode("utf-8", "surrogatepass")).hexdigest()[:32]


def report_host(records: Iterable[dict[str, str]]) -> str:
    """The host key of a report whose records all come from one named host, else ""."""
    keys = {host_key(record) for record in records}
    return keys.pop() if len(keys) == 1 else ""


def item_name(key: str) -> str:
    return f"host/{key}"


@dataclass(frozen=True)
class Heartbeat:
    """One host's last full report: when the server got it (``beat``), its oldest ``sample_time`` (no container
    in it was sampled earlier), the containers it held, and the item's revision as read or written (None: not
    written yet)."""

    key: str
    beat: str = ""
    sampled: str = ""
    members: frozenset[str] = frozenset()
    revision: str | None = None

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
            return cls(key, revision=revision)
        members = frozenset(json.loads("".join(parts)))  # type: ignore[arg-type]
        return cls(key, attrs.get(BEAT, ""), attrs.get(SAMPLED, ""), members, revision)

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
