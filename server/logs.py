"""Log output for the server process: text lines by default, JSON lines with ``ECS_ID_MAPPER_LOG_FORMAT=json``.

The same formatter serves gunicorn's own messages and the app's, so that one process writes one format.
"""

from __future__ import annotations

import json
import logging
import os
import select
import sys
import threading
import weakref
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TextIO

from server.background import BackgroundJob

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: Attributes every LogRecord has; anything else on a record came in ``extra=`` and is a field of its JSON line.
STANDARD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, then the record's ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update((key, value) for key, value in vars(record).items() if key not in STANDARD_ATTRIBUTES)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class BufferedLines(logging.Handler):
    """Log lines to a stream's file descriptor (stderr), written by a background thread every ``interval`` seconds.

    Why: a ``StreamHandler`` takes a lock and makes a system call for every line, and with several request threads
    per worker each is a hand-off of the GIL. Profiled in a live worker under load, a request's log line cost as
    much as its lookup and text answer together (13 % of the answer); from one thread the same line costs a quarter
    of that. Here a request thread formats its line and appends it, nothing more.

    Lines go out whole, in writes of at most ``PIPE_BUF`` bytes, which the kernel keeps whole on a pipe written by
    several processes (gunicorn's workers share one stderr). A record at WARNING or above is written at once, with
    the lines before it; so is a backlog of ``backlog`` lines (a reader that stalls slows the requests, as a
    ``StreamHandler`` would, instead of filling memory). ``logging.shutdown`` writes the rest at exit (lines after
    it go out at once), so only a process killed outright loses its last ``interval`` of lines.
    """

    def __init__(self, stream: TextIO | None = None, interval: float = 0.1, backlog: int = 10_000):
        super().__init__()
        self.fd = (stream or sys.stderr).fileno()
        self.interval, self.backlog = interval, backlog
        self._reset()
        # gunicorn forks its workers after logging is set up. The parent writes its lines before it forks, so that
        # they come first; the child keeps neither the writer thread nor a line the parent has yet to write.
        me = weakref.ref(self)

        def hook(method: str) -> Callable[[], None]:
            def call() -> None:
                handler = me()
                if handler is not None:
                    getattr(handler, method)()

            return call

        os.register_at_fork(before=hook("flush"), after_in_child=hook("_reset"))

    def _reset(self) -> None:
        self._lines: deque[bytes] = deque()
        self._writing = threading.RLock()  # reentrant: a signal handler may log a warning in a thread that writes
        # Started with the first line; a new one in a forked child, open even if the parent's was closed.
        self._writer = BackgroundJob("log-writer", self._run, join_timeout=1.0)

    def handle(self, record: logging.LogRecord) -> bool:
        # Handler.handle without the handler's lock: appending to a deque needs none, and writes hold _writing.
        passed = self.filter(record)
        if passed:
            self.emit(passed if isinstance(passed, logging.LogRecord) else record)
        return bool(passed)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = (self.format(record) + "\n").encode("utf-8", "backslashreplace")
        except Exception:
            self.handleError(record)
            return
        self._lines.append(line)
        writer = self._writer
        if not writer.started and not writer.stopped:
            writer.start()
        if record.levelno >= logging.WARNING or len(self._lines) > self.backlog or writer.stopped:
            self.flush()  # the last also once closed: threads that log during shutdown have no writer left

    def _run(self, stopping: threading.Event) -> None:
        while not stopping.wait(self.interval):
            self.flush()

    def flush(self) -> None:
        with self._writing:
            lines = self._lines
            while lines:
                first = lines.popleft()
                chunk, size = [first], len(first)
                while lines and size + len(lines[0]) <= select.PIPE_BUF:
                    size += len(lines[0])
                    chunk.append(lines.popleft())
                self._write(b"".join(chunk))

    def _write(self, data: bytes) -> None:
        try:
            while data:
                data = data[os.write(self.fd, data) :]
        except OSError:
            pass  # stderr is gone: nowhere left to say so

    def close(self) -> None:
        self._writer.stop()
        self.flush()
        super().close()


def formatter(log_format: str) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)


def configure(level: str, log_format: str) -> None:
    """Send the root logger's records to stderr in ``log_format``, unless something (gunicorn) already did."""
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(formatter(log_format))
    root.addHandler(handler)
    root.setLevel(level)


def gunicorn_logconfig(level: str, log_format: str) -> dict[str, Any]:
    """gunicorn's ``logconfig_dict``: its error log and the app's records on stderr in ``log_format``, and no
    access log (the app's request log replaces it: gunicorn's would print a basic-auth user name, a token)."""
    style = {"()": JsonFormatter} if log_format == "json" else {"format": TEXT_FORMAT}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"main": style},
        "handlers": {"stderr": {"class": "server.logs.BufferedLines", "formatter": "main"}},
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": {
            "gunicorn.error": {"level": level, "handlers": [], "propagate": True},
            "gunicorn.access": {"level": "CRITICAL", "handlers": [], "propagate": False},
        },
    }
