"""The agent's metrics port end to end: the real ``python -m agent`` reading a simulated host and reporting to the
real server, scraped over HTTP as Prometheus would while the host fails and the server goes away and comes back."""

from __future__ import annotations

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

try:
    import server  # noqa: F401 - only to know whether the server is in this checkout
    from tests.support import AgentProcess, ServerProcess, eventually, free_port
except ImportError:  # pragma: no cover - an agent-only checkout
    pytest.skip("the server package is not importable", allow_module_level=True)

pytestmark = pytest.mark.slow

TOKEN = "metrics-e2e-token"
POLLS = "ecs_id_mapper_agent_polls_total"
DEPTH = "ecs_id_mapper_agent_outbox_depth"
SINCE = "ecs_id_mapper_agent_seconds_since_last_delivery"


def failures(cause: str) -> str:
    return f'ecs_id_mapper_agent_poll_failures_total{{cause="{cause}"}}'


class Scraper:
    def __init__(self, port: int):
        self.url = f"http://127.0.0.1:{port}/metrics"

    def __call__(self) -> dict[str, float]:
        """Every sample on the port, by name and labels as written; read with prometheus-client's parser."""
        answer = requests.get(self.url, timeout=5)
        assert answer.status_code == 200
        assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        samples = {}
        for family in text_string_to_metric_families(answer.text):
            for sample in family.samples:
                labels = ",".join(f'{k}="{v}"' for k, v in sample.labels.items())
                samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
        return samples


def test_the_metrics_port_follows_polls_failures_the_outbox_and_deliveries(tmp_path, ecs_host):
    server_env = {"ECS_ID_MAPPER_STORE": f"sqlite:///{tmp_path}/mapper.sqlite3", "ECS_ID_MAPPER_TOKEN": TOKEN}
    host = ecs_host.host
    task = host.start_task(containers=2)
    host.advance(task, "created")
    cid = task.containers[0].docker_id
    port = free_port()
    scrape = Scraper(port)
    server = ServerProcess(server_env, tmp_path / "server.log").start()
    agent = AgentProcess(server.url, ecs_host, TOKEN, tmp_path / "agent.log", metrics_port=str(port)).start()
    try:

        def known_status() -> str | None:
            answer = requests.get(f"{server.url}/query/container_id/{cid}/_all", timeout=5)
            return answer.json()["known_status"] if answer.status_code == 200 else None

        # Delivering: polls count up, nothing waits, the last delivery is recent.
        assert eventually(known_status, "the first report") == "PENDING"
        first = eventually(lambda: scrape().get(POLLS, 0) >= 3 and scrape(), "three polls")
        assert eventually(lambda: scrape()[POLLS] > first[POLLS], "polls to go on counting")
        steady = scrape()
        assert steady[DEPTH] == 0
        assert steady[SINCE] < 5
        assert all(steady[failures(cause)] == 0 for cause in ("ecs_agent", "instance_metadata", "delivery", "error"))

        # The ECS agent answers 500: each poll fails by that cause; the last state is kept, nothing is queued.
        ecs_host.fail(500)
        faulty = eventually(lambda: (m := scrape())[failures("ecs_agent")] >= 3 and m, "ECS agent failures")
        assert faulty[failures("delivery")] == 0 and faulty[DEPTH] == 0
        ecs_host.heal()
        healed = scrape()
        eventually(lambda: scrape()[POLLS] >= healed[POLLS] + 3, "polls after the fault")
        assert scrape()[failures("ecs_agent")] <= healed[failures("ecs_agent")] + 1  # one poll may have been under way

        # The server goes away: a change waits in the outbox, deliveries fail, the time since the last one grows.
        server.stop()
        host.advance(task, "running")
        waiting = eventually(
            lambda: (m := scrape())[DEPTH] > 0 and m[failures("delivery")] > 0 and m, "a queued change"
        )
        later = eventually(lambda: (m := scrape())[SINCE] > waiting[SINCE] + 1 and m, "the time since to grow")
        assert later[DEPTH] == waiting[DEPTH]  # waiting, not lost

        # The server is back: the outbox drains and the time since the last delivery starts again.
        server = ServerProcess(server_env, tmp_path / "server.log", port=server.port).start()
        assert eventually(lambda: known_status() == "RUNNING", "the queued change to arrive")
        drained = eventually(lambda: (m := scrape())[DEPTH] == 0 and m, "the outbox to drain")
        assert drained[SINCE] < later[SINCE]
        assert drained[failures("error")] == 0
    finally:
        code = agent.stop()
        server.stop()
    log = agent.log()
    assert code == 0, log
    assert "Traceback" not in log
    assert "Traceback" not in server.log()
