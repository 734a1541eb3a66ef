"""Records and events in the shape the schema hands them to a store, as the store tests know them; they live in
``testkit.records``, where the benchmarks find them too."""

from __future__ import annotations

from testkit.records import FARGATE_TASK, OTHER_TASK, T0, TASK, at, cid, event, feed_record, record, runtime_id

__all__ = ["FARGATE_TASK", "OTHER_TASK", "T0", "TASK", "at", "cid", "event", "feed_record", "record", "runtime_id"]
