"""What the server's boto3 clients share."""

from __future__ import annotations

import os


def region(explicit: str | None = None) -> str | None:
    """The region to give boto3: ``explicit``, else ``AWS_REGION`` (which this boto3 does not read by itself),
    else None so that boto3 looks in ``AWS_DEFAULT_REGION`` and the config file."""
    return explicit or os.environ.get("AWS_REGION") or None
