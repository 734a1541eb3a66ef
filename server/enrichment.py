"""What outside lookups teach a record, ``service_name`` (ECS) and ``newrelic_url`` (New Relic), and the one
place that writes them: the only writes a query may cause, besides the reports' own."""

from __future__ import annotations

from collections.abc import Mapping

from server.metrics import NEWRELIC_LOOKUPS
from server.newrelic import NewRelicClient
from server.store import Record, Store


def store_service_name(store: Store, task_id: str, name: str, records: list[Record] | None = None) -> list[Record]:
    """Write ``name`` as the service of every record of a task; returns ``records`` as they now are.

    The rule: a name the task's own ECS group gave stays; otherwise ECS's answer is written. The service-name
    worker reads the group itself and passes no ``records``; a query that found the task in ECS's listing of a
    service passes the task's records as read, and they learn the name only when none has one yet.
    """
    if records is not None and any(r.get("service_name") for r in records):
        return records
    store.update_task(task_id, {"service_name": name})
    return [{**r, "service_name": name} for r in records or []]


def store_service_names(store: Store, names: Mapping[str, str]) -> None:
    """Write the service names the service-name worker learnt from the tasks' ECS groups: task ID → name, in one
    store write where the backend can."""
    store.update_tasks({task_id: {"service_name": name} for task_id, name in names.items()})


def store_newrelic_url(store: Store, newrelic: NewRelicClient, record: Record) -> str:
    """The container's New Relic application-instance URL, looked up once and then cached in its record."""
    try:
        url = newrelic.instance_url(record["container_id"][:12])
    except Exception:
        NEWRELIC_LOOKUPS.labels("error").inc()
        raise
    NEWRELIC_LOOKUPS.labels("ok").inc()
    store.update_container(record["container_id"], {"newrelic_url": url})
    return url
