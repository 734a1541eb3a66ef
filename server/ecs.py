"""The ECS API as the server uses it: the tasks of a service (briefly cached) and the description of tasks.

The boto3 client is made on first use, never at import, so that region, credentials and the endpoint
(``AWS_ENDPOINT_URL_ECS``, honoured by botocore itself) come from the standard chain when first needed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import boto3
from botocore import exceptions as boto_errors
from botocore.config import Config as BotoConfig

from server import aws
from server.backoff import Backoff
from server.errors import ApiError

log = logging.getLogger(__name__)

#: DescribeTasks takes at most this many tasks per call, DescribeContainerInstances as many instances.
DESCRIBE_BATCH = 100
#: ListTasks answers at most this many ARNs per page.
LIST_PAGE = 100

THROTTLING_CODES = ("ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded")
DENIED_CODES = ("AccessDeniedException", "UnrecognizedClientException", "InvalidSignatureException")

# Few botocore retries: a request thread waits on this, and throttling is answered from the cache instead.
BOTO_CONFIG = BotoConfig(connect_timeout=3, read_timeout=10, retries={"mode": "standard", "total_max_attempts": 2})


class EcsError(ApiError):
    """ECS answered in a way the server cannot use; 502."""

    status = 502


class EcsUnavailable(EcsError):
    """ECS cannot be asked now (no credentials or region, unreachable, throttled); 503, with Retry-After if known."""

    status = 503

    def __init__(self, message: str, retry_after: int | None = None):
        super().__init__(message, headers={"Retry-After": str(retry_after)} if retry_after else None)
        self.retry_after = retry_after


class EcsNotConfigured(EcsUnavailable):
    """The ECS API cannot be asked at all: no AWS region, or no credentials. Retrying cannot help until the
    configuration changes."""


class EcsNotFound(EcsError):
    """ECS knows no such cluster or service; 404."""

    status = 404


class EcsClient:
    """ListTasks and DescribeTasks with the server's errors, a short TTL cache and throttling backoff."""

    def __init__(
        self,
        region: str | None = None,
        ttl: float = 10.0,
        stale_max: float = 300.0,
        client_factory: Callable[[], Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.region = region
        self.ttl = ttl
        self.stale_max = stale_max
        self.clock = clock
        self._factory = client_factory or self._default_factory
        self._client: Any = None
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str, str], tuple[float, list[str]]] = {}
        self._fetching: dict[tuple[str, str, str], threading.Lock] = {}
        # how long to leave ECS alone after it throttled us
        self.backoff = Backoff(base=1.0, cap=30.0, jitter=False, clock=clock)

    def _default_factory(self) -> Any:
        return boto3.session.Session().client("ecs", region_name=aws.region(self.region), config=BOTO_CONFIG)

    @property
    def client(self) -> Any:
        """The boto3 ECS client, made on first use."""
        with self._lock:
            if self._client is None:
                try:
                    self._client = self._factory()
                except boto_errors.NoRegionError:
                    raise EcsNotConfigured(
                        "no AWS region for the ECS API: set AWS_REGION or AWS_DEFAULT_REGION"
                    ) from None
            return self._client

    def service_tasks(self, cluster: str, service: str, desired_status: str = "RUNNING") -> list[str]:
        """The ARNs of the service's tasks with that desired status, every page of ListTasks.

        Answers from a cache younger than ``ttl``; while ECS throttles, from any cached answer younger than
        ``stale_max``, else raises EcsUnavailable. Raises EcsNotFound for an unknown cluster or service.
        """
        key = (cluster, service, desired_status)
        with self._lock:
            if len(self._fetching) > 1024:  # names users typed that ECS does not know: keep no lock for them
                self._fetching = {k: v for k, v in self._fetching.items() if v.locked() or k in self._cache}
            key_lock = self._fetching.setdefault(key, threading.Lock())
        # One ListTasks per service at a time: concurrent dashboards wait for it and share its answer.
        with key_lock:
            return self._service_tasks(key)

    def _service_tasks(self, key: tuple[str, str, str]) -> list[str]:
        cluster, service, desired_status = key
        now = self.clock()
        with self._lock:
            cached = self._cache.get(key)
        if cached and now - cached[0] < self.ttl:
            return list(cached[1])
        if self.backoff.active():
            return self._stale_or_raise(key, now, "ECS is throttling requests")
        try:
            arns = list(self._list_tasks(cluster, service, desired_status))
        except _Throttled:
            delay = self.backoff.fail()
            log.warning("ECS throttled ListTasks; leaving it alone for %.0f s", delay)
            return self._stale_or_raise(key, now, "ECS is throttling requests")
        self.backoff.succeed()
        with self._lock:
            self._cache[key] = (now, arns)
            self._evict(now)
        return list(arns)

    def describe_tasks(self, cluster: str, tasks: Iterable[str]) -> tuple[list[dict], list[dict]]:
        """DescribeTasks for task ARNs or IDs of one cluster, in batches of 100.

        Returns ``(tasks, failures)`` as ECS gives them; not cached. Raises EcsUnavailable when throttled.
        """
        found: list[dict] = []
        failures: list[dict] = []
        for batch in _batches(list(tasks), DESCRIBE_BATCH):
            try:
                answer = self._call("describe_tasks", cluster=cluster, tasks=batch)
            except _Throttled:
                raise EcsUnavailable("ECS is throttling requests", retry_after=5) from None
            found.extend(answer.get("tasks", []))
            failures.extend(answer.get("failures", []))
        return found, failures

    def describe_task_definition(self, task_definition: str) -> dict:
        """DescribeTaskDefinition: the ``taskDefinition`` ECS answers; not cached here (a revision never changes,
        so the caller keeps it). Raises EcsNotFound when ECS has no such task definition, EcsUnavailable when
        throttled."""
        try:
            answer = self._call("describe_task_definition", taskDefinition=task_definition)
        except _Throttled:
            raise EcsUnavailable("ECS is throttling requests", retry_after=5) from None
        found = answer.get("taskDefinition")
        return found if isinstance(found, dict) else {}

    def describe_container_instances(self, cluster: str, arns: list[str]) -> tuple[list[dict], list[dict]]:
        """DescribeContainerInstances for at most 100 container instance ARNs of one cluster: ``(containerInstances,
        failures)`` as ECS gives them; not cached here (an instance never changes under its ARN, so the caller keeps
        what it learnt). Raises EcsNotFound for an unknown cluster, EcsUnavailable when throttled."""
        try:
            answer = self._call("describe_container_instances", cluster=cluster, containerInstances=arns)
        except _Throttled:
            raise EcsUnavailable("ECS is throttling requests", retry_after=5) from None
        return answer.get("containerInstances", []), answer.get("failures", [])

    def _list_tasks(self, cluster: str, service: str, desired_status: str) -> Iterator[str]:
        params: dict[str, Any] = {
            "cluster": cluster,
            "serviceName": service,
            "desiredStatus": desired_status,
            "maxResults": LIST_PAGE,
        }
        while True:
            answer = self._call("list_tasks", **params)
            yield from answer.get("taskArns", [])
            token = answer.get("nextToken")
            if not token:
                return
            params["nextToken"] = token

    def _call(self, operation: str, **params: Any) -> dict:
        client = self.client
        try:
            return getattr(client, operation)(**params)
        except (boto_errors.NoCredentialsError, boto_errors.PartialCredentialsError):
            with self._lock:
                self._client = None  # the credentials were looked up when it was made: look again next time
            raise EcsNotConfigured(
                "no AWS credentials for the ECS API: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                "AWS_PROFILE, or give the server an instance or task role"
            ) from None
        except (boto_errors.ConnectionError, boto_errors.HTTPClientError):
            raise EcsUnavailable(
                f"the ECS API at {client.meta.endpoint_url} did not answer "
                "(AWS_REGION chooses it, AWS_ENDPOINT_URL_ECS overrides it)"
            ) from None
        except boto_errors.ClientError as exc:
            error = exc.response.get("Error", {})
            code, message = error.get("Code", ""), error.get("Message", "")
            if code in THROTTLING_CODES:
                raise _Throttled from None
            if code == "ClusterNotFoundException":
                raise EcsNotFound(f"ECS knows no cluster {params.get('cluster')!r}") from None
            if code == "ServiceNotFoundException":
                raise EcsNotFound(
                    f"ECS knows no service {params.get('serviceName')!r} in cluster {params.get('cluster')!r}"
                ) from None
            if code in DENIED_CODES:
                raise EcsUnavailable(f"the AWS credentials may not call ecs:{_action(operation)} ({code})") from None
            if code == "ClientException" and operation == "describe_task_definition":
                # How ECS says it has no such task definition (deleted, or of another region or account).
                raise EcsNotFound(f"ECS has no task definition {params.get('taskDefinition')!r}: {message}") from None
            if code == "InvalidParameterException":
                # ECS says this for names that cannot exist, e.g. a service name with a slash.
                raise EcsNotFound(f"ECS refused the request: {message}") from None
            raise EcsError(f"ECS answered {code or 'an error'} to {_action(operation)}: {message}") from None
        except boto_errors.BotoCoreError as exc:
            raise EcsError(f"the ECS API call {_action(operation)} failed: {exc}") from None

    def _stale_or_raise(self, key: tuple[str, str, str], now: float, reason: str) -> list[str]:
        with self._lock:
            cached = self._cache.get(key)
        if cached and now - cached[0] < self.stale_max:
            return list(cached[1])
        retry_after = max(1, round(self.backoff.remaining()))
        raise EcsUnavailable(f"{reason}; try again shortly", retry_after=retry_after)

    def _evict(self, now: float) -> None:
        for key in [k for k, (at, _) in self._cache.items() if now - at >= self.stale_max]:
            del self._cache[key]
            self._fetching.pop(key, None)


class _Throttled(Exception):
    """ECS refused the call for its rate limit."""


def _action(operation: str) -> str:
    return "".join(part.capitalize() for part in operation.split("_"))


def _batches(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
