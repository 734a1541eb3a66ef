"""The embedded default store: one SQLite file in WAL mode, shared by every gunicorn worker.

Each thread keeps its own connection; every write is one ``BEGIN IMMEDIATE`` transaction, so concurrent
workers serialise on the file lock instead of overwriting each other's merges. Writers of every process queue
for that lock on an flock of ``<file>-writer`` (``sqlite_writers.WriterQueue``, for the store's timeout at most),
and a report's records are merged and encoded before it. How the file is laid out: ``sqlite_layout``.

A report is one transaction: its records, its events and the transitions they did not name, the records its
host's full snapshot no longer lists (found in the ``containers_by_host`` index), and its host's lease (a row of
``hosts``) when half the lease has passed since the renewal this process last wrote or read; a keep-alive inside
that window costs no statement at all.

Commits only append to the WAL: a thread of each process (``Checkpointer``, one process at a time by an flock
of ``<file>-checkpoint``) copies it back into the database file, fsyncs included, without holding the write
lock, and truncates it in full once it passes half of ``WAL_LIMIT``. A writer that finds it past the whole limit
all the same (the checkpointer starved of CPU or of the lock) truncates it itself.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from server import liveness, running_set
from server.lru import LRU
from server.store import sqlite_addresses
from server.store.base import Event, Record, Store, StoreUnavailable
from server.store.sqlite_layout import (
    COUNT_SHOWN,
    INSERT,
    RECORD_DICTIONARY,
    RETENTION_INDEX,
    SCHEMA_VERSION,
    UPDATE,
    DecodedRows,
    ReportPlan,
    decode_record,
    encode_record,
    index_task_fields,
    migrate,
    row_of,
    rows_with_fields,
    select_in,
    tasks_shown_moved,
)
from server.store.sqlite_writers import Checkpointer, WriterQueue, open_lock_file

# What importers of this module have always found here, beside the store.
__all__ = ["RECORD_DICTIONARY", "SCHEMA_VERSION", "SQLiteStore", "decode_record", "encode_record"]

#: The WAL's largest size, give or take one transaction (and what SQLite truncates it to when it resets it).
WAL_LIMIT = 48 * 1024 * 1024

#: How long a truncation of the WAL waits for the readers of the moment, the writers held back meanwhile.
TRUNCATE_WAIT = 0.2

#: How much of the file each connection reads through a memory map instead of a read() per page and a private
#: page cache (address space only: the pages are the OS's own cache, shared by every connection). SQLite's own
#: ceiling, just under 2 GiB: a million containers take 1.09 GB.
MMAP_SIZE = 0x7FFF0000

#: Hosts whose last lease renewal a process remembers, so that a report inside the half lease reads nothing.
REMEMBERED_HOSTS = 100_000


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
        self.writers = WriterQueue(self.writer_lock_path)
        self.checkpoint_lock_path = Path(f"{self.path}-checkpoint")
        self.timeout = timeout
        self.wal_limit = wal_limit
        self.keep_for(retention_days, clock)
        self._local = threading.local()
        #: Each host's lease renewal as this process last wrote or read it: a report inside the half lease after
        #: it reads nothing. Replicas each keep their own (and may write a renewal again, at most once each).
        self._renewals: LRU[str, str] = LRU(REMEMBERED_HOSTS)  # bounded: a fleet replaces its hosts
        self._checkpointer = Checkpointer(self.checkpoint, self.close_connection)
        self._running = DecodedRows()  # each refresh of discovery decodes only what was written since
        with self._errors():
            conn = self._connection()
            conn.execute("PRAGMA journal_mode=WAL")
            with self._write() as conn:
                migrate(conn)
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

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"SQLite store {self.path}: {exc}") from exc

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._errors(), self.writers.turn(self.timeout):
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
        self._checkpointer.wake()

    def checkpoint(self) -> bool:
        """Copy the WAL back into the database file; if it has grown past half the limit anyway (readers that
        always overlap keep a passive checkpoint from ever reaching its end), empty it, waiting for the readers of
        the moment with the writers held back. False if it could not (another process's checkpointer was at work,
        or readers outlasted the timeout): try again later."""
        with self._errors():
            turn = open_lock_file(self.checkpoint_lock_path)
            try:
                try:
                    fcntl.flock(turn, fcntl.LOCK_EX | fcntl.LOCK_NB)  # one process's checkpointer at a time
                except BlockingIOError:
                    return False
                conn = self._connection()
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                if self._wal_size() <= self.wal_limit // 2:  # half: writers go on appending while it waits
                    return True
                with self.writers.turn(self.timeout):
                    return self._truncate_wal(conn)
            finally:
                # Unlocked, not just closed: a process forked meanwhile holds a copy of the descriptor.
                fcntl.flock(turn, fcntl.LOCK_UN)
                os.close(turn)

    def _query(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._errors():
            return self._connection().execute(sql, args).fetchall()

    def upsert_containers(self, records_: Iterable[Record], now: str) -> list[Record]:
        return self._record(list(records_), [], now, derive=False)[0]

    def add_events(self, events: Iterable[Event]) -> int:
        with self._write() as conn:
            return self._insert_events(conn, events)

    def record_report(
        self, records: list[Record], events: list[Event], now: str, full: bool = False, host: Record | None = None
    ) -> tuple[list[Record], int]:
        return self._record(records, events, now, full, host)

    def _record(
        self,
        entries: list[Record],
        events: list[Event],
        now: str,
        full: bool = False,
        host: Record | None = None,
        derive: bool = True,
    ) -> tuple[list[Record], int]:
        """``record_report`` (``upsert_containers`` with ``derive`` False: the records alone): one transaction for
        the records, the events, the host's vanished records and its lease renewal; none at all for a keep-alive
        whose lease is not due."""
        key = liveness.host_key(host) if host else ""
        renew = bool(key) and self._renewal_due(key, now)
        reconcile = bool(key) and full
        if not (entries or events or renew or reconcile):
            return [], 0
        ids = sorted({new["container_id"] for new in entries})
        # The newest moment the snapshot tells of: when the containers it no longer lists were last known gone.
        moment = max((new.get("sample_time", "") for new in entries), default="") or now
        # Merging and encoding are most of a report's cost: done before the write lock, against the records as
        # read without it, and done again inside only if another writer changed one of them in between.
        with self._errors():
            conn = self._connection()
            gone = self._gone(conn, key, ids) if reconcile else []
            seen = self._stored(conn, ids + gone)
            if renew:  # by this process's memory: another replica may have renewed it since
                self._remember(key, self._renewal(conn, key))
                renew = self._renewal_due(key, now)
        plan = ReportPlan(entries, seen, now, events, gone, moment)
        if not (plan.inserts or plan.updates or events or (derive and plan.events) or renew):
            return plan.created, 0
        with self._write() as conn:
            held = self._gone(conn, key, ids) if reconcile else []
            stored = self._stored(conn, ids + held)
            if stored != seen or held != gone:
                plan = ReportPlan(entries, stored, now, events, held, moment)
            conn.executemany(INSERT, plan.inserts)
            conn.executemany(UPDATE, plan.updates)
            sqlite_addresses.apply(conn, *plan.index)
            told = self._insert_events(conn, events)
            if derive:  # after the report's own: those are counted, these are not
                self._insert_events(conn, plan.events)
            if renew:
                self._renew(conn, key, now)
            if plan.shown_moved:
                self._count_shown(conn)
        if renew:
            self._remember(key, now)
        return plan.created, told

    @staticmethod
    def _stored(conn: sqlite3.Connection, ids: list[str]) -> dict[str, bytes | str]:
        """The stored (encoded) records of ``ids``, by container ID."""
        return dict(select_in(conn, "SELECT container_id, record FROM containers WHERE container_id IN ({})", ids))

    @staticmethod
    def _gone(conn: sqlite3.Connection, key: str, listed: list[str]) -> list[str]:
        """The IDs of the records of host ``key`` not stopped and not in ``listed`` (sorted), from the covering
        index alone: for a resync that lists them all, no record is read."""
        # The condition repeats the partial index's own, so that SQLite uses it.
        rows = conn.execute(
            "SELECT container_id FROM containers WHERE live_host = ? AND live_host != '' ORDER BY container_id",
            (key,),
        ).fetchall()
        present = set(listed)
        return [container_id for (container_id,) in rows if container_id not in present]

    @staticmethod
    def _insert_events(conn: sqlite3.Connection, events: Iterable[Event]) -> int:
        """Store the events not stored yet (by event ID); how many were new."""
        before = conn.total_changes
        conn.executemany(
            "INSERT OR IGNORE INTO events (event_id, container_id, task_id, timestamp, event) VALUES (?, ?, ?, ?, ?)",
            [(e["event_id"], e["container_id"], e["task_id"], e["timestamp"], json.dumps(e)) for e in events],
        )
        return conn.total_changes - before

    # --- host leases: a row per host in ``hosts``, written at most once per half lease ---------------------

    def _renewal_due(self, key: str, now: str) -> bool:
        """Whether host ``key``'s lease needs writing at ``now``, by what this process last wrote or read of it."""
        return liveness.renewal_due(self._renewals.get(key), now, self.lease)

    def _remember(self, key: str, renewed_at: str) -> None:
        if renewed_at > (self._renewals.get(key) or ""):
            self._renewals.put(key, renewed_at)

    @staticmethod
    def _renewal(conn: sqlite3.Connection, key: str) -> str:
        row = conn.execute("SELECT renewed_at FROM hosts WHERE host_key = ?", (key,)).fetchone()
        return row[0] if row else ""

    @staticmethod
    def _renew(conn: sqlite3.Connection, key: str, now: str) -> None:
        # Never back in time: a replica with a later report may have renewed it meanwhile.
        conn.execute(
            "INSERT INTO hosts (host_key, renewed_at) VALUES (?, ?)"
            " ON CONFLICT (host_key) DO UPDATE SET renewed_at = max(renewed_at, excluded.renewed_at)",
            (key, now),
        )

    def host_leases(self) -> dict[str, str]:
        leases = dict(self._query("SELECT host_key, renewed_at FROM hosts"))
        for key, renewed_at in leases.items():  # remembered: a report inside the half lease reads nothing
            self._remember(key, renewed_at)
        return leases

    # --- what discovery shows: a counter in ``notes``, moved in the transaction of each write that changes it ----

    def discovery_generation(self) -> str:
        rows = self._query("SELECT value FROM notes WHERE key = ?", (running_set.GENERATION_NOTE,))
        return rows[0][0] if rows else "0"

    @staticmethod
    def _count_shown(conn: sqlite3.Connection) -> None:
        # In the write's own transaction: a reader that sees the new value sees the write too.
        conn.execute(COUNT_SHOWN, (running_set.GENERATION_NOTE,))

    # --- notes -------------------------------------------------------------------------------------------------

    def get_note(self, key: str) -> str | None:
        rows = self._query("SELECT value FROM notes WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    def put_note(self, key: str, value: str) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT INTO notes (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

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
        rows = self._query("SELECT container_id, record FROM containers WHERE known_status = 'RUNNING'")
        return self._running.records(rows)

    def update_container(self, container_id: str, fields: Record) -> None:
        with self._write() as conn:
            row = conn.execute("SELECT record FROM containers WHERE container_id = ?", (container_id,)).fetchone()
            if row:
                old = decode_record(row[0])
                new = {**old, **fields}
                conn.execute(UPDATE, row_of(new))
                sqlite_addresses.update(conn, [(old, new)])
                if running_set.moved([(old, new)]):
                    self._count_shown(conn)

    def update_task(self, task_id: str, fields: Record) -> None:
        self.update_tasks({task_id: fields})

    def update_tasks(self, fields_by_task: Mapping[str, Record]) -> None:
        # One transaction for a batch of tasks (the service-name worker's): with one per task, each queued for the
        # write lock behind the reports and the worker fell behind. The records are decoded and encoded before the
        # lock, against the rows read without it, and again inside only if another writer changed one meanwhile.
        tasks = sorted(fields_by_task)
        with self._errors():
            seen = self._of_tasks(self._connection(), tasks)
        rows = rows_with_fields(seen, fields_by_task)
        with self._write() as conn:
            stored = self._of_tasks(conn, tasks)
            if stored != seen:
                rows = rows_with_fields(stored, fields_by_task)
            conn.executemany(UPDATE, rows)
            index_task_fields(conn, stored, fields_by_task)
            if tasks_shown_moved(stored, fields_by_task):
                self._count_shown(conn)

    @staticmethod
    def _of_tasks(conn: sqlite3.Connection, tasks: list[str]) -> list[tuple[str, bytes | str]]:
        """The stored (encoded) records of the tasks' containers, as (task ID, record), in container order."""
        return select_in(
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
            expired = conn.execute(
                "SELECT container_id, record, known_status FROM containers WHERE last_seen < ? LIMIT ?",
                (cutoff, limit),
            ).fetchall()
            gone = [(container_id,) for container_id, _, _ in expired]
            conn.executemany("DELETE FROM containers WHERE container_id = ?", gone)
            # Their address index entries with them: the entries are those their records make.
            sqlite_addresses.update(conn, ((decode_record(record), None) for _, record, _ in expired))
            if any(status == "RUNNING" for _, _, status in expired):
                self._count_shown(conn)
            conn.executemany("DELETE FROM events WHERE container_id = ?", gone)
            # Events as old whose container is not on record (reported alone, or its record already gone).
            conn.execute(
                "DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE timestamp < ?"
                " AND container_id NOT IN (SELECT container_id FROM containers) LIMIT ?)",
                (cutoff, limit),
            )
            # Hosts silent for as long: whatever they ran has expired with them.
            conn.execute("DELETE FROM hosts WHERE renewed_at < ?", (cutoff,))
        return len(gone)

    def address_holders(self, key: str, at: str | None, limit: int) -> list[Record]:
        with self._errors():
            found = sqlite_addresses.holders(self._connection(), key, at, limit)
        return [decode_record(record) for record in found]

    def count_containers(self) -> int:
        # SQLite counts over its smallest index, not the records: a few milliseconds per hundred thousand.
        return int(self._query("SELECT count(*) FROM containers")[0][0])

    def ping(self) -> None:
        self._query("SELECT 1 FROM containers LIMIT 1")

    def close(self) -> None:
        """Close this thread's connection and stop the checkpointer (a later write starts it again)."""
        self._checkpointer.stop()
        self.close_connection()

    def close_connection(self) -> None:
        """Close this thread's connection and its descriptor of the writers' lock file."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
        self.writers.close_thread()
