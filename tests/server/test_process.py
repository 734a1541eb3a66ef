"""The server as users run it: ``python -m server`` under gunicorn, spoken to over loopback HTTP."""

from __future__ import annotations

import http.client
import json
import time

import pytest
import requests

from tests.server import samples
from tests.server.samples import AUTH, TOKEN
from tests.support import ServerProcess, free_port, wait_for

pytestmark = pytest.mark.slow


def test_report_then_query_across_two_servers_on_one_file(tmp_path):
    env = {
        "ECS_ID_MAPPER_STORE": f"sqlite:///{tmp_path}/shared.sqlite3",
        "ECS_ID_MAPPER_TOKEN": TOKEN,
        "ECS_ID_MAPPER_SERVICE_NAMES": "false",
        "ECS_ID_MAPPER_MAX_BODY_BYTES": "100000",
    }
    with ServerProcess(env, tmp_path / "one.log") as one, ServerProcess(env, tmp_path / "two.log") as two:
        body = samples.map_report(samples.container(), events=[samples.event("e-1")])
        response = requests.post(f"{one.url}/report/map", json=body, headers=AUTH, timeout=10)
        assert response.json() == {"containers": 1, "events": 1}

        answer = requests.get(f"{two.url}/query/container_id/{samples.API_ID[:12]}", timeout=10)
        assert (answer.status_code, answer.headers["Content-Type"]) == (200, "text/plain; charset=utf-8")
        assert answer.text == f"{samples.TASK_LONG}\n"
        link = requests.get(f"{two.url}/query/task_id/{samples.TASK_LONG}/cadvisor?redir=true",
                            allow_redirects=False, timeout=10)  # fmt: skip
        assert (link.status_code, link.headers["Location"]) == (302, f"http://10.0.1.17:8080/docker/{samples.API_ID}")
        assert requests.get(f"{two.url}/health", timeout=10).json() == {"status": "ok", "store": "sqlite"}

        bad = requests.post(f"{two.url}/report/map", data=b"\x00garbage", headers=AUTH, timeout=10)
        assert (bad.status_code, bad.json()["error"]) == (400, "bad_request")
        long_id = requests.get(f"{two.url}/query/container_id/{'a' * 5000}", timeout=10)
        assert (long_id.status_code, long_id.json()["error"]) == (400, "bad_request")

        # Chunked bodies (no Content-Length) are held to the same limit: 413, not a silently cut body.
        big = json.dumps(samples.map_report(*[samples.container()] * 200)).encode()
        assert len(big) > 100_000
        chunked = requests.post(f"{one.url}/report/map", data=iter([big[:50_000], big[50_000:]]), headers=AUTH,
                                timeout=10)  # fmt: skip
        assert (chunked.status_code, chunked.json()["error"]) == (413, "request_entity_too_large")
        small = json.dumps(samples.map_report(samples.container(known_status="STOPPED"))).encode()
        accepted = requests.post(f"{one.url}/report/map", data=iter([small[:100], small[100:]]), headers=AUTH,
                                 timeout=10)  # fmt: skip
        assert accepted.json() == {"containers": 1, "events": 0}
    assert "Traceback" not in one.log() + two.log()


def test_a_report_pool_takes_reports_beside_the_lookups_and_stops_with_them(tmp_path):
    report_port = free_port()
    env = {
        "ECS_ID_MAPPER_STORE": f"sqlite:///{tmp_path}/pools.sqlite3",
        "ECS_ID_MAPPER_TOKEN": TOKEN,
        "ECS_ID_MAPPER_SERVICE_NAMES": "false",
        "ECS_ID_MAPPER_REPORT_WORKERS": "1",
        "ECS_ID_MAPPER_REPORT_BIND": f"127.0.0.1:{report_port}",
    }
    server = ServerProcess(env, tmp_path / "pools.log").start()
    try:
        reports = f"http://127.0.0.1:{report_port}"
        wait_for(f"{reports}/health")
        body = samples.map_report(samples.container())
        assert requests.post(f"{reports}/report/map", json=body, headers=AUTH, timeout=10).status_code == 200
        answer = requests.get(f"{server.url}/query/container_id/{samples.API_ID}", timeout=10)
        assert answer.text == f"{samples.TASK_LONG}\n"  # one store behind both pools
        assert "ecs_id_mapper_reports_total" in requests.get(f"{server.url}/metrics", timeout=10).text
    finally:
        server.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{reports}/health", timeout=5)  # the report pool went with the main one
    assert "Traceback" not in server.log()


def test_an_idle_keep_alive_connection_outlives_gunicorns_default(tmp_path):
    """gunicorn's own default closes after 2 s; ours keeps the connection for ECS_ID_MAPPER_KEEPALIVE seconds."""
    env = {"ECS_ID_MAPPER_STORE": f"sqlite:///{tmp_path}/k.sqlite3", "ECS_ID_MAPPER_KEEPALIVE": "10"}
    with ServerProcess(env, tmp_path / "server.log") as server:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        answers = []
        for pause in (0, 3):
            time.sleep(pause)
            connection.request("GET", "/health")  # on a closed connection, the answer would be RemoteDisconnected
            response = connection.getresponse()
            response.read()
            answers.append((response.status, connection.sock.getsockname()))
        connection.close()
    assert answers[0] == answers[1]
    assert answers[0][0] == 200


def test_gunicorn_serves_the_app_factory(tmp_path):
    env = {"ECS_ID_MAPPER_STORE": f"sqlite:///{tmp_path}/mapper.sqlite3", "ECS_ID_MAPPER_TOKEN": TOKEN}
    command = ["-m", "gunicorn", "--bind", "{bind}", "--workers", "1", "server:create_app()"]
    with ServerProcess(env, tmp_path / "gunicorn.log", command=command) as server:
        assert requests.get(f"{server.url}/health", timeout=10).json() == {"status": "ok", "store": "sqlite"}
