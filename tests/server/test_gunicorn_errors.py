"""Requests gunicorn refuses before the app sees them answer in the JSON error shape too
(``server/gunicorn_worker.py``), spoken to with raw sockets, since an HTTP client library would refuse to send
most of them."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest

from tests.server.samples import TOKEN
from tests.support import ServerProcess

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    directory = tmp_path_factory.mktemp("gunicorn-errors")
    env = {
        "ECS_ID_MAPPER_STORE": f"sqlite:///{directory}/store.sqlite3",
        "ECS_ID_MAPPER_SERVICE_NAMES": "false",
        "ECS_ID_MAPPER_TOKEN": TOKEN,
    }
    with ServerProcess(env, directory / "server.log") as running:
        yield running


def exchange(server: ServerProcess, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``request`` as it is; the status, headers (lower-case names) and body of the answer."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):  # gunicorn closes the connection after an error it answers itself
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in header_lines)}
    return int(status_line.split()[1]), headers, body


def get(target: bytes, *headers: bytes) -> bytes:
    return b"GET " + target + b" HTTP/1.1\r\nHost: localhost\r\n" + b"".join(h + b"\r\n" for h in headers) + b"\r\n"


HEADERS_TOO_LARGE = "request_header_fields_too_large"
REFUSED = {
    "request line over 8190 bytes": (get(b"/query/container_id/" + b"a" * 9000), 414, "request_uri_too_long"),
    "header line over 8190 bytes": (get(b"/health", b"X-Big: " + b"b" * 9000), 431, HEADERS_TOO_LARGE),
    "over 100 headers": (get(b"/health", *(b"X-H%d: 1" % n for n in range(120))), 431, HEADERS_TOO_LARGE),
    "NUL in the path": (get(b"/query/container_id/\x00"), 400, "bad_request"),
    "control byte in the path": (get(b"/query/task_id/\x1f"), 400, "bad_request"),
    "non-ASCII bytes in the path": (get(b"/query/container_id/\xff\xfe"), 400, "bad_request"),
    "space in the path": (get(b"/query/container_id/a b"), 400, "bad_request"),
    "Content-Length -1": (b"POST /report/map HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400, "bad_request"),
    "Content-Length abc": (b"POST /report/map HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", 400, "bad_request"),
    "invalid method": (b"G@T /health HTTP/1.1\r\nHost: x\r\n\r\n", 400, "bad_request"),
    "unknown HTTP version": (b"GET /health HTTP/9.9\r\nHost: x\r\n\r\n", 400, "bad_request"),
    "Transfer-Encoding with Content-Length": (
        b"POST /report/map HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n{}",
        400,
        "bad_request",
    ),
    "space in a header name": (get(b"/health", b"Bad Header: 1"), 400, "bad_request"),
    "obsolete line folding": (get(b"/health", b"X-A: 1", b"  folded"), 400, "bad_request"),
    "bare LF line ends": (b"GET /health HTTP/1.1\nHost: x\n\n", 400, "bad_request"),
    "unknown expectation": (
        b"POST /report/map HTTP/1.1\r\nHost: x\r\nExpect: foo\r\nContent-Length: 2\r\n\r\n{}",
        417,
        "expectation_failed",
    ),
    "unknown transfer coding": (
        b"POST /report/map HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 400, "bad_request"
    ),
}  # fmt: skip


@pytest.mark.parametrize(("request_bytes", "status", "error"), REFUSED.values(), ids=REFUSED.keys())
def test_a_request_gunicorn_refuses_is_answered_in_the_json_error_shape(server, request_bytes, status, error):
    answered, headers, body = exchange(server, request_bytes)
    assert (answered, headers["content-type"], headers["connection"]) == (status, "application/json", "close")
    assert int(headers["content-length"]) == len(body)
    parsed = json.loads(body)
    assert set(parsed) == {"error", "message"}
    assert parsed["error"] == error and parsed["message"]


MALFORMED_CHUNKS = {"chunk size not hex": b"zz\r\n", "chunk without its CRLF": b"2\r\n{}XX0\r\n\r\n"}


@pytest.mark.parametrize("chunks", MALFORMED_CHUNKS.values(), ids=MALFORMED_CHUNKS.keys())
def test_a_malformed_chunked_body_is_a_400_not_a_500(server, chunks):
    """gunicorn decodes chunks as the route reads the body, so the app answers this one (it was a 500)."""
    head = (
        f"POST /report/map HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    status, headers, body = exchange(server, head.encode() + chunks)
    assert (status, headers["content-type"]) == (400, "application/json")
    assert json.loads(body)["message"].startswith("malformed request body")


def test_the_app_still_answers_after_the_refusals(server):
    status, headers, body = exchange(server, get(b"/health", b"Connection: close"))
    assert (status, headers["content-type"], json.loads(body)) == (
        200,
        "application/json",
        {"status": "ok", "store": "sqlite"},
    )
    assert "Traceback" not in server.log()
