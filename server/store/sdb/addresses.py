"""The SimpleDB store's address index: plain attributes of each record's own slot item, ``ip4``, ``ip6`` and
``on_ec2``, whose value is the key (its first IPv4 address, its first IPv6 address, ``instance:`` + its EC2
instance; ``server.store.address_index``), a space and the record's ``since``. They ride in the record's own
conditional put, so the index costs no request of its own, and go with the item when retention deletes it. A
question is one consistent Select on the one attribute its key lives in, ordered by it, newest ``since`` first:
``select * from containers where ip4 > 'KEY ' and ip4 <= 'KEY AT' order by ip4 desc limit N``.

A record with more addresses of one family than one (several ENIs; SimpleDB's items hold a single value per
attribute here) is found by the first of each only.
"""

from __future__ import annotations

from server.store import address_index
from server.store.base import Record
from server.store.sdb.client import quoted

IPV4, IPV6, INSTANCE = "ip4", "ip6", "on_ec2"
#: Sorts after every ``since``: the upper bound of a question with no moment.
LATEST = "~"


def attribute_of(key: str) -> str:
    """The attribute a key lives in."""
    if key.startswith(address_index.INSTANCE):
        return INSTANCE
    return IPV6 if ":" in key else IPV4


def address_attributes(record: Record) -> dict[str, str]:
    """The index attributes of a record's slot item (none for a record that knows no start)."""
    since = address_index.since_of(record)
    if not since:
        return {}
    found: dict[str, str] = {}
    for key in address_index.keys_of(record):
        found.setdefault(attribute_of(key), f"{key} {since}")
    return found


def select_expression(domain: str, key: str, at: str | None, limit: int) -> str:
    name = attribute_of(key)
    low, high = quoted(f"{key} "), quoted(f"{key} {at or LATEST}")
    return f"select * from `{domain}` where {name} > {low} and {name} <= {high} order by {name} desc limit {limit}"
