"""The token file: its errors name the line and stop the server at start; it is read again when it changes, a bad
edit keeping the last good one; the scopes of reads; ``flask.g.token_name``; rotation with two tokens at once."""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys

import pytest
from flask import g

from server import auth
from server.config import ConfigError
from server.state import state
from server.token_file import TokenFileError, parse
from server.token_file import read as read_file
from server.tokens import Registry
from tests.server import samples
from tests.support import ROOT

OLD, NEW, READER = "old-7GmN3xQ0pL2vR8sK", "new-Vb4Tz8Wq1Hn6Yc0D", "reader-Qm2Xk9Lp4Rt7Sw1Z"


def sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def agents(*tokens: str, reader: bool = True) -> str:
    """A token file with the agents' tokens (named ``agents-<n>``), all for cluster default, and a reader."""
    lines = ["tokens:"]
    for n, token in enumerate(tokens):
        lines += [f"  agents-{n}:", f"    sha256: {sha(token)}", "    report: [default]"]
    if reader:
        lines += ["  dashboards:", f"    sha256: {sha(READER)}", "    read: true"]
    return "\n".join(lines) + "\n"


def good(extra: str = "") -> str:
    return f"tokens:\n  prod:\n    sha256: {sha(OLD)}\n    report: [prod-eu]\n{extra}"


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        (good("    raed: true\n"), 5, "token 'prod': unknown scope 'raed' (expected sha256, report, events, read)"),
        (
            good(f"  prod:\n    sha256: {sha(NEW)}\n    read: true\n"),
            5,
            "tokens: 'prod' is given twice (first on line 2)",
        ),
        (f"tokens:\n  prod:\n    sha256: {OLD}\n    read: true\n", 3, "sha256 must be 64 hex digits"),
        (good(f"  again:\n    sha256: {sha(OLD)}\n    read: true\n"), 6, "same sha256 as 'prod' (line 2)"),
        (f"tokens:\n  idle:\n    sha256: {sha(OLD)}\n", 3, "token 'idle': grants nothing"),
        (f"tokens:\n  token:\n    sha256: {sha(OLD)}\n    read: true\n", 2, "taken by the ECS_ID_MAPPER_TOKEN"),
        (good("    events:\n      - {account: '1', region: x}\n"), 6, "events: missing cluster"),
        (good("    events:\n      - {acount: '1', region: x, cluster: y}\n"), 6, "unknown key 'acount'"),
        (good("    read: sometimes\n"), 5, "read: expected true or false"),
        (good("reads: closed\n"), 5, "reads: expected one of tokens, open"),
        (f"tokens:\n  prod:\n    sha256: {sha(OLD)}\n    report: prod-eu\n", 4, "expected a list of cluster names"),
        ("tokens:\n  prod: [unclosed\n", 3, "not YAML"),
        ("secrets:\n  a: b\n", 1, "unknown key 'secrets'"),
    ],
)
def test_a_bad_token_file_names_its_line(text, line, message):
    with pytest.raises(TokenFileError) as raised:
        parse(text, "tokens.yaml")
    assert str(raised.value).startswith(f"tokens.yaml line {line}: ")
    assert message in str(raised.value)
    assert OLD not in str(raised.value)  # a token written in the clear is never repeated


def test_an_unreadable_or_empty_token_file_says_so(tmp_path):
    with pytest.raises(TokenFileError, match=r"cannot read .*missing\.yaml: .*No such file"):
        read_file(tmp_path / "missing.yaml")
    with pytest.raises(TokenFileError, match=r"cannot read .*Is a directory"):
        read_file(tmp_path)
    (tmp_path / "empty.yaml").write_text("# nothing yet\n")
    with pytest.raises(TokenFileError, match=r"empty\.yaml: empty"):
        read_file(tmp_path / "empty.yaml")


def test_the_schema_as_documented():
    file = parse(
        f"reads: open\ntokens:\n  feed:\n    sha256: {sha(OLD).upper()}\n    events:\n"
        "      - {account: 012345678901, region: 'eu-*', cluster: '*'}\n"
    )
    (token,) = file.tokens
    assert file.open_reads and token.name == "feed" and token.report == () and not token.read
    # An account is taken as written: YAML would read 012345678901 as a number.
    assert token.may_send_events(["012345678901"], ["eu-west-1"], "any")
    assert not token.may_send_events(["012345678901", "999999999999"], ["eu-west-1"], "any")
    assert not token.may_send_events(["012345678901"], ["us-east-1"], "any")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tokens:\n  prod:\n    sha256: nope\n    read: true\n", "line 3: token 'prod': sha256 must be 64 hex digits"),
        (
            "tokens:\n  prod:\n    sha256: " + "0" * 64 + "\n    write: [x]\n",
            "line 4: token 'prod': unknown scope 'write'",
        ),
    ],
)
def test_python_m_server_stops_at_start_on_a_bad_token_file(tmp_path, text, expected):
    (tmp_path / "tokens.yaml").write_text(text)
    env = {
        "PATH": "/usr/bin:/bin",
        "ECS_ID_MAPPER_TOKEN_FILE": str(tmp_path / "tokens.yaml"),
        "ECS_ID_MAPPER_STORE": f"sqlite:///{tmp_path}/s.sqlite3",
    }
    result = subprocess.run([sys.executable, "-m", "server"], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=60)  # fmt: skip
    assert result.returncode != 0
    (message,) = result.stderr.strip().splitlines()  # one line, no traceback
    assert message.startswith(f"ecs-id-mapper: ECS_ID_MAPPER_TOKEN_FILE: {tmp_path}/tokens.yaml {expected}")
    assert not (tmp_path / "s.sqlite3").exists()  # stopped before the store was opened


def test_create_app_refuses_a_bad_token_file(make_app, settings, tmp_path):
    with pytest.raises(ConfigError, match=r"^ECS_ID_MAPPER_TOKEN_FILE: cannot read"):
        make_app({**settings, "token_file": str(tmp_path / "absent.yaml")})


@pytest.fixture
def token_file(tmp_path):
    path = tmp_path / "tokens.yaml"
    path.write_text(agents(OLD))
    return path


@pytest.fixture
def client(make_app, settings, token_file):
    app = make_app({**settings, "token_file": str(token_file)})
    state(app).tokens.interval = 0.0  # look at the file at every request
    names: list[str] = []
    app.after_request(lambda response: names.append(g.get("token_name")) or response)
    client = app.test_client()
    client.names = names  # type: ignore[attr-defined]
    return client


def rewrite(path, text: str) -> None:
    """Replace the file as a rotation does (a new file renamed over it), its time moved on for coarse clocks."""
    fresh = path.with_suffix(".new")
    fresh.write_text(text)
    stat = path.stat()
    os.utime(fresh, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    fresh.replace(path)


def send(client, token: str):
    return client.post("/report/map", json=samples.map_report(samples.container()), headers=bearer(token))


def test_rotation_two_tokens_at_once_then_the_old_one_refused_at_the_next_reload(client, token_file):
    assert send(client, OLD).status_code == 200
    assert send(client, NEW).status_code == 403
    rewrite(token_file, agents(OLD, NEW))
    assert send(client, NEW).status_code == 200 and send(client, OLD).status_code == 200
    rewrite(token_file, agents(NEW))
    assert send(client, OLD).status_code == 403
    assert send(client, NEW).status_code == 200
    assert client.names == ["agents-0", None, "agents-1", "agents-0", None, "agents-0"]


def test_a_bad_edit_keeps_the_last_good_file_and_says_so(client, token_file, caplog):
    registry = state(client.application).tokens
    rewrite(token_file, agents(OLD) + "  broken:\n    sha256: s3cret-in-the-clear\n    read: true\n")
    with caplog.at_level(logging.ERROR, "server.tokens"):
        assert send(client, OLD).status_code == 200
        assert send(client, OLD).status_code == 200
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1  # once per bad version, not per request
    assert "line 9: token 'broken': sha256 must be 64 hex digits" in errors[0]
    assert "the last good token file stays in force" in errors[0] and "s3cret" not in errors[0]
    assert registry.problem is not None and "line 9" in registry.problem
    assert "the last good one stays in force" in client.get("/health").get_json()["token_file"]
    token_file.unlink()
    assert send(client, OLD).status_code == 200
    assert "cannot read" in registry.problem
    token_file.write_text(agents(NEW))
    assert send(client, NEW).status_code == 200 and registry.problem is None
    assert client.get("/health").get_json() == {"status": "ok", "store": "sqlite"}


def test_the_file_is_looked_at_no_more_than_every_interval(tmp_path, token_file):
    now = [0.0]
    registry = Registry(path=str(token_file), interval=1.0, clock=lambda: now[0])
    assert registry.current().match(OLD) is not None
    rewrite(token_file, agents(NEW))
    now[0] = 0.5
    assert registry.current().match(OLD) is not None  # not looked at yet
    now[0] = 1.0
    assert registry.current().match(OLD) is None and registry.current().match(NEW) is not None
    rewrite(token_file, agents(OLD))
    assert registry.reload() and registry.current().match(OLD) is not None  # SIGHUP's way: at once


def test_reads_need_a_token_with_read_scope_once_a_token_file_is_set(client, token_file):
    path = f"/query/container_id/{samples.API_ID}"
    assert send(client, OLD).status_code == 200
    assert client.get(path).status_code == 401
    assert client.get(path, headers=bearer(OLD)).status_code == 403  # reports only
    assert client.get(path, headers=bearer(READER)).status_code == 200
    assert client.get(path, headers=samples.AUTH).status_code == 200  # the single report token reads, as before
    assert client.post("/report/map", json=samples.map_report(), headers=bearer(READER)).status_code == 403
    with client.application.test_request_context():
        assert auth.accepts_read(READER) and not auth.accepts_read(OLD) and not auth.accepts_read("")
    rewrite(token_file, "reads: open\n" + agents(OLD, reader=False))
    assert client.get(path).status_code == 200


def test_a_token_of_one_scope_uses_no_other(make_app, settings, tmp_path):
    anywhere = "{account: '*', region: '*', cluster: '*'}"
    (tmp_path / "t.yaml").write_text(
        f"tokens:\n  events-only:\n    sha256: {sha(NEW)}\n    events:\n      - {anywhere}\n"
    )
    client = make_app({**settings, "token_file": str(tmp_path / "t.yaml")}).test_client()
    answer = send(client, NEW)
    assert answer.status_code == 403
    assert answer.get_json()["message"] == "token 'events-only' may not report: it has no report scope"
    assert client.post("/report/event", json={"events": []}, headers=bearer(NEW)).status_code == 403
    assert client.post("/report/ecs-events", json=[], headers=bearer(NEW)).status_code == 200
