"""The SQLite store's address index: a table of (key, since, container ID) entries (``server.store.address_index``),
written in the transaction that changes their record, read by one range scan of its primary key per question."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from server.store import address_index
from server.store.base import Record

#: Created with the other tables; ``WITHOUT ROWID``: the primary key is the whole row, so an entry is one B-tree
#: insert and a question one range of it.
SCHEMA = """
CREATE TABLE IF NOT EXISTS addresses (
    key          TEXT NOT NULL,
    since        TEXT NOT NULL,
    container_id TEXT NOT NULL,
    PRIMARY KEY (key, since, container_id)
) WITHOUT ROWID
"""

Entry = tuple[str, str, str]


def changes(pairs: Iterable[tuple[Record | None, Record | None]]) -> tuple[list[Entry], list[Entry]]:
    """The entries to delete and to insert for records that changed from (before, after); None is no record."""
    deletes: list[Entry] = []
    inserts: list[Entry] = []
    for before, after in pairs:
        if before and after and all(before.get(f) == after.get(f) for f in address_index.FIELDS):
            continue  # the usual report: nothing the entries are made of changed
        container_id = (after or before or {}).get("container_id", "")
        old, new = address_index.entries(before), address_index.entries(after)
        deletes += [(key, since, container_id) for key, since in sorted(old - new)]
        inserts += [(key, since, container_id) for key, since in sorted(new - old)]
    return deletes, inserts


def apply(conn: sqlite3.Connection, deletes: list[Entry], inserts: list[Entry]) -> None:
    if deletes:
        conn.executemany("DELETE FROM addresses WHERE key = ? AND since = ? AND container_id = ?", deletes)
    if inserts:
        conn.executemany("INSERT OR IGNORE INTO addresses (key, since, container_id) VALUES (?, ?, ?)", inserts)


def update(conn: sqlite3.Connection, pairs: Iterable[tuple[Record | None, Record | None]]) -> None:
    """Write the index changes of records that changed from (before, after)."""
    apply(conn, *changes(pairs))


def holders(conn: sqlite3.Connection, key: str, at: str | None, limit: int) -> list[bytes | str]:
    """The stored records of the newest ``limit`` entries of ``key`` whose ``since`` is at most ``at``, newest
    first, each once: the range of the index, and each record by its primary key, in one query."""
    rows = conn.execute(
        "SELECT addresses.container_id, record FROM addresses JOIN containers USING (container_id)"
        " WHERE addresses.key = ? AND addresses.since <= ? ORDER BY addresses.since DESC LIMIT ?",
        (key, at or address_index.LATEST, limit),
    ).fetchall()
    return list(dict(rows).values())  # each container once, where its newest entry put it
