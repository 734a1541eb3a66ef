"""How the page words a container's state and its times: "running", "stopped with exit code 137: …", "lost with
its host since …", and times in UTC with how long ago (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from server import liveness


def parse_time(moment: str) -> datetime | None:
    """A stored time (``server.records.format_time``'s format, or any ISO time), or None when it is none."""
    if not moment:
        return None
    try:
        parsed = datetime.fromisoformat(moment.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def utc(moment: str) -> str:
    """``2026-11-25 15:04:05 UTC``, or the text as stored when it is no time."""
    parsed = parse_time(moment)
    return parsed.strftime("%Y-%m-%d %H:%M:%S UTC") if parsed else moment


def span(seconds: float) -> str:
    """A duration in the largest unit that fits: ``45 s``, ``12 min``, ``3 h 5 min``, ``4 days``."""
    seconds = abs(seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds // 60:.0f} min"
    if seconds < 86_400:
        hours, minutes = divmod(seconds // 60, 60)
        return f"{hours:.0f} h {minutes:.0f} min" if minutes else f"{hours:.0f} h"
    days = seconds // 86_400
    return f"{days:.0f} day" if days == 1 else f"{days:.0f} days"


def ago(moment: str, now: str) -> str:
    """How long before ``now`` (or after, for a clock ahead) ``moment`` was: ``5 min ago``."""
    then, current = parse_time(moment), parse_time(now)
    if then is None or current is None:
        return ""
    seconds = (current - then).total_seconds()
    return f"{span(seconds)} ago" if seconds >= 0 else f"in {span(seconds)}"


def status(record: Mapping[str, str]) -> str:
    """The container's state in words, as a person on call needs it (``record`` as ``liveness.annotate`` gave it)."""
    if "lost_since" in record:
        return f"lost with its host since {utc(record['lost_since'])}"
    known = record.get("known_status", "")
    if known == "STOPPED":
        said = "stopped"
        if record.get("exit_code"):
            said += f" with exit code {record['exit_code']}"
        reason = record.get("reason") or record.get("stopped_reason", "")
        return f"{said}: {reason}" if reason else said
    if liveness.is_running(record):
        if record.get("desired_status") == "STOPPED":
            return "running, asked to stop"
        return "running"
    if known == "PENDING":
        return "pending: not started yet"
    return known.lower() or "unknown: no status on record"


def status_class(record: Mapping[str, str]) -> str:
    """A CSS class for the state: ``running``, ``stopped``, ``lost`` or ``other``."""
    if "lost_since" in record:
        return "lost"
    if liveness.is_running(record):
        return "running"
    return "stopped" if record.get("known_status") == "STOPPED" else "other"


def newest_running_first(records: list[dict]) -> list[dict]:
    """Running containers first, then the rest; newest first within each (by first sighting)."""
    newest = sorted(records, key=lambda r: r.get("first_seen") or r.get("sample_time", ""), reverse=True)
    return sorted(newest, key=lambda r: not liveness.is_running(r))
