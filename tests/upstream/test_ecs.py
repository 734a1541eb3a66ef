"""The ECS API client: exact requests, paging, caching, throttling and the errors users see."""

from __future__ import annotations

import threading

import boto3
import pytest
from moto import mock_aws

from server.ecs import EcsClient, EcsError, EcsNotFound, EcsUnavailable
from server.ids import task_id_of_arn
from tests.support import free_port
from tests.upstream.helpers import CLUSTER, REGION, described, run_tasks, task_arn

SERVICE = "web"


def list_params(status: str = "RUNNING", token: str | None = None) -> dict:
    params = {"cluster": CLUSTER, "serviceName": SERVICE, "desiredStatus": status, "maxResults": 100}
    if token:
        params["nextToken"] = token
    return params


def test_lists_every_page_with_the_exact_requests(ecs, stubber):
    stubber.add_response("list_tasks", {"taskArns": [task_arn(1), task_arn(2)], "nextToken": "t1"}, list_params())
    stubber.add_response("list_tasks", {"taskArns": [task_arn(3)], "nextToken": "t2"}, list_params(token="t1"))
    stubber.add_response("list_tasks", {"taskArns": [task_arn(4)]}, list_params(token="t2"))

    assert ecs.service_tasks(CLUSTER, SERVICE) == [task_arn(n) for n in (1, 2, 3, 4)]


def test_stopped_tasks_are_asked_with_their_own_desired_status(ecs, stubber):
    stubber.add_response("list_tasks", {"taskArns": [task_arn(9)]}, list_params("STOPPED"))

    assert ecs.service_tasks(CLUSTER, SERVICE, desired_status="STOPPED") == [task_arn(9)]


def test_answers_from_the_cache_for_ten_seconds(ecs, stubber, clock):
    stubber.add_response("list_tasks", {"taskArns": [task_arn(1)]}, list_params())
    stubber.add_response("list_tasks", {"taskArns": [task_arn(2)]}, list_params())

    assert ecs.service_tasks(CLUSTER, SERVICE) == [task_arn(1)]
    clock.advance(9)
    assert ecs.service_tasks(CLUSTER, SERVICE) == [task_arn(1)]  # no second request
    clock.advance(2)
    assert ecs.service_tasks(CLUSTER, SERVICE) == [task_arn(2)]


def test_throttling_serves_the_cached_answer_and_backs_off(ecs, stubber, clock):
    stubber.add_response("list_tasks", {"taskArns": [task_arn(1)]}, list_params())
    stubber.add_client_error("list_tasks", "ThrottlingException", "Rate exceeded", 400, expected_params=list_params())
    stubber.add_response("list_tasks", {"taskArns": [task_arn(2)]}, list_params())

    assert ecs.service_tasks(CLUSTER, SERVICE) == [task_arn(1)]
    clock.advance(11)
    assert ecs.service_tasks(CLUSTER, SERVICE) == [task_arn(1)]  # throttled: the stale answer
    clock.advance(0.5)
    assert ecs.service_tasks(CLUSTER, SERVICE) == [task_arn(1)]  # backing off: ECS is not asked
    clock.advance(1)
    assert ecs.service_tasks(CLUSTER, SERVICE) == [task_arn(2)]


def test_throttling_without_a_cached_answer_is_unavailable(ecs, stubber):
    stubber.add_client_error("list_tasks", "ThrottlingException", "Rate exceeded", 400, expected_params=list_params())

    with pytest.raises(EcsUnavailable, match="throttling") as caught:
        ecs.service_tasks(CLUSTER, SERVICE)
    assert caught.value.status == 503
    assert caught.value.retry_after >= 1


def test_unknown_service_is_not_found(ecs, stubber):
    stubber.add_client_error(
        "list_tasks", "ServiceNotFoundException", "Service not found.", 400, expected_params=list_params()
    )

    with pytest.raises(EcsNotFound, match="no service 'web' in cluster 'prod'") as caught:
        ecs.service_tasks(CLUSTER, SERVICE)
    assert caught.value.status == 404


def test_other_ecs_errors_are_bad_gateway(ecs, stubber):
    stubber.add_client_error("list_tasks", "ServerException", "boom", 500, expected_params=list_params())

    with pytest.raises(EcsError, match="ServerException") as caught:
        ecs.service_tasks(CLUSTER, SERVICE)
    assert caught.value.status == 502


def test_describe_tasks_goes_in_batches_of_one_hundred(ecs, stubber):
    arns = [task_arn(n) for n in range(250)]
    for start in (0, 100, 200):
        batch = arns[start : start + 100]
        stubber.add_response(
            "describe_tasks",
            {"tasks": [described(n, "service:web") for n in range(start, start + len(batch))], "failures": []},
            {"cluster": CLUSTER, "tasks": batch},
        )

    tasks, failures = ecs.describe_tasks(CLUSTER, arns)

    assert [t["taskArn"] for t in tasks] == arns
    assert failures == []


def test_task_id_of_either_arn_form():
    assert task_id_of_arn(f"arn:aws:ecs:{REGION}:1:task/prod/{'a' * 32}") == "a" * 32
    assert task_id_of_arn(f"arn:aws:ecs:{REGION}:1:task/3e4f5a6b-7c8d-4e9f-a0b1-c2d3e4f5a6b7") == (
        "3e4f5a6b-7c8d-4e9f-a0b1-c2d3e4f5a6b7"
    )


# Through boto3's own configuration chain: nothing here is stubbed.


def test_no_credentials_is_unavailable_naming_them(monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_ENDPOINT_URL_ECS", "http://127.0.0.1:9")

    with pytest.raises(EcsUnavailable, match=r"no AWS credentials.*AWS_ACCESS_KEY_ID") as caught:
        EcsClient().service_tasks(CLUSTER, SERVICE)
    assert caught.value.status == 503


def test_no_region_is_unavailable_naming_it(monkeypatch):
    monkeypatch.delenv("AWS_DEFAULT_REGION")

    with pytest.raises(EcsUnavailable, match="AWS_REGION"):
        EcsClient().service_tasks(CLUSTER, SERVICE)


def test_the_endpoint_comes_from_aws_endpoint_url_ecs_and_unreachable_is_unavailable(monkeypatch):
    endpoint = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL_ECS", endpoint)
    ecs = EcsClient()

    assert ecs.client.meta.endpoint_url == endpoint  # botocore honours the variable itself
    with pytest.raises(EcsUnavailable, match=f"the ECS API at {endpoint} did not answer"):
        ecs.service_tasks(CLUSTER, SERVICE)


def test_the_client_is_made_on_first_use_not_before(monkeypatch):
    made = []
    ecs = EcsClient(client_factory=lambda: made.append(1) or boto3.client("ecs"))
    assert made == []
    assert ecs.client is ecs.client
    assert made == [1]


# Through moto, where it models ECS faithfully.


@pytest.fixture
def moto_ecs():
    with mock_aws():
        yield boto3.client("ecs", region_name=REGION)


def test_unknown_cluster_is_not_found(moto_ecs):
    ecs = EcsClient(client_factory=lambda: moto_ecs)

    with pytest.raises(EcsNotFound, match="no cluster 'nowhere'"):
        ecs.service_tasks("nowhere", SERVICE)


def test_describe_tasks_reads_the_group_ecs_sets(moto_ecs):
    arns = run_tasks(moto_ecs, groups=["service:web", None])
    ecs = EcsClient(client_factory=lambda: moto_ecs)

    tasks, _ = ecs.describe_tasks(CLUSTER, arns)

    # moto lists no failures for unknown tasks; the enrichment tests script those with the Stubber.
    assert {t["taskArn"]: t["group"] for t in tasks} == {arns[0]: "service:web", arns[1]: "family:web"}


def test_concurrent_requests_for_one_service_share_one_list_tasks(ecs, stubber):
    stubber.add_response("list_tasks", {"taskArns": [task_arn(1)]}, list_params())
    answers: list[list[str]] = []
    threads = [threading.Thread(target=lambda: answers.append(ecs.service_tasks(CLUSTER, SERVICE))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)

    assert answers == [[task_arn(1)]] * 8  # one stubbed response served all eight
