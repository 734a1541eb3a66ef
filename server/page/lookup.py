"""What a search finds: the records the understood input names, read from the store with the same lookups the
query routes make (one read for an exact container ID, as ``/query/container_id/<id>/_all``), and, when nothing
matches, why."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from server import addresses
from server.page import classify as kinds
from server.page.classify import Understood
from server.page.wording import newest_running_first
from server.record_links import as_shown
from server.state import state
from server.store import Record
from server.validation import ValidationError

#: The most records a list shows; a prefix lookup asks the store for one more, to tell that there are more.
SHOWN = 200


@dataclass
class Answer:
    """A search's outcome: the records found (as shown, running and newest first), or the holdings of an address;
    ``opens`` names the one view to go to (``("container", id)`` or ``("task", id)``) when there is one."""

    understood: Understood
    records: list[dict] = field(default_factory=list)
    #: Each holding of the address with its record as shown.
    holdings: list[tuple[addresses.Holding, dict]] = field(default_factory=list)
    opens: tuple[str, str] | None = None
    #: Why nothing matched, in words; "" when something did.
    nothing: str = ""
    #: What a person should know about the list (partial, only running containers…).
    note: str = ""
    more: bool = False


def search(understood: Understood) -> Answer:
    """Look ``understood`` up in the store."""
    kind = understood.kind
    if kind == kinds.EMPTY:
        return Answer(understood)
    if kind == kinds.MALFORMED:
        return Answer(understood, nothing=f"Malformed: {understood.problem}.")
    reader = _READERS[kind]
    return reader(understood)


def _containers(understood: Understood) -> Answer:
    store = state().store
    if understood.kind in (kinds.CONTAINER_ID, kinds.RUNTIME_ID):
        record = store.get_container(understood.value)
        if record is None:
            return Answer(understood, nothing=not_on_record(f"no container with ID {understood.value}"))
        return Answer(understood, [record], opens=("container", understood.value))
    found = store.find_containers(understood.value, limit=SHOWN + 1)
    if not found:
        return Answer(understood, nothing=not_on_record(f"no container ID starts with {understood.value}"))
    if len(found) == 1:
        return Answer(understood, found, opens=("container", found[0]["container_id"]))
    return _listed(understood, found, note="Several containers' IDs start with this: give more digits to pick one.")


def _task_or_prefix(understood: Understood) -> Answer:
    if state().store.statuses_of_task(understood.value):
        return Answer(understood, opens=("task", understood.value))
    return _containers(understood)


def _task(understood: Understood) -> Answer:
    if state().store.statuses_of_task(understood.value):
        return Answer(understood, opens=("task", understood.value))
    return Answer(understood, nothing=not_on_record(f"no task with ID {understood.value}"))


def _running(understood: Understood, matches: Callable[[Record], bool], what: str) -> Answer:
    found = [r for r in state().store.running_containers() if matches(r)]
    note = f"Only running containers are searched by {what}: the record keeps no index of stopped ones by it."
    if not found:
        return Answer(understood, nothing=f"No running container on record has this {what}. {note}")
    if len(found) == 1 and understood.kind == kinds.DOCKER_NAME_KIND:
        return Answer(understood, found, opens=("container", found[0]["container_id"]))
    return _listed(understood, found, note=note)


def _docker_name(understood: Understood) -> Answer:
    return _running(understood, lambda r: r.get("docker_name") == understood.value, "Docker name")


def _instance(understood: Understood) -> Answer:
    app_state = state()
    held = addresses.on_host(app_state.store, understood.value, leases=app_state.leases.current())
    if not held:
        return Answer(understood, nothing=not_on_record(f"no container ran on instance {understood.value}"))
    by_container = {h.record["container_id"]: h.record for h in held}  # a container may hold several addresses
    return _listed(understood, list(by_container.values()))


def _name(understood: Understood) -> Answer:
    name = understood.value
    if understood.extra.get("only") == "service":
        return _running(understood, lambda r: r.get("service_name") == name, "service name")
    return _running(understood, lambda r: name in (r.get("cluster_name"), r.get("service_name")), "name")


def _service(understood: Understood) -> Answer:
    cluster = understood.extra["cluster"]
    found = state().store.containers_of_service(cluster, understood.value)
    if not found:
        what = f"no container of service {understood.value} in cluster {cluster}"
        return Answer(understood, nothing=not_on_record(what) + " Service names are learnt from ECS after a report.")
    return _listed(understood, found)


def _address(understood: Understood) -> Answer:
    app_state = state()
    try:
        port = int(understood.extra["port"]) if "port" in understood.extra else None
        held = addresses.holdings(app_state.store, understood.value, port=port, leases=app_state.leases.current())
    except ValidationError as exc:
        return Answer(understood, nothing=f"Malformed: {exc}.")
    if not held:
        return Answer(understood, nothing=not_on_record(f"no container on record held {understood.value}"))
    shown = as_shown([h.record for h in held])
    return Answer(understood, holdings=list(zip(held, shown, strict=True)))


def _listed(understood: Understood, found: list[Record], note: str = "") -> Answer:
    ordered = newest_running_first(as_shown(found))
    more = len(ordered) > SHOWN
    if more:
        note = f"{note} Showing the first {SHOWN}.".strip()
    return Answer(understood, ordered[:SHOWN], note=note, more=more)


def not_on_record(what: str) -> str:
    """Why a well-formed ID matches nothing, in words: never reported here, or pruned after the retention."""
    days = state().config.retention_days
    kept = f"records are kept {days:g} days after a container was last seen" if days else "records are kept forever"
    return f"Not on record: {what}. Either it was never reported to this server, or it was pruned ({kept})."


_READERS: dict[str, Callable[[Understood], Answer]] = {
    kinds.CONTAINER_ID: _containers,
    kinds.RUNTIME_ID: _containers,
    kinds.CONTAINER_PREFIX: _containers,
    kinds.TASK_ID_OR_PREFIX: _task_or_prefix,
    kinds.TASK_ID: _task,
    kinds.TASK_ARN_KIND: _task,
    kinds.DOCKER_NAME_KIND: _docker_name,
    kinds.INSTANCE: _instance,
    kinds.NAME: _name,
    kinds.SERVICE: _service,
    kinds.ADDRESS: _address,
}
