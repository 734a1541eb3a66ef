"""The EC2 API as the server uses it: the private IPv4 address of EC2 instances (DescribeInstances), for the
containers the ECS event feed knows on bridge and host networking, whose events name no instance address.

The boto3 client is made on first use, never at import, so that region, credentials and the endpoint
(``AWS_ENDPOINT_URL_EC2``, honoured by botocore itself) come from the standard chain when first needed. Its errors
are the ECS client's kinds (the same chain, the same remedies), so that one worker handles both.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import boto3
from botocore import exceptions as boto_errors

from server import aws
from server.ecs import BOTO_CONFIG, DENIED_CODES, THROTTLING_CODES, EcsError, EcsNotConfigured, EcsUnavailable

#: DescribeInstances by ID: at most this many per call, so that one answer is one page.
DESCRIBE_BATCH = 100


class Ec2Client:
    """DescribeInstances with the server's errors."""

    def __init__(self, region: str | None = None, client_factory: Callable[[], Any] | None = None):
        self.region = region
        self._factory = client_factory or self._default_factory
        self._client: Any = None
        self._lock = threading.Lock()

    def _default_factory(self) -> Any:
        return boto3.session.Session().client("ec2", region_name=aws.region(self.region), config=BOTO_CONFIG)

    @property
    def client(self) -> Any:
        """The boto3 EC2 client, made on first use."""
        with self._lock:
            if self._client is None:
                try:
                    self._client = self._factory()
                except boto_errors.NoRegionError:
                    raise EcsNotConfigured(
                        "no AWS region for the EC2 API: set AWS_REGION or AWS_DEFAULT_REGION"
                    ) from None
            return self._client

    def private_addresses(self, instance_ids: list[str]) -> dict[str, str]:
        """Instance ID → its private IPv4 address ("" for an instance without one, such as a terminated one), for
        at most ``DESCRIBE_BATCH`` instances; one EC2 does not have is left out. Raises EcsUnavailable when
        throttled, unreachable or denied, EcsNotConfigured without region or credentials, EcsError otherwise."""
        client = self.client
        try:
            # A filter, not InstanceIds: an ID EC2 does not know is then left out, not an error for the whole batch.
            answer = client.describe_instances(
                Filters=[{"Name": "instance-id", "Values": instance_ids}], MaxResults=1000
            )
        except (boto_errors.NoCredentialsError, boto_errors.PartialCredentialsError):
            with self._lock:
                self._client = None
            raise EcsNotConfigured(
                "no AWS credentials for the EC2 API: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                "AWS_PROFILE, or give the server an instance or task role"
            ) from None
        except (boto_errors.ConnectionError, boto_errors.HTTPClientError):
            raise EcsUnavailable(
                f"the EC2 API at {client.meta.endpoint_url} did not answer "
                "(AWS_REGION chooses it, AWS_ENDPOINT_URL_EC2 overrides it)"
            ) from None
        except boto_errors.ClientError as exc:
            error = exc.response.get("Error", {})
            code, message = error.get("Code", ""), error.get("Message", "")
            if code in THROTTLING_CODES:
                raise EcsUnavailable("EC2 is throttling requests", retry_after=5) from None
            if code in DENIED_CODES or code == "UnauthorizedOperation":
                raise EcsUnavailable(f"the AWS credentials may not call ec2:DescribeInstances ({code})") from None
            raise EcsError(f"EC2 answered {code or 'an error'} to DescribeInstances: {message}") from None
        except boto_errors.BotoCoreError as exc:
            raise EcsError(f"the EC2 API call DescribeInstances failed: {exc}") from None
        found = {}
        for reservation in answer.get("Reservations") or []:
            for instance in reservation.get("Instances") or []:
                instance_id = instance.get("InstanceId")
                if isinstance(instance_id, str) and instance_id in instance_ids:
                    address = instance.get("PrivateIpAddress")
                    found[instance_id] = address if isinstance(address, str) else ""
        return found
