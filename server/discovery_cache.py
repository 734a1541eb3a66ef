"""The built answer of ``/sd/prometheus``: its JSON bytes and ETag, kept by each process and built again only when
what it shows changed: a write (the store's discovery generation moved) or a host lost or back (the leases).

A request asks the store for its generation (at most every ``refresh`` seconds: one small read), takes the leases
as ``server.liveness.Leases`` holds them (read at most every few seconds) and judges which of the records it holds
are lost now, exactly as ``server.liveness`` does, by a binary search over their last renewals sorted once per
read of the leases. Only when the generation moved, or the lost ones are not those of the answer, is anything
built; filtered answers are cut from the groups already encoded.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from operator import itemgetter
from typing import Any

from server import records, running_set
from server.liveness import Leases, host_key
from server.lru import LRU
from server.store.base import Record, Store

log = logging.getLogger(__name__)

Group = dict[str, Any]
#: A target group with its place in the answer (``order``) and its JSON.
Part = tuple[Any, Group, bytes]
#: The whole answer's key among the filtered ones.
WHOLE: Hashable = None
#: Filtered answers kept per built answer (each a subset of its bytes).
VARIANTS = 256


@dataclass
class Answer:
    """One answer as served: the JSON body and its strong ETag (unquoted), a digest of those very bytes, so that
    replicas that show the same give the same tag; and, once asked for, the body gzipped (its tag ends ``.gz``)."""

    body: bytes
    etag: str
    _gzipped: bytes | None = None

    @classmethod
    def of(cls, fragments: list[bytes]) -> Answer:
        body = b"[" + b",".join(fragments) + b"]\n"
        return cls(body, hashlib.blake2b(body, digest_size=16).hexdigest())

    def gzipped(self) -> bytes:
        """The body gzipped, made at the first ask: level 1, a ninth of the JSON in a fraction of its building."""
        if self._gzipped is None:
            self._gzipped = gzip.compress(self.body, compresslevel=1, mtime=0)
        return self._gzipped


def encode(group: Group) -> bytes:
    """One target group as JSON, as Flask's ``jsonify`` writes it (compact, ASCII)."""
    return json.dumps(group, separators=(",", ":")).encode()


def lapse(heard: str, lease: float) -> str:
    """When a host heard at ``heard`` lapses (``server.liveness.lost_since``)."""
    moment = datetime.fromisoformat(heard.replace("Z", "+00:00")) + timedelta(seconds=lease)
    return records.format_time(moment)


class Held:
    """The running records as last read, with what judging them lost needs: each one's host key and last sighting,
    and, per leases read, the order of their hosts' last renewals."""

    def __init__(self, running: list[Record], generation: str | None, read_at: float):
        self.records = running
        self.generation = generation
        self.read_at = read_at
        self.keys = [host_key(record) for record in running]
        self._leases: Mapping[str, str] | None = None
        self._heard: list[str] = []  # sorted: the moment each judged record's host was last heard of
        self._order: list[int] = []  # the records' indexes in that order

    def lost(self, leases: Mapping[str, str] | None, lease: float, now: str) -> frozenset[int]:
        """The indexes of the records lost at ``now`` (``server.liveness.lost_since``; none before any lease read)."""
        if leases is None:
            return frozenset()
        if leases is not self._leases:  # a new read of the leases: sort the records by when their host was heard
            heard = [
                (max(leases.get(key, ""), record.get("last_seen", "")), index)
                for index, (key, record) in enumerate(zip(self.keys, self.records, strict=True))
                if key and record.get("known_status") != "STOPPED"
            ]
            heard = sorted(pair for pair in heard if pair[0])
            self._heard, self._order = [h for h, _ in heard], [i for _, i in heard]
            self._leases = leases
        low, high = 0, len(self._heard)
        while low < high:  # the lapse grows with the moment heard: the lost ones are a prefix
            middle = (low + high) // 2
            if lapse(self._heard[middle], lease) <= now:
                low = middle + 1
            else:
                high = middle
        return frozenset(self._order[:low])


class Built:
    """The groups of one (records, lost) pair, each with its JSON, and the answers cut from them."""

    def __init__(self, parts: list[Part], lost: frozenset[int]):
        self.groups = [group for _, group, _ in parts]
        self.fragments = [fragment for _, _, fragment in parts]
        self.lost = lost
        self.answers: LRU[Hashable, Answer] = LRU(VARIANTS)
        self.answers.put(WHOLE, Answer.of(self.fragments))

    def answer(self, key: Hashable, shows: Callable[[Group], bool]) -> Answer:
        found = self.answers.get(key)
        if found is None:
            found = Answer.of([f for g, f in zip(self.groups, self.fragments, strict=True) if shows(g)])
            self.answers.put(key, found)
        return found


class AnswerCache:
    """The answer of ``build`` (running records → target groups) for the store's running containers, as the
    leases show them, built again only when that may have changed.

    ``refresh``: seconds between reads of the store's generation (0: at every request). A replica's answer is at
    most that old, plus the store's ``discovery_settle`` (an index that shows a write late), and a host's lapse
    shows once the leases are read after it (``Leases.interval``).
    """

    def __init__(
        self,
        store: Store,
        leases: Leases,
        build: Callable[[list[Record]], list[Group]],
        order: Callable[[Group], Any],
        refresh: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], str] = records.utc_now,
    ):
        self.store = store
        self.leases = leases
        self.build = build
        self.order = order
        #: Each container's record, what it shows (``server.running_set.shown``) and its groups (each with its
        #: place in the answer and its JSON), by container ID, as last built: building the answer again encodes
        #: only the containers that changed, and compares nothing for a record the store handed back as it was.
        self._parts: dict[str, tuple[Record, tuple[str, ...] | None, list[Part]]] = {}
        self.refresh = refresh
        self.clock = clock
        self.now = now
        #: Times the running records were read and the groups built (for tests and benchmarks).
        self.reads = 0
        self.builds = 0
        self._lock = threading.Lock()
        self._held: Held | None = None
        self._built: Built | None = None
        self._checked_at = -float("inf")
        self._moved_at = -float("inf")  # when the generation was last seen to move

    def answer(
        self, key: Hashable = WHOLE, shows: Callable[[Group], bool] = lambda group: True, gzipped: bool = False
    ) -> tuple[bytes, str]:
        """The body and ETag of the answer for one filter: ``key`` names it among the answers kept, ``shows`` says
        which groups it keeps; ``gzipped``, its gzip encoding."""
        with self._lock:
            found = self._current().answer(key, shows)
            return (found.gzipped(), found.etag + ".gz") if gzipped else (found.body, found.etag)

    def _current(self) -> Built:
        held, fresh = self._held, False
        if held is None or self._stale(held):
            held, fresh = self._read(), True
        lost = held.lost(self.leases.current(), self.leases.lease, self.now())
        if not fresh and self._built is not None and lost - self._built.lost:
            # Newly lost by the last sightings as read: they may have been seen since (a report moves last_seen
            # without moving the generation), so read again before dropping them.
            held = self._read()
            lost = held.lost(self.leases.current(), self.leases.lease, self.now())
        if self._built is None or self._built.lost != lost:
            self.builds += 1
            shown = [record for index, record in enumerate(held.records) if index not in lost]
            self._built = Built(self._groups(shown), lost)
        return self._built

    def _groups(self, shown: list[Record]) -> list[Part]:
        """``build(shown)``, each group with its place and JSON, in ``order``; a container whose shown fields are
        those of the last build keeps its groups."""
        parts: dict[str, tuple[Record, tuple[str, ...] | None, list[Part]]] = {}
        found: list[Part] = []
        for record in shown:
            container_id = record.get("container_id", "")
            kept = self._parts.get(container_id)
            if kept is None or kept[0] is not record or container_id in parts:
                seen = running_set.shown(record)
                if kept is None or kept[1] != seen or container_id in parts:
                    groups = self.build([record])
                    kept = (record, seen, [(self.order(group), group, encode(group)) for group in groups])
                else:
                    kept = (record, seen, kept[2])
            parts[container_id] = kept
            found += kept[2]
        self._parts = parts
        found.sort(key=itemgetter(0))  # stable: what ``build`` of them all gives
        return found

    def _stale(self, held: Held) -> bool:
        """Whether the records held may no longer be the store's: the generation moved, or it moved so shortly
        before they were read that the store may not have shown the write yet (``Store.discovery_settle``)."""
        moment = self.clock()
        if moment - self._checked_at < self.refresh:
            return False
        self._checked_at = moment
        generation = self.store.discovery_generation()
        if generation is None or generation != held.generation:
            return True
        return held.read_at - self._moved_at < self.store.discovery_settle <= moment - self._moved_at

    def _read(self) -> Held:
        # The generation first: a write after it moves it again, so these records are never taken as newer.
        generation = self.store.discovery_generation()
        moment = self._checked_at = self.clock()
        if self._held is None or generation != self._held.generation:
            self._moved_at = moment  # or first read here: the store may not show the last write yet either
        self.reads += 1
        self._held = Held(self.store.running_containers(), generation, moment)
        self._built = None
        return self._held
