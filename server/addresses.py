"""Who held an address, and what ran on an EC2 instance, at a moment: addresses as users type them normalised, and
the intervals over which each record held its addresses, read from the store's address index.

A record holds the task's own addresses on awsvpc (its networks' IPv4 and IPv6 addresses, and the ``private_ip``
the ECS event feed names), else its instance's address (``instance_ip``) with the host ports it publishes there
(bridge and host networking). It holds them from the start of its life (``since``: ``started_at``, else
``first_seen``, else ``created_at``) until its end (``until``: ``stopped_at``; ``last_seen`` for a stopped record
that knows no stop; the moment its host was lost, ``server.liveness``; None while it still holds them). An interval
is half-open: at the moment a container stopped, the address is no longer its. Two holders whose intervals meet
are both returned, each marked ``overlap``: the record is shown as it is, never tidied.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from server import liveness, records
from server.store import address_index
from server.store.base import Record, Store
from server.validation import ValidationError

#: At most this many records are read per question: the newest starts of the address up to the moment asked.
#: An address reused by more containers than this since a holder started (an instance address on a busy
#: bridge host) can hide that holder from a question without a port: ask with the port.
LIMIT = 200
#: What an instance ID looks like (``i-`` and 8 or 17 hex digits; any length of hex up to 64 is taken).
INSTANCE_ID = address_index.INSTANCE_ID

_ZERO_PADDED = re.compile(r"(?:^|[.:])0[0-9]+(?=\.|$)")


def normalise(text: str) -> str:
    """``text`` as the canonical address the index holds: IPv4 in dotted decimal, IPv6 compressed in lower case,
    an IPv4-mapped IPv6 address (``::ffff:10.0.3.17``) as its IPv4 address.

    Refused (``ValidationError`` naming what is wrong): anything but one address; a zero-padded IPv4 part
    (``010.000.003.017``), which some tools read as octal (8) and others as decimal (10), so no answer could be
    trusted; an IPv6 zone (``fe80::1%eth0``), a prefix length (``/24``) or brackets.
    """
    if not isinstance(text, str) or not text:
        raise ValidationError("address", "required: an IPv4 or IPv6 address")
    return _normalised(text)


# Cached: a bulk question's address is checked twice (the route, then ``holdings``), and flows repeat addresses.
# A refusal is raised anew each time (lru_cache keeps only answers).
@functools.lru_cache(maxsize=65_536)
def _normalised(text: str) -> str:
    shown = repr(text[:64]) + ("…" if len(text) > 64 else "")
    if len(text) > 64 or text != text.strip():
        raise ValidationError("address", f"expected one IPv4 or IPv6 address, got {shown}")
    if "/" in text:
        raise ValidationError("address", f"expected an address, not a network with a prefix length: {shown}")
    if "%" in text:
        raise ValidationError("address", f"an IPv6 zone (%…) names a link of one host, not an address: {shown}")
    if text.startswith("["):
        raise ValidationError("address", f"write the IPv6 address without brackets: {shown}")
    if "." in text and _ZERO_PADDED.search(text.rpartition(":")[2]):
        raise ValidationError(
            "address",
            f"zero-padded IPv4 parts are ambiguous (octal to some tools, decimal to others): {shown}; "
            "write each part without leading zeros",
        )
    try:
        ipaddress.ip_address(text)
    except ValueError:
        raise ValidationError("address", f"expected an IPv4 or IPv6 address, got {shown}") from None
    canonical = address_index.canonical(text)
    if canonical is None:  # pragma: no cover - parsed above; a zone was refused
        raise ValidationError("address", f"expected an IPv4 or IPv6 address, got {shown}")
    return canonical


def moment(at: str | None) -> str | None:
    """``at`` (an ISO 8601 time; UTC when it names no offset) in the stored format, None for None; refused
    (``ValidationError``) when it names no moment from the year 2000 on."""
    if at is None:
        return None
    stored = address_index.moment(at) if isinstance(at, str) and len(at) <= 64 else ""
    if not stored:
        raise ValidationError("at", f"expected an ISO 8601 time (from the year 2000 on), got {str(at)[:64]!r}")
    return stored


@dataclass(frozen=True)
class Holding:
    """One record's hold on one address over an interval, and how each end of it is known."""

    record: dict[str, str]
    address: str
    #: "task": the task's own address on awsvpc; "instance": the EC2 instance's address with host ports.
    via: str
    ports: list[dict] = field(default_factory=list)
    since: str = ""
    #: "started" (``started_at``), "first_seen" (the first report), "event" (the ECS event feed's first sight),
    #: "created" (``created_at``).
    since_by: str = ""
    until: str | None = None
    #: "stopped", "vanished" (its host's snapshot no longer listed it), "last_seen", "lost" (its host went
    #: silent); None while it holds the address.
    until_by: str | None = None
    overlap: bool = False

    def covers(self, at: str) -> bool:
        return self.since <= at and (self.until is None or at < self.until)

    def meets(self, other: Holding) -> bool:
        """Whether the two intervals share a moment."""
        return (other.until is None or self.since < other.until) and (self.until is None or other.since < self.until)

    def as_json(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "via": self.via,
            "ports": self.ports,
            "since": self.since,
            "since_by": self.since_by,
            "until": self.until,
            "until_by": self.until_by,
            "overlap": self.overlap,
            "record": records.public(self.record),
        }


def holdings(
    store: Store,
    address: str,
    at: str | None = None,
    port: int | None = None,
    *,
    leases: Mapping[str, str] | None = None,
    now: str | None = None,
) -> list[Holding]:
    """Every record that held ``address`` (normalised first), newest first; with ``at``, only those that held it
    at that moment; with ``port``, only those publishing it (host port on an instance address, container port on
    a task address). ``leases``: the hosts' leases if the caller has them (else read when a record needs them)."""
    key = normalise(address)
    at = moment(at)
    found = _held(store, store.address_holders(key, at, LIMIT), leases, now, key)
    if port is not None:
        found = [h for h in found if _publishes(h, port)]
    return _answer(found, at)


def on_host(
    store: Store,
    instance_id: str,
    at: str | None = None,
    *,
    leases: Mapping[str, str] | None = None,
    now: str | None = None,
) -> list[Holding]:
    """What ran on EC2 instance ``instance_id``, newest first, each with the address it held there (its task
    address on awsvpc, else the instance's); with ``at``, only what ran at that moment."""
    if not isinstance(instance_id, str) or not INSTANCE_ID.fullmatch(instance_id):
        raise ValidationError(
            "instance_id", f"expected an EC2 instance ID (i- and hex digits), got {instance_id!r:.80}"
        )
    at = moment(at)
    key = address_index.instance_key(instance_id)
    records_ = store.address_holders(key, at, LIMIT)
    found = [h for h in _held(store, records_, leases, now, None) if address_index.instance_of(h.record) == instance_id]
    return _answer(found, at)


def _answer(found: list[Holding], at: str | None) -> list[Holding]:
    marked = [replace(h, overlap=True) if any(_clash(h, o) for o in found if o is not h) else h for h in found]
    if at is not None:
        marked = [h for h in marked if h.covers(at)]
    return sorted(marked, key=lambda h: (h.since, h.record.get("container_id", ""), h.address), reverse=True)


def _clash(one: Holding, other: Holding) -> bool:
    """Two holdings of one address that should not coexist: different tasks over a shared moment, and on an
    instance address only when they publish a host port in common (bridge containers share the address)."""
    if one.address != other.address or one.record.get("task_id") == other.record.get("task_id"):
        return False
    if one.via == other.via == "instance" and not (_host_ports(one) & _host_ports(other)):
        return False
    return one.meets(other)


def _host_ports(holding: Holding) -> set[int]:
    return {p["host_port"] for p in holding.ports if isinstance(p, dict) and isinstance(p.get("host_port"), int)} - {0}


def _publishes(holding: Holding, port: int) -> bool:
    side = "host_port" if holding.via == "instance" else "container_port"
    return any(isinstance(p, dict) and p.get(side) == port for p in holding.ports)


def _held(
    store: Store, found: list[Record], leases: Mapping[str, str] | None, now: str | None, key: str | None
) -> list[Holding]:
    """The holdings of the records read: of address ``key``, or (None) of whichever address each held."""
    now = now or records.format_time(datetime.fromtimestamp(store.clock(), UTC))
    if leases is None and any(_may_be_lost(r) for r in found):
        leases = store.host_leases()
    held = []
    for record in found:
        task = address_index.task_addresses(record)
        if task:
            addresses, via = ([key] if key in task else []) if key else task[:1], "task"
        else:
            instance = address_index.canonical(record.get("instance_ip") or "")
            addresses, via = ([instance] if instance and (key is None or instance == key) else []), "instance"
            if key is None and not addresses:
                addresses = [""]  # on a host, known though its address is not
        since, since_by = _since(record)
        if not since:
            continue
        until, until_by = _until(record, leases or {}, store.lease, now)
        ports = address_index.decoded(record.get("ports"))
        held += [Holding(record, a, via, ports, since, since_by, until, until_by) for a in addresses]
    return held


def _may_be_lost(record: Record) -> bool:
    return record.get("known_status") != "STOPPED" and bool(liveness.host_key(record))


def _since(record: Record) -> tuple[str, str]:
    started = address_index.moment(record.get("started_at"))
    if started:
        return started, "started"
    first_seen = address_index.moment(record.get("first_seen"))
    if first_seen:
        by_feed = "state_version" in record and not liveness.host_key(record)
        return first_seen, "event" if by_feed else "first_seen"
    created = address_index.moment(record.get("created_at"))
    return (created, "created") if created else ("", "")


def _until(record: Record, leases: Mapping[str, str], lease: float, now: str) -> tuple[str | None, str | None]:
    if record.get("known_status") == "STOPPED":
        stopped = address_index.moment(record.get("stopped_at"))
        if stopped:
            vanished = record.get("stopped_reason") == records.VANISHED_REASON
            return stopped, "vanished" if vanished else "stopped"
        last_seen = address_index.moment(record.get("last_seen"))
        return (last_seen, "last_seen") if last_seen else (None, None)
    lost = liveness.lost_since(record, leases, lease, now)
    return (lost, "lost") if lost else (None, None)
