"""Report bodies shaped like the agent's, as the server's tests know them; they live in ``testkit.reports``, where
the benchmarks find them too."""

from __future__ import annotations

from testkit.reports import (
    API_ID,
    ARN_LONG,
    ARN_OLD,
    AUTH,
    HOST,
    MIGRATE_ID,
    SIDECAR_ID,
    TASK_LONG,
    TASK_UUID,
    TOKEN,
    container,
    event,
    map_report,
)

__all__ = [
    "API_ID",
    "ARN_LONG",
    "ARN_OLD",
    "AUTH",
    "HOST",
    "MIGRATE_ID",
    "SIDECAR_ID",
    "TASK_LONG",
    "TASK_UUID",
    "TOKEN",
    "container",
    "event",
    "map_report",
]
