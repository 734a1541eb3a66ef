"""``server.flowlogs``: VPC Flow Log records read in each format AWS delivers, and written back line by line with the
task, container, service and cluster of each end, asked of the app (its test client) or of ``python -m server``."""

from __future__ import annotations

import gzip
import io
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
import responses
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

from server.flowlogs import Annotator
from server.flowlogs.formats import (
    DEFAULT_FIELDS,
    FormatError,
    Layout,
    header_fields,
    open_input,
    parse_format,
    split_record,
)
from server.flowlogs.resolve import Resolver, ServerError
from server.state import state
from tests.server import samples
from tests.server.samples import AUTH, SIDECAR_ID, TOKEN
from tests.support import ROOT, ServerProcess, free_port

SAMPLES = Path(__file__).parent / "flowlogs"
TASK_A = "0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e"
TASK_B = "1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f"
BRIDGE_TASK = "7d6c5b4a39281706f5e4d3c2b1a09f8e"
ARN = "arn:aws:ecs:eu-central-1:210987654321:task/default/"
A = f"{TASK_A} api web default"
B = f"{TASK_B} api web default"
C = f"{BRIDGE_TASK} worker - default"
NOBODY = "- - - -"


def lives() -> list[dict]:
    """Task A held 10.0.3.17 from 20 Nov 08:12 to 21 Nov 08:00, task B from 21 Nov 09:00 on; a bridge container
    publishes host port 49153 on the instance's 10.0.1.17 throughout."""
    network = [{"network_mode": "awsvpc", "ipv4_addresses": ["10.0.3.17"], "ipv6_addresses": ["2a05:d014::17"]}]
    awsvpc = {"ports": [{"container_port": 8000, "protocol": "tcp"}], "networks": network}
    first = "2026-11-20T09:00:00.000Z"
    return [
        samples.map_report(
            samples.container("a" * 64, "api", ARN + TASK_A, sample_time=first, **awsvpc),
            samples.container(
                SIDECAR_ID,
                "worker",
                ARN + BRIDGE_TASK,
                ports=[{"container_port": 8080, "host_port": 49153, "protocol": "tcp"}],
                sample_time=first,
            ),
        ),
        samples.map_report(
            samples.container(
                "a" * 64, "api", ARN + TASK_A, known_status="STOPPED", sample_time="2026-11-21T08:00:00.000Z", **awsvpc
            )
        ),
        samples.map_report(
            samples.container(
                "b" * 64,
                "api",
                ARN + TASK_B,
                started_at="2026-11-21T09:00:00.000Z",
                sample_time="2026-11-21T09:00:05.000Z",
                **awsvpc,
            )
        ),
    ]


#: What each sample record's ends resolve to, in the order of default.log (malformed lines are not written).
DEFAULT_EXPECTED = [
    f"{NOBODY} {A}",  # 20 Nov 12:00: task A's
    f"{NOBODY} {NOBODY}",  # 21 Nov 08:30: between A's stop and B's start, nobody's
    f"{NOBODY} {B}",  # 22 Nov 10:00: task B's
    f"{C} {B}",  # from the bridge container's host port
    f"{NOBODY} {NOBODY}",  # port 22 of the instance address: no container publishes it
    f"{NOBODY} {NOBODY}",  # NODATA
    f"{A} {NOBODY}",  # task A's IPv6 address, written in another spelling
    f"{B} {NOBODY}",  # ICMP: no port, the task's address all the same
    f"{NOBODY} {NOBODY}",  # SKIPDATA
]


class FlaskAdapter(BaseAdapter):
    """Sends a requests session's requests to a Flask test client: the tool's own HTTP code, the app in process."""

    def __init__(self, client):
        super().__init__()
        self.client = client

    def send(self, request, **kwargs):
        url = urlsplit(request.url)
        answer = self.client.open(
            url.path, query_string=url.query, method=request.method, data=request.body, headers=dict(request.headers)
        )
        response = requests.Response()
        response.status_code = answer.status_code
        response.headers = CaseInsensitiveDict(answer.headers)
        response.raw = io.BytesIO(answer.data)
        response.url = request.url
        response.request = request
        return response

    def close(self):
        pass


@pytest.fixture
def recorded(app, client):
    for body in lives():
        assert client.post("/report/map", json=body, headers=AUTH).status_code == 200
    state(app).store.update_task(TASK_A, {"service_name": "web"})
    state(app).store.update_task(TASK_B, {"service_name": "web"})
    return client


@pytest.fixture
def resolver(recorded):
    def session():
        made = requests.Session()
        made.mount("http://mapper", FlaskAdapter(recorded))
        return made

    made = Resolver("http://mapper", TOKEN, session=session)
    yield made
    made.close()


def annotate(resolver, path: Path, *, as_json: bool = False, layout: Layout | None = None):
    out = io.StringIO()
    annotator = Annotator(resolver, out, as_json=as_json, layout=layout)
    try:
        with open(path, "rb") as raw:
            annotator.run(path.name, open_input(raw))
    finally:
        annotator.close()
    return out.getvalue().splitlines(), annotator.summary


def sample_records(name: str) -> list[str]:
    return [line for line in (SAMPLES / name).read_text().splitlines() if line]


def test_default_format_records_are_written_back_with_both_ends(resolver):
    lines, summary = annotate(resolver, SAMPLES / "default.log")
    records = sample_records("default.log")
    written = [r for n, r in enumerate(records) if n not in (8, 10)]  # the malformed lines, 9 and 11
    assert lines == [f"{record} {added}" for record, added in zip(written, DEFAULT_EXPECTED, strict=True)]
    assert summary.records == 9 and summary.annotated == 5
    assert summary.no_flow == {"NODATA": 1, "SKIPDATA": 1}
    assert summary.malformed == [
        "default.log:9: a time, port or protocol that is not a number",
        "default.log:11: expected 14 fields, got 6",
    ]
    # Ends: 2 on line 2, 1 each on lines 1, 3, 5, 7 and 8 nobody's; port 22 on line 5 published by none.
    assert summary.unresolved == {
        "no holder on record": 7,
        "an instance address, and no container published the port": 1,
    }


def test_a_header_line_names_the_fields_and_pkt_addresses_win(resolver):
    lines, _ = annotate(resolver, SAMPLES / "custom-s3.log")
    records = sample_records("custom-s3.log")
    assert lines[0] == (
        f"{records[0]} src-task src-container src-service src-cluster dst-task dst-container dst-service dst-cluster"
    )
    assert lines[1:] == [
        f"{records[1]} {B} {NOBODY}",  # pkt-srcaddr is the task's address
        f"{records[2]} {NOBODY} {C}",  # pkt-srcaddr is outside; the instance's host port 49153 is the bridge's
        f"{records[3]} {A} {NOBODY}",  # no pkt-* values: srcaddr
    ]


def test_cloudwatch_export_lines_keep_their_time_and_gzip_is_read_by_its_magic(resolver, tmp_path):
    packed = tmp_path / "export.gz"
    packed.write_bytes(gzip.compress((SAMPLES / "cloudwatch-export.log").read_bytes()))
    lines, summary = annotate(resolver, packed)
    records = sample_records("cloudwatch-export.log")
    assert lines == [f"{records[0]} {NOBODY} {B}", f"{records[1]} {NOBODY} {NOBODY}"]
    assert summary.malformed == []


def test_json_lines_carry_every_field_and_each_end(resolver):
    lines, _ = annotate(resolver, SAMPLES / "custom-s3.log", as_json=True)
    first = json.loads(lines[0])
    assert first["pkt-srcaddr"] == "10.0.3.17" and first["start"] == "1795341600"
    assert first["src"] == {"task": TASK_B, "container": "api", "service": "web", "cluster": "default"}
    assert first["dst"] is None
    assert [json.loads(line)["dst"] for line in lines[1:]] == [
        {"task": BRIDGE_TASK, "container": "worker", "service": "-", "cluster": "default"},
        None,
    ]


def test_a_custom_format_without_header_is_given_by_its_format_string(resolver, tmp_path):
    given = tmp_path / "custom.log"
    layout = Layout((*parse_format("${srcaddr} ${srcport} ${start}"), "dstaddr"))
    given.write_text("10.0.3.17 8000 1795176000 198.51.100.7\n")
    lines, _ = annotate(resolver, given, layout=layout)
    assert lines == [f"10.0.3.17 8000 1795176000 198.51.100.7 {A} {NOBODY}"]


def test_every_address_is_asked_once(resolver):
    annotate(resolver, SAMPLES / "default.log")
    asked = resolver.requests
    annotate(resolver, SAMPLES / "default.log")
    assert asked == 1 and resolver.requests == asked  # one batch, then all from the cache


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("srcaddr dstaddr", "expected a format"),
        ("${srcaddr} ${start}", "the format has no dstaddr"),
        ("${srcaddr} ${dstaddr}", "neither start nor end"),
    ],
)
def test_formats_the_tool_cannot_use_are_refused(text, problem):
    with pytest.raises(FormatError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        Layout(parse_format(text))


def test_headers_and_records_are_told_apart():
    assert header_fields(" ".join(DEFAULT_FIELDS)) == DEFAULT_FIELDS
    assert header_fields("srcaddr dstaddr start some-later-field") == (
        "srcaddr",
        "dstaddr",
        "start",
        "some-later-field",
    )
    assert header_fields("version account-id interface-id") is None  # nothing to annotate: no header of ours
    assert header_fields("version account_id srcaddr dstaddr") == ("version", "account-id", "srcaddr", "dstaddr")
    assert header_fields(sample_records("default.log")[0]) is None
    assert split_record("2026-11-22T10:01:05.000Z a b", 2) == ("2026-11-22T10:01:05.000Z", ["a", "b"])
    assert split_record("x a b", 2) is None


def run_tool(*args: str, stdin: bytes = b"", env: dict | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "server.flowlogs", *args], cwd=ROOT, input=stdin, capture_output=True, timeout=120,
        env=env,
    )  # fmt: skip


def test_the_command_says_what_it_needs():
    ran = run_tool("-", env={"PATH": ""})
    assert ran.returncode == 2 and b"--server or ECS_ID_MAPPER_SERVER_URL" in ran.stderr
    ran = run_tool("--server", "http://127.0.0.1:9", "--format", "${srcaddr} ${start}")
    assert ran.returncode == 2
    assert ran.stderr == b"ecs-id-mapper-flowlogs: --format: the format has no dstaddr: nothing to annotate\n"


def test_an_unreachable_server_is_one_line_and_status_1():
    ran = run_tool("--server", f"http://127.0.0.1:{free_port()}", stdin=(SAMPLES / "default.log").read_bytes())
    assert ran.returncode == 1
    assert ran.stderr.startswith(b"ecs-id-mapper-flowlogs: cannot ask http://127.0.0.1:")
    assert ran.stderr.count(b"\n") == 1


@pytest.mark.slow
def test_the_command_annotates_against_a_real_server(tmp_path):
    env = {"ECS_ID_MAPPER_STORE": f"sqlite:///{tmp_path}/mapper.sqlite3", "ECS_ID_MAPPER_TOKEN": TOKEN,
           "ECS_ID_MAPPER_READ_TOKEN": "r3ad", "ECS_ID_MAPPER_SERVICE_NAMES": "false",
           "ECS_ID_MAPPER_TASK_DEFINITIONS": "false", "ECS_ID_MAPPER_CONTAINER_INSTANCES": "false"}  # fmt: skip
    with ServerProcess(env, tmp_path / "server.log") as server:
        for body in lives():
            assert requests.post(f"{server.url}/report/map", json=body, headers=AUTH, timeout=10).status_code == 200
        packed = gzip.compress((SAMPLES / "default.log").read_bytes())
        ran = run_tool(
            "--server",
            server.url,
            stdin=packed,
            env={**env, "ECS_ID_MAPPER_SERVER_URL": "", "ECS_ID_MAPPER_READ_TOKEN": "r3ad"},
        )
    assert ran.returncode == 0, ran.stderr
    records = sample_records("default.log")
    written = [r for n, r in enumerate(records) if n not in (8, 10)]
    # No service names here: the server learns them from ECS, which this test has none of.
    expected = [line.replace(" web ", " - ") for line in DEFAULT_EXPECTED]
    assert ran.stdout.decode().splitlines() == [f"{r} {e}" for r, e in zip(written, expected, strict=True)]
    summary = ran.stderr.decode().splitlines()
    assert summary[0] == "9 records, 5 with at least one end resolved"
    assert "skipped 1 NODATA records (no flow to resolve)" in summary
    assert "  <stdin>:11: expected 14 fields, got 6" in summary
    assert "\r" not in ran.stderr.decode()  # no progress: standard error is not a terminal


def test_an_address_whose_answer_may_be_cut_is_asked_moment_by_moment(resolver, monkeypatch):
    from server import addresses
    from server.flowlogs import resolve

    assert resolve.CUT == addresses.LIMIT
    monkeypatch.setattr(resolve, "CUT", 2)  # 10.0.3.17 has had two holders: as if older ones could be missing
    lines, _ = annotate(resolver, SAMPLES / "default.log")
    assert [line.split(" ", 14)[14] for line in lines] == DEFAULT_EXPECTED
    assert "10.0.3.17" in resolver.cut and ("10.0.3.17", 1795249800) in resolver.at_moment
    assert resolver.requests == 2  # every address, then the cut one's moments in one more request


@pytest.mark.parametrize("module", ["flask", "boto3", "gunicorn"])
def test_the_console_script_runs_without_the_server_extra(module):
    from tests.server.test_console_scripts import run_without

    assert tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]["ecs-id-mapper-flowlogs"] == (
        "server.console_scripts:flowlogs"
    )
    ran = run_without(module, "flowlogs")  # no --server: its own usage error, not the extra's message
    assert ran.returncode == 2 and "--server or ECS_ID_MAPPER_SERVER_URL" in ran.stderr
    assert "server extra" not in ran.stderr


def test_records_come_out_in_order_however_many_chunks_are_in_flight(resolver, monkeypatch):
    import server.flowlogs

    whole, _ = annotate(resolver, SAMPLES / "default.log")
    monkeypatch.setattr(server.flowlogs, "CHUNK", 2)
    fresh = Resolver("http://mapper", TOKEN, session=resolver.session_factory)
    try:
        chunked, summary = annotate(fresh, SAMPLES / "default.log")
    finally:
        fresh.close()
    assert chunked == whole and summary.records == 9
    assert fresh.requests == 4  # each chunk asks only about the addresses new to it


def test_holdings_the_tool_cannot_read_are_left_out_and_counted():
    """A server (or a proxy before it) answering holdings in another shape: those ends stay unresolved, the rest
    are written, and the summary says how many holdings were left out and why; an answer that is not the bulk
    form's at all is one ServerError."""
    good = {"via": "task", "from": "2026-11-20T08:12:00.000Z", "to": None, "ports": [], "task_id": TASK_A}
    answers = {
        "10.0.3.17": [good],
        "10.0.1.17": [{**good, "from": "yesterday"}, {"via": "instance", "to": None}],
        "198.51.100.7": None,
        "203.0.113.12": 5,
        "2A05:D014:0:0:0:0:0:17": [{**good, "task_id": ["a", "list"], "service_name": "two words"}],
    }

    def answered(request):
        asked = json.loads(request.body)["questions"]
        holdings = [{"address": q["address"], "holdings": answers.get(q["address"], [])} for q in asked]
        return 200, {}, json.dumps({"answers": holdings})

    made = Resolver("http://mapper", TOKEN, parallel=1)
    with responses.RequestsMock() as mocked:
        mocked.add_callback(responses.POST, "http://mapper/query/ip", callback=answered)
        lines, summary = annotate(made, SAMPLES / "default.log")
        assert lines[0].endswith(f"{NOBODY} {TASK_A} - - -")  # from 198.51.100.7 (holdings null) to 10.0.3.17
        assert lines[3].endswith(f"{NOBODY} {TASK_A} - - -")  # from 10.0.1.17, whose holdings were unreadable
        assert lines[4].endswith(f"{NOBODY} {NOBODY}")  # from 203.0.113.12 (holdings 5) to 10.0.1.17
        assert lines[6].endswith("['a',_'list'] - two_words - - - - -")  # odd values, one word each
        assert made.malformed == {
            "a holding whose interval is not made of times": 1,
            "a holding without its interval or how it was held": 1,
            "holdings that are not a list": 1,
        }
        assert summary.records == 9
        for body in ("<html>502 Bad Gateway</html>", '{"answers": 5}', '{"answers": [5]}'):
            mocked.replace(responses.POST, "http://mapper/query/ip", body=body)
            fresh = Resolver("http://mapper", TOKEN, parallel=1)
            with pytest.raises(ServerError, match=f"answered what is not a bulk answer: {re.escape(body)}"):
                fresh.learn(["10.0.9.9"])
