"""What the address index costs to write, per container life, on each store: with the index and without it (its
entries switched off), side by side in one run.

A life is as an agent reports it: an awsvpc container (IPv4 and IPv6 task addresses, on an EC2 instance: three
index keys) appears PENDING, runs, is resynced every 10 minutes for an hour, and stops. SQLite: the index rows and
statements written, and the time of a batch of lives. DynamoDB (moto in-process): requests by operation and write
units, computed from the items' sizes (one per started KB of each item put; the index items carry none of the
secondary indexes' keys, so they cost no index write). SimpleDB (moto, strict): requests by operation and the
name-value pairs put. ``.venv/bin/python -m bench.address_index [LIVES]`` (lives timed on SQLite, 300 by default).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any
from unittest import mock

from moto import mock_aws

from server.records import format_time
from server.store import address_index
from server.store.base import Store
from server.store.dynamodb import DynamoDBStore
from server.store.dynamodb.items import write_units
from server.store.sdb import SimpleDBStore
from server.store.sqlite import SQLiteStore
from testkit.records import T0
from testkit.simpledb import REGION, strict_simpledb

HOST = {"cluster_name": "default", "instance_id": "i-0123456789abcdef0", "host_name": "ip-10-0-1-17"}
RESYNC = 600


def at(seconds: float) -> str:
    return format_time(T0 + timedelta(seconds=seconds))


def container(n: int, status: str, seconds: float) -> dict[str, str]:
    networks = [{"network_mode": "awsvpc", "ipv4_addresses": [f"172.31.{n // 250 % 250}.{n % 250 + 1}"],
                 "ipv6_addresses": [f"2a05:d014:abc:de00::{n:x}"]}]  # fmt: skip
    return {
        **HOST,
        "container_id": f"{n:012x}" + "ab" * 26,
        "container_name": "api",
        "task_id": f"{n:032x}",
        "task_arn": f"arn:aws:ecs:eu-central-1:210987654321:task/default/{n:032x}",
        "known_status": status,
        "desired_status": "STOPPED" if status == "STOPPED" else "RUNNING",
        "image": "210987654321.dkr.ecr.eu-central-1.amazonaws.com/api:2.3.1",
        "created_at": "2026-11-25T15:00:00.417281938Z",
        "started_at": "2026-11-25T15:00:01.001Z" if status != "PENDING" else "",
        "ports": '[{"container_port":8000,"host_port":8000,"protocol":"tcp"}]',
        "networks": json.dumps(networks, separators=(",", ":")),
        "instance_ip": "10.0.1.17",
        "instance_type": "m5.large",
        "region": "eu-central-1",
        "sample_time": at(seconds),
    }


def life(store: Store, n: int, offset: float = 0) -> None:
    """One container's life, its host's other containers left out (each resync is that host's full snapshot)."""
    store.record_report([container(n, "PENDING", offset)], [], at(offset), full=True, host=HOST)
    store.record_report([container(n, "RUNNING", offset + 5)], [], at(offset + 5), full=True, host=HOST)
    for k in range(1, 7):
        moment = offset + 5 + k * RESYNC
        store.record_report([container(n, "RUNNING", moment)], [], at(moment), full=True, host=HOST)
    end = offset + 5 + 7 * RESYNC
    store.record_report([container(n, "STOPPED", end)], [], at(end), full=True, host=HOST)


@contextmanager
def index(on: bool) -> Iterator[None]:
    """The index as it is, or switched off: no record makes an entry."""
    if on:
        yield
        return
    with mock.patch.object(address_index, "keys_of", lambda record: []):
        yield


class Calls:
    """Requests by operation on one botocore client, and what each put carried."""

    def __init__(self, client: Any, service: str):
        self.counts: Counter[str] = Counter()
        self.units = 0
        self.pairs = 0
        client.meta.events.register(f"before-parameter-build.{service}", self._seen)

    def _seen(self, params: dict, model: Any, **_: Any) -> None:
        self.counts[model.name] += 1
        if model.name == "PutItem":
            self.units += write_units(params["Item"])
        elif model.name == "BatchWriteItem":
            for requests in params["RequestItems"].values():
                self.units += sum(write_units(r["PutRequest"]["Item"]) if "PutRequest" in r else 1 for r in requests)
        elif model.name == "PutAttributes":
            self.pairs += len(params["Attributes"])


def sqlite_figures(lives: int) -> dict[str, tuple[str, str]]:
    found: dict[str, list[str]] = {}
    for on in (False, True):
        with tempfile.TemporaryDirectory() as folder, index(on):
            store = SQLiteStore(os.path.join(folder, "s.sqlite3"))
            statements: list[str] = []
            store._connection().set_trace_callback(statements.append)
            life(store, 1)
            store._connection().set_trace_callback(None)
            rows = store._query("SELECT count(*) FROM addresses")[0][0]
            writes = sum(1 for s in statements if "INTO addresses" in s)
            started = time.perf_counter()
            for n in range(2, lives + 2):
                life(store, n, n * 10_000)
            seconds = time.perf_counter() - started
            store.close()
        found.setdefault("index rows per life", []).append(str(rows))
        found.setdefault("index rows inserted per life", []).append(str(writes))
        found.setdefault(f"ms per life ({lives} lives, timed)", []).append(f"{seconds / lives * 1000:.2f}")
    return {name: (pair[0], pair[1]) for name, pair in found.items()}


def aws_figures(make: Callable[[], Any], service: str) -> dict[str, tuple[str, str]]:
    rows: dict[str, list[str]] = {}
    for on in (False, True):
        with mock_aws(), strict_simpledb(), index(on):
            store = make()
            life(store, 0, -10_000)  # the host's own items (lease, heartbeat) first: not a container's cost
            calls = Calls(store.client, service)
            life(store, 1)
            store.close()
        for name in sorted(set(calls.counts) | {k for k in rows if k in calls.counts}):
            rows.setdefault(name, [])
        for name in rows:
            if name in ("write units (table)", "name-value pairs put"):
                continue
            rows[name].append(str(calls.counts.get(name, 0)))
        if service == "dynamodb":
            rows.setdefault("write units (table)", []).append(str(calls.units))
        else:
            rows.setdefault("name-value pairs put", []).append(str(calls.pairs))
    return {name: (values[0] if len(values) > 1 else "0", values[-1]) for name, values in rows.items()}


def show(store: str, figures: dict[str, tuple[str, str]]) -> None:
    print(f"\n{store}: one container life (3 index keys: IPv4, IPv6, instance)")
    print(f"  {'':44} {'without':>9} {'with':>9}")
    for name, (without, with_) in figures.items():
        print(f"  {name:44} {without:>9} {with_:>9}")


def main() -> None:
    lives = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    show("SQLite", sqlite_figures(lives))
    show("DynamoDB", aws_figures(lambda: DynamoDBStore("bench", region=REGION, create=True), "dynamodb"))
    show("SimpleDB", aws_figures(lambda: SimpleDBStore("bench", region=REGION), "sdb"))


if __name__ == "__main__":
    main()
