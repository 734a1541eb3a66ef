"""The SimpleDB store's side of hosts' heartbeats (items laid out in ``hosts``): a host's full report renews its
heartbeat, which keeps its running containers alive without a write per container."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from datetime import UTC, datetime

from server.lru import LRU
from server.records import format_time
from server.store.base import Event, Record, StoreUnavailable
from server.store.sdb import hosts, items
from server.store.sdb.client import CONFLICTS, Refused, quoted
from server.store.sdb.leases import Leases
from server.store.sdb.records import Held, unchanged_since

log = logging.getLogger(__name__)

#: Seconds a worker reads host reports record by record after a host's Select failed.
SELECT_PAUSE = 600.0


class Heartbeats(Leases):
    """Full reports by host, and records as their hosts' heartbeats carry them."""

    #: Hosts' heartbeats as last read or written here (none when records are not remembered either).
    _beats: LRU[str, hosts.Heartbeat]
    _select_paused_until = 0.0

    def record_report(
        self, records: list[Record], events: list[Event], now: str, full: bool = False, host: Record | None = None
    ) -> tuple[list[Record], int]:
        """A host's full report keeps its running containers alive through the host's heartbeat item
        (``hosts``): a running container whose record it would change only by ``last_seen`` and
        ``sample_time`` is not written, and the heartbeat is written when its members change or it is older
        than ``last_seen_resolution``. A replica that has not seen the host reads its heartbeat and records
        in one Select instead of one read per container. Each container's new events go out with its record
        (``_record``). With ``host``, the report renews the host's lease (``_renew``; with the heartbeat when
        that is written) and a full one stops the host's containers it no longer lists (``hosts.Vanishing``):
        those of the previous heartbeat, and those the Select found. Without, the host of a full report is the
        one all its records name, if any."""
        lease_key = hosts.host_key(host) if host else ""
        key = (lease_key if host is not None else hosts.report_host(records)) if full else ""
        if not key:
            created, stored = self._record(records, events, now)
            self._renew(lease_key, now)
            return created, stored
        self._ready_to_use()
        ids = list(dict.fromkeys(record["container_id"] for record in records))
        members = frozenset(r["container_id"] for r in records if hosts.host_key(r) == key)
        beat = self._beats.get(key)
        read: dict[str, Held] = {}
        others: dict[str, Held] = {}
        renewed: str | None = None
        # Remembered copies are merged against for one heartbeat interval at most: a record another route changed
        # meanwhile is read again when the heartbeat is due, as a write at the last_seen resolution would.
        if (
            beat is None
            or _age(beat.beat, now) >= self.last_seen_resolution
            or sum(self._cache.get(cid) is None for cid in ids) > 1
        ):
            beat, read, others = self._read_host_or_beat(key, ids)
            renewed = beat.renewed
        held = {cid: read.get(cid) or self._cache.get(cid) for cid in ids}
        # Only a record labelled with its host is found by the next cold replica's Select: one that is not yet
        # keeps being written at the last_seen resolution, which labels it.
        carried = {cid for cid, copy in held.items() if copy is not None and copy.host == key}
        moment = max((record.get("sample_time", "") for record in records), default="") or now
        vanishing = None
        if lease_key:
            vanishing = hosts.Vanishing(beat, moment, frozenset(beat.members | others.keys()) - members)
        created, stored = self._record(records, events, now, carried, {**others, **read}, vanishing)
        sampled = min((r.get("sample_time", "") for r in records if r["container_id"] in members), default=moment)
        self._beat(beat, members, sampled, now, renew=bool(lease_key), departed_kept=vanishing is None)
        self._renew(lease_key, now, renewed)
        return created, stored

    def _read_host_or_beat(
        self, key: str, container_ids: list[str]
    ) -> tuple[hosts.Heartbeat, dict[str, Held], dict[str, Held]]:
        """``_read_host``; where the Select fails, the heartbeat and the records one by one (and no others), and
        so for ``SELECT_PAUSE`` seconds."""
        if time.monotonic() >= self._select_paused_until:
            try:
                return self._read_host(key, container_ids)
            except StoreUnavailable as exc:
                log.warning("SimpleDB Select failed, reading host reports record by record for a while: %s", exc)
                self._select_paused_until = time.monotonic() + SELECT_PAUSE
        return self._read_beat(key), self._read_held(container_ids), {}

    def _read_host(
        self, key: str, container_ids: Iterable[str]
    ) -> tuple[hosts.Heartbeat, dict[str, Held], dict[str, Held]]:
        """A host's heartbeat, the records of ``container_ids`` labelled with it, and its other records not
        stopped, in one Select."""
        wanted = set(container_ids)
        beat = hosts.Heartbeat(key)
        found: dict[str, Held] = {}
        others: dict[str, Held] = {}
        for name, attrs in self._select_items(f"{hosts.HOST} = {quoted(key)}"):
            if name == beat.item:
                beat = hosts.Heartbeat.from_attributes(key, attrs)
            elif record := items.record_from(attrs):
                bucket, slot = items.slot_of(name)
                if record.get("container_id") in wanted:
                    found[record["container_id"]] = Held.read(record, bucket, slot, attrs)
                elif record.get("known_status") != "STOPPED" and hosts.host_key(record) == key:
                    others[record["container_id"]] = Held.read(record, bucket, slot, attrs)
        for container_id, copy in {**others, **found}.items():
            self._cache.put(container_id, copy)
        self._beats.put(key, beat)
        return beat, found, others

    def _read_beat(self, key: str) -> hosts.Heartbeat:
        return hosts.Heartbeat.from_attributes(key, self._get("containers", hosts.item_name(key)))

    def _beat(
        self,
        beat: hosts.Heartbeat,
        members: frozenset[str],
        sampled: str,
        now: str,
        renew: bool = False,
        departed_kept: bool = True,
    ) -> None:
        """Write a host's heartbeat after its full report (``members``, sampled no earlier than ``sampled``), on a
        condition on its revision, with the host's lease if ``renew``. The heartbeat of a later report, written
        meanwhile by another replica, stays. If ``departed_kept``, a running container that left the report first
        gets the last_seen the old heartbeat gave it (else the report stopped them: ``hosts.Vanishing``)."""
        for _ in range(self.MERGE_TRIES):
            if sampled < beat.sampled:
                return  # a later report's heartbeat is stored
            departed = list(beat.members - members)
            if not departed and members == beat.members and _age(beat.beat, now) < self.last_seen_resolution:
                return
            if departed and departed_kept:
                self._keep_departed(beat, departed)
            renewed = now if renew else beat.renewed
            new = hosts.Heartbeat(beat.key, now, sampled, members, str(int(beat.revision or 0) + 1), renewed)
            lease = {hosts.LEASE: now} if renew else {}
            try:
                self._put(
                    "containers",
                    new.item,
                    {**new.attributes(), **lease, items.REVISION: new.revision or ""},
                    expected=unchanged_since(beat.revision),
                )
            except Refused as exc:
                if exc.code not in CONFLICTS:
                    raise
                beat = self._read_beat(beat.key)
                continue
            self._beats.put(new.key, new)
            if renew:
                self._renewals.put(new.key, now)
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
        beats = {beat.key: beat for beat in self.pool.map(self._read_beat, sorted(keys))}
        return [beats[key].alive(record) if (key := hosts.host_key(record)) in beats else record for record in records]


def _age(earlier: str, later: str) -> float:
    """Seconds from one stored time to another (infinite when either is missing)."""
    try:
        return (datetime.fromisoformat(later) - datetime.fromisoformat(earlier)).total_seconds()
    except ValueError:
        return float("inf")
