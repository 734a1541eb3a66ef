"""The questions the address routes take (``server.address_query``), checked, and the shape of their answers: an
address, a moment, a port; a holding as JSON. Each check raises ``ValidationError`` naming where the value was."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, NamedTuple

from server import addresses, validation
from server.records import format_time
from server.validation import ValidationError

#: The most questions one ``POST /query/ip`` may ask.
MAX_QUESTIONS = 1000
#: Seconds since 1970, as flow logs write times: digits, and a fraction at most to the nanosecond.
EPOCH_SECONDS = re.compile(r"[0-9]{1,11}(?:\.[0-9]{1,9})?")
#: The record's fields a holding shows: who held the address, and where it ran.
IDENTIFIERS = (
    "task_id", "task_arn", "container_id", "container_name", "service_name", "cluster_name", "instance_id",
    "instance_ip", "host_name",
)  # fmt: skip


class Question(NamedTuple):
    """Who held ``address`` (normalised) at ``at`` (stored format; None: ever) on ``port`` (None: any)."""

    address: str
    at: str | None
    port: int | None


def question(value: Any, path: str) -> Question:
    """One question of the bulk form: ``{"address": ..., "at": ..., "port": ...}``, ``at`` and ``port`` optional."""
    asked = validation.json_object(value, path)
    return Question(
        address_text(validation.required(asked, "address", path), f"{path}.address"),
        None if asked.get("at") is None else moment(asked["at"], f"{path}.at"),
        None if asked.get("port") is None else port_number(asked["port"], f"{path}.port"),
    )


def moment(value: Any, path: str) -> str:
    """A time as ISO 8601 (``Z`` or an offset; none is UTC) or as seconds since 1970, in the stored format."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValidationError(path, f"expected a time (ISO 8601 or seconds since 1970), got {type(value).__name__}")
    written = value if isinstance(value, str) else repr(value)
    try:
        if isinstance(value, (int, float)) or EPOCH_SECONDS.fullmatch(written):
            when = datetime.fromtimestamp(float(written), UTC)
        else:
            when = datetime.fromisoformat(written)
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
        if when < validation.EARLIEST_TIME:
            raise ValidationError(path, f"{written[:64]!r} is before {validation.EARLIEST_TIME.year}")
        return format_time(when)
    except (ValueError, OverflowError, OSError):
        raise ValidationError(
            path,
            f"expected a time (ISO 8601 such as 2026-11-20T08:01:24Z, or seconds since 1970), got {written[:64]!r}",
        ) from None


def port_number(value: Any, path: str) -> int:
    if isinstance(value, str):
        if not value.isascii() or not value.isdigit():
            raise ValidationError(path, f"expected a port number from 1 to 65535, got {value[:40]!r}")
        value = int(value)
    return validation.whole_number(value, path, 1, 65535)


def address_text(value: Any, path: str) -> str:
    """``value`` as ``addresses.normalise`` writes it; its refusal names ``path``."""
    written = validation.text(value, path)
    try:
        return addresses.normalise(written)
    except ValidationError as exc:
        raise ValidationError(path, exc.problem) from None


def holding_json(holding: addresses.Holding) -> dict[str, Any]:
    """A holding as the routes answer it: who, how (``via``, ``ports``), and from/to with how each end is known."""
    record = holding.record
    return {
        **{name: record.get(name, "") for name in IDENTIFIERS},
        "address": holding.address,
        "via": holding.via,
        "ports": holding.ports,
        "from": holding.since,
        "from_by": holding.since_by,
        "to": holding.until,
        "to_by": holding.until_by,
        "overlap": holding.overlap,
    }
