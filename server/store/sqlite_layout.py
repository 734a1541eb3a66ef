"""How the SQLite store lays out its file: the tables and indexes, records as zlib-compressed JSON, the conversion
of files of older layouts, and the rows a report writes.

Layout, chosen from measurements (``bench/lookup.py``): ``containers`` is a rowid table whose record is compact
JSON compressed with zlib against a preset dictionary of the record's field names, about 500 bytes instead of
1.4 KiB. Rows that small stay inside their B-tree page; a ``WITHOUT ROWID`` table of 1.4 KiB rows spilled each
into an overflow page of its own and took ~5 KiB per container.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import zlib
from collections.abc import Iterable, Mapping, Sequence

from server import liveness, records, running_set
from server.store import address_index, sqlite_addresses
from server.store.base import Event, Record

#: Bumped when the layout changes; older files are converted when opened.
SCHEMA_VERSION = 6
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
    record        BLOB NOT NULL,
    live_host     TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS containers_by_task ON containers (task_id, container_name, container_id);
-- Only the records that have a service: the others (every record, without AWS) cost no random insert here.
CREATE INDEX IF NOT EXISTS containers_by_service
    ON containers (cluster_name, service_name, task_id, container_name) WHERE service_name != '';
CREATE INDEX IF NOT EXISTS containers_by_last_seen ON containers (last_seen);
-- Only the running containers, for service discovery: a small index however long the history grows. Keyed
-- by the status (then the rowid), so that new containers append to its end instead of landing at random.
CREATE INDEX IF NOT EXISTS containers_running ON containers (known_status) WHERE known_status = 'RUNNING';
-- The containers not stopped of each host, for the reconciliation of its full snapshots: covering, so that a
-- resync reads its host's container IDs from the index alone. Stopped ones are not in it (``live_host`` '').
CREATE INDEX IF NOT EXISTS containers_by_host ON containers (live_host, container_id) WHERE live_host != '';
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
-- Each host's last lease renewal (``server.liveness``): a few thousand short rows, read whole.
CREATE TABLE IF NOT EXISTS hosts (
    host_key   TEXT PRIMARY KEY,
    renewed_at TEXT NOT NULL
) WITHOUT ROWID;
-- What the server learnt once for every replica (``Store.put_note``): values up to 64 KiB, so a rowid table.
CREATE TABLE IF NOT EXISTS notes (
    key   TEXT NOT NULL UNIQUE,
    value TEXT NOT NULL
);
"""
#: What retention's prune scans; created in files of any layout version.
RETENTION_INDEX = "CREATE INDEX IF NOT EXISTS events_by_time ON events (timestamp)"

# Columns copied out of the record so that lookups are index scans.
INDEXED = ("task_id", "container_name", "cluster_name", "service_name", "last_seen", "known_status")
#: Columns derived from the record: ``live_host``, its host's key (``server.liveness.host_key``) while it is not
#: stopped, else '' (only the reconciliation of its host's snapshots reads it, and never for a stopped record).
DERIVED = ("live_host",)

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


COLUMNS = (*INDEXED, *DERIVED, "record", "container_id")
INSERT = f"INSERT INTO containers ({', '.join(COLUMNS)}) VALUES ({', '.join('?' for _ in COLUMNS)})"
UPDATE = f"UPDATE containers SET {', '.join(f'{name} = ?' for name in COLUMNS[:-1])} WHERE container_id = ?"


def live_host(record: Record) -> str:
    """The ``live_host`` column of ``record``."""
    if record.get("known_status") == "STOPPED":
        return ""
    return liveness.host_key(record)


def row_of(record: Record) -> tuple:
    """The parameters of INSERT and UPDATE for ``record``."""
    return (
        *(record.get(name, "") for name in INDEXED),
        live_host(record),
        encode_record(record),
        record["container_id"],
    )


def rows_with_fields(stored: list[tuple[str, bytes | str]], fields_by_task: Mapping[str, Record]) -> list[tuple]:
    """UPDATE parameters for stored (task ID, record) pairs with their task's fields set."""
    return [row_of({**decode_record(record), **fields_by_task[task_id]}) for task_id, record in stored]


def index_task_fields(
    conn: sqlite3.Connection, stored: list[tuple[str, bytes | str]], fields_by_task: Mapping[str, Record]
) -> None:
    """The address index's changes when stored (task ID, record) pairs gain their task's fields: none for the
    usual fields (a service name), so the records are decoded again only when a field could move an entry."""
    if not any(set(fields).intersection(address_index.FIELDS) for fields in fields_by_task.values()):
        return
    pairs = [(old, {**old, **fields_by_task[task_id]}) for task_id, old in ((t, decode_record(r)) for t, r in stored)]
    sqlite_addresses.update(conn, pairs)


#: Moves the discovery generation (``server.running_set``), a counter in ``notes``.
COUNT_SHOWN = (
    "INSERT INTO notes (key, value) VALUES (?, '1') ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + 1"
)


def tasks_shown_moved(stored: list[tuple[str, bytes | str]], fields_by_task: Mapping[str, Record]) -> bool:
    """Whether setting each task's fields on its stored (task ID, record) pairs changes what discovery shows."""
    if not any(name in running_set.SHOWN_FIELDS for fields in fields_by_task.values() for name in fields):
        return False  # newrelic_url and the like: no record need be decoded
    pairs = ((decode_record(record), fields_by_task[task_id]) for task_id, record in stored)
    return running_set.moved((before, {**before, **fields}) for before, fields in pairs)


class DecodedRows:
    """The records of rows read again and again (the running containers), decoded once per stored value: a row
    whose encoded record is the one decoded last time gives the same record, shared, so that reading 10,000
    running containers decompresses only those written since. Callers must not change the records."""

    def __init__(self) -> None:
        self._decoded: dict[str, tuple[bytes | str, Record]] = {}
        self._lock = threading.Lock()

    def records(self, rows: list[tuple[str, bytes | str]]) -> list[Record]:
        """The records of (container ID, encoded record) rows, in their order; remembers only these rows."""
        with self._lock:
            known = self._decoded
        decoded: dict[str, tuple[bytes | str, Record]] = {}
        for container_id, stored in rows:
            found = known.get(container_id)
            if found is None or found[0] != stored:
                found = (stored, decode_record(stored))
            decoded[container_id] = found
        with self._lock:
            self._decoded = decoded
        return [record for _, record in decoded.values()]


def select_in(conn: sqlite3.Connection, query: str, values: list[str]) -> list[tuple]:
    """The rows of ``query``, whose ``IN ({})`` takes ``values``, asked 500 values at a time (SQLite allows 32,766
    parameters; small statements keep each short)."""
    rows: list[tuple] = []
    for start in range(0, len(values), 500):
        chunk = values[start : start + 500]
        rows += conn.execute(query.format(",".join("?" * len(chunk))), chunk).fetchall()
    return rows


class ReportPlan:
    """What a report does to the stored records ``stored`` (encoded, by container ID): rows to insert and to
    update, the records that are new, and the events the store derives (``events``): the transitions the report's
    records made that its own events (``told``) do not name, and the stops of the records in ``gone`` (IDs of
    stored records of the reporting host that its full snapshot of ``moment`` no longer lists)."""

    def __init__(
        self,
        entries: list[Record],
        stored: Mapping[str, bytes | str],
        now: str,
        told: Sequence[Event] = (),
        gone: Iterable[str] = (),
        moment: str = "",
    ):
        before = {container_id: decode_record(record) for container_id, record in stored.items()}
        current = dict(before)
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
        self.events = records.untold([(before.get(cid), merged) for cid, merged in changed.items()], list(told))
        named = {(e["container_id"], e["event"], e.get("from") or "", e.get("to") or "") for e in told}
        for container_id in gone:
            record = current[container_id]
            if record.get("known_status") != "STOPPED" and not records.seen_since(record, moment):
                changed[container_id], stop = records.vanished(record, moment)
                self.events += [e for e in stop if (container_id, e["event"], e["from"], e["to"]) not in named]
        #: The address index's entries to delete and insert (``sqlite_addresses``).
        self.index = sqlite_addresses.changes((before.get(cid), r) for cid, r in changed.items())
        #: Whether the report changes what service discovery shows (``server.running_set``).
        self.shown_moved = running_set.moved((before.get(cid), record) for cid, record in changed.items())
        self.inserts = [row_of(r) for r in changed.values() if r["container_id"] not in stored]
        self.updates = [row_of(r) for r in changed.values() if r["container_id"] in stored]


def migrate(conn: sqlite3.Connection) -> None:
    """Create the tables, or convert those of an older layout (one transaction: all or nothing)."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version >= SCHEMA_VERSION:
        return
    exists = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'containers'").fetchone()
    old = exists and version < 3  # the table itself changed: copied over
    if exists and not old and version < 4:
        for index in REBUILT_IN_4:
            conn.execute(f"DROP INDEX IF EXISTS {index}")
    columns = {row[1] for row in conn.execute("PRAGMA table_info(containers)")}
    if exists and not old and "live_host" not in columns:
        # Layout 5 added the live_host column: filled for the records not stopped, the only ones it is read for.
        conn.execute("ALTER TABLE containers ADD COLUMN live_host TEXT NOT NULL DEFAULT ''")
        live = conn.execute("SELECT rowid, record FROM containers WHERE known_status != 'STOPPED'").fetchall()
        conn.executemany(
            "UPDATE containers SET live_host = ? WHERE rowid = ?",
            [(live_host(decode_record(stored)), rowid) for rowid, stored in live],
        )
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
            conn.execute(INSERT, row_of(decode_record(stored)))
        conn.execute("DROP TABLE containers_v1")
    index_addresses(conn, bool(exists) and version < 6)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")


def index_addresses(conn: sqlite3.Connection, populate: bool) -> None:
    """Create the address index (layout 6); for a file of an older layout, fill it from the records on file."""
    conn.execute(sqlite_addresses.SCHEMA)
    if not populate:
        return
    stored = conn.execute("SELECT record FROM containers")
    while batch := stored.fetchmany(1000):
        sqlite_addresses.update(conn, ((None, decode_record(record)) for (record,) in batch))
