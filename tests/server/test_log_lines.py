"""``BufferedLines``: the server's log handler writes lines whole, in order, from a background thread, at once for
warnings, and never twice across gunicorn's fork."""

from __future__ import annotations

import logging
import os
import select
from collections.abc import Callable

import pytest

from server import logs
from server.logs import BufferedLines

HOUR = 3600.0  # an interval the background writer never reaches during a test


@pytest.fixture
def pipe():
    """A pipe to log into: its write end as a stream, its read end's descriptor (non-blocking)."""
    read, write = os.pipe()
    os.set_blocking(read, False)
    with os.fdopen(write, "w") as stream:
        yield stream, read
    os.close(read)


@pytest.fixture
def buffered(pipe, request):
    """``buffered(interval=…, backlog=…)``: a logger whose one handler is a ``BufferedLines`` on the pipe, that
    handler, and the pipe's read end; the handler is closed after the test, whatever happened in it."""
    stream, fd = pipe
    handlers: list[BufferedLines] = []

    def make(interval: float = HOUR, **options: int) -> tuple[logging.Logger, BufferedLines, int]:
        handler = BufferedLines(stream, interval=interval, **options)
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        handlers.append(handler)
        log = logging.getLogger(f"test_log_lines.{request.node.name}")
        log.propagate = False
        log.handlers = [handler]
        log.setLevel(logging.INFO)
        return log, handler, fd

    yield make
    for handler in handlers:
        handler.close()


def written(fd: int) -> str:
    chunks = []
    while select.select([fd], [], [], 0)[0]:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode()


def test_lines_wait_for_the_writer_and_a_warning_takes_them_out_in_order(buffered):
    log, _, fd = buffered()
    log.info("first")
    log.info("second")
    assert written(fd) == ""
    log.warning("third")
    assert written(fd) == "INFO first\nINFO second\nWARNING third\n"


def test_the_background_writer_writes_them(buffered):
    log, _, fd = buffered(interval=0.01)
    log.info("in time")
    select.select([fd], [], [], 10)
    assert written(fd) == "INFO in time\n"


def test_a_backlog_is_written_by_the_thread_that_adds_to_it(buffered):
    log, _, fd = buffered(backlog=3)
    for n in range(3):
        log.info("line %d", n)
    assert written(fd) == ""
    log.info("line 3")
    assert written(fd).splitlines() == [f"INFO line {n}" for n in range(4)]


def test_writes_hold_whole_lines_within_pipe_buf(buffered, monkeypatch):
    writes: list[bytes] = []

    def write(fd: int, data: bytes) -> int:
        writes.append(bytes(data))
        return len(data)

    monkeypatch.setattr(logs.os, "write", write)
    log, handler, _ = buffered()
    lines = [f"request {n} " + "x" * (n % 300) for n in range(200)]
    for line in lines:
        log.info(line)
    log.info("long " + "y" * select.PIPE_BUF)  # longer than one write may be: goes out alone
    handler.flush()
    assert 1 < len(writes) <= len(lines) // 10  # batched: about 25 of these lines fit in one write
    assert all(chunk.endswith(b"\n") for chunk in writes)
    assert all(len(chunk) <= select.PIPE_BUF for chunk in writes[:-1])
    assert b"".join(writes).decode().splitlines() == [f"INFO {line}" for line in lines] + [
        "INFO long " + "y" * select.PIPE_BUF
    ]


def test_close_writes_what_is_left_and_later_lines_at_once(buffered):
    log, handler, fd = buffered()
    log.info("last words")
    handler.close()
    assert written(fd) == "INFO last words\n"
    log.info("from a thread still running at exit")
    assert written(fd) == "INFO from a thread still running at exit\n"


def fork(child: Callable[[], object]) -> None:
    """Run ``child`` in a forked child process, which then leaves without the parent's exit handlers."""
    pid = os.fork()
    if pid == 0:
        try:
            child()
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


def test_the_parent_writes_its_lines_before_a_fork_and_the_child_only_its_own(buffered):
    log, _, fd = buffered()
    log.info("the parent's, before the fork")
    fork(lambda: log.warning("the child's"))
    assert written(fd) == "INFO the parent's, before the fork\nWARNING the child's\n"


def test_a_forked_child_never_writes_a_line_its_parent_still_holds(buffered):
    log, handler, fd = buffered()
    log.info("the parent's")
    handler.flush = lambda: None  # as if the line came after the parent's last write

    def child() -> None:
        del handler.flush
        log.warning("the child's")

    fork(child)
    assert written(fd) == "WARNING the child's\n"
    del handler.flush
    handler.flush()
    assert written(fd) == "INFO the parent's\n"


def test_bad_text_is_escaped_not_lost(buffered):
    log, _, fd = buffered()
    log.warning("id \udcff")
    assert written(fd) == "WARNING id \\udcff\n"
