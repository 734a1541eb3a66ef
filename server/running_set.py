"""What service discovery shows of a record, so that a store can tell cheaply when its answer may have changed: a
write that changes these fields of a running record, or whether a record runs, moves the store's generation."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

#: The fields ``/sd/prometheus`` reads from a running record: its labels, its targets, whether it runs and the
#: host whose lease keeps it alive. ``last_seen`` and ``sample_time`` are left out on purpose: every report moves
#: them, and discovery reads ``last_seen`` only to judge a host lost, which the answer's cache checks itself.
SHOWN_FIELDS = (
    "known_status",
    "desired_status",
    "cluster_name",
    "service_name",
    "task_id",
    "task_arn",
    "task_name",
    "task_version",
    "container_name",
    "container_id",
    "image",
    "instance_az",
    "region",
    "instance_id",
    "ec2_instance_id",
    "host_name",
    "instance_ip",
    "networks",
    "ports",
    "launch_type",
    "docker_labels",
)

#: The note (``Store.put_note``'s key space) under which SQLite counts the writes that change what discovery shows.
GENERATION_NOTE = "discovery/generation"


def shown(record: Mapping[str, str] | None) -> tuple[str, ...] | None:
    """What discovery can show of ``record``: its shown fields while it runs, None when it does not (or is absent)."""
    if record is None or record.get("known_status") != "RUNNING":
        return None
    return tuple(record.get(name) or "" for name in SHOWN_FIELDS)


def moved(changes: Iterable[tuple[Mapping[str, str] | None, Mapping[str, str] | None]]) -> bool:
    """Whether any (before, after) pair of a write changes what discovery shows (None: no record)."""
    return any(shown(before) != shown(after) for before, after in changes)
