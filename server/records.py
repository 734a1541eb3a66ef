"""Container records: their field names and the rules by which a report changes one.

A record is a flat map of strings so that every store can hold it. The 2016 names stay because users' scripts
read them; ``cadvisor_url`` and ``graylog_url`` are rendered at query time (``server.links``), never stored.
An event's ID is derived from the change it records.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

from server import writing

LEGACY_FIELDS = (
    "container_id", "container_name", "container_port", "task_id", "task_name", "task_version",
    "instance_port", "instance_ip", "instance_id", "instance_type", "instance_az", "desired_status",
    "known_status", "host_name", "cluster_name", "ecs_agent_version", "sample_time",
)  # fmt: skip
ADDED_FIELDS = (
    "task_arn", "docker_name", "image", "image_id", "created_at", "started_at", "ports", "networks",
    "region", "container_instance_arn", "first_seen", "last_seen", "stopped_at", "service_name",
    "newrelic_url",
)  # fmt: skip
FIELDS = LEGACY_FIELDS + ADDED_FIELDS
#: What only the ECS event feed knows (``server.ecs_events``); ``state_version`` is the task's ``version`` in the
#: last event applied, which orders the feed's states of one task; ``ecs_status`` the container's status in it.
FEED_FIELDS = (
    "service_name", "launch_type", "availability_zone", "private_ip", "image_digest", "exit_code", "reason",
    "stopped_reason", "stop_code", "state_version", "ecs_status", "task_definition_arn",
)  # fmt: skip

#: Fields a report never sets: kept by the server, or cached from outside lookups.
SERVER_FIELDS = ("first_seen", "last_seen", "stopped_at", "service_name", "newrelic_url")
#: A container never changes task, so these are kept from the first report.
IDENTITY_FIELDS = ("container_id", "task_id", "task_arn")
#: Stored as JSON text inside the flat record, answered as lists.
JSON_FIELDS = ("ports", "networks")

STATUSES = ("PENDING", "RUNNING", "STOPPED")


def utc_now() -> str:
    """The current time in the one format every stored timestamp uses, so that strings sort as times."""
    return format_time(datetime.now(UTC))


def format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def merge(old: dict[str, str] | None, new: dict[str, str], now: str) -> dict[str, str]:
    """The record after ``new`` (a validated report entry, or an entry of the ECS event feed) is applied to
    ``old`` at server time ``now``.

    ``first_seen`` (the first sample time) is kept and ``last_seen`` advanced; cached lookups survive;
    ``stopped_at`` is set the first time the container is seen STOPPED. ``new`` may carry ``first_seen`` and
    ``stopped_at`` hints from the events of its report (see ``with_event_times``): an earlier moment than its
    ``sample_time`` wins.

    A report entry (the agent's) is ordered by ``sample_time``: an older one (a late retry) changes nothing else.
    A feed entry carries ``state_version`` and is ordered by it alone, among the feed's entries: a lower version
    changes nothing, a higher (or the same) one is applied whole, whatever its time says (clocks differ; ECS's
    ``updatedAt`` is no order). Across the two sources a container's life only goes forward (PENDING, RUNNING,
    STOPPED): neither takes the other's status back. Where the feed runs it is the authority for stops: its STOPPED
    ends the life with ECS's own exit code, reasons and ``stopped_at``, whatever the agent said and however late;
    no report revives it. Once the feed and the agent both wrote a record, an empty value never erases the
    other source's.
    """
    if old is not None:
        writing.check(old)  # a token scoped to other clusters changes nothing of this record: the write is refused
    new = dict(new)
    first_seen_hint = new.pop("first_seen", None) or now
    stopped_at_hint = new.pop("stopped_at", None) or now
    if old is None:
        # When the agent saw it, not when a report (perhaps delayed by an outage) arrived.
        first_seen = min(now, new.get("sample_time") or now, first_seen_hint)
        record = {**new, "first_seen": first_seen, "last_seen": now}
    elif "state_version" in new:
        record = _merge_feed(old, new, now, stopped_at_hint)
    else:
        record = _merge_report(old, new, now)
    if record.get("known_status") == "STOPPED" and not record.get("stopped_at"):
        record["stopped_at"] = min(record.get("sample_time") or now, stopped_at_hint)
    return record


#: Where each status stands in a container's life; ECS never takes one back.
_LIFE = {"PENDING": 1, "RUNNING": 2, "STOPPED": 3}
_LIFE_FIELDS = ("known_status", "desired_status")


def _later(one: str, other: str) -> str:
    """The later of two statuses in a container's life ("" is none)."""
    return other if _LIFE.get(other, 0) > _LIFE.get(one, 0) else one


def _merge_feed(old: dict[str, str], new: dict[str, str], now: str, stopped_at: str) -> dict[str, str]:
    record = {**old, "last_seen": max(now, old.get("last_seen", ""))}
    if _version(new) < _version(old):
        return record  # an earlier state of the task, delivered late
    record.update({
        k: v for k, v in new.items()
        if v and k not in IDENTITY_FIELDS and (k in FEED_FIELDS or k not in SERVER_FIELDS)
    })  # fmt: skip
    for name in _LIFE_FIELDS:
        record[name] = _later(old.get(name, ""), new.get(name, ""))
    record["sample_time"] = max(old.get("sample_time", ""), new.get("sample_time", ""))
    if new.get("ecs_status") == "STOPPED" and old.get("ecs_status") != "STOPPED":
        # ECS's own moment, over the agent's sample or a reconciliation's guess (which come later).
        record["stopped_at"] = stopped_at
    return record


def _merge_report(old: dict[str, str], new: dict[str, str], now: str) -> dict[str, str]:
    record = {**old, "last_seen": max(now, old.get("last_seen", ""))}
    if new.get("sample_time", "") < old.get("sample_time", ""):
        return record
    both = "state_version" in old
    record.update({
        k: v for k, v in new.items()
        if k not in SERVER_FIELDS and k not in IDENTITY_FIELDS and k not in FEED_FIELDS and (v or not both)
    })  # fmt: skip
    ecs_status = old.get("ecs_status", "")
    if ecs_status == "STOPPED":
        for name in _LIFE_FIELDS:  # ECS said it stopped: an agent that still lists it lags behind
            record[name] = old.get(name, "")
    elif ecs_status:
        record["known_status"] = _later(record.get("known_status", ""), ecs_status)
        # ECS never takes a desired stop back: an agent sample still saying RUNNING lags behind it.
        record["desired_status"] = _later(record.get("desired_status", ""), old.get("desired_status", ""))
    return record


def _version(record: dict[str, str]) -> int:
    version = record.get("state_version", "")
    return int(version) if version.isdigit() else -1


def with_event_times(containers: list[dict[str, str]], events: list[dict[str, str]]) -> list[dict[str, str]]:
    """Report entries with hints from the same report's events: when each container appeared and stopped.

    An agent that waited out an outage sends each container's latest state with every event since: the state's
    ``sample_time`` is then later than the moment the container first appeared (its earliest event) or stopped
    (its event to STOPPED). ``merge`` takes ``first_seen`` for new records and ``stopped_at`` the first time the
    container is STOPPED.
    """
    hints: dict[str, dict[str, str]] = {}
    for event in events:
        moment = event["timestamp"]
        hint = hints.setdefault(event["container_id"], {})
        hint["first_seen"] = min(hint.get("first_seen", moment), moment)
        if event["to"] == "STOPPED" and event["event"] in ("appeared", "known_status"):
            hint["stopped_at"] = min(hint.get("stopped_at", moment), moment)
    return [{**c, **hints[c["container_id"]]} if c["container_id"] in hints else c for c in containers]


def public(record: dict[str, str]) -> dict[str, object]:
    """A record as the JSON API shows it: list fields decoded."""
    shown: dict[str, object] = dict(record)
    for name in JSON_FIELDS:
        if name in record:
            try:
                shown[name] = json.loads(record[name]) if record[name] else []
            except ValueError:
                shown[name] = record[name]
    return shown


def event_id(container_id: str, kind: str, old: str, new: str) -> str:
    """The ID the agent gives a change (see the wire format), so that no source doubles another's event."""
    if kind == "appeared":
        old = new = ""
    digest = hashlib.blake2b(f"{container_id}|{kind}|{old}|{new}".encode(), digest_size=16).hexdigest()
    return f"{container_id[:12]}-{digest}"


#: Status fields whose every change is a transition in the container's history.
STATUS_FIELDS = ("known_status", "desired_status")
#: Why a container stopped when its host's full snapshot no longer listed it.
VANISHED_REASON = "vanished: no longer listed by its host's ECS agent"


def transitions(old: dict[str, str] | None, merged: dict[str, str]) -> list[dict[str, str]]:
    """The history a stored change makes: ``appeared`` for a new record, one event per status field that changed.

    Event IDs are the agent's own (``event_id``), so an agent's copy of a transition, the ECS feed's and a resend
    are one event. Each is timed as the record knows it: when the container was first seen, when it stopped,
    else the ``sample_time`` of the report that changed it.
    """
    container_id, task_id = merged["container_id"], merged.get("task_id", "")
    moment = merged.get("sample_time", "")
    found = []

    def add(kind: str, before: str, after: str, at: str) -> None:
        found.append(writing.sign({
            "event_id": event_id(container_id, kind, before, after), "container_id": container_id,
            "task_id": task_id, "event": kind, "from": before, "to": after, "timestamp": at or moment,
        }))  # fmt: skip

    if old is None:
        # As the agent says it: one event, to the status it first had.
        add("appeared", "", merged.get("known_status", ""), merged.get("first_seen", ""))
        return found
    for field in STATUS_FIELDS:
        before, after = old.get(field, ""), merged.get(field, "")
        if after and before != after:
            stopped = field == "known_status" and after == "STOPPED"
            add(field, before, after, merged.get("stopped_at", "") if stopped else moment)
    return found


def untold(changes: list[tuple[dict[str, str] | None, dict[str, str]]], told: list[dict[str, str]]) -> list[dict]:
    """The transitions of ``changes`` (stored record, merged record) that the report's own events (``told``) do
    not name already, whatever IDs the sender gave them. A status is reached once in a life, so a told event to the
    same status names it, whatever it came from (the feed may tell PENDING → RUNNING → STOPPED where the record
    went from PENDING straight to STOPPED); a container appears once."""

    def named_as(event: dict[str, str]) -> tuple[str, str, str]:
        return event["container_id"], event["event"], "" if event["event"] == "appeared" else event.get("to") or ""

    named = {named_as(e) for e in told}
    return [
        event
        for old, merged in changes
        if old != merged
        for event in transitions(old, merged)
        if named_as(event) not in named
    ]


def seen_since(record: dict[str, str], moment: str) -> bool:
    """Whether ``record`` was sampled after ``moment``: a full snapshot of that moment that does not list it is late
    (a slow report overtaken by a newer one) and says nothing of it."""
    return record.get("sample_time", "") > moment


def vanished(record: dict[str, str], moment: str) -> tuple[dict[str, str], list[dict[str, str]]]:
    """A not-stopped ``record`` that its host's full snapshot of ``moment`` no longer lists: stopped then, with the
    reason, and its ``vanished`` event (as the agent would send it) and its stop. A record the current writer may not
    change (``server.writing``) is left as it is, with no event: a token of one cluster stops no other's containers
    by claiming their host."""
    if not writing.allows(record):
        writing.refused_quietly(record, "stop it as vanished from its host's snapshot")
        return record, []
    stopped = {
        **record,
        "known_status": "STOPPED",
        "stopped_at": record.get("stopped_at") or moment,
        "stopped_reason": record.get("stopped_reason") or VANISHED_REASON,
    }
    container_id = record["container_id"]
    before = record.get("known_status", "")
    gone = writing.sign({
        "event_id": event_id(container_id, "vanished", before, ""), "container_id": container_id,
        "task_id": record.get("task_id", ""), "event": "vanished", "from": before, "to": "", "timestamp": moment,
    })  # fmt: skip
    return stopped, [gone, *transitions(record, stopped)]
