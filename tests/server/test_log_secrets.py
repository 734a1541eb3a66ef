"""The whole product once (server under gunicorn, an agent on a simulated host), in each log format: no token,
API key or Authorization header in any line it logs, and every request logged with its request ID."""

from __future__ import annotations

import base64
import json

import pytest
import requests

from tests.support import AgentProcess, ServerProcess, eventually

pytestmark = pytest.mark.slow

TOKEN = "report-t0ken-9f3a"
READ_TOKEN = "read-t0ken-77c1"
API_KEY = "NRAK-SECRETKEY0123456789"
SECRETS = [TOKEN, READ_TOKEN, API_KEY, base64.b64encode(f"{TOKEN}:".encode()).decode(), "Authorization"]


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_no_credential_reaches_any_log(tmp_path, ecs_host, log_format):
    env = {
        "ECS_ID_MAPPER_STORE": f"sqlite:///{tmp_path}/mapper.sqlite3",
        "ECS_ID_MAPPER_TOKEN": TOKEN,
        "ECS_ID_MAPPER_READ_TOKEN": READ_TOKEN,
        "ECS_ID_MAPPER_NEWRELIC_API_KEY": API_KEY,
        "ECS_ID_MAPPER_NEWRELIC_ACCOUNT_ID": "1234",
        "ECS_ID_MAPPER_NEWRELIC_API_URL": "http://127.0.0.1:9",
        "ECS_ID_MAPPER_SERVICE_NAMES": "false",
        "ECS_ID_MAPPER_LOG_FORMAT": log_format,
    }
    sim_task = ecs_host.host.start_task()
    ecs_host.host.advance(sim_task, "running")
    cid = sim_task.containers[0].docker_id
    read = {"Authorization": f"Bearer {READ_TOKEN}"}
    with ServerProcess(env, tmp_path / "server.log") as server:
        agent = AgentProcess(server.url, ecs_host, TOKEN, tmp_path / "agent.log", log_format=log_format).start()
        try:
            eventually(
                lambda: requests.get(f"{server.url}/query/container_id/{cid}", headers=read, timeout=5).ok,
                "the agent's report",
            )
        finally:
            assert agent.stop() == 0
        answers = [
            requests.post(f"{server.url}/report/map", json={"containers": []}, auth=(TOKEN, ""), timeout=5),
            requests.post(f"{server.url}/report/map?token={TOKEN}", json={}, timeout=5),
            requests.get(f"{server.url}/query/container_id/{cid}", auth=(READ_TOKEN, ""), timeout=5),
            requests.get(f"{server.url}/query/container_id/{cid}/_all", headers=read, timeout=5),
            requests.get(f"{server.url}/query/container_id/{cid}/newrelic", headers=read, timeout=5),
            requests.get(f"{server.url}/sd/prometheus", headers={"Authorization": f"Bearer {TOKEN}x"}, timeout=5),
            requests.get(f"{server.url}/sd/prometheus?x={READ_TOKEN}", headers=read, timeout=5),
            requests.get(f"{server.url}/health", headers={"X-Request-ID": "probe-1"}, timeout=5),
        ]
        assert [answer.status_code for answer in answers] == [401, 401, 401, 200, 503, 403, 400, 200]
    logs = {"server": server.log(), "agent": agent.log()}
    for name, text in logs.items():
        assert text.strip(), f"the {name} logged nothing"
        for secret in SECRETS:
            assert secret not in text, f"{secret!r} in the {name} log"
        assert "Traceback" not in text
    if log_format == "json":
        for name, text in logs.items():
            lines = [json.loads(line) for line in text.splitlines() if line.strip()]
            assert all({"time", "level", "logger", "message"} <= line.keys() for line in lines), name
        requests_logged = [json.loads(line) for line in logs["server"].splitlines() if '"server.requests"' in line]
        probe = next(line for line in requests_logged if line["request_id"] == "probe-1")
        assert (probe["method"], probe["route"], probe["status"]) == ("GET", "/health", 200)
        assert {line["route"] for line in requests_logged} >= {"/report/map", "/sd/prometheus"}
    else:
        assert "GET /health 200" in logs["server"] and "request_id=probe-1" in logs["server"]
