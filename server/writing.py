"""Who is writing: the name of the token behind a write and the records it may change, held for the length of the
write so that every store's merge applies the same check and signs the events it derives.

The routes and the feed open ``writing(...)`` around a store call; ``server.records`` asks ``check`` before it
merges into a stored record and ``sign`` for each event it makes. Outside such a block nothing is checked or signed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

log = logging.getLogger(__name__)

#: The event field that names the token (or process) that wrote the change.
BY = "by"


class OutOfScope(Exception):
    """A write would change a stored record its token may not change: the whole write is refused (403)."""

    def __init__(self, writer: str, record: dict[str, str]):
        self.writer = writer
        self.container_id = record.get("container_id", "")
        self.cluster_name = record.get("cluster_name", "")
        super().__init__(
            f"token {writer!r} may not change container {self.container_id} of cluster {self.cluster_name!r}"
        )


@dataclass(frozen=True)
class Writer:
    """``name`` signs the events; ``may_change`` says whether a stored record is within the token's scope (None:
    every record is)."""

    name: str
    may_change: Callable[[dict[str, str]], bool] | None = None


_current: ContextVar[Writer | None] = ContextVar("ecs_id_mapper_writer", default=None)


@contextmanager
def writing(name: str, may_change: Callable[[dict[str, str]], bool] | None = None) -> Iterator[Writer]:
    """Write as ``name`` for the block, changing only the stored records ``may_change`` allows."""
    writer = Writer(name, may_change)
    reset = _current.set(writer)
    try:
        yield writer
    finally:
        _current.reset(reset)


def current() -> Writer | None:
    return _current.get()


def allows(record: dict[str, str]) -> bool:
    """Whether the current writer may change the stored ``record``."""
    writer = _current.get()
    return writer is None or writer.may_change is None or writer.may_change(record)


def check(record: dict[str, str]) -> None:
    """Raise OutOfScope unless the current writer may change the stored ``record``."""
    writer = _current.get()
    if writer is not None and writer.may_change is not None and not writer.may_change(record):
        raise OutOfScope(writer.name, record)


def refused_quietly(record: dict[str, str], what: str) -> None:
    """Log that the current writer was not let ``what`` to the stored ``record``, which the write leaves as it is."""
    writer = _current.get()
    log.warning(
        "token %r may not %s: container %s is of cluster %r; left as it is",
        writer.name if writer else "", what, record.get("container_id", ""), record.get("cluster_name", ""),
    )  # fmt: skip


def sign(event: dict[str, str]) -> dict[str, str]:
    """``event`` with the current writer's name as ``by`` (unchanged when nobody named writes, or it has one)."""
    writer = _current.get()
    if writer is None or not writer.name or BY in event:
        return event
    return {**event, BY: writer.name}
