"""What "running" means at read time: a host keeps its containers alive by reporting, and a host whose lease
lapsed is lost, its containers with it.

Every report that names a host renews that host's lease in the store (``Store.host_leases``). Nothing is written
per container when a host goes silent: whether a container is lost is derived here, from its record and the
leases, by every replica alike.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta

from server.records import format_time

log = logging.getLogger(__name__)

#: Fields that name the host whose agent reports a container. Only an agent knows them (the ECS feed names a
#: container instance, never its EC2 instance or host name), so only records an agent reported are kept alive by a
#: host's lease, and a feed event that rewrites a record's cluster or instance ARN never moves it to another host.
HOST_FIELDS = ("instance_id", "host_name")
#: The fields a lost record gains in every answer that shows it.
LOST_FIELDS = ("lost_since", "lost_reason")


def host_key(fields: Mapping[str, str]) -> str:
    """The key of the agent's host named by ``fields`` (a record or a report's ``host``), "" when they name none: a
    digest of its instance ID and host name."""
    return _digest(tuple(fields.get(name) or "" for name in HOST_FIELDS))


# Cached: a host runs many containers, and writes, discovery and address answers ask for its key once per record.
@functools.lru_cache(maxsize=65_536)
def _digest(values: tuple[str, ...]) -> str:
    if not any(values):
        return ""
    return hashlib.sha256(json.dumps(values).encode("utf-8", "surrogatepass")).hexdigest()[:32]


def renewal_due(renewed_at: str | None, now: str, lease: float) -> bool:
    """Whether a host heard at ``now`` needs its stored renewal (``renewed_at``) written again: once half the
    lease has passed, so that a reporting host never lapses and writes at most once per ``lease / 2``."""
    return not renewed_at or _seconds_between(renewed_at, now) >= lease / 2


def lost_since(record: Mapping[str, str], leases: Mapping[str, str], lease: float, now: str) -> str | None:
    """When ``record``'s host lapsed (its last renewal plus the lease), or None while the container may run.

    A stopped container is never lost, nor one that names no host (the ECS feed ends those). A host with no lease
    on record (written before leases existed) is judged by the container's own ``last_seen``.
    """
    if record.get("known_status") == "STOPPED":
        return None
    key = host_key(record)
    if not key:
        return None
    heard = max(leases.get(key, ""), record.get("last_seen", ""))
    if not heard:
        return None
    lapsed = _plus(heard, lease)
    return lapsed if lapsed <= now else None


def annotate(records: Iterable[dict[str, str]], leases: Mapping[str, str], lease: float, now: str) -> list[dict]:
    """The records as answers show them: a lost one gains ``lost_since`` and ``lost_reason``."""
    shown = []
    for record in records:
        since = lost_since(record, leases, lease, now)
        if since is None:
            shown.append(record)
        else:
            heard = max(leases.get(host_key(record), ""), record.get("last_seen", ""))
            reason = f"its host stopped reporting: lease last renewed {heard}"
            shown.append({**record, "lost_since": since, "lost_reason": reason})
    return shown


def is_running(record: Mapping[str, str]) -> bool:
    """Running by its last report and not lost (``record`` as ``annotate`` returned it)."""
    return record.get("known_status") == "RUNNING" and "lost_since" not in record


class Leases:
    """The store's host leases as one process reads them: asked at most once per ``interval`` seconds, so that a
    lookup costs no extra store read and replicas agree within that bound.

    A read that fails with one of ``failures`` (the store's errors) keeps the leases last read, and before any
    was read marks nothing lost: a lookup still answers, and discovery keeps its targets rather than dropping
    every one while the leases cannot be read.
    """

    def __init__(
        self,
        read: Callable[[], Mapping[str, str]],
        lease: float,
        interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        failures: tuple[type[Exception], ...] = (),
    ):
        self.read = read
        self.lease = lease
        self.interval = interval
        self.clock = clock
        self.failures = failures
        self._leases: Mapping[str, str] | None = None
        self._read_at = -float("inf")
        self._lock = threading.Lock()

    def current(self) -> Mapping[str, str] | None:
        """The leases, or None when none could be read yet."""
        with self._lock:
            if self.clock() - self._read_at >= self.interval:
                self._read_at = self.clock()  # a failing store is asked again after the interval, not per lookup
                try:
                    self._leases = dict(self.read())
                except self.failures as exc:
                    kept = "keeping the last read" if self._leases is not None else "no container is shown lost yet"
                    log.warning("cannot read the hosts' leases (%s): %s", exc, kept)
            return self._leases

    def annotate(self, records: Iterable[dict[str, str]], now: str) -> list[dict]:
        leases = self.current()
        return list(records) if leases is None else annotate(records, leases, self.lease, now)


def _parse(moment: str) -> datetime:
    return datetime.fromisoformat(moment.replace("Z", "+00:00")).astimezone(UTC)


@functools.lru_cache(maxsize=65_536)  # a host's renewal plus the lease, asked once per container of the host
def _plus(moment: str, seconds: float) -> str:
    return format_time(_parse(moment) + timedelta(seconds=seconds))


def _seconds_between(earlier: str, later: str) -> float:
    return (_parse(later) - _parse(earlier)).total_seconds()
