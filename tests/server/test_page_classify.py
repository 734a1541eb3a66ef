"""The search box's reading of what was pasted: every input form, and why a malformed one matches nothing."""

from __future__ import annotations

import pytest

from server.page import classify as kinds
from server.page.classify import classify
from testkit.reports import API_ID, ARN_LONG, ARN_OLD, TASK_LONG, TASK_UUID

DOCKER = "ecs-web-app-7-nginx-proxy-d0c2f9f5b8c5a7c6e001"
RUNTIME = "cd189a933e5849daa93386466019ab50-2495160603"


@pytest.mark.parametrize(
    ("raw", "kind", "value"),
    [
        (API_ID, kinds.CONTAINER_ID, API_ID),
        (API_ID.upper(), kinds.CONTAINER_ID, API_ID),
        (f"  {API_ID}\n", kinds.CONTAINER_ID, API_ID),
        (f'"{API_ID[:12]}"', kinds.CONTAINER_PREFIX, API_ID[:12]),
        (API_ID[:12], kinds.CONTAINER_PREFIX, API_ID[:12]),
        (API_ID[:20], kinds.CONTAINER_PREFIX, API_ID[:20]),
        (RUNTIME, kinds.RUNTIME_ID, RUNTIME),
        (RUNTIME[:36], kinds.CONTAINER_PREFIX, RUNTIME[:36]),
        (TASK_LONG, kinds.TASK_ID_OR_PREFIX, TASK_LONG),
        (TASK_UUID, kinds.TASK_ID, TASK_UUID),
        (TASK_UUID.upper(), kinds.TASK_ID, TASK_UUID),
        (ARN_LONG, kinds.TASK_ARN_KIND, TASK_LONG),
        (ARN_OLD, kinds.TASK_ARN_KIND, TASK_UUID),
        (f"arn:aws-cn:ecs:cn-north-1:210987654321:task/prod-eu/{TASK_LONG}", kinds.TASK_ARN_KIND, TASK_LONG),
        ("ecs-api-42-api-c8e9f0a1b2c3d4e5f6a7", kinds.DOCKER_NAME_KIND, "ecs-api-42-api-c8e9f0a1b2c3d4e5f6a7"),
        (f"/{DOCKER}", kinds.DOCKER_NAME_KIND, DOCKER),
        ("i-0123456789abcdef0", kinds.INSTANCE, "i-0123456789abcdef0"),
        ("i-0123abcd", kinds.INSTANCE, "i-0123abcd"),
        ("10.0.1.17", kinds.ADDRESS, "10.0.1.17"),
        ("::ffff:10.0.1.17", kinds.ADDRESS, "10.0.1.17"),
        ("2600:1f18:0:0::a", kinds.ADDRESS, "2600:1f18::a"),
        ("[2600:1f18::a]", kinds.ADDRESS, "2600:1f18::a"),
        ("10.0.1.17:49153", kinds.ADDRESS, "10.0.1.17"),
        ("[2600:1f18::a]:443", kinds.ADDRESS, "2600:1f18::a"),
        ("default/api", kinds.SERVICE, "api"),
        ("service:billing", kinds.NAME, "billing"),
        ("production", kinds.NAME, "production"),
        ("cafe", kinds.NAME, "cafe"),
        ("", kinds.EMPTY, ""),
        ("   ", kinds.EMPTY, ""),
    ],
)
def test_each_input_form_is_understood(raw, kind, value):
    understood = classify(raw)
    assert (understood.kind, understood.value) == (kind, value)
    if kind not in (kinds.EMPTY, kinds.MALFORMED):
        assert understood.said


def test_the_arn_says_its_form_and_the_docker_name_its_parts():
    assert "long form" in classify(ARN_LONG).said
    assert "old form" in classify(ARN_OLD).said
    docker = classify("ecs-web-app-7-nginx-proxy-d0c2f9f5b8c5a7c6e001")
    assert docker.extra == {"family": "web-app", "revision": "7", "container_name": "nginx-proxy"}
    assert classify("default/api").extra == {"cluster": "default"}
    with_port = classify("10.0.1.17:0080")
    assert with_port.said == "an IPv4 address and port 80" and with_port.extra == {"port": "80"}
    assert classify("10.0.1.17:70000").kind == kinds.MALFORMED


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("3f2a9c1d", "too short"),
        ("a" * 65, "too long"),
        ("arn:aws:ecs:eu-central-1:210987654321:service/default/api", "not a task's"),
        ("i-12ab34", "8 or 17 hex"),
        ("10.0.1.300", "not a container ID"),
        ("<script>alert(1)</script>", "not a container ID"),
        ("x" * 600, "600 characters"),
        (f"arn:aws:ecs:eu-central-1:210987654321:task/default/{'a' * 34}", "no task ID"),
    ],
)
def test_malformed_input_says_why(raw, why):
    understood = classify(raw)
    assert understood.kind == kinds.MALFORMED
    assert why in understood.problem
