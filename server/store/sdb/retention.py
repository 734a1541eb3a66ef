"""The SimpleDB store's retention: records not seen for long, found by a Select and deleted on a condition, with
what only they kept (their task's index and event log, their service's entry)."""

from __future__ import annotations

from server.store.base import Record
from server.store.sdb import hosts, items
from server.store.sdb.client import Refused, quoted
from server.store.sdb.heartbeats import Heartbeats
from server.store.sdb.records import Held, unchanged_since


class Retention(Heartbeats):
    """``prune``: expired records out, and the index entries and event logs that only they needed."""

    def prune(self, limit: int) -> int:
        """Expired records are found by one consistent ``Select`` on the plain ``last_seen`` attribute of record
        items; each is read again and deleted on a condition on its revision, so a report that lands meanwhile
        keeps it. A task whose last record went takes its task index, its event log and its service entry along.
        """
        if not self.retention:
            return 0
        self._ready_to_use()
        cutoff = self.cutoff()
        names = self._select_names(f"{items.LAST_SEEN} < {quoted(cutoff)}", max(1, min(limit, 2500)))
        gone = [record for record in self.pool.map(lambda n: self._delete_expired(n, cutoff), names) if record]
        tasks = {r.get("task_id", ""): r for r in gone}
        self.pool.map(lambda task: self._forget_task(*task), list(tasks.items()))
        return len(gone)

    def _delete_expired(self, item: str, cutoff: str) -> Record | None:
        """Delete the record in ``item`` if it is still expired; the record deleted, or None."""
        attrs = self._get("containers", item)
        record = items.record_from(attrs)
        if record is None or record.get("last_seen", "") >= cutoff:
            return None
        key = hosts.host_key(record)
        if key and record.get("known_status") == "RUNNING":
            alive = self._read_beat(key).alive(record)
            if alive["last_seen"] >= cutoff:
                # Its host still reports it. Storing the last_seen the heartbeat gives it keeps the next prune's
                # Select from finding it again (a lost race means someone just wrote it: fresh too).
                bucket, slot = items.slot_of(item)
                self._save([(Held.read(record, bucket, slot, attrs), alive)])
                return None
        expected = unchanged_since(attrs.get(items.REVISION))
        # Slot 0 keeps its slot count: the other slots of the bucket stay where readers look for them.
        # (botocore's model wants each pair's value, though SimpleDB would take names alone)
        names = [{"Name": name, "Value": value} for name, value in attrs.items() if name != items.SLOTS]
        try:
            self._delete("containers", item, names, expected)
        except Refused:
            return None  # written since it was read: reported again, so not expired
        self._cache.drop(record["container_id"])
        return record

    def _forget_task(self, task_id: str, record: Record) -> None:
        """Once no record of a task is left, delete its index and event log and its entry in its service."""
        if any(held.record for held in self._of_tasks([task_id])):
            return
        for domain in ("indexes", "events"):
            family = self._read_families(domain, [items.task_family(task_id)])[items.task_family(task_id)]
            for shard in range(len(family.shards)):
                self._delete(domain, items.shard_item(family.name, shard))
        if record.get("service_name"):
            name = items.service_family(record.get("cluster_name", ""), record["service_name"])
            family = self._read_families("indexes", [name])[name]
            for shard, attrs in enumerate(family.shards):
                if items.key(task_id) in attrs:
                    entry = [{"Name": items.key(task_id), "Value": attrs[items.key(task_id)]}]
                    self._delete("indexes", items.shard_item(name, shard), entry)
