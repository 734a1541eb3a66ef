"""What the SQLite store's writers of every process share besides the file: the queue they wait in for SQLite's
write lock (an flock of ``<file>-writer``, waited for a bounded time) and the checkpointer that copies the WAL
they fill back into the database file.
"""

from __future__ import annotations

import enum
import fcntl
import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from server.background import BackgroundJob
from server.store.base import StoreUnavailable

log = logging.getLogger(__name__)

#: How long the checkpointer lets commits gather in the WAL before it copies them back into the database file.
CHECKPOINT_INTERVAL = 0.1


def open_lock_file(path: Path) -> int:
    return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)


class WriterQueue:
    """The flock of ``<file>-writer`` that writers queue on before they begin a transaction.

    SQLite's busy handler polls the write lock with sleeps growing to 100 ms: with a dozen writer threads the lock
    sat idle between sleeps, and some threads lost every race until their timeout (reports refused with 503). A
    blocked flock wakes the moment the lock is free. An flock cannot time out, though, and its holder may hang (a
    stalled disk, a stopped process): a writer that finds the lock taken leaves the blocking call to a thread of
    its own (``FlockWaiter``) and gives up after ``timeout`` seconds, as SQLite's busy timeout did.
    """

    def __init__(self, path: Path):
        self.path = path
        self._local = threading.local()  # each thread's descriptor, and its waiter still blocked, if any

    @contextmanager
    def turn(self, timeout: float) -> Iterator[None]:
        """Hold the lock for the block; StoreUnavailable if it stays taken ``timeout`` seconds."""
        fd, own = self._acquire(timeout)
        try:
            yield
        finally:
            # Unlocked, not just closed: a process forked meanwhile holds a copy of the descriptor.
            fcntl.flock(fd, fcntl.LOCK_UN)
            if not own:
                os.close(fd)  # a waiter's, used once

    def _acquire(self, timeout: float) -> tuple[int, bool]:
        """The descriptor that holds the lock, and whether it is the thread's own (else a waiter's)."""
        local = self._local
        while True:
            waiter: FlockWaiter | None = getattr(local, "waiter", None)
            if waiter is not None and waiter.pid != os.getpid():  # the parent's, whose thread is not in this process
                os.close(waiter.fd)
                waiter = local.waiter = None
            if waiter is None:
                fd = self._descriptor()
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return fd, True
                except BlockingIOError:
                    waiter = local.waiter = FlockWaiter(self.path)
            # A waiter left blocked by an earlier write of this thread is waited for again, not joined by another.
            state = waiter.wait(timeout)
            if state is not Waiting.BLOCKED:
                local.waiter = None
            if waiter.error is not None:
                raise waiter.error
            if state is Waiting.GRANTED:
                return waiter.fd, False
            if state is Waiting.BLOCKED:
                raise StoreUnavailable(
                    f"SQLite store: another writer held {self.path} for {timeout:g} s (a stalled disk or process?)"
                )
            # LET_GO: an earlier write's waiter got the lock with nobody waiting and let go: it may be free now.

    def _descriptor(self) -> int:
        fd = getattr(self._local, "fd", None)
        if fd is None:
            fd = self._local.fd = open_lock_file(self.path)
        return fd

    def close_thread(self) -> None:
        """Close this thread's descriptor; a waiter of its still blocked lets go of the lock once it gets it."""
        fd = getattr(self._local, "fd", None)
        if fd is not None:
            os.close(fd)
            self._local.fd = None
        self._local.waiter = None


class Waiting(enum.Enum):
    BLOCKED = "blocked in the flock"
    GRANTED = "holds the lock for the writer that waits, through its descriptor"
    LET_GO = "got the lock with no writer waiting, and let go at once"


class FlockWaiter:
    """A thread blocked in an flock of ``path`` for a writer, so that the writer can stop waiting.

    Once it has the lock it hands it to the writer waiting in ``wait``, or, with none waiting any more, lets go
    of it at once.
    """

    def __init__(self, path: Path):
        self.fd = open_lock_file(path)
        self.pid = os.getpid()
        self.error: OSError | None = None
        self._changed = threading.Condition()
        self._state = Waiting.BLOCKED
        self._wanted = True  # its maker waits for it at once
        threading.Thread(target=self._block, name="sqlite-writer-wait", daemon=True).start()

    def _block(self) -> None:
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        except OSError as exc:
            self.error = exc
        with self._changed:
            self._state = Waiting.GRANTED if self._wanted and self.error is None else Waiting.LET_GO
            self._changed.notify_all()
        if self._state is Waiting.LET_GO:
            if self.error is None:
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)

    def wait(self, timeout: float) -> Waiting:
        """Wait up to ``timeout`` seconds for the lock; what came of it."""
        with self._changed:
            self._wanted = True
            self._changed.wait_for(lambda: self._state is not Waiting.BLOCKED, timeout)
            self._wanted = False
            return self._state


class Checkpointer(BackgroundJob):
    """A thread that copies the WAL back into the database file after commits, so that no writer does it.

    SQLite's own checkpoint runs inside the commit that crosses ``wal_autocheckpoint``, with the write lock held:
    every writer of every process waited for its fsyncs (about 30 % of ingest). A passive checkpoint here does
    the same work beside the writers. Passive checkpoints alone can starve behind readers that always overlap, so
    once the WAL passes the store's limit a truncating one takes the write lock and waits for the readers of the
    moment. While another process's checkpointer is at work, this one tries again an interval later.

    ``checkpoint`` is the store's (True when done, False to try again); ``close_connection`` closes the thread's
    connection as it ends. Started by the first ``wake``, in each process, and again after a ``stop``.
    """

    def __init__(
        self,
        checkpoint: Callable[[], bool],
        close_connection: Callable[[], None],
        interval: float = CHECKPOINT_INTERVAL,
        join_timeout: float = 30.0,
    ):
        self.checkpoint = checkpoint
        self.close_connection = close_connection
        self.interval = interval
        self._written = threading.Event()
        super().__init__(
            "sqlite-checkpointer",
            self._copy_back,
            wake=self._rouse,
            after_fork=self._forget_commits,
            join_timeout=join_timeout,
        )

    def wake(self) -> None:
        """Something was committed: copy it back within an interval."""
        self._written.set()
        self.start(after_stop=True)

    def _rouse(self) -> None:
        self._written.set()

    def _forget_commits(self) -> None:
        self._written = threading.Event()  # the parent's may have been mid-use at the fork

    def _copy_back(self, stopping: threading.Event) -> None:
        while not stopping.is_set():
            self._written.wait()
            if stopping.wait(self.interval):  # commits gather meanwhile, then go in one checkpoint
                break
            self._written.clear()
            try:
                done = self.checkpoint()
            except (StoreUnavailable, OSError) as exc:
                log.warning("checkpoint failed, trying again: %s", exc)
                done = False
            if not done:
                self._written.set()
        self.close_connection()
