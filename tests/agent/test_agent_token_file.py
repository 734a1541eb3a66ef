"""``ECS_ID_MAPPER_TOKEN_FILE``: the agent sends the token the file holds, read again when it changes, and keeps
the last good one while the file is bad; a refused token that was replaced is tried again at once."""

from __future__ import annotations

import logging
import os
import random

import pytest

from agent.backoff import Backoff
from agent.config import ConfigError, load_config
from agent.credentials import TokenSource
from agent.delivery import Delivery
from agent.outbox import Outbox
from tests.agent.fakes import SERVER, FakeClock, FakeSession, container_id, response

URL = f"{SERVER}/report/map"


def write(path, text: str) -> None:
    """Replace the file as a secrets sidecar does (a new file renamed over it), its time moved on."""
    fresh = path.with_suffix(".new")
    fresh.write_text(text)
    if path.exists():
        before = path.stat().st_mtime_ns
        os.utime(fresh, ns=(before, before + 1_000_000_000))
    fresh.replace(path)


def test_the_setting_needs_a_readable_file_with_one_token(tmp_path):
    env = {"ECS_ID_MAPPER_SERVER_URL": "http://127.0.0.1:5001"}
    path = tmp_path / "token"
    with pytest.raises(ConfigError, match=r"^ECS_ID_MAPPER_TOKEN_FILE: cannot read"):
        load_config({**env, "ECS_ID_MAPPER_TOKEN_FILE": str(path)})
    for bad in ("", "\n", "two words\n"):
        path.write_text(bad)
        with pytest.raises(ConfigError, match=r"^ECS_ID_MAPPER_TOKEN_FILE: .* holds no token"):
            load_config({**env, "ECS_ID_MAPPER_TOKEN_FILE": str(path)})
    path.write_text("s3cret\n")
    assert load_config({**env, "ECS_ID_MAPPER_TOKEN_FILE": str(path)}).token_file == path


def test_the_file_is_read_again_when_it_changes_and_a_bad_version_keeps_the_last_good(tmp_path, caplog):
    path = tmp_path / "token"
    write(path, "first\n")
    source = TokenSource("from-the-environment", path)
    assert source.current() == "first"
    write(path, "second")
    assert source.current() == "second"
    with caplog.at_level(logging.WARNING, "agent.credentials"):
        write(path, "")
        assert source.current() == source.current() == "second"
        path.unlink()
        assert source.current() == "second"
    assert [r.getMessage().split(": ", 1)[1] for r in caplog.records] == [
        "the file is empty; still sending the last good token",
        f"[Errno 2] No such file or directory: '{path}'; still sending the last good token",
    ]
    write(path, "third")
    assert source.current() == "third"
    assert TokenSource("from-the-environment").current() == "from-the-environment"


def test_delivery_sends_the_current_token_and_tries_a_replaced_one_at_once(tmp_path):
    path = tmp_path / "token"
    write(path, "old")
    clock, server = FakeClock(), FakeSession()
    delivery = Delivery(server, SERVER, TokenSource("", path), (1, 2), Backoff(60, 300, random.Random(3)), clock)
    sent: list[str] = []

    def answer(kwargs):
        sent.append(kwargs["headers"]["Authorization"])
        return response(200 if kwargs["headers"]["Authorization"] == "Bearer new" else 403, {})

    server.route("POST", URL, answer)
    outbox = Outbox()
    outbox.put([{"container_id": container_id(1), "known_status": "RUNNING"}], [])
    assert delivery.deliver(outbox, {}) is False
    assert not delivery.due()  # backing off from the refusal
    write(path, "new")
    assert delivery.due()  # the token changed: no reason to wait
    assert delivery.deliver(outbox, {}) is True and not outbox.pending()
    assert sent == ["Bearer old", "Bearer new"]
