"""``BackgroundJob``: started on first use, started again in a forked child, stopped by its event, joined for a
bounded time; and the pruner, which nothing else would start in a worker forked after it (``gunicorn --preload``)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

import pytest

from server.background import BackgroundJob
from server.retention import Pruner

# Python 3.12 warns about any fork of a process with threads; these forks are the point of the tests.
pytestmark = pytest.mark.filterwarnings("ignore:.*use of fork\\(\\) may lead to deadlocks:DeprecationWarning")


def in_child(check: Callable[[], bool]) -> bool:
    """Whether ``check()`` is true in a forked child of this process (which leaves without its exit handlers)."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = 0 if check() else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


class Loop:
    """Work that counts its rounds until told to stop, and the job that runs it."""

    def __init__(self, **options: object):
        self.rounds = 0
        self.job = BackgroundJob("test-loop", self.work, **options)  # type: ignore[arg-type]

    def work(self, stopping: threading.Event) -> None:
        while not stopping.wait(0.01):
            self.rounds += 1


@pytest.fixture
def loop():
    made: list[Loop] = []

    def make(**options: object) -> Loop:
        made.append(Loop(**options))
        return made[-1]

    yield make
    for each in made:
        each.job.stop()


def test_nothing_runs_until_the_first_start_and_a_second_start_adds_no_thread(loop):
    job = loop().job
    assert (job.thread, job.alive()) == (None, False)
    assert job.start()
    thread = job.thread
    assert thread is not None and thread.name == "test-loop" and thread.daemon and job.alive()
    assert not job.start()
    assert job.thread is thread


def test_stop_ends_the_thread_and_a_stopped_job_starts_again_only_when_asked(loop):
    made = loop()
    job = made.job
    job.start()
    assert eventually(lambda: made.rounds > 0)
    thread = job.thread
    assert job.stop() and job.stopped and thread is not None and not thread.is_alive()
    assert not job.start()
    assert job.start(after_stop=True) and job.alive() and not job.stopped


def test_stop_wakes_work_that_waits_on_something_else():
    ready = threading.Condition()

    def work(stopping: threading.Event) -> None:
        with ready:
            while not stopping.is_set():
                ready.wait()  # no timeout: only ``wake`` gets it out

    def wake() -> None:
        with ready:
            ready.notify_all()

    job = BackgroundJob("test-waits", work, wake=wake)
    job.start()
    assert job.stop(timeout=5)


def test_the_join_is_bounded_by_the_timeout():
    release = threading.Event()
    job = BackgroundJob("test-stuck", lambda stopping: release.wait(30), join_timeout=0.1)
    job.start()
    started = time.monotonic()
    try:
        assert not job.stop()  # the thread ignores its event: stop gives up after join_timeout
        assert time.monotonic() - started < 5
        assert not job.stop(timeout=0.05)
    finally:
        release.set()
    thread = job.thread
    assert thread is not None
    thread.join(5)


def test_work_that_returns_leaves_room_for_a_new_thread(loop):
    rounds: list[int] = []
    job = BackgroundJob("test-once", lambda stopping: rounds.append(1))
    job.start()
    assert eventually(lambda: job.thread is None)  # it retired as it returned
    assert job.start()
    assert eventually(lambda: len(rounds) == 2)


def test_a_forked_child_has_no_thread_until_it_starts_one(loop):
    made = loop()
    made.job.start()

    def child() -> bool:
        if made.job.alive() or made.job.thread is not None:
            return False
        before = made.rounds
        return made.job.start() and eventually(lambda: made.rounds > before)

    assert in_child(child)
    assert made.job.alive()  # the parent's goes on


def test_a_job_made_to_restart_after_fork_runs_again_in_the_child_by_itself(loop):
    made = loop(restart_after_fork=True)
    made.job.start()
    before = made.rounds
    assert in_child(lambda: made.job.alive() and eventually(lambda: made.rounds > before + 3))


def test_a_job_stopped_before_the_fork_stays_stopped_in_the_child(loop):
    made = loop(restart_after_fork=True)
    made.job.start()
    made.job.stop()
    assert in_child(lambda: not made.job.alive() and made.job.stopped and not made.job.start())


def test_after_fork_lets_the_owner_replace_what_the_fork_may_have_caught_mid_use(loop):
    replaced: list[int] = []
    loop(after_fork=lambda: replaced.append(os.getpid()))
    assert in_child(lambda: replaced == [os.getpid()])
    assert replaced == []


class PidsOfPrunes:
    """A store whose prune writes the pid of the process that called it into a pipe, and removes nothing."""

    def __init__(self):
        self.read, self.write = os.pipe()
        os.set_blocking(self.read, False)

    def prune(self, limit: int) -> int:
        os.write(self.write, b"%d\n" % os.getpid())
        return 0

    def pids(self) -> set[int]:
        data = b""
        while True:
            try:
                chunk = os.read(self.read, 65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            data += chunk
        return {int(pid) for pid in data.split()}

    def close(self) -> None:
        os.close(self.read)
        os.close(self.write)


def test_the_pruner_prunes_in_a_worker_forked_after_it_started():
    # gunicorn --preload: the app, and its pruner, is made in the master, and each worker is a fork of it.
    store = PidsOfPrunes()
    pruner = Pruner(store, interval=0.02).start()  # type: ignore[arg-type]

    def prunes_here() -> bool:
        seen: set[int] = set()

        def pruned_by_this_process() -> bool:
            seen.update(store.pids())
            return os.getpid() in seen

        return eventually(pruned_by_this_process)

    try:
        assert in_child(prunes_here)
    finally:
        pruner.stop()
        store.close()
