"""Parsing the identifiers users type: container IDs (or prefixes), ECS task IDs and EC2 instance IDs.

A container ID is a Docker ID (64 hex) or, on Fargate and ECS Managed Instances, a runtime ID: the task's
32-hex ID, a dash and a 10-digit number. Either may be given in full or by a prefix of at least 12 characters.
"""

from __future__ import annotations

import re

from server.errors import ApiError

HEX = re.compile(r"[0-9a-f]*")
CONTAINER_ID = re.compile(r"[0-9a-f]{64}")
RUNTIME_ID = re.compile(r"[0-9a-f]{32}-[0-9]{10}")
#: A prefix of either form, at least 12 characters long.
CONTAINER_PREFIX = re.compile(r"[0-9a-f]{12,64}|[0-9a-f]{32}-[0-9]{0,10}")
TASK_ID = re.compile(r"[0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
SHORT_ID_LENGTH = 12
#: An EC2 instance ID: ``i-`` and 8 (older instances) or 17 hex digits.
INSTANCE_ID = re.compile(r"i-(?:[0-9a-f]{8}|[0-9a-f]{17})")


def container_prefix(raw: str) -> str:
    """A full container ID or a prefix of at least 12 characters, lowercased; 400 otherwise."""
    value = raw.lower()  # no stripping: an ID with spaces or control characters around it is malformed
    if CONTAINER_PREFIX.fullmatch(value):
        return value
    if HEX.fullmatch(value):
        if len(value) < SHORT_ID_LENGTH:
            raise ApiError(f"container ID {raw!r} is too short: give at least {SHORT_ID_LENGTH} hex digits")
        raise ApiError(f"container ID {raw!r} is too long: a Docker container ID has 64 hex digits")
    raise ApiError(
        f"container ID {raw!r} is not hexadecimal, nor a Fargate runtime ID (32 hex digits, a dash, 10 digits)"
    )


def is_full_container_id(value: str) -> bool:
    """True for a whole container ID (either form), false for a prefix."""
    return bool(CONTAINER_ID.fullmatch(value) or RUNTIME_ID.fullmatch(value))


def task_id(raw: str) -> str:
    """A task ID (32 hex digits or a UUID), lowercased; 400 otherwise."""
    value = raw.lower()
    if not TASK_ID.fullmatch(value):
        raise ApiError(f"task ID {raw!r} is malformed: expected 32 hex digits or a UUID")
    return value


def task_id_of_arn(arn: str) -> str:
    """The task ID in either ARN form: ``…:task/UUID`` or ``…:task/CLUSTER/ID``."""
    return arn.rsplit("/", 1)[-1].lower()


def instance_id(raw: str) -> str:
    """An EC2 instance ID (``i-`` and 8 or 17 hex digits), lowercased; 400 otherwise."""
    value = raw.lower()
    if not INSTANCE_ID.fullmatch(value):
        raise ApiError(f"instance ID {raw!r} is malformed: expected i- and 8 or 17 hex digits")
    return value
