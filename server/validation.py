"""The checks every body a client sends goes through (agent reports, ECS events), and the error they raise.

Each check returns the value it accepted or raises ValidationError naming the JSON path of the offending value.
Nothing here knows HTTP: the web layer (``server.errors``) answers a ValidationError with 400, the event feed
leaves the message on its queue.
"""

from __future__ import annotations

import ipaddress
import math
import re
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from server.records import format_time

#: Every string a client sends is bounded: the longest value SimpleDB holds in one attribute.
MAX_BYTES = 1024
CLOCK_SKEW = timedelta(minutes=5)
#: Times before this are implausible for a container (ECS began in 2014); they would sort before every real one.
EARLIEST_TIME = datetime(2000, 1, 1, tzinfo=UTC)
#: RFC 3339's date-time (what OpenAPI's ``format: date-time`` means), from the year 2000 on, no leap second:
#: ``datetime.fromisoformat`` alone takes more (a date alone, week dates, no seconds), which a document cannot say.
RFC3339 = re.compile(
    r"[2-9][0-9]{3}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,9})?(?:Z|[+-][0-9]{2}:[0-5][0-9])"
)


class ValidationError(Exception):
    """A value in a client's body breaks a rule: ``path`` says where (``$.containers[0].task_id``), ``problem`` how."""

    def __init__(self, path: str, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


def text(value: Any, path: str) -> str:
    """A string of at most MAX_BYTES in UTF-8, without NUL."""
    if not isinstance(value, str):
        raise ValidationError(path, f"expected a string, got {type(value).__name__}")
    if value.isascii():  # nearly always: a character is a byte and no surrogate can hide in it
        size = len(value)
    else:
        try:
            size = len(value.encode("utf-8"))
        except UnicodeEncodeError:
            raise ValidationError(path, "is not valid Unicode (a lone surrogate)") from None
    if size > MAX_BYTES:
        raise ValidationError(path, f"longer than {MAX_BYTES} bytes")
    if "\x00" in value:
        raise ValidationError(path, "contains a NUL character")
    return value


def optional(obj: dict, key: str) -> Any:
    """``obj[key]``, None when absent: JSON's null is no value, as absent is."""
    return obj.get(key)


def optional_text(obj: dict, key: str, path: str) -> str:
    """``obj[key]`` checked as text, "" when absent or null."""
    value = obj.get(key)
    return "" if value is None else text(value, f"{path}.{key}")


def required(obj: dict, key: str, path: str) -> Any:
    """``obj[key]``, unchecked, when it is there and neither null nor ""."""
    if obj.get(key) in (None, ""):
        raise ValidationError(f"{path}.{key}", "required")
    return obj[key]


def json_object(value: Any, path: str) -> dict:
    """``value`` when it is a JSON object."""
    if not isinstance(value, dict):
        raise ValidationError(path, f"expected an object, got {type(value).__name__}")
    return value


def json_list(value: Any, path: str, limit: int) -> list:
    """``value`` when it is a JSON array of at most ``limit`` entries."""
    if not isinstance(value, list):
        raise ValidationError(path, f"expected a list, got {type(value).__name__}")
    if len(value) > limit:
        raise ValidationError(path, f"at most {limit} entries, got {len(value)}")
    return value


def whole_number(value: Any, path: str, lowest: int, highest: int) -> int:
    """An integer from ``lowest`` to ``highest``. JSON has one number type: ``3.0`` is the integer 3, as JSON Schema
    reads it, and a fraction, a boolean, NaN or an infinity is none."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not lowest <= value <= highest:
        shown = repr(value) if len(repr(value)) <= 40 else f"{repr(value)[:40]}…"
        raise ValidationError(path, f"expected a whole number from {lowest} to {highest}, got {shown}")
    return value


def ip_address(value: Any, path: str, version: int) -> str:
    """An IPv4 or IPv6 address (``version``) as ``ipaddress`` writes it back: no prefix length, no zone index
    (``fe80::1%eth0``; a zone is free text), no other spelling of a number (``0x7f.1``)."""
    address = text(value, path)
    try:
        parsed = ipaddress.IPv4Address(address) if version == 4 else ipaddress.IPv6Address(address)
    except ValueError:
        parsed = None
    if parsed is None or getattr(parsed, "scope_id", None):
        raise ValidationError(path, f"expected an IPv{version} address, got {address[:64]!r}")
    return address


def plain_json(value: Any, path: str) -> None:
    """Refuse what ``json.loads`` takes but JSON (RFC 8259) is not: NaN and the infinities, and strings, keys too,
    that are not Unicode (a lone surrogate, ``\\ud800``, which no UTF-8 can carry). Walked without recursion, so
    that any depth the parser took is checked."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            pending.extend(item)
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, float) and not math.isfinite(item):
            raise ValidationError(path, f"{item} is not a JSON number")
        elif isinstance(item, str) and not item.isascii():
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise ValidationError(path, "holds a string that is not valid Unicode (a lone surrogate)") from None


def rfc3339(value: Any, path: str) -> str:
    """An RFC 3339 time (``RFC3339``), then as ``timestamp``: in the stored format, and a time past now (plus
    CLOCK_SKEW) taken as now."""
    written = text(value, path)
    if not RFC3339.fullmatch(written):
        raise ValidationError(path, f"expected an RFC 3339 time (2026-11-20T08:01:24.6Z), got {written[:64]!r}")
    return timestamp(written, path)


def timestamp(value: Any, path: str) -> str:
    """An ISO 8601 time in the stored format (UTC); a time past now (plus CLOCK_SKEW) is taken as now."""
    written = text(value, path)
    moment, stored = _parsed_time(written)
    try:
        if moment is None:
            if stored == "no time":
                raise ValidationError(path, f"expected an ISO 8601 time, got {written!r}")
            raise OverflowError
        # A clock far ahead must not freeze a record (later reports would all look older): no time past now.
        latest = datetime.now(UTC) + CLOCK_SKEW
        if moment > latest:
            return format_time(latest)
        if not stored:
            raise OverflowError
        return stored
    except OverflowError:  # also year 1 with a positive offset, before datetime's first UTC moment
        raise ValidationError(
            path, f"time out of range (before {EARLIEST_TIME.year} or unrepresentable): {written!r}"
        ) from None


@lru_cache(maxsize=1024)
def _parsed_time(written: str) -> tuple[datetime | None, str]:
    """``written`` as a moment and in the stored format ('' if it has none); (None, why) for no usable moment.

    Cached: an agent samples every container of a report at once, so they share one ``sample_time``."""
    try:
        moment = datetime.fromisoformat(written)
    except ValueError:
        return None, "no time"
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        if moment < EARLIEST_TIME:  # a clock that was never set, not a container's life
            return None, "too early"
        return moment, format_time(moment)
    except OverflowError:
        return moment, ""
