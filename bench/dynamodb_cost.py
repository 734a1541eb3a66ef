"""What the DynamoDB store costs in requests and capacity units, next to the SimpleDB store's requests for the same
work: one container's life with its events, an unchanged resync of 50, a service name set, the lookups.

Runs against moto in-process and counts requests with botocore's event hooks. moto answers ``ConsumedCapacity``
with fixed numbers, so capacity units are computed here from the items' sizes by DynamoDB's rules: a write is one
unit per started KB of the larger of the old and the new item, plus, for each index, one per started KB of the
entry put when its keys or the attributes it carries changed (and one more where an entry is deleted); a strongly
consistent read one unit per started 4 KB (a GetItem of nothing: one), an eventually consistent index query half
that; a Query rounds its items' total up, a BatchGetItem each item. Records are as the agent reports them (host
fields, awsvpc network, one port). ``.venv/bin/python -m bench.dynamodb_cost``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import threading
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from botocore.awsrequest import AWSResponse
from moto import mock_aws

from server.records import event_id, format_time
from server.store.base import Store
from server.store.dynamodb import DynamoDBStore
from server.store.dynamodb.client import INDEXES, PROJECTIONS
from server.store.dynamodb.items import item_size
from server.store.sdb import SimpleDBStore
from testkit.records import T0, TASK
from testkit.simpledb import REGION

TARGETS = {"life": 9, "resync": 0, "lookup": 1}  # a life: 7 units, and 2 for by_host (reconciliation)


def at(seconds: float) -> str:
    return format_time(T0 + timedelta(seconds=seconds))


def container(n: int, status: str, seconds: float, task: str = TASK) -> dict[str, str]:
    """A report entry as the server stores it from a real agent's report (host fields included)."""
    return {
        "container_id": f"{n:012x}" + "ab" * 26,
        "container_name": f"api-{n}",
        "docker_name": f"ecs-api-42-api-{n}-c8e9f0a1b2c3d4e5f6a7",
        "image": "210987654321.dkr.ecr.eu-central-1.amazonaws.com/api:2.3.1",
        "image_id": "sha256:" + "1f" * 32,
        "task_id": task,
        "task_arn": f"arn:aws:ecs:eu-central-1:210987654321:task/default/{task}",
        "task_name": "api",
        "task_version": "42",
        "known_status": status,
        "desired_status": "STOPPED" if status == "STOPPED" else "RUNNING",
        "created_at": "2026-11-25T15:00:00.417281938Z",
        "started_at": "2026-11-25T15:00:01.001Z",
        "ports": '[{"container_port":8000,"host_port":8000,"protocol":"tcp"}]',
        "networks": '[{"ipv4_addresses":["172.31.9.44"],"network_mode":"awsvpc"}]',
        "container_port": "8000",
        "instance_port": "8000",
        "instance_id": "i-0123456789abcdef0",
        "instance_ip": "10.0.1.17",
        "instance_type": "m5.large",
        "instance_az": "eu-central-1a",
        "region": "eu-central-1",
        "host_name": "ip-10-0-1-17",
        "cluster_name": "default",
        "container_instance_arn": "arn:aws:ecs:eu-central-1:210987654321:container-instance/default/5a0c6f2e9d",
        "ecs_agent_version": "Amazon ECS Agent - v1.88.0 (4f2e1d0c)",
        "sample_time": at(seconds),
    }


def event(n: int, old: str, new: str, seconds: float) -> dict[str, str]:
    """An event as the agent reports it, its ID derived from the change."""
    kind = "appeared" if not old else "vanished" if not new else "known_status"
    cid = container(n, new, 0)["container_id"]
    return {"event_id": event_id(cid, kind, old, new), "container_id": cid, "task_id": TASK, "event": kind,
            "from": old, "to": new, "timestamp": at(seconds)}  # fmt: skip


# --- metering ----------------------------------------------------------------------------------------------


def index_writes(index: str, old: dict[str, Any], new: dict[str, Any]) -> int:
    """Write units an index takes when ``old`` becomes ``new``: an entry put (by its size), deleted (1), or both
    when its key changed; none when neither its keys nor the attributes it carries changed."""
    keys = [name for name, _ in INDEXES[index]]
    carried = {*keys, "pk", "sk", *PROJECTIONS.get(index, {}).get("NonKeyAttributes", [])}

    def entry(item: dict[str, Any]) -> dict[str, Any] | None:
        return {a: v for a, v in item.items() if a in carried} if all(k in item for k in keys) else None

    before, after = entry(old), entry(new)
    if before == after:
        return 0
    deleted = 1 if before is not None and (after is None or any(before[k] != after[k] for k in keys)) else 0
    return deleted + (math.ceil(item_size(after) / 1024) if after is not None else 0)


@dataclass
class Figures:
    requests: int = 0
    reads: float = 0.0  # SimpleDB: GetAttributes; DynamoDB: read capacity units
    writes: float = 0.0  # SimpleDB: PutAttributes; DynamoDB: write capacity units, indexes included
    index_writes: float = 0.0

    def __add__(self, other: Figures) -> Figures:
        return Figures(self.requests + other.requests, self.reads + other.reads, self.writes + other.writes,
                       self.index_writes + other.index_writes)  # fmt: skip


class SimpleDBMeter:
    def __init__(self, store: SimpleDBStore):
        self.counts: Counter[str] = Counter()
        store.client.meta.events.register("before-call.sdb", lambda model, **_: self.counts.update([model.name]))

    def take(self) -> Figures:
        counts, self.counts = self.counts, Counter()
        return Figures(sum(counts.values()), counts["GetAttributes"], counts["PutAttributes"])


@dataclass
class DynamoDBMeter:
    """Requests and capacity units of one DynamoDB client; items as this client (or ``items``' owner) wrote them."""

    store: DynamoDBStore
    figures: Figures = field(default_factory=Figures)
    items: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        events = self.store.client.meta.events
        events.register("before-parameter-build.dynamodb", self._keep_params)
        events.register("after-call.dynamodb", self._count)

    def _keep_params(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["metered"] = dict(params)

    def _count(self, model: Any, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        with self.lock:  # the store sends a report's puts from several threads
            self._count_one(model, parsed, context.get("metered", {}))

    def _count_one(self, model: Any, parsed: dict[str, Any], params: dict[str, Any]) -> None:
        self.figures.requests += 1
        if model.name == "PutItem" and "Error" not in parsed:
            item = params["Item"]
            key = (item["pk"]["S"], item["sk"]["S"])
            old = self.items.get(key, {})
            self.figures.writes += math.ceil(max(item_size(item), item_size(old)) / 1024)
            for name in INDEXES:
                units = index_writes(name, old, item)
                self.figures.writes += units
                self.figures.index_writes += units
            self.items[key] = item
        elif model.name == "GetItem":
            found = parsed.get("Item")
            units = math.ceil(item_size(found) / 4096) if found else 1
            self.figures.reads += units if params.get("ConsistentRead") else units / 2
        elif model.name == "BatchGetItem":
            asked = sum(len(t["Keys"]) for t in params["RequestItems"].values())
            found = [i for items in parsed.get("Responses", {}).values() for i in items]
            self.figures.reads += sum(math.ceil(item_size(i) / 4096) for i in found) + (asked - len(found))
        elif model.name == "Query":
            total = sum(item_size(i) for i in parsed.get("Items", []))
            units = max(1, math.ceil(total / 4096))
            self.figures.reads += units / 2 if "IndexName" in params else units

    def take(self) -> Figures:
        figures, self.figures = self.figures, Figures()
        return figures


# --- the scenarios -----------------------------------------------------------------------------------------

LIFE = [("PENDING", "", 0), ("RUNNING", "PENDING", 20), ("STOPPED", "RUNNING", 3600)]


def life(store: Store, n: int) -> list[tuple[str, Callable[[], object]]]:
    """The reports of one container's life, as the server stores them: each state with its event, then the
    vanished event alone."""
    steps: list[tuple[str, Callable[[], object]]] = []
    for status, old, seconds in LIFE:
        label = f"report: first seen {status}" if not old else f"report: {old} -> {status}"
        steps.append((label, lambda s=status, o=old, t=seconds: store.record_report(
            [container(n, s, t)], [event(n, o, s, t)], at(t + 1)
        )))  # fmt: skip
    vanished = event(n, "STOPPED", "", 3605)
    steps.append(("report: vanished event", lambda: store.record_report([], [vanished], at(3606))))
    return steps


FLEET = [container(100 + n, "RUNNING", 0, task=f"{n // 5:032x}") for n in range(50)]


def resync(store: Store) -> list[tuple[str, Callable[[], object]]]:
    later = 660 + store.last_seen_resolution  # type: ignore[attr-defined]  # SimpleDB: 5 min; DynamoDB: 1 h
    return [
        ("first full report, 50 new in 10 tasks", lambda: store.upsert_containers(FLEET, at(1))),
        ("unchanged resync 1 min later, same worker", lambda: store.upsert_containers(FLEET, at(60))),
        ("unchanged resync 10 min later (agent's interval)", lambda: store.upsert_containers(FLEET, at(660))),
        ("resync once last_seen is older than resolution", lambda: store.upsert_containers(FLEET, at(later))),
    ]


def lookups(store: Store) -> list[tuple[str, Callable[[], object]]]:
    cid = FLEET[0]["container_id"]
    return [
        ("get_container (full ID)", lambda: store.get_container(cid)),
        ("find_containers (12-hex short ID)", lambda: store.find_containers(cid[:12], 11)),
        ("containers_of_task (5 containers)", lambda: store.containers_of_task(FLEET[0]["task_id"])),
        ("update_task: service name on 5", lambda: store.update_task(FLEET[0]["task_id"], {"service_name": "api"})),
        ("containers_of_service (1 task of 5)", lambda: store.containers_of_service("default", "api")),
        ("events_of_container (4 events)", lambda: store.events_of_container(container(1, "", 0)["container_id"])),
        ("events_of_task (4 events)", lambda: store.events_of_task(TASK)),
        ("ping", store.ping),
    ]


def measure(steps: list[tuple[str, Callable[[], object]]], meter: Any) -> list[tuple[str, Figures]]:
    meter.take()
    found = []
    for label, step in steps:
        step()
        found.append((label, meter.take()))
    return found


def table(title: str, sdb: list[tuple[str, Figures]], dynamo: list[tuple[str, Figures]], total: str = "") -> None:
    print(f"\n{title}")
    print(f"  {'':<48} {'SimpleDB requests':>17} {'gets':>5} {'puts':>5} | {'DynamoDB requests':>17} "
          f"{'RCU':>5} {'WCU':>5} {'(index)':>7}")  # fmt: skip
    rows = list(zip(sdb, dynamo, strict=True))
    if total:
        rows.append(((total, sum((f for _, f in sdb), Figures())), (total, sum((f for _, f in dynamo), Figures()))))
    for (label, s), (_, d) in rows:
        print(f"  {label:<48} {s.requests:>17} {s.reads:>5g} {s.writes:>5g} | {d.requests:>17} "
              f"{d.reads:>5g} {d.writes:>5g} {d.index_writes:>7g}")  # fmt: skip


# --- host leases at fleet scale -----------------------------------------------------------------------------

LEASE_SECONDS = 540.0
ARN = "arn:aws:ecs:eu-central-1:210987654321:container-instance/default/"


def host_fields(h: int) -> dict[str, str]:
    return {"cluster_name": "default", "container_instance_arn": f"{ARN}{h:010x}", "instance_id": f"i-{h:017x}",
            "host_name": f"ip-10-{h // 250}-{h % 250}-7"}  # fmt: skip


def snapshot_of(h: int, per_host: int) -> list[dict[str, str]]:
    """Host ``h``'s containers as its agent lists them: ``per_host`` running, in tasks of 5."""
    return [
        {**container(h * per_host + i, "RUNNING", 0, task=f"{h * per_host // 5 + i // 5:032x}"), **host_fields(h)}
        for i in range(per_host)
    ]


class Ledger:
    """DynamoDB's answers to the requests of reports, kept in process: items by key, the ``by_host`` index, the
    conditions the store writes. moto reads every item of a table for each Query, which makes 5,000 hosts'
    snapshots quadratic; ``leases`` checks this against moto on a small fleet first."""

    def __init__(self, store: DynamoDBStore):
        self.table = store.table
        self.items: dict[tuple[str, str], dict[str, Any]] = {}
        self.hosted: defaultdict[str, set[tuple[str, str]]] = defaultdict(set)  # the by_host index
        events = store.client.meta.events
        events.register_first("before-parameter-build.dynamodb", self._keep)
        events.register("before-call.dynamodb", self._answer)

    def _keep(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["ledger"] = dict(params)

    def _answer(self, model: Any, context: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        params = context["ledger"]
        if model.name == "GetItem":
            item = self.items.get(self._key(params["Key"]))
            return self._ok({"Item": item} if item else {})
        if model.name == "BatchGetItem":
            keys = params["RequestItems"][self.table]["Keys"]
            found = [item for key in keys if (item := self.items.get(self._key(key)))]
            return self._ok({"Responses": {self.table: found}, "UnprocessedKeys": {}})
        if model.name == "PutItem":
            item = params["Item"]
            if not self._holds(self.items.get(self._key(item)), params):
                error = {"Code": "ConditionalCheckFailedException", "Message": "The conditional request failed"}
                return AWSResponse(None, 400, {}, None), {"Error": error, "ResponseMetadata": {"HTTPStatusCode": 400}}
            old = self.items.get(self._key(item), {})
            if "host" in old:
                self.hosted[old["host"]["S"]].discard(self._key(item))
            if "host" in item:
                self.hosted[item["host"]["S"]].add(self._key(item))
            self.items[self._key(item)] = item
            return self._ok({})
        if model.name == "Query":
            values = params["ExpressionAttributeValues"]
            if params.get("IndexName") == "by_host":
                host = values[":host"]
                found = [{"pk": {"S": pk}, "sk": {"S": sk}, "host": host} for pk, sk in self.hosted[host["S"]]]
            else:
                found = [i for (pk, _), i in self.items.items() if pk == values[":pk"]["S"]]
            return self._ok({"Items": found})
        raise AssertionError(f"the ledger does not answer {model.name}")

    @staticmethod
    def _key(item: dict[str, Any]) -> tuple[str, str]:
        return item["pk"]["S"], item["sk"]["S"]

    @staticmethod
    def _holds(stored: dict[str, Any] | None, params: dict[str, Any]) -> bool:
        condition, values = params.get("ConditionExpression", ""), params.get("ExpressionAttributeValues", {})
        if not condition:
            return True
        if condition.startswith("attribute_not_exists") and stored is None:
            return True
        if condition == "v = :v":
            return stored is not None and stored["v"] == values[":v"]
        if condition.endswith("#at < :now"):
            return stored is not None and stored["at"]["S"] < values[":now"]["S"]
        return False

    @staticmethod
    def _ok(parsed: dict[str, Any]) -> tuple[AWSResponse, dict[str, Any]]:
        return AWSResponse(None, 200, {}, None), {**parsed, "ResponseMetadata": {"HTTPStatusCode": 200}}


def simulate(store: DynamoDBStore, hosts: int, per_host: int, minutes: int, warmup: int) -> tuple[Counter, Figures]:
    """Each host a keep-alive every minute and, every tenth minute, its full snapshot, the hosts spread evenly over
    the minute and the ten; a simulated clock, no sleeping. Counts the requests after ``warmup`` minutes, by
    operation and item kind (``PutItem H``: a lease; ``PutItem C``: a record)."""
    counts: Counter[str] = Counter()

    def count(model: Any, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        asked = context.get("ledger") or context.get("metered") or {}
        kind = asked.get("Item", asked.get("Key", {})).get("pk", {}).get("S", "")[:1]
        counts[f"{model.name} {kind}".strip()] += 1

    meter = DynamoDBMeter(store)
    store.client.meta.events.register_first("before-call.dynamodb", count)  # before the ledger answers
    snapshots = [snapshot_of(h, per_host) for h in range(hosts)]
    hosts_fields = [host_fields(h) for h in range(hosts)]
    start = T0.timestamp()
    for minute in range(minutes):
        if minute == warmup:
            counts.clear()
            meter.take()
        for h in range(hosts):
            seconds = minute * 60 + h * 60 / hosts
            store.clock = lambda s=seconds: start + s
            now = at(seconds)
            if minute % 10 == h % 10:
                listed = [{**entry, "sample_time": now} for entry in snapshots[h]]
                store.record_report(listed, [], now, full=True, host=hosts_fields[h])
            else:
                store.record_report([], [], now, host=hosts_fields[h])
    return counts, meter.take()


def leases(hosts: int, per_host: int, minutes: int) -> None:
    """Lease writes a second for ``hosts`` hosts of ``per_host`` containers, and what else their reports cost."""
    warmup = 60  # the first snapshots create every record; an hour later their last_seen is refreshed once an hour
    small = dict(hosts=20, per_host=per_host, minutes=70, warmup=60)
    with mock_aws():
        on_moto = DynamoDBStore("leasesmoto", region=REGION, create=True, retention_days=30)
        on_ledger = DynamoDBStore("leasesledger", region=REGION, create=True, retention_days=30)
        Ledger(on_ledger)
        assert simulate(on_moto, **small)[0] == simulate(on_ledger, **small)[0], "the ledger disagrees with moto"
        store = DynamoDBStore("leases", region=REGION, create=True, retention_days=30)
        Ledger(store)
        counts, units = simulate(store, hosts, per_host, minutes, warmup)
        for opened in (on_moto, on_ledger, store):
            opened.close()
    seconds = (minutes - warmup) * 60
    rate = {name: count / seconds for name, count in counts.items()}
    print(f"\nHost leases: {hosts:,} hosts x {per_host} containers, a full snapshot every 10 min and a keep-alive")
    print(f"every 60 s, lease {LEASE_SECONDS:g} s; measured over {minutes - warmup} simulated minutes after a")
    print(f"{warmup}-minute warm-up (the request counts agree with moto's on 20 hosts)")
    print(
        f"  lease writes: {rate.get('PutItem H', 0):.1f}/s (target <= 20), lease reads {rate.get('GetItem H', 0):.1f}/s"
    )
    print(f"  reconciliation: {rate.get('Query', 0):.1f} by_host queries/s (0.5 RCU each), vanished none here")
    print(f"  records rewritten: {rate.get('PutItem C', 0):.1f}/s (last_seen past the hour's resolution), record reads"
          f" {rate.get('BatchGetItem', 0) + rate.get('GetItem C', 0):.1f} requests/s (this worker's cache holds"
          f" {store._cache.size:,} of {hosts * per_host:,})")  # fmt: skip
    print(f"  all: {sum(rate.values()):.1f} requests/s, {units.writes / seconds:.1f} WCU/s"
          f" ({units.index_writes / seconds:.1f} of them index copies), {units.reads / seconds:.1f} RCU/s")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leases-only", action="store_true", help="only the host leases at fleet scale")
    parser.add_argument("--hosts", type=int, default=5000)
    parser.add_argument("--containers", type=int, default=40, help="per host")
    parser.add_argument("--minutes", type=int, default=120, help="simulated, the first 60 a warm-up")
    args = parser.parse_args()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    if not args.leases_only:
        costs()
    leases(args.hosts, args.containers, args.minutes)


def costs() -> None:
    with mock_aws():
        sdb = SimpleDBStore("bench", region=REGION)
        dynamo = DynamoDBStore("bench", region=REGION, create=True, retention_days=30)
        sdb_meter, dynamo_meter = SimpleDBMeter(sdb), DynamoDBMeter(dynamo)
        print("Each line: the requests one store call (or report) makes; DynamoDB's capacity units computed from item")
        print("sizes (see the module docstring). SimpleDB bills machine time per request, not units.")

        sdb_life, dynamo_life = measure(life(sdb, 1), sdb_meter), measure(life(dynamo, 1), dynamo_meter)
        table("One container's life with its 4 events, reports on one worker", sdb_life, dynamo_life, "whole life")
        cold_sdb = SimpleDBStore("benchcold", region=REGION, cache_size=0)
        cold_dynamo = DynamoDBStore("benchcold", region=REGION, create=True, retention_days=30, cache_size=0)
        table(
            "The same life, each report on another worker (cache_size=0)",
            measure(life(cold_sdb, 2), SimpleDBMeter(cold_sdb)),
            measure(life(cold_dynamo, 2), DynamoDBMeter(cold_dynamo)),
            "whole life",
        )

        fresh_sdb = SimpleDBStore("bench", region=REGION)  # replicas that have not seen these containers
        fresh_dynamo = DynamoDBStore("bench", region=REGION, retention_days=30)
        cold_step = "unchanged resync, worker with empty cache"
        table(
            "A full resync of 50 containers (10 tasks of 5)",
            measure(resync(sdb), sdb_meter)
            + measure(
                [(cold_step, lambda: fresh_sdb.upsert_containers(FLEET, at(720 + sdb.last_seen_resolution)))],
                SimpleDBMeter(fresh_sdb),
            ),
            measure(resync(dynamo), dynamo_meter)
            + measure(
                [(cold_step, lambda: fresh_dynamo.upsert_containers(FLEET, at(720 + dynamo.last_seen_resolution)))],
                DynamoDBMeter(fresh_dynamo, items=dynamo_meter.items),
            ),
        )
        table("Lookups", measure(lookups(sdb), sdb_meter), measure(lookups(dynamo), dynamo_meter))

        ((_, sd),) = measure([("", dynamo.running_containers)], dynamo_meter)
        print(f"  running_containers (/sd/prometheus; 50 running): DynamoDB {sd.requests} requests, {sd.reads:g} RCU")
        life_units = sum((f for _, f in dynamo_life), Figures())
        get_units = measure(lookups(dynamo)[:2], dynamo_meter)
        print(
            "\nTargets: a life <= 9 write units, an unchanged resync on a warm worker 0 writes, a lookup <= 1 read unit"
        )
        print(f"  life: {life_units.writes:g} WCU, of which {life_units.index_writes:g} to indexes;"
              f" lookups: {', '.join(f'{f.reads:g} RCU' for _, f in get_units)}")  # fmt: skip
        print("  (the 'running' index, for service discovery, carries a running container's record: it takes a")
        print("  write when the container starts and stops running and with every write of a running record)")
        cid = container(1, "", 0)["container_id"]
        item = dynamo_meter.items[("C#" + cid[:12], cid)]
        text = len(json.dumps(dynamo.get_container(cid), separators=(",", ":")))
        record_bytes, events_bytes = len(item["r"]["B"]), len(item["ev"]["B"])
        print(f"  item size: a stopped container's record with its 4 events {item_size(item)} bytes: the record's"
              f" JSON ({text} bytes) compressed in {record_bytes}, the events in {events_bytes}")  # fmt: skip
        for store in (sdb, dynamo, cold_sdb, cold_dynamo, fresh_sdb, fresh_dynamo):
            store.close()


if __name__ == "__main__":
    main()
