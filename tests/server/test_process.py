"""The server as users run it: ``python -m server`` under gunicorn, spoken to over loopback HTTP."""

from __future__ import annotations

import pytest
import requests

from tests.server import samples
from tests.server.conftest import AUTH, TOKEN
from tests.support import ServerProcess

pytestmark = pytest.mark.slow


def test_report_then_query_across_two_servers_on_one_file(tmp_path):
    env = {"ECS_ID_MAPPER_STORE": f"sqlite:///{tmp_path}/shared.sqlite3", "ECS_ID_MAPPER_TOKEN": TOKEN}
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
    assert "Traceback" not in one.log() + two.log()
