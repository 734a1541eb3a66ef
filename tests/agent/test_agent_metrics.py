"""The agent's own metrics: what a poll cycle counts, and the text a scraper reads on the metrics port."""

from __future__ import annotations

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from agent.config import ConfigError, load_config
from agent.metrics import exposition, serve
from tests.agent.fakes import ECS, container, long_arn, task, tasks

RUNNING = tasks(task(long_arn(1), "RUNNING", container(1)))


def parse(text: str) -> dict[str, float]:
    """Samples by name and labels as written (``name{label="value"}``), read with prometheus-client's parser."""
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sample.labels.items())
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


def test_polls_failures_depth_and_time_since_delivery(make_agent, script, clock):
    agent = make_agent()
    script.imds()
    script.poll(RUNNING)
    script.report(503)  # the server is down: the change waits in the outbox
    script.rsps.get(f"{ECS}/v1/tasks", body=requests.ConnectionError("refused"))  # then the ECS agent too
    script.report(503)
    agent.poll_once()
    clock.advance(30)
    agent.poll_once()
    metrics = parse(exposition(agent))
    assert metrics["ecs_id_mapper_agent_polls_total"] == 2
    assert metrics['ecs_id_mapper_agent_poll_failures_total{cause="delivery"}'] == 2
    assert metrics['ecs_id_mapper_agent_poll_failures_total{cause="ecs_agent"}'] == 1
    assert metrics['ecs_id_mapper_agent_poll_failures_total{cause="error"}'] == 0
    assert metrics["ecs_id_mapper_agent_outbox_depth"] == 2  # the container's state and its "appeared" event
    assert metrics['ecs_id_mapper_agent_events_dropped_total{reason="outbox_full"}'] == 0
    assert metrics["ecs_id_mapper_agent_seconds_since_last_delivery"] == 30  # never delivered: since the start

    clock.advance(300)  # past any backoff
    script.metadata_due = True  # after an outage the agent asks /v1/metadata again
    script.poll(RUNNING)
    script.report(200)
    agent.poll_once()
    clock.advance(7)
    metrics = parse(exposition(agent))
    assert metrics["ecs_id_mapper_agent_outbox_depth"] == 0
    assert metrics["ecs_id_mapper_agent_seconds_since_last_delivery"] == 7


def test_the_metrics_port_answers_the_text_format(make_agent):
    agent = make_agent()
    server = serve(agent, ("127.0.0.1", 0))
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        response = requests.get(f"{url}/metrics", timeout=5)
        assert response.status_code == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        assert parse(response.text)["ecs_id_mapper_agent_polls_total"] == 0
        assert requests.get(f"{url}/other", timeout=5).status_code == 404
    finally:
        server.shutdown()
        server.server_close()


def test_metrics_port_setting():
    base = {"ECS_ID_MAPPER_SERVER_URL": "http://server.example"}
    assert load_config(base).metrics_address is None
    assert load_config({**base, "ECS_ID_MAPPER_METRICS_PORT": "9101"}).metrics_address == ("127.0.0.1", 9101)
    assert load_config({**base, "ECS_ID_MAPPER_METRICS_PORT": "0.0.0.0:9101"}).metrics_address == ("0.0.0.0", 9101)
    for bad in ("http", "70000", "0", "host:"):
        with pytest.raises(ConfigError, match="ECS_ID_MAPPER_METRICS_PORT"):
            load_config({**base, "ECS_ID_MAPPER_METRICS_PORT": bad})
