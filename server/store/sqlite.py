"""The embedded default store: one SQLite file in WAL mode, shared by every gunicorn worker.

Each thread keeps its own connection; every write is one ``BEGIN IMMEDIATE`` transaction, so concurrent
workers serialise on the file lock instead of overwriting each other's merges.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from server import records
from server.store.base import Event, Record, Store, StoreUnavailable

SCHEMA = """
CREATE TABLE IF NOT EXISTS containers (
    container_id  TEXT PRIMARY KEY,
    task_id       TEXT NOT NULL,
    container_name TEXT NOT NULL DEFAULT '',
    cluster_name  TEXT NOT NULL DEFAULT '',
    service_name  TEXT NOT NULL DEFAULT '',
    last_seen     TEXT NOT NULL DEFAULT '',
    record        TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS containers_by_task ON containers (task_id, container_name, container_id);
CREATE INDEX IF NOT EXISTS containers_by_service
    ON containers (cluster_name, service_name, task_id, container_name);
CREATE INDEX IF NOT EXISTS containers_by_last_seen ON containers (last_seen);
-- Only the running containers, for service discovery: a small index however long the history grows.
CREATE INDEX IF NOT EXISTS containers_running ON containers (container_id)
    WHERE json_extract(record, '$.known_status') = 'RUNNING';
CREATE TABLE IF NOT EXISTS events (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id     TEXT NOT NULL UNIQUE,
    container_id TEXT NOT NULL,
    task_id      TEXT NOT NULL,
    timestamp    TEXT NOT NULL,
    event        TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_container ON events (container_id, timestamp, seq);
CREATE INDEX IF NOT EXISTS events_by_task ON events (task_id, timestamp, seq);
"""

# Columns copied out of the record so that lookups are index scans.
INDEXED = ("task_id", "container_name", "cluster_name", "service_name", "last_seen")


class SQLiteStore(Store):
    kind = "sqlite"

    def __init__(self, path: str, timeout: float = 10.0):
        if path in ("", ":memory:"):
            raise ValueError("needs a file path: an in-memory database is not shared between threads")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.timeout = timeout
        self._local = threading.local()
        with self._errors():
            conn = self._connection()
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(SCHEMA)

    def _connection(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=OFF")
            self._local.conn = conn
        return conn

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"SQLite store {self.path}: {exc}") from exc

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._errors():
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _query(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._errors():
            return self._connection().execute(sql, args).fetchall()

    @staticmethod
    def _put(conn: sqlite3.Connection, record: Record) -> None:
        conn.execute(
            "INSERT OR REPLACE INTO containers (container_id, task_id, container_name, cluster_name,"
            " service_name, last_seen, record) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (record["container_id"], *(record.get(name, "") for name in INDEXED), json.dumps(record)),
        )

    def upsert_containers(self, records_: Iterable[Record], now: str) -> list[Record]:
        created = []
        with self._write() as conn:
            for new in records_:
                row = conn.execute(
                    "SELECT record FROM containers WHERE container_id = ?", (new["container_id"],)
                ).fetchone()
                old = json.loads(row[0]) if row else None
                merged = records.merge(old, new, now)
                if merged != old:
                    self._put(conn, merged)
                if old is None:
                    created.append(merged)
        return created

    def add_events(self, events: Iterable[Event]) -> int:
        with self._write() as conn:
            before = conn.total_changes
            conn.executemany(
                "INSERT OR IGNORE INTO events (event_id, container_id, task_id, timestamp, event)"
                " VALUES (?, ?, ?, ?, ?)",
                [(e["event_id"], e["container_id"], e["task_id"], e["timestamp"], json.dumps(e)) for e in events],
            )
            return conn.total_changes - before

    def get_container(self, container_id: str) -> Record | None:
        rows = self._query("SELECT record FROM containers WHERE container_id = ?", (container_id,))
        return json.loads(rows[0][0]) if rows else None

    def find_containers(self, prefix: str, limit: int) -> list[Record]:
        # 'g' sorts after every hex digit: the prefix becomes a range scan on the primary key.
        rows = self._query(
            "SELECT record FROM containers WHERE container_id >= ? AND container_id < ? ORDER BY container_id LIMIT ?",
            (prefix, prefix + "g", limit),
        )
        return [json.loads(r[0]) for r in rows]

    def containers_of_task(self, task_id: str) -> list[Record]:
        rows = self._query(
            "SELECT record FROM containers WHERE task_id = ? ORDER BY container_name, container_id",
            (task_id,),
        )
        return [json.loads(r[0]) for r in rows]

    def containers_of_service(self, cluster_name: str, service_name: str) -> list[Record]:
        rows = self._query(
            "SELECT record FROM containers WHERE cluster_name = ? AND service_name = ?"
            " ORDER BY task_id, container_name, container_id",
            (cluster_name, service_name),
        )
        return [json.loads(r[0]) for r in rows]

    def running_containers(self) -> list[Record]:
        # The condition is the partial index's own, so that SQLite reads only the index's rows.
        rows = self._query("SELECT record FROM containers WHERE json_extract(record, '$.known_status') = 'RUNNING'")
        return [json.loads(r[0]) for r in rows]

    def update_container(self, container_id: str, fields: Record) -> None:
        with self._write() as conn:
            row = conn.execute("SELECT record FROM containers WHERE container_id = ?", (container_id,)).fetchone()
            if row:
                self._put(conn, {**json.loads(row[0]), **fields})

    def update_task(self, task_id: str, fields: Record) -> None:
        with self._write() as conn:
            rows = conn.execute("SELECT record FROM containers WHERE task_id = ?", (task_id,)).fetchall()
            for (row,) in rows:
                self._put(conn, {**json.loads(row), **fields})

    def _events(self, column: str, value: str) -> list[Event]:
        rows = self._query(f"SELECT event FROM events WHERE {column} = ? ORDER BY timestamp, seq", (value,))
        return [json.loads(r[0]) for r in rows]

    def events_of_container(self, container_id: str) -> list[Event]:
        return self._events("container_id", container_id)

    def events_of_task(self, task_id: str) -> list[Event]:
        return self._events("task_id", task_id)

    def ping(self) -> None:
        self._query("SELECT 1 FROM containers LIMIT 1")

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
