"""A fleet-wide restart in small: simulated agents all send their full snapshot at once to ``python -m server``, which
is made to shed most of them (one report at a time per process); each refused host waits as the agent does
(``Retry-After`` with jitter) and sends again, while lookups keep being answered. Nothing may be lost, on SQLite
(one pool, and the report pool apart) and on DynamoDB in moto's server. No timing is asserted.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import requests
from moto.server import ThreadedMotoServer

from bench import fleet
from bench.fleet_restart import TOKEN, Lookups, Storm, missing
from tests.store.conftest import REGION
from tests.support import ServerProcess, free_port, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

HOSTS, PER_HOST, KNOWN = 60, 10, 40
#: moto's DynamoDB takes a write in milliseconds, not microseconds: a smaller fleet there.
DYNAMODB_HOSTS, DYNAMODB_PER_HOST = 20, 5
#: Settings that make a small storm shed: one report at a time per worker, refused after a short wait.
SHEDDING = {"ECS_ID_MAPPER_REPORT_CONCURRENCY": "1", "ECS_ID_MAPPER_REPORT_MAX_WAIT": "0.2"}


@pytest.fixture(params=["sqlite", "sqlite-report-pool", "dynamodb"])
def layout(request: pytest.FixtureRequest, tmp_path) -> Iterator[tuple[dict[str, str], bool, int, int]]:
    env = {"ECS_ID_MAPPER_TOKEN": TOKEN, "ECS_ID_MAPPER_SERVICE_NAMES": "false", **SHEDDING}
    env.update(ECS_ID_MAPPER_TASK_DEFINITIONS="false", ECS_ID_MAPPER_CONTAINER_INSTANCES="false")
    split = request.param == "sqlite-report-pool"
    if split:
        env.update(ECS_ID_MAPPER_REPORT_WORKERS="1", ECS_ID_MAPPER_REPORT_BIND=f"127.0.0.1:{free_port()}")
    if request.param != "dynamodb":
        yield {**env, "ECS_ID_MAPPER_STORE": f"sqlite:///{tmp_path}/fleet.sqlite3"}, split, HOSTS, PER_HOST
        return
    port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    table = f"restart{uuid.uuid4().hex[:8]}"
    env.update(
        ECS_ID_MAPPER_STORE=f"dynamodb://{table}?region={REGION}&endpoint_url=http://127.0.0.1:{port}&create=true",
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_REGION=REGION,
    )
    yield env, False, DYNAMODB_HOSTS, DYNAMODB_PER_HOST
    moto.stop()


def test_a_fleet_restarting_at_once_loses_nothing_and_lookups_keep_answering(layout, tmp_path):
    env, split, hosts, per_host = layout
    with ServerProcess(env, tmp_path / "server.log") as server:
        report_url = env["ECS_ID_MAPPER_REPORT_BIND"] if split else f"127.0.0.1:{server.port}"
        report_port = int(report_url.rsplit(":", 1)[1])
        wait_for(f"http://127.0.0.1:{report_port}/health")
        known = [fleet.container_id(n, "known") for n in range(KNOWN)]
        answer = requests.post(
            f"http://127.0.0.1:{report_port}/report/map",
            data=fleet.report(0, KNOWN, salt="known"),
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text

        storm = Storm(report_port, hosts, connections=hosts, spread=0.0, per_host=per_host)
        with Lookups(server.url, known) as lookups:
            figures = storm.run()

        assert figures["accepted"] == hosts  # every host's snapshot taken in the end
        assert figures["refused"] > 0  # the server shed some: the drill tested what it is for
        assert set(figures["outcomes"]) <= {"200", "503"}  # refusals only, no timeouts or errors
        assert figures["retry_after_s"]["min"] >= 1
        assert missing(server.url, hosts, per_host) == 0  # every container of every host on record
        assert lookups.figures["answered"] > 0
        assert lookups.figures["failed"] == {}  # no lookup refused or failed meanwhile
        metrics = requests.get(f"{server.url}/metrics", timeout=10).text
        shed = next(line for line in metrics.splitlines() if line.startswith("ecs_id_mapper_reports_shed_total "))
        assert float(shed.split()[1]) == figures["refused"]
    assert "Traceback" not in server.log()
