"""Stores, chosen by URL: ``sqlite:///PATH`` (the embedded default), ``dynamodb://TABLE?region=…`` or
``sdb://PREFIX?region=…``."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

from server.store.base import Event, Record, Store, StoreError, StoreUnavailable

__all__ = ["Event", "Record", "Store", "StoreError", "StoreUnavailable", "open_store", "validate_url"]

SCHEMES = ("sqlite", "sdb", "dynamodb")


def validate_url(url: str) -> None:
    """Raise ValueError saying what is wrong with a store URL, without opening anything."""
    scheme, _, rest = url.partition("://")
    if scheme not in SCHEMES or not rest:
        raise ValueError(
            f"expected sqlite:///PATH, dynamodb://TABLE?region=REGION or sdb://PREFIX?region=REGION, got {url!r}"
        )
    if scheme == "sqlite" and not rest.startswith("/"):
        raise ValueError(f"expected sqlite:///PATH (three slashes; four for an absolute path), got {url!r}")
    if scheme == "sqlite" and rest[1:] in ("", ":memory:"):
        raise ValueError("sqlite needs a file path shared by every worker, not an in-memory database")


def open_store(url: str, retention_days: float = 0) -> Store:
    """Open the store a URL names; ``retention_days`` (0: keep everything) as ``Store.prune`` says."""
    validate_url(url)
    scheme, _, rest = url.partition("://")
    if scheme == "sqlite":
        from server.store.sqlite import SQLiteStore

        return SQLiteStore(rest[1:], retention_days=retention_days)
    parts = urlsplit(url)
    options: dict[str, Any] = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    if "retention_days" in options or "clock" in options:
        raise ValueError("retention is not a store URL option: set ECS_ID_MAPPER_RETENTION_DAYS")
    if scheme == "dynamodb":
        from server.store.dynamodb import DynamoDBStore

        return DynamoDBStore(parts.netloc + parts.path, retention_days=retention_days, **options)
    from server.store.sdb import SimpleDBStore

    return SimpleDBStore(parts.netloc + parts.path, retention_days=retention_days, **options)
