"""What the address index holds for a record: the keys it is found under (each address it held, and its EC2
instance) and the moment its holding began, the same on every store. Pure: no requests.

An entry is (key, since, container ID). ``since`` is the earliest moment the record knows of its life (the least of
``started_at``, ``created_at`` and ``first_seen``), so that it is never later than the start of the interval
``server.addresses`` answers with: a question about moment T reads the entries of its key whose ``since`` ≤ T,
newest first, and decides from the records themselves. A record gains entries when it gains an address or an
earlier start, never on an ordinary report, so the index costs a write only then.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import re
from datetime import UTC, datetime

from server.records import format_time

#: The prefix of the key under which a record is found by its EC2 instance (``Store.address_holders``).
INSTANCE = "instance:"
#: At most this many keys per record: an awsvpc task's IPv4 and IPv6 addresses and its instance fit; the rest of a
#: pathological record (16 networks of addresses) is not indexed, so that no store's item overflows.
MAX_KEYS = 4
#: What an EC2 instance ID looks like; a record naming anything else (free text from a report) is not indexed by it.
INSTANCE_ID = re.compile(r"i-[0-9a-f]{1,64}")
#: The record fields the entries are made of: a write that changes none of them leaves the index as it was.
FIELDS = (
    "networks", "private_ip", "instance_ip", "instance_id", "ec2_instance_id", "started_at", "created_at", "first_seen",
)  # fmt: skip
#: A ``since`` later than every real moment: the upper bound of a question with no moment.
LATEST = "9999"
#: A time already in the stored format (``server.records.format_time``), such as the server's own ``first_seen``.
STORED_TIME = re.compile(r"2\d{3}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


# Cached: a report's records share their instance's address, and every write of a record reads its addresses again.
@functools.lru_cache(maxsize=8192)
def canonical(text: str) -> str | None:
    """``text`` as ``ipaddress`` writes an address back (IPv6 compressed and lower-case; an IPv4-mapped IPv6
    address as its IPv4 address), or None when it is not an address in the one spelling ``ipaddress`` takes."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id:
            return None
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
    return str(address)


def moment(text: str | None) -> str:
    """A time the record holds as free text (the ECS agent's ``StartedAt`` has nanoseconds, or is Go's zero time
    before a start) in the stored format, or "" when it names no plausible moment."""
    if not text:
        return ""
    if STORED_TIME.fullmatch(text):
        return text  # as format_time writes it: nothing to parse (most times a write reads)
    written = text.strip().replace("Z", "+00:00").replace("z", "+00:00")
    head, dot, rest = written.partition(".")
    if dot:  # at most microseconds: Python's parser takes no more digits
        digits = len(rest) - len(rest.lstrip("0123456789"))
        written = f"{head}.{rest[: min(digits, 6)]}{rest[digits:]}" if digits else head + rest
    try:
        parsed = datetime.fromisoformat(written)
    except ValueError:
        return ""
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    if parsed.year < 2000:  # Go's zero time, 0001-01-01: not started yet
        return ""
    return format_time(parsed)


def since_of(record: dict[str, str]) -> str:
    """The entries' ``since``: the earliest moment the record knows of its life, "" when it knows none."""
    found = [moment(record.get(name)) for name in ("started_at", "created_at", "first_seen")]
    return min((m for m in found if m), default="")


def decoded(value: str | None) -> list:
    """A JSON list field of the record (``ports``, ``networks``), [] when empty or unreadable."""
    try:
        found = json.loads(value) if value else []
    except ValueError:
        return []
    return found if isinstance(found, list) else []


def task_addresses(record: dict[str, str]) -> list[str]:
    """The task's own addresses on awsvpc (canonical, each once): its networks' IPv4 then IPv6 addresses, and the
    ``private_ip`` the ECS event feed names."""
    found: list[str] = []
    awsvpc = [n for n in decoded(record.get("networks")) if isinstance(n, dict) and n.get("network_mode") == "awsvpc"]
    for key in ("ipv4_addresses", "ipv6_addresses"):
        for network in awsvpc:
            addresses = network.get(key)
            found += [a for a in addresses if isinstance(a, str)] if isinstance(addresses, list) else []
    if record.get("private_ip"):
        found.append(record["private_ip"])
    canon = (canonical(a) for a in found)
    return list(dict.fromkeys(a for a in canon if a))


def instance_of(record: dict[str, str]) -> str:
    """The EC2 instance the container ran on: the agent's ``instance_id``, else the one learnt for the feed."""
    return record.get("instance_id") or record.get("ec2_instance_id") or ""


def keys_of(record: dict[str, str]) -> list[str]:
    """The keys the record is found under: its task addresses on awsvpc, else its instance's address (bridge and
    host networking), then ``INSTANCE`` + its EC2 instance ID; at most ``MAX_KEYS``."""
    keys = task_addresses(record)
    if not keys and (address := canonical(record.get("instance_ip") or "")):
        keys = [address]
    if INSTANCE_ID.fullmatch(instance := instance_of(record)):
        keys = [*keys[: MAX_KEYS - 1], INSTANCE + instance]
    return keys[:MAX_KEYS]


def entries(record: dict[str, str] | None) -> set[tuple[str, str]]:
    """The record's (key, since) pairs; none for no record or a record that knows no moment of its life."""
    if record is None:
        return set()
    since = since_of(record)
    return {(key, since) for key in keys_of(record)} if since else set()


def instance_key(instance_id: str) -> str:
    return INSTANCE + instance_id
