"""Links configured with ``ECS_ID_MAPPER_LINK_<NAME>``: the README's worked templates pass the start-up checks and
render as the README shows."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from server import config, links
from tests.server import samples
from tests.server.conftest import TOKEN

README = Path(__file__).resolve().parents[2] / "README.md"
TASK_ID = "0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e"
CONTAINER_ID = "9f8e7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a39281706f5e4d3c2b1a0"
RECORD = {
    "container_id": CONTAINER_ID,
    "container_name": "api",
    "task_id": TASK_ID,
    "task_name": "api",
    "region": "eu-west-1",
    "instance_ip": "10.0.1.17",
}


def readme_links() -> dict[str, str]:
    """The ``ECS_ID_MAPPER_LINK_*='…'`` lines of the README, as an environment."""
    return dict(re.findall(r"^(ECS_ID_MAPPER_LINK_\w+)='([^']*)'$", README.read_text(), re.M))


def test_the_readme_templates_pass_the_start_checks():
    environ = readme_links()
    assert set(environ) == {"ECS_ID_MAPPER_LINK_CLOUDWATCH", "ECS_ID_MAPPER_LINK_GRAFANA", "ECS_ID_MAPPER_LINK_DATADOG"}
    assert list(config.load(environ=environ).links) == ["cloudwatch", "datadog", "grafana"]


def test_the_cloudwatch_template_renders_the_awslogs_stream():
    url = links.render(config.load(environ=readme_links()).links["cloudwatch"], RECORD)

    assert url in README.read_text()  # the README's example answer
    fragment = urlsplit(url).fragment.replace("$25", "%")
    assert unquote(fragment).endswith(f"log-group//ecs/api/log-events/ecs/api/{TASK_ID}")


def test_the_grafana_and_datadog_templates_carry_the_container_id():
    configured = config.load(environ=readme_links()).links

    grafana = unquote(links.render(configured["grafana"], RECORD))
    assert f'"expr":"{{container_id=\\"{CONTAINER_ID}\\"}}"' in grafana
    assert links.render(configured["datadog"], RECORD) == (
        f"https://app.datadoghq.com/logs?query=container_id%3A{CONTAINER_ID}"
    )


# Through the routes

GRAFANA = "https://grafana.example/explore?task={task_id}&c={short_id}"


@pytest.fixture
def settings(store_url) -> dict:
    return {"store": store_url, "token": TOKEN, "service_names": False, "link_grafana": GRAFANA,
            "link_kibana": "https://kibana.example/{image_id}/{container_name}"}  # fmt: skip


def test_a_configured_link_answers_on_every_link_route(client, report):
    report(samples.container())
    expected = f"https://grafana.example/explore?task={samples.TASK_LONG}&c={samples.API_ID[:12]}"

    by_container = client.get(f"/query/container_id/{samples.API_ID[:12]}/grafana")
    by_task = client.get(f"/query/task_id/{samples.TASK_LONG}/grafana?redir=true")
    urls = client.get(f"/query/container_id/{samples.API_ID}/urls").get_json()
    everything = client.get(f"/query/task_id/{samples.TASK_LONG}/_all").get_json()

    assert (by_container.status_code, by_container.get_data(as_text=True)) == (200, expected + "\n")
    assert (by_task.status_code, by_task.headers["Location"]) == (302, expected)
    assert urls["grafana"] == expected and "kibana" in urls
    assert list(urls) == ["cadvisor", "grafana", "kibana"]
    assert everything["grafana_url"] == expected
    containers = client.get(f"/query/task_id/{samples.TASK_LONG}/containers").get_json()
    assert containers[0]["grafana_url"] == expected


def test_a_link_lacking_a_value_is_404_naming_field_and_variable(client, report):
    report(samples.container(image_id=""))

    answer = client.get(f"/query/container_id/{samples.API_ID}/kibana")

    assert answer.status_code == 404
    assert answer.get_json()["message"] == "the record has no image_id, which ECS_ID_MAPPER_LINK_KIBANA needs"
    assert "kibana" not in client.get(f"/query/container_id/{samples.API_ID}/urls").get_json()


def test_an_unknown_link_is_404_listing_the_links(client, report):
    report(samples.container())

    for path in (f"/query/container_id/{samples.API_ID}/datadog", f"/query/task_id/{samples.TASK_LONG}/datadog"):
        answer = client.get(path)
        assert answer.status_code == 404
        assert answer.get_json()["message"] == (
            "no link is called 'datadog'; the links are: cadvisor, graylog, newrelic, grafana, kibana"
        )


def test_every_fixed_segment_beside_the_links_is_reserved(app):
    fixed = set()
    for rule in app.url_map.iter_rules():
        parts = rule.rule.split("/")
        beside_links = rule.rule.startswith(("/query/container_id/<", "/query/task_id/<")) and len(parts) == 5
        if beside_links and "<" not in parts[4]:
            fixed.add(parts[4])
    assert fixed  # the routes were found
    assert fixed <= set(links.RESERVED)
