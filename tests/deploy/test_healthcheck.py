"""The images' HEALTHCHECK commands (``server.healthcheck``, ``agent.healthcheck``) against small HTTP servers on
loopback and on a unix socket: they ask where the bind setting says, and fail on a refusal or an unhealthy answer."""

from __future__ import annotations

import contextlib
import socketserver
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from agent import healthcheck as agent_healthcheck
from server import config as server_config
from server import healthcheck
from tests.support import free_port


class Answer(BaseHTTPRequestHandler):
    status = 200
    asked: list[str]

    def do_GET(self) -> None:
        self.asked.append(self.path)
        self.send_response(self.status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass

    def address_string(self) -> str:  # a unix socket's peer has no host
        return "local"


class UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


@contextlib.contextmanager
def serving(status: int, unix: Path | None = None) -> Iterator[tuple[str, list[str]]]:
    """An HTTP server answering ``status`` to every GET: its address as HOST:PORT (or unix:PATH), and the paths
    it was asked for."""
    asked: list[str] = []
    handler = type("Handler", (Answer,), {"status": status, "asked": asked})
    server: socketserver.BaseServer
    if unix:
        server, address = UnixHTTPServer(str(unix), handler), f"unix:{unix}"
    else:
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        address = f"127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield address, asked
    finally:
        server.shutdown()
        server.server_close()


def test_the_default_bind_is_the_servers():
    assert server_config.Config().bind == healthcheck.DEFAULT_BIND


def test_a_wildcard_address_is_asked_on_loopback_and_any_other_where_it_is():
    assert (healthcheck.connection("0.0.0.0:5001", 1).host, healthcheck.connection("0.0.0.0:5001", 1).port) == (
        "127.0.0.1",
        5001,
    )
    assert healthcheck.connection("[::]:5001", 1).host == "::1"
    assert healthcheck.connection("127.0.0.2:80", 1).host == "127.0.0.2"
    assert healthcheck.connection("[::1]:80", 1).host == "::1"


def test_healthy_when_health_answers_200_and_not_otherwise():
    with serving(200) as (address, asked):
        assert healthcheck.check(address) is None
        port = address.rpartition(":")[2]
        assert healthcheck.check(f"0.0.0.0:{port}") is None  # the bind of the image: asked on loopback
    assert asked == ["/health", "/health"]
    with serving(503) as (address, _):
        assert "answered 503" in (healthcheck.check(address) or "")
    refused = healthcheck.check(f"127.0.0.1:{free_port()}")
    assert refused and "refused" in refused.lower()


def test_a_unix_socket_bind_is_asked_on_its_socket(tmp_path):
    with serving(200, unix=tmp_path / "server.sock") as (address, asked):
        assert healthcheck.check(address) is None
    assert asked == ["/health"]
    assert healthcheck.check(address) is not None  # nothing listens there any more


def test_the_command_exits_by_the_answer_at_the_bind_it_is_given(monkeypatch, capsys):
    with serving(200) as (address, _):
        monkeypatch.setenv("ECS_ID_MAPPER_BIND", f"0.0.0.0:{address.rpartition(':')[2]}")
        assert healthcheck.main() == 0
    assert healthcheck.main() == 1
    assert "unhealthy" in capsys.readouterr().err


def test_the_agent_is_checked_at_its_metrics_port(monkeypatch, capsys):
    monkeypatch.delenv("ECS_ID_MAPPER_METRICS_PORT", raising=False)
    assert agent_healthcheck.main() == 0
    assert "not set" in capsys.readouterr().out
    with serving(200) as (address, asked):
        port = address.rpartition(":")[2]
        for setting in (port, address, f"0.0.0.0:{port}"):
            monkeypatch.setenv("ECS_ID_MAPPER_METRICS_PORT", setting)
            assert agent_healthcheck.main() == 0, setting
    assert asked == ["/metrics"] * 3
    assert agent_healthcheck.main() == 1  # the same port, nothing listening
    assert "unhealthy" in capsys.readouterr().err


@pytest.mark.parametrize("setting", ["nonsense", "127.0.0.1:0"])
def test_a_bad_metrics_setting_is_unhealthy(setting):
    assert agent_healthcheck.check(setting) is not None
