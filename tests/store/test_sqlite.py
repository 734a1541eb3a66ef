"""What only the SQLite store has: its on-disk layout, the conversion of older files, the bounded WAL."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

from server.store.base import StoreUnavailable
from server.store.sqlite import RECORD_DICTIONARY, SCHEMA_VERSION, SQLiteStore, decode_record, encode_record
from tests.store.samples import OTHER_TASK, TASK, at, cid, event, record

# The layout files had before SCHEMA_VERSION 2: a WITHOUT ROWID table of plain JSON records.
LAYOUT_1 = """
CREATE TABLE containers (
    container_id TEXT PRIMARY KEY, task_id TEXT NOT NULL, container_name TEXT NOT NULL DEFAULT '',
    cluster_name TEXT NOT NULL DEFAULT '', service_name TEXT NOT NULL DEFAULT '',
    last_seen TEXT NOT NULL DEFAULT '', record TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX containers_by_task ON containers (task_id, container_name, container_id);
CREATE INDEX containers_by_service ON containers (cluster_name, service_name, task_id, container_name);
CREATE INDEX containers_by_last_seen ON containers (last_seen);
CREATE TABLE events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL UNIQUE, container_id TEXT NOT NULL,
    task_id TEXT NOT NULL, timestamp TEXT NOT NULL, event TEXT NOT NULL
);
CREATE INDEX events_by_container ON events (container_id, timestamp, seq);
CREATE INDEX events_by_task ON events (task_id, timestamp, seq);
"""


def stored(n: int = 1) -> dict:
    return {**record(n, service_name="api"), "first_seen": at(0), "last_seen": at(1)}


def test_a_file_of_the_older_layout_is_converted_and_keeps_everything(tmp_path):
    path = tmp_path / "old.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(LAYOUT_1)
    for n in (1, 2):
        rec = stored(n)
        old.execute(
            "INSERT INTO containers VALUES (?, ?, ?, ?, ?, ?, ?)",
            (rec["container_id"], TASK, rec["container_name"], "default", "api", rec["last_seen"], json.dumps(rec)),
        )
    ev = event("e-1")
    old.execute(
        "INSERT INTO events (event_id, container_id, task_id, timestamp, event) VALUES (?, ?, ?, ?, ?)",
        (ev["event_id"], ev["container_id"], TASK, ev["timestamp"], json.dumps(ev)),
    )
    old.commit()
    old.close()

    store = SQLiteStore(str(path))
    assert store.get_container(cid(1)) == stored(1)
    assert [r["container_id"] for r in store.containers_of_task(TASK)] == [cid(1), cid(2)]
    assert [r["container_id"] for r in store.containers_of_service("default", "api")] == [cid(1), cid(2)]
    assert store.events_of_task(TASK) == [ev]
    store.upsert_containers([record(3)], at(2))
    assert len(store.containers_of_task(TASK)) == 3
    assert len(store.running_containers()) == 3
    store.close()

    check = sqlite3.connect(path)
    assert check.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    (table,) = check.execute("SELECT sql FROM sqlite_master WHERE name = 'containers'").fetchone()
    assert "WITHOUT ROWID" not in table
    assert check.execute("SELECT count(*) FROM sqlite_master WHERE name = 'containers_v1'").fetchone()[0] == 0
    assert all(isinstance(r, bytes) for (r,) in check.execute("SELECT record FROM containers"))
    check.close()


# The layout of SCHEMA_VERSION 2: compressed records, no known_status column.
LAYOUT_2 = """
CREATE TABLE containers (
    container_id TEXT NOT NULL UNIQUE, task_id TEXT NOT NULL, container_name TEXT NOT NULL DEFAULT '',
    cluster_name TEXT NOT NULL DEFAULT '', service_name TEXT NOT NULL DEFAULT '',
    last_seen TEXT NOT NULL DEFAULT '', record BLOB NOT NULL
);
CREATE INDEX containers_by_task ON containers (task_id, container_name, container_id);
CREATE INDEX containers_by_service ON containers (cluster_name, service_name, task_id, container_name);
CREATE INDEX containers_by_last_seen ON containers (last_seen);
CREATE TABLE events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL UNIQUE, container_id TEXT NOT NULL,
    task_id TEXT NOT NULL, timestamp TEXT NOT NULL, event TEXT NOT NULL
);
PRAGMA user_version = 2;
"""


def test_a_file_without_the_status_column_learns_which_containers_run(tmp_path):
    path = tmp_path / "v2.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(LAYOUT_2)
    for rec in (stored(1), {**stored(2), "known_status": "STOPPED"}):
        old.execute(
            "INSERT INTO containers VALUES (?, ?, ?, ?, ?, ?, ?)",
            (rec["container_id"], TASK, rec["container_name"], "default", "api", rec["last_seen"], encode_record(rec)),
        )
    old.commit()
    old.close()

    store = SQLiteStore(str(path))
    assert [r["container_id"] for r in store.running_containers()] == [cid(1)]
    (plan,) = store._query("EXPLAIN QUERY PLAN SELECT record FROM containers WHERE known_status = 'RUNNING'")
    assert "USING INDEX containers_running" in plan[-1]
    store.close()


# The two indexes as files of SCHEMA_VERSION 3 have them: every record in each, at a random place.
LAYOUT_3_INDEXES = """
DROP INDEX containers_by_service;
DROP INDEX containers_running;
CREATE INDEX containers_by_service ON containers (cluster_name, service_name, task_id, container_name);
CREATE INDEX containers_running ON containers (container_id) WHERE known_status = 'RUNNING';
PRAGMA user_version = 3;
"""


def plan_of(store: SQLiteStore, sql: str, args: tuple = ()) -> str:
    return " ".join(row[-1] for row in store._query(f"EXPLAIN QUERY PLAN {sql}", args))


def test_a_file_of_layout_3_gets_the_lean_indexes_and_its_queries_use_them(tmp_path):
    path = tmp_path / "v3.sqlite3"
    store = SQLiteStore(str(path))
    store.upsert_containers([record(1), record(2, status="STOPPED"), record(3, cluster_name="other")], at(1))
    store.update_task(TASK, {"service_name": "api"})
    store.upsert_containers([record(4, task=OTHER_TASK)], at(2))  # no service
    store.close()
    old = sqlite3.connect(path)
    old.executescript(LAYOUT_3_INDEXES)
    old.close()

    store = SQLiteStore(str(path))
    indexes = dict(store._query("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"))
    assert "WHERE service_name != ''" in indexes["containers_by_service"]
    assert "(known_status) WHERE" in indexes["containers_running"]
    assert store._query("PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert [r["container_id"] for r in store.containers_of_service("default", "api")] == [cid(1), cid(2)]
    assert [r["container_id"] for r in store.containers_of_service("other", "api")] == [cid(3)]
    assert [r["container_id"] for r in store.containers_of_service("default", "")] == [cid(4)]  # a scan, but right
    assert sorted(r["container_id"] for r in store.running_containers()) == [cid(1), cid(3), cid(4)]
    service_query = "SELECT record FROM containers WHERE cluster_name = ? AND service_name = ? AND service_name != ''"
    assert "USING INDEX containers_by_service" in plan_of(store, service_query, ("default", "api"))
    running_query = "SELECT record FROM containers WHERE known_status = 'RUNNING'"
    assert "USING INDEX containers_running" in plan_of(store, running_query)
    store.close()


def test_opening_a_current_file_again_changes_nothing(tmp_path):
    path = str(tmp_path / "s.sqlite3")
    first = SQLiteStore(path)
    first.upsert_containers([record(1)], at(1))
    first.close()
    again = SQLiteStore(path)
    assert again.get_container(cid(1))["first_seen"] == at(0)
    again.close()


def test_a_record_is_stored_compressed_and_read_back_whole():
    rec = {**stored(), "image": "registry.example/ünïcode:1", "networks": '[{"network_mode":"awsvpc"}]'}
    packed = encode_record(rec)
    assert len(packed) < len(json.dumps(rec)) / 2
    assert decode_record(packed) == rec
    assert decode_record(json.dumps(rec)) == rec  # a record written by the older layout


def test_the_record_dictionary_is_the_one_stored_records_were_written_with():
    # Records on disk can only be read with these exact bytes (zlib checks their Adler-32).
    import zlib

    assert zlib.adler32(RECORD_DICTIONARY) == 0x2F72FECF


class OverlappingReaders:
    """Two threads that each hold a read transaction open for a while, taking turns so that one always is: the
    lookups of a busy server, which keep a passive checkpoint from ever reaching the WAL's end."""

    def __init__(self, path: Path, hold: float = 0.02):
        self.hold = hold
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._read, args=(path, i * hold / 2)) for i in range(2)]

    def _read(self, path: Path, offset: float) -> None:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        time.sleep(offset)
        while not self.stop.is_set():
            conn.execute("BEGIN")
            conn.execute("SELECT count(*) FROM containers").fetchone()
            self.stop.wait(self.hold)
            conn.execute("COMMIT")
        conn.close()

    def __enter__(self) -> OverlappingReaders:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()


def batch(n: int) -> list[dict]:
    return [record(n * 50 + i, name=f"c{i}") for i in range(50)]


def test_commits_leave_the_wal_to_the_checkpointer_which_copies_it_back(tmp_path):
    path = tmp_path / "s.sqlite3"
    store = SQLiteStore(str(path))
    store.close()  # the checkpointer its creation started; only the explicit calls below from now on
    store._wake_checkpointer = lambda: None  # type: ignore[method-assign]
    store.checkpoint()
    before = path.stat().st_size
    for n in range(100):
        store.upsert_containers(batch(n), at(n))
    # Past SQLite's own 1,000-page autocheckpoint, and still no commit copied anything back.
    assert Path(f"{path}-wal").stat().st_size > 4 * 1024 * 1024
    assert path.stat().st_size == before
    store.checkpoint()
    assert path.stat().st_size > before
    assert len(store.running_containers()) == 100 * 50
    store.close()


def test_the_checkpointer_copies_commits_back_on_its_own_and_stops_with_the_store(tmp_path):
    path = tmp_path / "s.sqlite3"
    store = SQLiteStore(str(path))
    store.upsert_containers(batch(0), at(0))
    copied = [0, 0]
    other = sqlite3.connect(path, isolation_level=None)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # nothing left to copy: its passive checkpoint finds every frame done
        _, frames, copied_ = other.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        copied = [frames, copied_]
        if frames > 0 and other.execute("SELECT count(*) FROM containers").fetchone()[0] == 50:
            break
        time.sleep(0.05)
    assert copied[0] > 0 and copied[0] == copied[1]
    assert store._checkpointer is not None
    thread = store._checkpointer._thread
    assert thread.is_alive()
    store.close()
    other.close()
    assert not thread.is_alive()


def test_the_wal_stays_within_its_limit_while_readers_always_overlap(tmp_path):
    # Passive checkpoints alone never reach the WAL's end here and it grows without bound (measured: ~1.8 GB
    # during a fast ingest with lookups running); the truncating one waits for the readers of the moment.
    path = tmp_path / "s.sqlite3"
    limit = 256 * 1024
    store = SQLiteStore(str(path), wal_limit=limit)
    wal = Path(f"{path}-wal")
    written = 0
    with OverlappingReaders(path):
        for n in range(40):
            store.upsert_containers(batch(n), at(n))
            written = max(written, wal.stat().st_size)
            while not store.checkpoint():  # its own checkpointer's turn: then this one's
                time.sleep(0.01)
            assert wal.stat().st_size <= limit // 2
    assert written > limit // 2
    assert len(store.running_containers()) == 40 * 50
    store.close()


def test_a_writer_empties_the_wal_itself_when_the_checkpointer_falls_behind(tmp_path):
    path = tmp_path / "s.sqlite3"
    limit = 256 * 1024
    store = SQLiteStore(str(path), wal_limit=limit)
    store.close()  # no checkpointer from here on: as if starved of CPU
    store._wake_checkpointer = lambda: None  # type: ignore[method-assign]
    wal = Path(f"{path}-wal")
    largest = 0
    with OverlappingReaders(path):
        for n in range(40):
            store.upsert_containers(batch(n), at(n))
            largest = max(largest, wal.stat().st_size)
    # Within the limit after each commit, but for a truncation that outwaits its busy timeout behind the readers
    # now and then (the next commit's succeeds): two batches over it at most.
    assert largest <= limit + 2 * 100 * 1024
    assert len(store.running_containers()) == 40 * 50
    store.close()


def test_a_process_killed_after_its_commits_loses_none_of_them(tmp_path):
    # Commits live in the WAL until a checkpoint copies them: a process that dies before that loses nothing.
    path = tmp_path / "s.sqlite3"
    script = (
        "import os, signal\n"
        "from server.store.sqlite import SQLiteStore\n"
        "from tests.store.test_sqlite import batch\n"
        f"store = SQLiteStore({str(path)!r})\n"
        "store._wake_checkpointer = lambda: None\n"  # no checkpoint at all: everything stays in the WAL
        "for n in range(20):\n"
        "    store.upsert_containers(batch(n), '2026-11-25T15:00:00.000Z')\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    died = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).parents[2], check=False)
    assert died.returncode == -signal.SIGKILL
    assert Path(f"{path}-wal").stat().st_size > 0
    store = SQLiteStore(str(path))
    assert len(store.running_containers()) == 20 * 50
    store.close()


def test_a_record_another_writer_changed_meanwhile_is_merged_again_under_the_lock(tmp_path):
    path = str(tmp_path / "s.sqlite3")
    store, other = SQLiteStore(path), SQLiteStore(path)
    read_before_lock = store._stored

    def read_then_let_another_writer_in(conn, ids):
        found = read_before_lock(conn, ids)
        if not conn.in_transaction:  # the read before the write lock: another report lands right after it
            other.upsert_containers([record(1, status="STOPPED", sample=5)], at(5))
        return found

    store._stored = read_then_let_another_writer_in  # type: ignore[method-assign]
    assert store.upsert_containers([record(1, sample=1), record(2, sample=1)], at(6)) == [
        {**record(2, sample=1), "first_seen": at(1), "last_seen": at(6)}
    ]
    one = store.get_container(cid(1))
    assert (one["known_status"], one["stopped_at"], one["first_seen"], one["last_seen"]) == (
        "STOPPED", at(5), at(5), at(6)
    )  # fmt: skip
    store.close()
    other.close()


def test_writers_of_many_threads_queue_for_the_file_instead_of_timing_out(tmp_path):
    # With SQLite's own busy handler alone, some of 16 threads writing at once lost every race for the lock for
    # longer than their timeout and the report was refused.
    path = str(tmp_path / "s.sqlite3")
    stores = [SQLiteStore(path, timeout=0.5) for _ in range(2)]
    failures = []

    def write(worker: int) -> None:
        try:
            for batch in range(5):
                first = (worker * 5 + batch) * 100
                stores[worker % 2].upsert_containers([record(first + n) for n in range(100)], at(1))
        except StoreUnavailable as exc:
            failures.append(exc)

    threads = [threading.Thread(target=write, args=(worker,)) for worker in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert len(stores[0].running_containers()) == 16 * 5 * 100
    for store in stores:
        store.close()


def test_update_tasks_writes_again_a_record_another_writer_changed_meanwhile(tmp_path):
    path = str(tmp_path / "s.sqlite3")
    store, other = SQLiteStore(path), SQLiteStore(path)
    store.upsert_containers([record(1), record(2)], at(1))
    read_before_lock = store._of_tasks

    def read_then_let_another_writer_in(conn, tasks):
        found = read_before_lock(conn, tasks)
        if not conn.in_transaction:  # the read before the write lock: another writer lands right after it
            other.update_container(cid(1), {"newrelic_url": "https://rpm.example/1"})
        return found

    store._of_tasks = read_then_let_another_writer_in  # type: ignore[method-assign]
    store.update_tasks({TASK: {"service_name": "api"}})

    one = store.get_container(cid(1))
    assert (one["service_name"], one["newrelic_url"]) == ("api", "https://rpm.example/1")
    assert store.get_container(cid(2))["service_name"] == "api"
    store.close()
    other.close()
