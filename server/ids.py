"""Parsing the identifiers users type: Docker container IDs (or prefixes) and ECS task IDs."""

from __future__ import annotations

import re

from server.errors import ApiError

HEX = re.compile(r"[0-9a-f]*")
CONTAINER_ID = re.compile(r"[0-9a-f]{64}")
TASK_ID = re.compile(r"[0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
SHORT_ID_LENGTH = 12


def container_prefix(raw: str) -> str:
    """A full container ID or a prefix of at least 12 hex digits, lowercased; 400 otherwise."""
    value = raw.lower()  # no stripping: an ID with spaces or control characters around it is malformed
    if not HEX.fullmatch(value):
        raise ApiError(f"container ID {raw!r} is not hexadecimal")
    if len(value) < SHORT_ID_LENGTH:
        raise ApiError(f"container ID {raw!r} is too short: give at least {SHORT_ID_LENGTH} hex digits")
    if len(value) > 64:
        raise ApiError(f"container ID {raw!r} is too long: a Docker container ID has 64 hex digits")
    return value


def task_id(raw: str) -> str:
    """A task ID (32 hex digits or a UUID), lowercased; 400 otherwise."""
    value = raw.lower()
    if not TASK_ID.fullmatch(value):
        raise ApiError(f"task ID {raw!r} is malformed: expected 32 hex digits or a UUID")
    return value


def task_id_of_arn(arn: str) -> str:
    """The task ID in either ARN form: ``…:task/UUID`` or ``…:task/CLUSTER/ID``."""
    return arn.rsplit("/", 1)[-1].lower()
