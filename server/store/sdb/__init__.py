"""The AWS SimpleDB store: every lookup by ID is a consistent GetAttributes by name; only retention (records not seen
for long) and the running containers (for service discovery) are found with a Select.

Three domains, ``PREFIX.containers``, ``PREFIX.indexes`` and ``PREFIX.events`` (layout in ``items``):

- a container's record lives in the bucket item named by its 12-hex short ID (slot 0), or in slot item
  ``SHORT/N`` when other containers share that short ID, so a full ID or a 12-hex prefix costs one read;
- ``indexes`` holds ``task/TASK`` (the task's container IDs) and ``service/DIGEST`` (the service's task IDs);
- a container's events live in its record item and go out in the record's own conditional put; ``events`` holds
  ``task/TASK``, the task's event log, for the events that cannot (see ``record_report``), and is read with them.

Sets and logs that can grow are sharded families: shard 0 says how many shards there are.

Concurrency and cost: every record write is a PutAttributes conditional on the record's revision (``!rev``) as
read, so replicas that merge the same container at once never lose a change: the loser re-reads and re-merges.
Because of that, each process may remember (a bounded LRU) the records it last read or wrote and merge a later
report against that copy without reading: a stale copy only costs a refused write and a re-read. Entries that
hardly ever fill an item (a container in its task's index: ECS allows 10 per task) are put into shard 0
without reading the family first; only when SimpleDB refuses the put (item full, or the family has more
shards) is the family read. Helpers named ``_read_*`` always read SimpleDB; ``_cached_or_read_held``, on the
write path only, is the one that consults the cache, so lookups answer the same on every replica. Details and
request costs: docs/simpledb.md.

The store is built in layers, each a module that adds to the one before: ``client`` (requests), ``records``
(record items and index families), ``events``, ``leases`` (hosts' leases), ``heartbeats`` (hosts' full reports),
``retention`` and ``notes``; ``SimpleDBStore`` on top opens it and answers the lookups. ``items`` and ``hosts``
lay strings out in items.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable

from server.lru import LRU
from server.store.aws_store import reject_unknown
from server.store.base import Record
from server.store.sdb import addresses, items
from server.store.sdb.client import DOMAINS
from server.store.sdb.notes import Notes

__all__ = ["SimpleDBStore"]

#: Hosts whose last lease renewal each process remembers (about 100 bytes each).
RENEWALS_REMEMBERED = 20_000


class SimpleDBStore(Notes):
    """The store on SimpleDB domains that share a prefix; each lookup by ID reads items by name."""

    kind = "sdb"

    def __init__(
        self,
        prefix: str,
        region: str | None = None,
        endpoint_url: str | None = None,
        *,
        max_workers: int | str = 8,
        connect_timeout: float | str = 2.0,
        read_timeout: float | str = 5.0,
        max_attempts: int | str = 3,
        last_seen_resolution: float | str = 300.0,
        cache_size: int | str = 10_000,
        retention_days: float = 0,
        clock: Callable[[], float] | None = None,
        **unknown: str,
    ):
        """Open the store whose domains start with ``prefix``; create the missing ones.

        ``region`` and ``endpoint_url`` go straight to boto3 (which also reads ``AWS_REGION`` and
        ``AWS_ENDPOINT_URL_SIMPLEDB``). ``max_attempts`` counts the first try; throttling and 5xx answers are
        retried with botocore's standard mode. ``last_seen_resolution`` (seconds): an otherwise unchanged record is
        rewritten only when its ``last_seen`` is older than this, so that a resync costs reads only.
        ``cache_size``: records this process remembers to merge the next report against without a read (0: none).
        ``retention_days``: see ``Store.prune`` (0: keep everything).
        """
        reject_unknown("sdb", unknown)
        self.keep_for(retention_days, clock)
        self.domains = {name: f"{prefix}.{name}" for name in DOMAINS}
        for domain in self.domains.values():
            if not re.fullmatch(r"[A-Za-z0-9_.-]{3,255}", domain):
                raise ValueError(f"sdb store prefix {prefix!r} makes an invalid domain name {domain!r}")
        self.connect(
            region,
            endpoint_url,
            max_workers=max_workers,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            max_attempts=max_attempts,
            last_seen_resolution=last_seen_resolution,
            cache_size=cache_size,
        )
        self._beats = LRU(min(self._cache.size, 4096))
        self._renewals = LRU(RENEWALS_REMEMBERED)
        self._families_seen = LRU(4096)
        self.start()

    def get_container(self, container_id: str) -> Record | None:
        self._ready_to_use()
        found = self._read_records([container_id])
        record = found[container_id].record if container_id in found else None
        return self._alive([record])[0] if record else None

    def find_containers(self, prefix: str, limit: int) -> list[Record]:
        if not items.is_prefix(prefix):
            raise ValueError(f"expected a container ID or a prefix of at least 12 characters, got {prefix!r}")
        self._ready_to_use()
        (slot_attrs,) = self._read_buckets([prefix[:12]]).values()
        found = [r for r in map(items.record_from, slot_attrs) if r and r.get("container_id", "").startswith(prefix)]
        return self._alive(sorted(found, key=lambda r: r["container_id"])[:limit])

    def running_containers(self) -> list[Record]:
        # No item name leads to the running containers: a Select finds them. Their last_seen is as stored, not
        # as their hosts' heartbeats carry it (service discovery shows neither it nor sample_time).
        self._ready_to_use()
        found = []
        for _, attrs in self._select_items(f"{items.RECORD_STATUS} = 'RUNNING'"):
            record = items.record_from(attrs)
            if record and record.get("known_status") == "RUNNING":
                found.append(record)
        return found

    def address_holders(self, key: str, at: str | None, limit: int) -> list[Record]:
        # One consistent Select on the records' own index attribute, newest start first (``sdb.addresses``),
        # followed page by page (SimpleDB pages at 1 MB) until ``limit`` records came.
        self._ready_to_use()
        query = addresses.select_expression(self.domains["containers"], key, at, max(1, min(limit, 2500)))
        params = {"SelectExpression": query, "ConsistentRead": True}
        found: dict[str, Record] = {}
        while len(found) < limit:
            answer = self._call("select", **params)
            for item in answer.get("Items", []):
                record = items.record_from({a["Name"]: a["Value"] for a in item.get("Attributes", [])})
                if record is not None:
                    found.setdefault(record["container_id"], record)
            if not answer.get("NextToken"):
                break
            params["NextToken"] = answer["NextToken"]
        return self._alive(list(found.values())[:limit])

    def _records_of_tasks(self, task_ids: Iterable[str]) -> list[Record]:
        return self._alive([held.record for held in self._of_tasks(task_ids) if held.record])

    def containers_of_task(self, task_id: str) -> list[Record]:
        self._ready_to_use()
        found = self._records_of_tasks([task_id])
        return sorted(found, key=lambda r: (r.get("container_name", ""), r["container_id"]))

    def containers_of_service(self, cluster_name: str, service_name: str) -> list[Record]:
        self._ready_to_use()
        family = items.service_family(cluster_name, service_name)
        tasks = [json.loads(v) for v in self._read_families("indexes", [family])[family].entries.values()]
        found = [
            record
            for record in self._records_of_tasks(tasks)
            if record.get("cluster_name", "") == cluster_name and record.get("service_name", "") == service_name
        ]
        return sorted(found, key=lambda r: (r.get("task_id", ""), r.get("container_name", ""), r["container_id"]))

    def update_container(self, container_id: str, fields: Record) -> None:
        self._ready_to_use()
        self._set_fields(lambda: self._read_records([container_id]).values(), fields)

    def update_task(self, task_id: str, fields: Record) -> None:
        self._ready_to_use()
        self._set_fields(lambda: self._of_tasks([task_id]), fields)
