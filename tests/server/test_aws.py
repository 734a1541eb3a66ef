"""What the server's boto3 clients share: the region, from AWS_REGION too (which boto3 does not read itself)."""

from __future__ import annotations

from server.ecs import EcsClient
from server.store.sdb import SimpleDBStore


def test_aws_region_alone_is_enough(monkeypatch):
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.setenv("AWS_REGION", "eu-central-1")
    assert EcsClient().client.meta.region_name == "eu-central-1"
    store = SimpleDBStore("qa", endpoint_url="http://127.0.0.1:9", max_attempts=1, connect_timeout=0.2)
    assert store.client.meta.region_name == "eu-central-1"
