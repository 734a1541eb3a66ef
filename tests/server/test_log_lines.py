"""``BufferedLines``: the server's log handler writes lines whole, in order, from a background thread, at once for
warnings, and never twice across gunicorn's fork."""

from __future__ import annotations

import logging
import os
import select

import pytest

from server import logs
from server.logs import BufferedLines

HOUR = 3600.0  # an interval the background writer never reaches during a test


@pytest.fixture
def pipe():
    read, write = os.pipe()
    os.set_blocking(read, False)
    with os.fdopen(write, "w") as stream:
        yield stream, read
    os.close(read)


def logger_to(handler: logging.Handler, name: str) -> logging.Logger:
    log = logging.getLogger(f"test_log_lines.{name}")
    log.propagate = False
    log.handlers = [handler]
    log.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    return log


def written(fd: int) -> str:
    chunks = []
    while select.select([fd], [], [], 0)[0]:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode()


def test_lines_wait_for_the_writer_and_a_warning_takes_them_out_in_order(pipe):
    stream, fd = pipe
    handler = BufferedLines(stream, interval=HOUR)
    log = logger_to(handler, "order")
    log.info("first")
    log.info("second")
    assert written(fd) == ""
    log.warning("third")
    assert written(fd) == "INFO first\nINFO second\nWARNING third\n"
    handler.close()


def test_the_background_writer_writes_them(pipe):
    stream, fd = pipe
    handler = BufferedLines(stream, interval=0.01)
    logger_to(handler, "background").info("in time")
    select.select([fd], [], [], 10)
    assert written(fd) == "INFO in time\n"
    handler.close()


def test_a_backlog_is_written_by_the_thread_that_adds_to_it(pipe):
    stream, fd = pipe
    handler = BufferedLines(stream, interval=HOUR, backlog=3)
    log = logger_to(handler, "backlog")
    for n in range(3):
        log.info("line %d", n)
    assert written(fd) == ""
    log.info("line 3")
    assert written(fd).splitlines() == [f"INFO line {n}" for n in range(4)]
    handler.close()


def test_writes_hold_whole_lines_within_pipe_buf(pipe, monkeypatch):
    stream, _ = pipe
    writes: list[bytes] = []

    def write(fd: int, data: bytes) -> int:
        writes.append(bytes(data))
        return len(data)

    monkeypatch.setattr(logs.os, "write", write)
    handler = BufferedLines(stream, interval=HOUR)
    log = logger_to(handler, "chunks")
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
    handler.close()


def test_close_writes_what_is_left_and_later_lines_at_once(pipe):
    stream, fd = pipe
    handler = BufferedLines(stream, interval=HOUR)
    log = logger_to(handler, "close")
    log.info("last words")
    handler.close()
    assert written(fd) == "INFO last words\n"
    log.info("from a thread still running at exit")
    assert written(fd) == "INFO from a thread still running at exit\n"


def test_the_parent_writes_its_lines_before_a_fork_and_the_child_only_its_own(pipe):
    stream, fd = pipe
    handler = BufferedLines(stream, interval=HOUR)
    log = logger_to(handler, "fork")
    log.info("the parent's, before the fork")
    child = os.fork()
    if child == 0:  # the child: one line of its own, then out without the parent's exit handlers
        try:
            log.warning("the child's")
        finally:
            os._exit(0)
    os.waitpid(child, 0)
    assert written(fd) == "INFO the parent's, before the fork\nWARNING the child's\n"
    handler.close()


def test_a_forked_child_never_writes_its_parents_lines(pipe):
    stream, fd = pipe
    handler = BufferedLines(stream, interval=HOUR)
    log = logger_to(handler, "fork-reset")
    log.info("the parent's")
    handler._reset()  # as in a child: what _reset leaves is what a child starts from
    log.warning("the child's")
    assert written(fd) == "WARNING the child's\n"
    handler.close()


def test_bad_text_is_escaped_not_lost(pipe):
    stream, fd = pipe
    handler = BufferedLines(stream, interval=HOUR)
    logger_to(handler, "escape").warning("id \udcff")
    assert written(fd) == "WARNING id \\udcff\n"
    handler.close()
