"""The SQLite writers' queue: an flock that another process holds too long (a stalled disk, a stopped process) is
waited for the store's timeout at most, then answered 503 with Retry-After like any store that cannot answer."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from server.state import state
from server.store.base import StoreUnavailable
from server.store.sqlite import SQLiteStore
from server.store.sqlite_writers import WriterQueue
from tests.server import samples
from tests.store.samples import at, cid, record

HOLD = """
import fcntl, os, signal, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
signal.pause()
"""


@contextmanager
def held_by_another_process(path: Path) -> Iterator[None]:
    """``path`` flocked by a child process until the block ends (and the process with it)."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        yield
    finally:
        holder.terminate()
        holder.wait(10)
        assert holder.stdout is not None
        holder.stdout.close()


@pytest.fixture
def store(tmp_path):
    made = SQLiteStore(str(tmp_path / "s.sqlite3"), timeout=0.3)
    yield made
    made.close()


def test_a_report_waits_the_store_timeout_for_a_stalled_writer_then_answers_503_with_retry_after(tmp_path, make_app):
    app = make_app({"store": f"sqlite:///{tmp_path}/mapper.sqlite3", "token": samples.TOKEN, "service_names": False})
    state(app).store.timeout = 0.5
    client = app.test_client()
    report = samples.map_report(samples.container())
    with held_by_another_process(tmp_path / "mapper.sqlite3-writer"):
        started = time.monotonic()
        answer = client.post("/report/map", json=report, headers=samples.AUTH)
        waited = time.monotonic() - started
        assert answer.status_code == 503
        assert answer.headers["Retry-After"] == "2"
        assert answer.get_json()["error"] == "service_unavailable"
        assert 0.5 <= waited < 5
    assert client.post("/report/map", json=report, headers=samples.AUTH).status_code == 200


def test_a_writer_that_gave_up_leaves_the_lock_to_the_others_once_free(store):
    with held_by_another_process(store.writer_lock_path), pytest.raises(StoreUnavailable, match="held"):
        store.upsert_containers([record(1)], at(1))
    # Its waiter, still blocked when it gave up, got the lock afterwards with nobody waiting and let go of it.
    written: list[BaseException | None] = []

    def write_from_another_thread() -> None:
        try:
            store.upsert_containers([record(2)], at(2))
            written.append(None)
        except BaseException as exc:
            written.append(exc)

    other = threading.Thread(target=write_from_another_thread)
    other.start()
    other.join(10)
    assert written == [None]
    store.upsert_containers([record(1)], at(3))  # and the thread that gave up writes again
    assert store.get_container(cid(1)) is not None and store.get_container(cid(2)) is not None


def test_a_writer_that_gave_up_waits_again_with_the_same_waiter(store):
    with held_by_another_process(store.writer_lock_path):
        for _ in range(3):
            with pytest.raises(StoreUnavailable):
                store.upsert_containers([record(1)], at(1))
        waiting = [t for t in threading.enumerate() if t.name == "sqlite-writer-wait"]
        assert len(waiting) == 1  # one blocked thread per writer thread, however often it tried
    deadline = time.monotonic() + 10
    while any(t.name == "sqlite-writer-wait" for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not any(t.name == "sqlite-writer-wait" for t in threading.enumerate())


def test_a_contended_turn_is_granted_the_moment_the_holder_lets_go(store):
    with held_by_another_process(store.writer_lock_path):
        store.timeout = 10.0
        done = threading.Event()

        def write() -> None:
            store.upsert_containers([record(3)], at(3))
            done.set()

        writer = threading.Thread(target=write)
        writer.start()
        time.sleep(0.2)
        assert not done.is_set()
    assert done.wait(5)
    writer.join(5)
    assert store.get_container(cid(3)) is not None


@pytest.mark.filterwarnings("ignore:.*use of fork\\(\\) may lead to deadlocks:DeprecationWarning")
def test_a_process_forked_while_a_writer_waited_gets_its_turns_once_the_lock_is_free(tmp_path):
    queue = WriterQueue(tmp_path / "s.sqlite3-writer")
    with held_by_another_process(queue.path):
        with pytest.raises(StoreUnavailable), queue.turn(0.1):
            pass
        # This thread's waiter is still blocked in the flock: a child forked now has the waiter but not its thread.
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline and code:
                    try:
                        with queue.turn(0.1):
                            code = 0
                    except StoreUnavailable:
                        pass
            finally:
                os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    with queue.turn(1.0):  # and the parent's waiter, which got the lock with nobody waiting, let go of it
        pass
