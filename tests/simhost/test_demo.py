"""`make demo`'s own entry point: it prints curl commands that answer, and Ctrl-C leaves nothing behind."""

from __future__ import annotations

import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.support import ROOT

pytestmark = pytest.mark.slow


def processes_using(directory: str) -> list[int]:
    """PIDs whose environment names `directory` (the demo gives it to the server and the agent)."""
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if directory.encode() in environ.read_bytes():
                found.append(int(environ.parent.name))
        except OSError:
            continue
    return found


def answer(command: str) -> requests.Response:
    """What `command` (one of the printed curl lines) gets, asked with requests: CI machines may lack curl."""
    words = shlex.split(command)
    assert words[0] == "curl" and words[1] in ("-s", "-sI"), command
    method = "HEAD" if words[1] == "-sI" else "GET"
    return requests.request(method, words[2], allow_redirects=False, timeout=10)


def test_demo_prints_curl_commands_that_answer_and_ctrl_c_cleans_up():
    demo = subprocess.Popen(
        [sys.executable, "-m", "simhost.demo", "--port", "0", "--poll", "0.5"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    printed: list[str] = []
    try:
        deadline = time.monotonic() + 90
        while not printed or "Ctrl-C" not in printed[-1]:
            line = demo.stdout.readline()
            assert line, "the demo ended early:\n" + "".join(printed)
            printed.append(line)
            assert time.monotonic() < deadline, "no curl commands within 90 s"
        text = "".join(printed)
        directory = re.search(r"(/\S*ecs-id-mapper-demo-\S+)", text).group(1)
        server_url = re.search(r"the server on (http://127\.0\.0\.1:\d+)", text).group(1)
        assert Path(directory, "demo.sqlite3").exists()
        assert len(processes_using(directory)) >= 3  # the agent, gunicorn's arbiter and its worker

        commands = [line.strip() for line in printed if line.strip().startswith("curl ")]
        assert len(commands) >= 8
        answers = {command: answer(command) for command in commands}
        for command, response in answers.items():
            assert response.status_code == (302 if "redir=true" in command else 200), command
        by_full_id, by_short_id = (answers[c].text for c in commands[:2])
        assert by_full_id == by_short_id and re.fullmatch(r"[0-9a-f]{32}\n", by_full_id)
        assert any(r.headers.get("Location", "").startswith("http://10.") for r in answers.values())
        listed = [answers[c].text.split() for c in commands if "/query/task_id/" in c and "_all" not in c]
        assert any(len(ids) == 2 for ids in listed)  # the multi-container task
        page = re.search(r"^  (http://127\.0\.0\.1:\d+/\?q=[0-9a-f]{12})$", text, re.MULTILINE)
        assert page, text  # the page's URL, which opens the container's view
        assert requests.get(page[1], allow_redirects=False, timeout=10).headers["Location"].startswith("/container/")

        demo.send_signal(signal.SIGINT)
        assert demo.wait(40) == 0
        assert "Stopped; removed" in demo.stdout.read()
    finally:
        if demo.poll() is None:  # a failed check above: still let the demo stop what it started
            demo.send_signal(signal.SIGINT)
            try:
                demo.wait(40)
            except subprocess.TimeoutExpired:
                demo.kill()
                demo.wait()
        demo.stdout.close()
    assert not Path(directory).exists()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{server_url}/health", timeout=5)
    deadline = time.monotonic() + 10
    while processes_using(directory) and time.monotonic() < deadline:
        time.sleep(0.2)  # gunicorn's workers may outlive the arbiter by a moment
    assert processes_using(directory) == []
