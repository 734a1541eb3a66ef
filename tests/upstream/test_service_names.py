"""Service names learnt from DescribeTasks: batching, the family group, retries, and the worker thread."""

from __future__ import annotations

import threading
import time

import boto3
import pytest
from moto import mock_aws

from server.ecs import EcsClient, EcsUnavailable
from server.service_names import ServiceNames
from server.store import StoreError
from tests.upstream.helpers import CLUSTER, REGION, SlowEcs, described, record, run_tasks, task_arn, task_id

NOW = "2026-11-25T15:05:39.000Z"


@pytest.fixture
def names(ecs, store, clock) -> ServiceNames:
    return ServiceNames(ecs, store, clock=clock, autostart=False)


def stored(store, *records: dict) -> list[dict]:
    return store.upsert_containers(list(records), NOW)


def service_of(store, n: int) -> list[str]:
    return [r.get("service_name", "") for r in store.containers_of_task(task_id(n))]


def expect_describe(stubber, cluster: str, numbers: list[int], groups: dict[int, str], missing=()) -> None:
    stubber.add_response(
        "describe_tasks",
        {
            "tasks": [described(n, groups[n], cluster) for n in numbers if n in groups],
            "failures": [{"arn": task_arn(n, cluster), "reason": "MISSING"} for n in missing],
        },
        {"cluster": cluster, "tasks": [task_arn(n, cluster) for n in numbers]},
    )


def test_a_service_task_gets_its_name_on_every_container(names, store, stubber):
    new = stored(store, record(1, 0), record(1, 1), record(2))
    expect_describe(stubber, CLUSTER, [1, 2], {1: "service:web", 2: "service:api"})

    assert names.submit(new) == 2  # one entry per task, not per container
    assert names.run_once() == 2

    assert service_of(store, 1) == ["web", "web"]
    assert service_of(store, 2) == ["api"]
    assert names.pending() == 0


def test_a_standalone_task_gets_no_service_name(names, store, stubber):
    names.submit(stored(store, record(3)))
    expect_describe(stubber, CLUSTER, [3], {3: "family:web"})

    names.run_once()

    assert service_of(store, 3) == [""]
    assert names.pending() == 0


def test_batches_of_one_hundred_per_cluster(names, store, stubber):
    new = stored(store, *(record(n) for n in range(150)), record(500, cluster="batch"))
    expect_describe(stubber, CLUSTER, list(range(100)), {n: "service:web" for n in range(100)})
    expect_describe(stubber, CLUSTER, list(range(100, 150)), {n: "service:web" for n in range(100, 150)})
    expect_describe(stubber, "batch", [500], {500: "service:jobs"})

    names.submit(new)
    assert names.run_once() == 151

    assert service_of(store, 149) == ["web"]
    assert service_of(store, 500) == ["jobs"]


def test_a_failed_describe_is_retried_later(names, store, stubber, clock):
    names.submit(stored(store, record(4)))
    stubber.add_client_error("describe_tasks", "ThrottlingException", "Rate exceeded", 400)
    expect_describe(stubber, CLUSTER, [4], {4: "service:web"})

    names.run_once()
    assert service_of(store, 4) == [""]
    assert names.pending() == 1

    assert names.run_once() == 0  # not due yet
    clock.advance(5)
    names.run_once()
    assert service_of(store, 4) == ["web"]
    assert names.pending() == 0


def test_a_task_ecs_does_not_answer_for_is_retried(names, store, stubber, clock):
    names.submit(stored(store, record(5)))
    expect_describe(stubber, CLUSTER, [5], {})
    expect_describe(stubber, CLUSTER, [5], {5: "service:web"})

    names.run_once()
    clock.advance(5)
    names.run_once()

    assert service_of(store, 5) == ["web"]


def test_retries_stop_after_max_attempts(ecs, store, stubber, clock):
    names = ServiceNames(ecs, store, clock=clock, autostart=False, max_attempts=2)
    names.submit(stored(store, record(6)))
    for _ in range(2):
        stubber.add_client_error("describe_tasks", "ServerException", "boom", 500)

    names.run_once()
    clock.advance(60)
    names.run_once()
    clock.advance(600)

    assert names.run_once() == 0
    assert names.pending() == 0


def test_a_task_ecs_has_forgotten_is_not_retried(names, store, stubber, clock):
    names.submit(stored(store, record(7)))
    expect_describe(stubber, CLUSTER, [7], {}, missing=[7])

    names.run_once()
    clock.advance(3600)

    assert names.run_once() == 0
    assert names.pending() == 0


def test_later_containers_of_a_known_task_need_no_call(names, store, stubber):
    names.submit(stored(store, record(8, 0)))
    expect_describe(stubber, CLUSTER, [8], {8: "service:web"})
    names.run_once()

    names.submit(stored(store, record(8, 1)))
    assert names.run_once() == 0

    assert service_of(store, 8) == ["web", "web"]


def test_records_with_a_service_name_are_not_queued(names):
    assert names.submit([record(9, service_name="web")]) == 0


def test_submit_returns_while_ecs_is_slow(store, stubbed):
    client, stubber = stubbed
    expect_describe(stubber, CLUSTER, [10], {10: "service:web"})
    release = threading.Event()
    slow = SlowEcs(EcsClient(client_factory=lambda: client), release)
    names = ServiceNames(slow, store)
    try:
        started = time.monotonic()
        names.submit(stored(store, record(10)))
        assert time.monotonic() - started < 0.5
        assert slow.called.wait(5)
        assert service_of(store, 10) == [""]

        release.set()
        assert names.wait_idle(5)
        assert service_of(store, 10) == ["web"]
    finally:
        release.set()
        names.stop()


def test_the_worker_retries_on_its_own(store, stubbed):
    client, stubber = stubbed
    stubber.add_client_error("describe_tasks", "ThrottlingException", "Rate exceeded", 400)
    expect_describe(stubber, CLUSTER, [11], {11: "service:web"})
    names = ServiceNames(EcsClient(client_factory=lambda: client), store, base_delay=0.05, min_interval=0.05)
    try:
        names.submit(stored(store, record(11)))
        deadline = time.monotonic() + 5
        while service_of(store, 11) != ["web"] and time.monotonic() < deadline:
            time.sleep(0.02)
        assert service_of(store, 11) == ["web"]
    finally:
        names.stop()


def test_with_tasks_moto_started(store):
    with mock_aws():
        ecs_client = boto3.client("ecs", region_name=REGION)
        arns = run_tasks(ecs_client, groups=["service:web", None])
        ids = [a.rsplit("/", 1)[-1] for a in arns]
        new = stored(
            store,
            {**record(0), "task_id": ids[0], "task_arn": arns[0], "container_id": "a" * 64},
            {**record(0), "task_id": ids[1], "task_arn": arns[1], "container_id": "b" * 64},
        )
        names = ServiceNames(EcsClient(client_factory=lambda: ecs_client), store, autostart=False)
        names.submit(new)
        names.run_once()

    assert [r.get("service_name") for r in store.containers_of_task(ids[0])] == ["web"]
    assert [r.get("service_name", "") for r in store.containers_of_task(ids[1])] == [""]


class Configuration:
    """A stand-in for the AWS configuration the worker watches."""

    def __init__(self) -> None:
        self.value = 1

    def __call__(self) -> int:
        return self.value


def no_region_ecs(calls: list[int]) -> EcsClient:
    def factory():
        calls.append(1)
        return boto3.session.Session().client("ecs", region_name=None)

    return EcsClient(client_factory=factory)


def test_without_a_region_it_says_so_once_and_stops_trying(store, clock, caplog, monkeypatch):
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    calls: list[int] = []
    configuration = Configuration()
    names = ServiceNames(no_region_ecs(calls), store, clock=clock, autostart=False, aws_configuration=configuration)
    names.submit(stored(store, record(1), record(2)))
    names.run_once()
    assert (names.paused(), names.pending(), len(calls)) == (True, 0, 1)

    for n in range(3, 30):  # reports keep coming: nothing is queued, ECS is not asked again, nothing more is said
        assert names.submit(stored(store, record(n))) == 0
        assert names.run_once() == 0
        clock.advance(60)
    assert len(calls) == 1
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert "AWS_REGION" in message and "until the AWS configuration changes" in message
    assert service_of(store, 1) == [""]

    configuration.value = 2  # say, AWS_REGION set in a config file
    assert names.submit(stored(store, record(40))) == 1
    names.run_once()
    assert len(calls) == 2
    assert len([r for r in caplog.records if r.levelname == "WARNING"]) == 1  # the same reason again: not repeated


def test_without_a_region_it_tries_again_after_the_recheck_interval(store, clock, monkeypatch):
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    calls: list[int] = []
    names = ServiceNames(no_region_ecs(calls), store, clock=clock, autostart=False, recheck=600)
    names.submit(stored(store, record(1)))
    names.run_once()
    clock.advance(599)
    assert names.submit(stored(store, record(2))) == 0
    clock.advance(2)
    assert names.submit(stored(store, record(3))) == 1


def test_without_credentials_it_says_so_once_and_stops_trying(store, clock, caplog, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    names = ServiceNames(EcsClient(), store, clock=clock, autostart=False)
    names.submit(stored(store, record(1)))
    names.run_once()
    assert names.paused() and names.pending() == 0
    assert names.submit(stored(store, record(2))) == 0
    (warning,) = [r for r in caplog.records if r.levelname == "WARNING"]
    assert "no AWS credentials" in warning.getMessage()


def test_a_route_still_says_what_is_missing_without_credentials(monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    ecs = EcsClient()
    for _ in range(2):  # the client is made again after each refusal, so new credentials would be found
        with pytest.raises(EcsUnavailable, match="no AWS credentials"):
            ecs.service_tasks(CLUSTER, "web")


class CountingStore:
    """A store that counts the batches of service names written, and can fail the first ``failures`` of them."""

    def __init__(self, store, failures: int = 0):
        self.store, self.failures, self.batches = store, failures, []

    def update_tasks(self, fields_by_task):
        self.batches.append(sorted(fields_by_task))
        if self.failures:
            self.failures -= 1
            raise StoreError("database is locked")
        self.store.update_tasks(fields_by_task)


def test_the_names_of_one_round_are_written_in_one_store_call(ecs, store, stubber, clock):
    counting = CountingStore(store)
    names = ServiceNames(ecs, counting, clock=clock, autostart=False)  # type: ignore[arg-type]
    names.submit(stored(store, record(20, 0), record(20, 1), record(21), record(22)))
    expect_describe(stubber, CLUSTER, [20, 21, 22], {20: "service:web", 21: "service:api", 22: "family:web"})

    names.run_once()

    assert counting.batches == [[task_id(20), task_id(21)]]  # the standalone task needs no write
    assert service_of(store, 20) == ["web", "web"]
    assert service_of(store, 21) == ["api"]
    assert names.pending() == 0


def test_names_that_could_not_be_stored_are_written_later_without_asking_again(ecs, store, stubber, clock):
    counting = CountingStore(store, failures=1)
    names = ServiceNames(ecs, counting, clock=clock, autostart=False)  # type: ignore[arg-type]
    names.submit(stored(store, record(23), record(24)))
    expect_describe(stubber, CLUSTER, [23, 24], {23: "service:web", 24: "family:web"})

    names.run_once()
    assert service_of(store, 23) == [""]
    assert names.pending() == 1  # the standalone task is done
    clock.advance(10)
    assert names.run_once() == 0  # remembered: no second DescribeTasks (the stubber would refuse it)

    assert service_of(store, 23) == ["web"]
    assert counting.batches == [[task_id(23)], [task_id(23)]]
    assert names.pending() == 0


def test_a_backlog_is_written_batch_by_batch(ecs, store, stubber, clock):
    counting = CountingStore(store)
    names = ServiceNames(ecs, counting, clock=clock, autostart=False)  # type: ignore[arg-type]
    names.submit(stored(store, *(record(n) for n in range(100, 250))))
    expect_describe(stubber, CLUSTER, list(range(100, 200)), {n: "service:web" for n in range(100, 200)})
    expect_describe(stubber, CLUSTER, list(range(200, 250)), {n: "service:api" for n in range(200, 250)})

    assert names.run_once() == 150

    assert [len(batch) for batch in counting.batches] == [100, 50]
    assert service_of(store, 249) == ["api"]
