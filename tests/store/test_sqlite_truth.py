"""What only the SQLite store does for host leases and reconciliation: what each costs in statements, and files of
the layout before leases (4) converted."""

from __future__ import annotations

import sqlite3

from bench import lease_writes
from server import liveness
from server.store.sqlite import SCHEMA_VERSION, SQLiteStore
from tests.store.samples import T0, at, cid, record

HOST = {"cluster_name": "default", "instance_id": "i-0aaa", "host_name": "ip-10-0-1-7", "container_instance_arn": ""}
OTHER_HOST = {**HOST, "instance_id": "i-0bbb"}
KEY = liveness.host_key(HOST)

# What layout 5 added, taken away again: a file as layout 4 left it.
BACK_TO_LAYOUT_4 = """
DROP INDEX containers_by_host;
ALTER TABLE containers DROP COLUMN live_host;
DROP TABLE hosts;
DROP TABLE notes;
PRAGMA user_version = 4;
"""


def on(host: dict, n: int, **fields) -> dict:
    return record(n, **{**host, **fields})


class Statements:
    """The SQL statements one store's connection (of this thread) runs."""

    def __init__(self, store: SQLiteStore):
        self.run: list[str] = []
        store._connection().set_trace_callback(self.run.append)

    def take(self) -> list[str]:
        run = self.run[:]
        self.run.clear()  # in place: the callback appends to this list
        return run


def test_a_keepalive_inside_the_half_lease_costs_no_statement(tmp_path):
    store = SQLiteStore(str(tmp_path / "s.sqlite3"))
    store.lease = 540
    store.record_report([on(HOST, 1)], [], at(0), full=True, host=HOST)
    statements = Statements(store)
    for minute in range(1, 5):
        store.record_report([], [], at(minute), host=HOST)
    assert statements.take() == []
    store.record_report([], [], at(4.5), host=HOST)
    ran = statements.take()
    assert [s for s in ran if s.startswith("INSERT INTO hosts")] and "BEGIN IMMEDIATE" in ran
    store.close()


def test_a_replica_that_finds_the_lease_renewed_by_another_writes_nothing(tmp_path):
    path = str(tmp_path / "s.sqlite3")
    one, replica = SQLiteStore(path), SQLiteStore(path)
    one.lease = replica.lease = 540
    one.record_report([], [], at(0), host=HOST)
    statements = Statements(replica)
    replica.record_report([], [], at(1), host=HOST)
    assert statements.take() == ["SELECT renewed_at FROM hosts WHERE host_key = ?".replace("?", f"'{KEY}'")]
    replica.record_report([], [], at(2), host=HOST)  # remembered now: not even a read
    assert statements.take() == []
    one.close()
    replica.close()


def test_host_leases_teach_the_process_what_it_need_not_read(tmp_path):
    path = str(tmp_path / "s.sqlite3")
    one, replica = SQLiteStore(path), SQLiteStore(path)
    one.record_report([], [], at(0), host=HOST)
    assert replica.host_leases() == {KEY: at(0)}
    statements = Statements(replica)
    replica.record_report([], [], at(1), host=HOST)
    assert statements.take() == []
    one.close()
    replica.close()


def test_a_resync_finds_its_hosts_containers_in_the_covering_index(tmp_path):
    store = SQLiteStore(str(tmp_path / "s.sqlite3"))
    store.record_report([on(HOST, n) for n in range(1, 4)], [], at(0), full=True, host=HOST)
    plan = " ".join(
        row[-1]
        for row in store._query(
            "EXPLAIN QUERY PLAN SELECT container_id FROM containers WHERE live_host = ? AND live_host != ''"
            " ORDER BY container_id",
            (KEY,),
        )
    )
    assert "USING COVERING INDEX containers_by_host" in plan
    assert "TEMP B-TREE" not in plan
    store.close()


def test_a_stopped_record_leaves_the_host_index(tmp_path):
    store = SQLiteStore(str(tmp_path / "s.sqlite3"))
    store.record_report([on(HOST, 1), on(HOST, 2), on(OTHER_HOST, 3)], [], at(0), full=True, host=HOST)
    store.record_report([on(HOST, 1, sample=1), on(HOST, 2, sample=1, status="STOPPED")], [], at(1), host=HOST)
    assert store._query("SELECT container_id FROM containers WHERE live_host = ?", (KEY,)) == [(cid(1),)]
    store.close()


def test_an_unchanged_resync_of_a_lost_host_writes_its_records_and_lease_in_one_transaction(tmp_path):
    store = SQLiteStore(str(tmp_path / "s.sqlite3"))
    store.lease = 540
    store.record_report([on(HOST, 1), on(HOST, 2)], [], at(0), full=True, host=HOST)
    statements = Statements(store)
    store.record_report([on(HOST, 1, sample=20), on(HOST, 2, sample=20)], [], at(20), full=True, host=HOST)
    ran = statements.take()
    assert ran.count("BEGIN IMMEDIATE") == 1
    assert store.host_leases() == {KEY: at(20)}
    assert [e["event"] for e in store.events_of_container(cid(1))] == ["appeared"]  # nothing changed: no event
    store.close()


def test_a_snapshot_racing_another_writer_stops_only_what_is_still_running(tmp_path):
    path = str(tmp_path / "s.sqlite3")
    store, other = SQLiteStore(path), SQLiteStore(path)
    store.record_report([on(HOST, 1), on(HOST, 2)], [], at(0), full=True, host=HOST)
    read_before_lock = store._gone

    def read_then_let_another_writer_in(conn, key, listed):
        found = read_before_lock(conn, key, listed)
        if not conn.in_transaction:  # another report stops container 2 right after the read without the lock
            other.record_report([on(HOST, 2, status="STOPPED", sample=5)], [], at(5), host=HOST)
        return found

    store._gone = read_then_let_another_writer_in  # type: ignore[method-assign]
    store.record_report([on(HOST, 1, sample=10)], [], at(10), full=True, host=HOST)
    gone = store.get_container(cid(2))
    assert (gone["known_status"], gone["stopped_at"], gone.get("stopped_reason", "")) == ("STOPPED", at(5), "")
    assert "vanished" not in [e["event"] for e in store.events_of_container(cid(2))]
    store.close()
    other.close()


def test_prune_forgets_hosts_silent_past_retention(tmp_path):
    two_days = 2 * 24 * 60
    store = SQLiteStore(str(tmp_path / "s.sqlite3"), retention_days=1, clock=lambda: T0.timestamp() + two_days * 60)
    store.record_report([], [], at(0), host=HOST)
    store.record_report([], [], at(two_days), host=OTHER_HOST)
    store.prune(100)
    assert list(store.host_leases()) == [liveness.host_key(OTHER_HOST)]
    store.close()


def test_a_file_of_layout_4_learns_the_hosts_of_its_live_records_and_reconciles(tmp_path):
    path = tmp_path / "v4.sqlite3"
    store = SQLiteStore(str(path))
    store.record_report([on(HOST, 1), on(HOST, 2), on(HOST, 3, status="STOPPED")], [], at(0), full=True, host=HOST)
    store.close()
    old = sqlite3.connect(path)
    old.executescript(BACK_TO_LAYOUT_4)
    old.close()

    store = SQLiteStore(str(path))
    assert store._query("PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert sorted(store._query("SELECT container_id, live_host FROM containers")) == [
        (cid(1), KEY), (cid(2), KEY), (cid(3), "")
    ]  # fmt: skip
    assert store.host_leases() == {}
    store.put_note("k", "v")
    assert store.get_note("k") == "v"
    store.record_report([on(HOST, 1, sample=10)], [], at(10), full=True, host=HOST)
    assert store.get_container(cid(2))["known_status"] == "STOPPED"
    assert store.host_leases() == {KEY: at(10)}
    store.close()


def test_a_note_is_replaced_whole(tmp_path):
    store = SQLiteStore(str(tmp_path / "s.sqlite3"))
    store.put_note("taskdef/a:1", "x" * 65_536)
    store.put_note("taskdef/a:1", "short")
    assert store.get_note("taskdef/a:1") == "short"
    store.close()


def test_the_lease_bench_writes_each_lease_twice_per_resync_and_nothing_else_between(tmp_path):
    # Renewed by the resync at 0 and the keep-alive at 300 s (the first past half the lease): 2 per host per round.
    with lease_writes.sqlite_case(tmp_path, 10) as case:
        writes, _, sent = lease_writes.drive(case, hosts=10, containers=2, minutes=20)
    assert sent == {"full snapshots": 20, "keep-alives": 180}
    assert writes == {"lease writes": 40, "transactions": 40, "container rows": 40, "event rows": 0}
