"""Links configured with ``ECS_ID_MAPPER_LINK_<NAME>``: the README's worked templates pass the start-up checks and
render as the README shows."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

from server import config, links

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
