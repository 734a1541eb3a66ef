"""The embedded default store: one SQLite file in WAL mode, shared by every gunicorn worker.

Each thread keeps its own connection; every write is one ``BEGIN IMMEDIATE`` transaction, so concurrent
workers serialise on the file lock instead of overwriting each other's merges. Writers of every process queue
for that lock on an flock of ``<file>-writer``, and a report's records are merged and encoded before it.

Layout, chosen from measurements (``bench/lookup.py``): ``containers`` is a rowid table whose record is compact
JSON compressed with zlib against a preset dictionary of the record's field names, about 500 bytes instead of
1.4 KiB. Rows that small stay inside their B-tree page; a ``WITHOUT ROWID`` table of 1.4 KiB rows spilled each
into an overflow page of its own and took ~5 KiB per container.

Commits only append to the WAL: a thread of each process (``Checkpointer``, one process at a time by an flock
of ``<file>-checkpoint``) copies it back into the database file, fsyncs included, without holding the write
lock, and truncates it in full once it passes half of ``WAL_LIMIT``. A writer that finds it past the whole limit
all the same (the checkpointer starved of CPU or of the lock) truncates it itself.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import sqlite3
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from server import records
from server.store.base import Event, Record, Store, StoreUnavailable

log = logging.getLogger(__name__)

#: Bumped when the layout changes; older files are converted when opened.
SCHEMA_VERSION = 4
#: The indexes whose definition changed in SCHEMA_VERSION 4: files of version 3 rebuild just these.
REBUILT_IN_4 = ("containers_by_service", "containers_running")

SCHEMA = """
CREATE TABLE IF NOT EXISTS containers (
    container_id  TEXT NOT NULL UNIQUE,
    task_id       TEXT NOT NULL,
    container_name TEXT NOT NULL DEFAULT '',
    cluster_name  TEXT NOT NULL DEFAULT '',
    service_name  TEXT NOT NULL DEFAULT '',
    last_seen     TEXT NOT NULL DEFAULT '',
    known_status  TEXT NOT NULL DEFAULT '',
    record        BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS containers_by_task ON containers (task_id, container_name, container_id);
-- Only the records that have a service: the others (every record, without AWS) cost no random insert here.
CREATE INDEX IF NOT EXISTS containers_by_service
    ON containers (cluster_name, service_name, task_id, container_name) WHERE service_name != '';
CREATE INDEX IF NOT EXISTS containers_by_last_seen ON containers (last_seen);
-- Only the running containers, for service discovery: a small index however long the history grows. Keyed
-- by the status (then the rowid), so that new containers append to its end instead of landing at random.
CREATE INDEX IF NOT EXISTS containers_running ON containers (known_status) WHERE known_status = 'RUNNING';
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
#: What retention's prune scans; created in files of any layout version.
RETENTION_INDEX = "CREATE INDEX IF NOT EXISTS events_by_time ON events (timestamp)"

# Columns copied out of the record so that lookups are index scans.
INDEXED = ("task_id", "container_name", "cluster_name", "service_name", "last_seen", "known_status")

#: The WAL's largest size, give or take one transaction (and what SQLite truncates it to when it resets it).
WAL_LIMIT = 48 * 1024 * 1024

#: How long a truncation of the WAL waits for the readers of the moment, the writers held back meanwhile.
TRUNCATE_WAIT = 0.2

#: How long the checkpointer lets commits gather in the WAL before it copies them back into the database file.
CHECKPOINT_INTERVAL = 0.1

#: How much of the file each connection reads through a memory map instead of a read() per page and a private
#: page cache (address space only: the pages are the OS's own cache, shared by every connection). SQLite's own
#: ceiling, just under 2 GiB: a million containers take 1.09 GB.
MMAP_SIZE = 0x7FFF0000

#: What records have in common, so that zlib need not spell it out in each. Stored records can only be read
#: with the very bytes they were written with (zlib checks its Adler-32): never change this text.
RECORD_DICTIONARY = (
    "".join(f'"{name}":"' for name in reversed(records.FIELDS))
    + '"arn:aws:ecs::container-instance/:task/default/Amazon ECS Agent - v1.(sha256:'
    + '[{"container_port":,"host_port":,"protocol":"tcp"}][{"network_mode":"awsvpc","ipv4_addresses":["'
    + '"],"ipv6_addresses":[]}]bridgeip-10-.dkr.ecr..amazonaws.com/T00:00:00.000Z","RUNNING","STOPPED"'
).encode()


def encode_record(record: Record) -> bytes:
    packer = zlib.compressobj(1, zdict=RECORD_DICTIONARY)
    return packer.compress(json.dumps(record, separators=(",", ":")).encode()) + packer.flush()


def decode_record(stored: bytes | str) -> Record:
    if isinstance(stored, str):  # written before the layout of SCHEMA_VERSION 2
        return json.loads(stored)
    return json.loads(zlib.decompressobj(zdict=RECORD_DICTIONARY).decompress(stored))


COLUMNS = (*INDEXED, "record", "container_id")
INSERT = f"INSERT INTO containers ({', '.join(COLUMNS)}) VALUES ({', '.join('?' for _ in COLUMNS)})"
UPDATE = f"UPDATE containers SET {', '.join(f'{name} = ?' for name in INDEXED)}, record = ? WHERE container_id = ?"


def _row(record: Record) -> tuple:
    """The parameters of INSERT and UPDATE for ``record``."""
    return (*(record.get(name, "") for name in INDEXED), encode_record(record), record["container_id"])


def _with_fields(stored: list[tuple[str, bytes | str]], fields_by_task: Mapping[str, Record]) -> list[tuple]:
    """UPDATE parameters for stored (task ID, record) pairs with their task's fields set."""
    return [_row({**decode_record(record), **fields_by_task[task_id]}) for task_id, record in stored]


def _select_in(conn: sqlite3.Connection, query: str, values: list[str]) -> list[tuple]:
    """The rows of ``query``, whose ``IN ({})`` takes ``values``, asked 500 values at a time (SQLite allows 32,766
    parameters; small statements keep each short)."""
    rows: list[tuple] = []
    for start in range(0, len(values), 500):
        chunk = values[start : start + 500]
        rows += conn.execute(query.format(",".join("?" * len(chunk))), chunk).fetchall()
    return rows


class _Plan:
    """What a report does to the stored records ``stored`` (encoded, by container ID): rows to insert and to
    update, and the records that are new."""

    def __init__(self, entries: list[Record], stored: dict[str, bytes | str], now: str):
        current = {container_id: decode_record(record) for container_id, record in stored.items()}
        changed: dict[str, Record] = {}
        self.created: list[Record] = []
        for new in entries:
            container_id = new["container_id"]
            old = current.get(container_id)
            merged = records.merge(old, new, now)
            if old is None:
                self.created.append(merged)
            if merged != old:
                changed[container_id] = merged
            current[container_id] = merged
        self.inserts = [_row(r) for r in changed.values() if r["container_id"] not in stored]
        self.updates = [_row(r) for r in changed.values() if r["container_id"] in stored]


class Checkpointer:
    """A thread that copies the WAL back into the database file after commits, so that no writer does it.

    SQLite's own checkpoint runs inside the commit that crosses ``wal_autocheckpoint``, with the write lock held:
    every writer of every process waited for its fsyncs (about 30 % of ingest). A passive checkpoint here does
    the same work beside the writers. Passive checkpoints alone can starve behind readers that always overlap, so
    once the WAL passes the store's limit a truncating one takes the write lock and waits for the readers of the
    moment. While another process's checkpointer is at work, this one tries again an interval later.
    """

    def __init__(self, store: SQLiteStore, interval: float = CHECKPOINT_INTERVAL):
        self.store = store
        self.interval = interval
        self.pid = os.getpid()
        self._written = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sqlite-checkpointer", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Something was committed: copy it back within an interval."""
        self._written.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._written.wait()
            if self._stop.wait(self.interval):  # commits gather meanwhile, then go in one checkpoint
                break
            self._written.clear()
            try:
                done = self.store.checkpoint()
            except (StoreUnavailable, OSError) as exc:
                log.warning("checkpoint failed, trying again: %s", exc)
                done = False
            if not done:
                self._written.set()
        self.store.close_connection()

    def stop(self) -> None:
        self._stop.set()
        self._written.set()
        if self._thread is not threading.current_thread():
            self._thread.join()


class SQLiteStore(Store):
    kind = "sqlite"

    def __init__(
        self,
        path: str,
        timeout: float = 10.0,
        wal_limit: int = WAL_LIMIT,
        retention_days: float = 0,
        clock: Callable[[], float] | None = None,
    ):
        if path in ("", ":memory:"):
            raise ValueError("needs a file path: an in-memory database is not shared between threads")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.wal_path = Path(f"{self.path}-wal")
        self.writer_lock_path = Path(f"{self.path}-writer")
        self.checkpoint_lock_path = Path(f"{self.path}-checkpoint")
        self.timeout = timeout
        self.wal_limit = wal_limit
        self.keep_for(retention_days, clock)
        self._local = threading.local()
        self._checkpointer: Checkpointer | None = None
        self._checkpointer_lock = threading.Lock()
        with self._errors():
            conn = self._connection()
            conn.execute("PRAGMA journal_mode=WAL")
            with self._write() as conn:
                self._migrate(conn)
                conn.execute(RETENTION_INDEX)

    def _connection(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA wal_autocheckpoint=0")  # the checkpointer's work, not a writer's
            conn.execute("PRAGMA foreign_keys=OFF")
            conn.execute(f"PRAGMA journal_size_limit={self.wal_limit}")
            conn.execute(f"PRAGMA mmap_size={MMAP_SIZE}")
            self._local.conn = conn
        return conn

    @staticmethod
    def _migrate(conn: sqlite3.Connection) -> None:
        """Create the tables, or convert those of an older layout (one transaction: all or nothing)."""
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version >= SCHEMA_VERSION:
            return
        exists = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'containers'").fetchone()
        old = exists and version < 3  # the table itself changed: copied over
        if exists and not old:
            for index in REBUILT_IN_4:
                conn.execute(f"DROP INDEX IF EXISTS {index}")
        if old:
            conn.execute("ALTER TABLE containers RENAME TO containers_v1")
            for (index,) in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'containers_v1' AND sql IS NOT NULL"
            ).fetchall():
                conn.execute(f"DROP INDEX {index}")
        for statement in SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        if old:
            for (stored,) in conn.execute("SELECT record FROM containers_v1").fetchall():
                conn.execute(INSERT, _row(decode_record(stored)))
            conn.execute("DROP TABLE containers_v1")
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"SQLite store {self.path}: {exc}") from exc

    def _writer_lock(self) -> int:
        fd = getattr(self._local, "writer_lock", None)
        if fd is None:
            fd = os.open(self.writer_lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            self._local.writer_lock = fd
        return fd

    @contextmanager
    def _writer_queue(self) -> Iterator[None]:
        # Writers queue on an flock of their own first. SQLite's busy handler polls the write lock with sleeps
        # growing to 100 ms: with a dozen writer threads the lock sat idle between sleeps, and some threads lost
        # every race until their timeout (reports refused with 503). A blocked flock wakes the moment the lock is
        # free. Its holder is in one bounded transaction, so the wait is bounded too.
        lock = self._writer_lock()
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._errors(), self._writer_queue():
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            self._bound_wal(conn)
        self._wake_checkpointer()

    def _bound_wal(self, conn: sqlite3.Connection) -> None:
        # The checkpointer's turn came too late (a loaded machine): the writers wait while this one empties the
        # WAL, as they would for the checkpointer's own truncation.
        if self._wal_size() > self.wal_limit:
            self._truncate_wal(conn)

    def _truncate_wal(self, conn: sqlite3.Connection) -> bool:
        """Copy all of the WAL back and empty it, with the writers held back; False if readers outlasted the wait.

        The wait is short: readers that keep overlapping can hold the read-mark of an old snapshot between them
        for as long as they overlap (measured: a 2 s timeout ran out with the WAL copied 13 frames of 72, and a
        passive checkpoint right after copied all 72). Waiting the whole store timeout would stall every writer
        for it; the next commit or checkpoint tries again."""
        conn.execute(f"PRAGMA busy_timeout={int(TRUNCATE_WAIT * 1000)}")
        try:
            busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        finally:
            conn.execute(f"PRAGMA busy_timeout={int(self.timeout * 1000)}")
        return not busy

    def _wal_size(self) -> int:
        try:
            return self.wal_path.stat().st_size
        except FileNotFoundError:
            return 0

    def _wake_checkpointer(self) -> None:
        checkpointer = self._checkpointer
        if checkpointer is None or checkpointer.pid != os.getpid():  # none yet, or its thread stayed behind a fork
            with self._checkpointer_lock:
                if self._checkpointer is None or self._checkpointer.pid != os.getpid():
                    self._checkpointer = Checkpointer(self)
                checkpointer = self._checkpointer
        checkpointer.wake()

    def checkpoint(self) -> bool:
        """Copy the WAL back into the database file; if it has grown past half the limit anyway (readers that
        always overlap keep a passive checkpoint from ever reaching its end), empty it, waiting for the readers of
        the moment with the writers held back. False if it could not (another process's checkpointer was at work,
        or readers outlasted the timeout): try again later."""
        with self._errors():
            turn = os.open(self.checkpoint_lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                try:
                    fcntl.flock(turn, fcntl.LOCK_EX | fcntl.LOCK_NB)  # one process's checkpointer at a time
                except BlockingIOError:
                    return False
                conn = self._connection()
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                if self._wal_size() <= self.wal_limit // 2:  # half: writers go on appending while it waits
                    return True
                with self._writer_queue():
                    return self._truncate_wal(conn)
            finally:
                os.close(turn)  # releases the flock

    def _query(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._errors():
            return self._connection().execute(sql, args).fetchall()

    def upsert_containers(self, records_: Iterable[Record], now: str) -> list[Record]:
        entries = list(records_)
        ids = sorted({new["container_id"] for new in entries})
        # Merging and encoding are most of a report's cost: done before the write lock, against the records as
        # read without it, and done again inside only if another writer changed one of them in between.
        with self._errors():
            seen = self._stored(self._connection(), ids)
        plan = _Plan(entries, seen, now)
        with self._write() as conn:
            stored = self._stored(conn, ids)
            if stored != seen:
                plan = _Plan(entries, stored, now)
            conn.executemany(INSERT, plan.inserts)
            conn.executemany(UPDATE, plan.updates)
        return plan.created

    @staticmethod
    def _stored(conn: sqlite3.Connection, ids: list[str]) -> dict[str, bytes | str]:
        """The stored (encoded) records of ``ids``, by container ID."""
        return dict(_select_in(conn, "SELECT container_id, record FROM containers WHERE container_id IN ({})", ids))

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
        return decode_record(rows[0][0]) if rows else None

    def task_of_container(self, container_id: str) -> str | None:
        rows = self._query("SELECT task_id FROM containers WHERE container_id = ?", (container_id,))
        return rows[0][0] if rows else None

    def find_containers(self, prefix: str, limit: int) -> list[Record]:
        # 'g' sorts after every hex digit: the prefix becomes a range scan on the container ID's index.
        rows = self._query(
            "SELECT record FROM containers WHERE container_id >= ? AND container_id < ? ORDER BY container_id LIMIT ?",
            (prefix, prefix + "g", limit),
        )
        return [decode_record(r[0]) for r in rows]

    def containers_of_task(self, task_id: str) -> list[Record]:
        rows = self._query(
            "SELECT record FROM containers WHERE task_id = ? ORDER BY container_name, container_id",
            (task_id,),
        )
        return [decode_record(r[0]) for r in rows]

    def statuses_of_task(self, task_id: str) -> list[tuple[str, str]]:
        return [
            (container_id, status)
            for container_id, status in self._query(
                "SELECT container_id, known_status FROM containers WHERE task_id = ?"
                " ORDER BY container_name, container_id",
                (task_id,),
            )
        ]

    def containers_of_service(self, cluster_name: str, service_name: str) -> list[Record]:
        # The service index holds only records with a service: the query must say so for SQLite to use it.
        has_service = "service_name != ''" if service_name else "1"
        rows = self._query(
            f"SELECT record FROM containers WHERE cluster_name = ? AND service_name = ? AND {has_service}"
            " ORDER BY task_id, container_name, container_id",
            (cluster_name, service_name),
        )
        return [decode_record(r[0]) for r in rows]

    def running_containers(self) -> list[Record]:
        # The condition is the partial index's own, so that SQLite reads only the index's rows.
        rows = self._query("SELECT record FROM containers WHERE known_status = 'RUNNING'")
        return [decode_record(r[0]) for r in rows]

    def update_container(self, container_id: str, fields: Record) -> None:
        with self._write() as conn:
            row = conn.execute("SELECT record FROM containers WHERE container_id = ?", (container_id,)).fetchone()
            if row:
                conn.execute(UPDATE, _row({**decode_record(row[0]), **fields}))

    def update_task(self, task_id: str, fields: Record) -> None:
        self.update_tasks({task_id: fields})

    def update_tasks(self, fields_by_task: Mapping[str, Record]) -> None:
        # One transaction for a batch of tasks (the service-name worker's): with one per task, each queued for the
        # write lock behind the reports and the worker fell behind. The records are decoded and encoded before the
        # lock, against the rows read without it, and again inside only if another writer changed one meanwhile.
        tasks = sorted(fields_by_task)
        with self._errors():
            seen = self._of_tasks(self._connection(), tasks)
        rows = _with_fields(seen, fields_by_task)
        with self._write() as conn:
            stored = self._of_tasks(conn, tasks)
            if stored != seen:
                rows = _with_fields(stored, fields_by_task)
            conn.executemany(UPDATE, rows)

    @staticmethod
    def _of_tasks(conn: sqlite3.Connection, tasks: list[str]) -> list[tuple[str, bytes | str]]:
        """The stored (encoded) records of the tasks' containers, as (task ID, record), in container order."""
        return _select_in(
            conn, "SELECT task_id, record FROM containers WHERE task_id IN ({}) ORDER BY container_id", tasks
        )

    def _events(self, column: str, value: str) -> list[Event]:
        rows = self._query(f"SELECT event FROM events WHERE {column} = ? ORDER BY timestamp, seq", (value,))
        return [json.loads(r[0]) for r in rows]

    def events_of_container(self, container_id: str) -> list[Event]:
        return self._events("container_id", container_id)

    def events_of_task(self, task_id: str) -> list[Event]:
        return self._events("task_id", task_id)

    def prune(self, limit: int) -> int:
        # One short transaction per call: requests wait at most for this batch, never for the whole prune.
        if not self.retention:
            return 0
        cutoff = self.cutoff()
        with self._write() as conn:
            gone = conn.execute(
                "SELECT container_id FROM containers WHERE last_seen < ? LIMIT ?", (cutoff, limit)
            ).fetchall()
            conn.executemany("DELETE FROM containers WHERE container_id = ?", gone)
            conn.executemany("DELETE FROM events WHERE container_id = ?", gone)
            # Events as old whose container is not on record (reported alone, or its record already gone).
            conn.execute(
                "DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE timestamp < ?"
                " AND container_id NOT IN (SELECT container_id FROM containers) LIMIT ?)",
                (cutoff, limit),
            )
        return len(gone)

    def count_containers(self) -> int:
        # SQLite counts over its smallest index, not the records: a few milliseconds per hundred thousand.
        return int(self._query("SELECT count(*) FROM containers")[0][0])

    def ping(self) -> None:
        self._query("SELECT 1 FROM containers LIMIT 1")

    def close(self) -> None:
        """Close this thread's connection and stop the checkpointer (a later write starts another)."""
        with self._checkpointer_lock:
            checkpointer, self._checkpointer = self._checkpointer, None
        if checkpointer is not None and checkpointer.pid == os.getpid():
            checkpointer.stop()
        self.close_connection()

    def close_connection(self) -> None:
        """Close this thread's connection and its writer lock file."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
        lock = getattr(self._local, "writer_lock", None)
        if lock is not None:
            os.close(lock)
            self._local.writer_lock = None
