"""What the server's boto3 clients share."""

from __future__ import annotations

import os
from pathlib import Path


def region(explicit: str | None = None) -> str | None:
    """The region to give boto3: ``explicit``, else ``AWS_REGION`` (which this boto3 does not read by itself),
    else None so that boto3 looks in ``AWS_DEFAULT_REGION`` and the config file."""
    return explicit or os.environ.get("AWS_REGION") or None


def configuration() -> tuple:
    """What the standard chain reads region and credentials from, as a value that changes when any of it does:
    the ``AWS_*`` variables and the modification times of the config and credentials files."""
    variables = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("AWS_")))
    files: list[int | None] = []
    for variable, default in (
        ("AWS_CONFIG_FILE", "~/.aws/config"),
        ("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials"),
    ):
        path = Path(os.environ.get(variable, default)).expanduser()
        try:
            files.append(path.stat().st_mtime_ns)
        except OSError:
            files.append(None)
    return variables, tuple(files)
