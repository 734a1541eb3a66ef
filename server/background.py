"""A background job of this process: a daemon thread started on first use, started again in a process forked after
it (gunicorn forks its workers, and threads do not survive a fork), stopped by an event, joined for a bounded time.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable

#: Every job made in this process, so that a forked child can set them right (weakly: a job goes with its owner).
_jobs: weakref.WeakSet[BackgroundJob] = weakref.WeakSet()


class BackgroundJob:
    """One daemon thread that runs ``work(stopping)`` until it returns; ``stopping`` is set when it should.

    ``start()`` is cheap enough to call on every use: it starts a thread when this process has none alive (none
    yet, the last one returned, or it was the parent's: the job remembers the pid that started it). A stopped job
    stays stopped unless ``start(after_stop=True)``. ``stop()`` sets ``stopping``, calls ``wake`` for work that
    waits on something else (a condition, an event of its own), and waits at most ``join_timeout`` for the thread.

    In a forked child the job forgets the parent's thread and locks (either may be mid-use at the fork), calls
    ``after_fork`` so that its owner can do the same, and, made with ``restart_after_fork``, starts again at once
    if it was running: for jobs nothing else would start in the child (the pruner under ``gunicorn --preload``).
    """

    def __init__(
        self,
        name: str,
        work: Callable[[threading.Event], object],
        *,
        wake: Callable[[], object] | None = None,
        after_fork: Callable[[], object] | None = None,
        restart_after_fork: bool = False,
        join_timeout: float = 5.0,
    ):
        self.name = name
        self.join_timeout = join_timeout
        self.restart_after_fork = restart_after_fork
        self._work = work
        self._wake = wake
        self._after_fork = after_fork
        self._stopped = False
        self._forget_threads()
        _jobs.add(self)

    def _forget_threads(self) -> None:
        self._lock = threading.RLock()  # reentrant: a signal handler may log, and the log writer start, mid-start
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()  # the running thread's: each thread gets its own
        self._pid = os.getpid()

    @property
    def thread(self) -> threading.Thread | None:
        """The job's thread, once started (it may have ended since)."""
        return self._thread

    @property
    def started(self) -> bool:
        """Whether a thread was started and has not returned (no pid check: a cheap test for hot paths)."""
        return self._thread is not None

    @property
    def stopped(self) -> bool:
        """Whether ``stop()`` was called since the last start."""
        return self._stopped

    def alive(self) -> bool:
        """Whether this process's thread of the job is running."""
        thread = self._thread
        return thread is not None and self._pid == os.getpid() and thread.is_alive()

    def start(self, after_stop: bool = False) -> bool:
        """Start the thread unless one of this process is alive, or the job was stopped (unless ``after_stop``).
        True if it started one."""
        if self.alive() and not self._stopping.is_set():
            return False
        with self._lock:
            if self._stopped and not after_stop:
                return False
            if self.alive() and not self._stopping.is_set():
                return False
            # A thread told to stop may still be on its way out: it keeps its own event, the new one gets another.
            self._stopped = False
            self._stopping = threading.Event()
            self._pid = os.getpid()
            self._thread = threading.Thread(target=self._run, args=(self._stopping,), name=self.name, daemon=True)
            self._thread.start()
            return True

    def _run(self, stopping: threading.Event) -> None:
        try:
            self._work(stopping)
        finally:
            self.retire()

    def retire(self) -> None:
        """Called by the job's own thread as it decides to return (under the lock its owner calls ``start`` with,
        if any): a ``start`` from now on starts a new thread instead of counting on this one."""
        with self._lock:
            if self._thread is threading.current_thread():
                self._thread = None

    def stop(self, timeout: float | None = None) -> bool:
        """Tell the thread to stop and wait for it, ``timeout`` seconds at most (``join_timeout`` by default).
        True if it is gone."""
        with self._lock:
            self._stopped = True
            self._stopping.set()
            thread = self._thread if self._pid == os.getpid() else None
        if self._wake is not None:
            self._wake()
        if thread is None or thread is threading.current_thread():
            return True
        thread.join(self.join_timeout if timeout is None else timeout)
        return not thread.is_alive()

    def _forked(self) -> None:
        """In a forked child: the parent's thread is not here; start again if asked to and it was running."""
        was_running = self._thread is not None and not self._stopped
        self._forget_threads()
        if self._after_fork is not None:
            self._after_fork()
        if self.restart_after_fork and was_running:
            self.start()


def _after_fork_in_child() -> None:
    for job in list(_jobs):
        job._forked()


os.register_at_fork(after_in_child=_after_fork_in_child)
