"""A container's life, or a task's containers side by side, laid out on one time axis for the page to draw as SVG
on the server: its moments (created, started, each change, stopped, lost) from the record and its events (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from server.page.wording import ago, parse_time, utc

#: The drawing's size in SVG units; the page scales it to the column's width.
WIDTH = 800
LABEL_WIDTH = 180
ROW_HEIGHT = 34
AXIS_HEIGHT = 40


@dataclass(frozen=True)
class Moment:
    at: str
    what: str
    #: When, as shown: UTC and how long ago.
    shown: str = ""
    ago: str = ""
    x: float = 0.0


@dataclass
class Row:
    """One container's life: its bar from ``x`` over ``width``, open when it has not ended."""

    label: str
    container_id: str
    css: str
    x: float = 0.0
    width: float = 0.0
    y: float = 0.0
    ended: bool = True
    moments: list[Moment] = field(default_factory=list)


@dataclass
class Timeline:
    rows: list[Row]
    ticks: list[Moment]
    width: int = WIDTH
    height: int = 0
    label_width: int = 0
    start: str = ""
    end: str = ""


def moments(record: Mapping[str, str], events: Sequence[Mapping[str, str]]) -> list[tuple[str, str]]:
    """Every moment of one container's life that the record and its events tell, oldest first, each said once."""
    found: list[tuple[str, str]] = []
    for name, what in (("created_at", "created"), ("started_at", "started"), ("first_seen", "first seen")):
        if record.get(name):
            found.append((record[name], what))
    for event in events:
        found.append((event.get("timestamp", ""), _event_words(event)))
    if record.get("stopped_at"):
        found.append((record["stopped_at"], "stopped"))
    if record.get("lost_since"):
        found.append((record["lost_since"], "lost with its host"))
    seen, unique = set(), []
    for moment in sorted((m for m in found if parse_time(m[0])), key=lambda m: _key(m[0])):
        if moment not in seen:
            seen.add(moment)
            unique.append(moment)
    return unique


def _event_words(event: Mapping[str, str]) -> str:
    kind, before, after = event.get("event", ""), event.get("from", ""), event.get("to", "")
    if kind == "appeared":
        return f"appeared as {after}" if after else "appeared"
    if kind == "vanished":
        return "vanished: no longer listed by its host"
    field_name = {"known_status": "status", "desired_status": "desired status"}.get(kind, kind)
    return f"{field_name} {before or '(none)'} → {after or '(none)'}"


def build(
    lives: Sequence[tuple[Mapping[str, str], Sequence[Mapping[str, str]]]], now: str, labelled: bool = False
) -> Timeline:
    """The timeline of ``lives`` (each a record as ``liveness.annotate`` gave it, with its events), drawn up to
    ``now`` for a life not ended. ``labelled``: a column of container names on the left (a task's view)."""
    label_width = LABEL_WIDTH if labelled else 0
    spans = []
    for record, events in lives:
        told = moments(record, events)
        ended = record.get("known_status") == "STOPPED" or "lost_since" in record
        start = told[0][0] if told else now
        end = (record.get("stopped_at") or record.get("lost_since") or told[-1][0]) if ended and told else now
        spans.append((record, told, start, end, ended))
    times = [t for _, told, start, end, _ in spans for t in (start, end, *(m for m, _ in told)) if parse_time(t)]
    parsed = [p for p in (parse_time(t) for t in times) if p]
    first, last = (min(parsed), max(parsed)) if parsed else (None, None)
    total = (last - first).total_seconds() if first and last else 0.0
    left, right = label_width + 10, WIDTH - 10

    def x_of(moment: str) -> float:
        at = parse_time(moment)
        if at is None or first is None or total <= 0:
            return float(left)
        return left + (right - left) * (at - first).total_seconds() / total

    rows = []
    for index, (record, told, start, end, ended) in enumerate(spans):
        x0, x1 = x_of(start), x_of(end)
        rows.append(
            Row(
                label=record.get("container_name", "") or record.get("container_id", "")[:12],
                container_id=record.get("container_id", ""),
                css=_css(record),
                x=round(x0, 1),
                width=round(max(x1 - x0, 2.0), 1),
                y=index * ROW_HEIGHT + 8,
                ended=ended,
                moments=[Moment(t, what, utc(t), ago(t, now), round(x_of(t), 1)) for t, what in told],
            )
        )
    ticks = []
    if first and last:
        start_text, end_text = min(times, key=_key), max(times, key=_key)
        ticks = [Moment(start_text, "start", utc(start_text), ago(start_text, now), float(left))]
        if total > 0:
            ticks.append(Moment(end_text, "end", utc(end_text), ago(end_text, now), float(right)))
    return Timeline(
        rows=rows,
        ticks=ticks,
        height=len(rows) * ROW_HEIGHT + AXIS_HEIGHT,
        label_width=label_width,
        start=ticks[0].shown if ticks else "",
        end=ticks[-1].shown if ticks else "",
    )


def interleaved(drawn: Timeline) -> list[tuple[str, Moment]]:
    """Every row's moments in one list, oldest first, each with its row's label (a task's history as one story)."""
    return sorted(((row.label, m) for row in drawn.rows for m in row.moments), key=lambda pair: _key(pair[1].at))


def _key(moment: str) -> float:
    parsed = parse_time(moment)
    return parsed.timestamp() if parsed else float("inf")


def _css(record: Mapping[str, str]) -> str:
    if "lost_since" in record:
        return "lost"
    status = record.get("known_status", "")
    return {"RUNNING": "running", "STOPPED": "stopped"}.get(status, "other")
