"""Container ports and Docker labels from ECS task definitions (DescribeTaskDefinition), learnt off the request
path once per revision (a revision never changes).

``enrich`` gives a report's records, before they are stored, what this process knows of their definitions: the
container's ``docker_labels`` (``{}`` for none) and, on awsvpc with no ports of its own, the ``ports`` it maps;
unknown definitions are queued. ``submit`` queues the records a report created without them, to be written once
known. One worker thread per process takes each definition from its memory, else from the note a replica left in
the store (``Store.get_note``), else from ECS: at most one call per ``min_interval``, failures retried with
backoff. A replica notes its claim before it asks (``Store.put_note``); another that finds a fresh claim waits for
the note, so replicas seeing a new revision at once make one call between them (``bench/taskdef_calls.py``).

The ARN is the record's ``task_definition_arn`` (ECS events name it), else the agent's family and revision
(``task_name``, ``task_version``) under the partition, region and account of its task ARN.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import json
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from server import aws
from server.backoff import Backoff
from server.ecs import EcsClient, EcsError, EcsNotConfigured, EcsNotFound
from server.ecs_events import CONTAINER_NAME, TASK_DEFINITION_ARN
from server.lru import LRU
from server.queue_worker import QueueWorker
from server.store import Record, Store, StoreError

log = logging.getLogger(__name__)

#: Docker labels kept per container, as JSON text: a record is a flat map of bounded strings, and a note (every
#: container of a definition, ten at most) must stay well within what a store keeps under one key (64 KiB).
MAX_LABELS_BYTES = 4096
MAX_PORTS = 100
NOTE_PREFIX = "task-definition/"
#: A replica about to ask ECS notes its claim first; another that finds a claim younger than this waits for the
#: claimer's note (looking again every CLAIM_RECHECK seconds) rather than asking too; an older claim is of a
#: replica that died or failed, and is taken over.
CLAIM_SECONDS = 30.0
CLAIM_RECHECK = 2.0
COMPACT_JSON = json.JSONEncoder(separators=(",", ":"), sort_keys=True)


@dataclass(frozen=True)
class Definition:
    """What the server keeps of one task definition: its network mode and, by container name, what it publishes."""

    network_mode: str = ""
    #: container name → (its ports in the agent's shape, its Docker labels as JSON text)
    containers: dict[str, tuple[tuple[tuple[int, str], ...], str]] = field(default_factory=dict)

    @classmethod
    def described(cls, answer: dict[str, Any]) -> Definition:
        """The part of DescribeTaskDefinition's ``taskDefinition`` the server uses, bounded."""
        containers = {}
        for container in answer.get("containerDefinitions") or []:
            name = container.get("name")
            if not isinstance(name, str) or not CONTAINER_NAME.fullmatch(name):
                continue
            ports = []
            for mapping in (container.get("portMappings") or [])[:MAX_PORTS]:
                port, protocol = mapping.get("containerPort"), mapping.get("protocol") or "tcp"
                if isinstance(port, int) and 0 < port < 65536 and protocol in ("tcp", "udp"):
                    ports.append((port, protocol))
            containers[name] = (tuple(dict.fromkeys(ports)), _labels(name, container.get("dockerLabels")))
        mode = answer.get("networkMode")
        return cls(mode if isinstance(mode, str) else "", containers)

    def note(self, arn: str) -> str:
        return COMPACT_JSON.encode({
            "arn": arn,
            "network_mode": self.network_mode,
            "containers": {name: [list(map(list, ports)), labels] for name, (ports, labels) in self.containers.items()},
        })  # fmt: skip

    @classmethod
    def from_note(cls, text: str, arn: str) -> Definition | None:
        """The definition a replica noted, or None for a note that is not one of ``arn``'s (or unreadable)."""
        try:
            noted = json.loads(text)
            if noted.get("arn") != arn:
                return None
            containers = {
                name: (tuple((int(port), str(protocol)) for port, protocol in ports), str(labels))
                for name, (ports, labels) in noted["containers"].items()
            }
            return cls(str(noted["network_mode"]), containers)
        except (ValueError, TypeError, KeyError, AttributeError):
            return None

    def fields(self, record: Record) -> Record:
        """What this definition adds to ``record``: its container's labels (``{}`` if it has none, or the
        container is not in it: the record is then known to have none) and, on awsvpc, where the task's own
        address serves the container port, its ports when the record has none."""
        ports, labels = self.containers.get(record.get("container_name", ""), ((), "{}"))
        found = {"docker_labels": labels}
        if self.network_mode == "awsvpc" and ports and not record.get("ports"):
            found["ports"] = COMPACT_JSON.encode(
                [{"container_port": port, "host_port": port, "protocol": protocol} for port, protocol in ports]
            )
            found["container_port"] = found["instance_port"] = str(ports[0][0])
        return found


#: The record fields a task definition's ports fill in.
PORT_FIELDS = ("ports", "container_port", "instance_port")

#: What ECS said of a task definition it does not have (deleted, or never in this region): nothing to add.
MISSING = Definition()


def definition_arn(record: Record) -> str:
    """The ARN of the record's task definition, or "" when the record cannot say."""
    arn = record.get("task_definition_arn", "")
    if not arn:
        task_arn, family, revision = (record.get(k, "") for k in ("task_arn", "task_name", "task_version"))
        prefix, found, _ = task_arn.partition(":task/")
        arn = f"{prefix}:task-definition/{family}:{revision}" if found and family and revision else ""
    return arn if TASK_DEFINITION_ARN.fullmatch(arn) else ""


def note_key(arn: str) -> str:
    # An ARN may be longer than a note's key (256 characters): a digest, with the ARN kept in the note itself.
    return NOTE_PREFIX + hashlib.blake2b(arn.encode(), digest_size=16).hexdigest()


def _claim_of(text: str | None, arn: str) -> tuple[str, float] | None:
    """The replica and the (wall-clock) time of a claim noted on ``arn``, or None for no claim."""
    try:
        noted = json.loads(text) if text else None
        if isinstance(noted, dict) and noted.get("arn") == arn and isinstance(noted.get("claim"), str):
            return noted["claim"], float(noted["at"])
    except (ValueError, TypeError, KeyError):
        pass
    return None


def _labels(container: str, labels: Any) -> str:
    """Docker labels as JSON text, within MAX_LABELS_BYTES: those of the first names (sorted) that fit."""
    if not isinstance(labels, dict):
        return "{}"
    kept: dict[str, str] = {}
    size = 2
    for name in sorted(k for k, v in labels.items() if isinstance(k, str) and isinstance(v, str)):
        entry = len(COMPACT_JSON.encode({name: labels[name]}).encode()) - 1  # with its comma, without the braces
        if size + entry > MAX_LABELS_BYTES:
            log.warning("Docker labels of container %s past %d bytes are not kept (from %r on)",
                        container, MAX_LABELS_BYTES, name)  # fmt: skip
            break
        kept[name] = labels[name]
        size += entry
    return COMPACT_JSON.encode(kept)


@dataclass
class Waiting:
    """A task definition to take, and the records (container ID → record as reported) that wait for it."""

    arn: str
    records: dict[str, Record] = field(default_factory=dict)
    attempts: int = 0
    #: Whether this replica claimed it in the notes: it asks ECS when its turn comes, without reading them again.
    claimed: bool = False
    #: Whether another replica's fresh claim holds it back: it looks at the notes again later.
    deferred: bool = False


class TaskDefinitions(QueueWorker):
    """The task definitions this process knows, the queue of those it does not yet, and the worker that learns them."""

    thread_name = "task-definitions"
    failure_message = "task-definition worker failed; continuing"
    logger = log

    def __init__(
        self,
        ecs: EcsClient,
        store: Store,
        *,
        notes: Store | None = None,
        wall_clock: Callable[[], float] = time.time,
        min_interval: float = 1.0,
        base_delay: float = 5.0,
        max_delay: float = 600.0,
        max_attempts: int = 8,
        max_waiting: int = 10_000,
        remembered: int = 2_000,
        clock: Callable[[], float] = time.monotonic,
        autostart: bool = True,
        idle_exit: float = 60.0,
        recheck: float = 3600.0,
        aws_configuration: Callable[[], object] = aws.configuration,
    ):
        self.ecs = ecs
        self.store = store
        self.notes = notes if notes is not None else store  # where every replica finds what one learnt
        self.wall_clock = wall_clock  # what every replica reads alike: the time of a claim
        self.identity = uuid.uuid4().hex  # this replica's, in its claims
        self.min_interval = min_interval
        self.backoff = Backoff(base_delay, max_delay)
        self.max_attempts = max_attempts
        self.max_waiting = max_waiting
        self.clock = clock
        self.autostart = autostart
        self.idle_exit = idle_exit
        self.recheck = recheck
        self._aws_configuration = aws_configuration
        self._known: LRU[str, Definition] = LRU(remembered)
        super().__init__()
        self._waiting: dict[str, Waiting] = {}  # by ARN
        self._due: deque[str] = deque()
        self._retries: list[tuple[float, int, str]] = []
        self._seq = itertools.count()
        self._count = 0  # records waiting, over every definition
        self._dropped = 0
        self._last_call = -float("inf")
        self._last_failure = ""
        self._unusable: tuple[float, object] | None = None
        #: DescribeTaskDefinition calls made, for bench/taskdef_calls.py and the tests.
        self.calls = 0

    # The request side: never waits on ECS or the store.

    def enrich(self, records: Iterable[Record]) -> list[Record]:
        """``records`` with what the task definitions this process knows give them; those it does not know are
        queued to learn."""
        enriched: list[Record] = []
        unknown: list[tuple[str, Record | None]] = []
        for record in records:
            arn = "" if record.get("docker_labels") else definition_arn(record)
            definition = self._known.get(arn) if arn else None
            if definition is not None:
                record = {**record, **definition.fields(record)}
            elif arn:
                unknown.append((arn, None))
                if not record.get("ports"):
                    # Ports this process cannot tell yet: the merge keeps those another replica learnt.
                    record = {k: v for k, v in record.items() if k not in PORT_FIELDS}
            enriched.append(record)
        if unknown:
            self._queue(unknown)
        return enriched

    def submit(self, created: Iterable[Record]) -> int:
        """Queue the records a report created without their task definition's fields, to be written once it is
        known; returns how many were queued."""
        return self._queue([(arn, r) for r in created if not r.get("docker_labels") and (arn := definition_arn(r))])

    def _queue(self, entries: list[tuple[str, Record | None]]) -> int:
        if self._unusable is not None and not self._may_retry():
            return 0
        queued = 0
        with self._cond:
            for arn, record in entries:
                waiting = self._waiting.get(arn)
                if waiting is None:
                    if len(self._waiting) >= self.max_waiting:
                        self._warn_full()
                        continue
                    waiting = self._waiting[arn] = Waiting(arn)
                    self._due.append(arn)
                    queued += record is None
                if record is None or record["container_id"] in waiting.records:
                    continue
                if self._count >= self.max_waiting:
                    self._warn_full()
                    continue
                waiting.records[record["container_id"]] = record
                self._count += 1
                queued += 1
            if queued:
                self._cond.notify_all()
        if queued and self.autostart:
            self._ensure_worker()
        return queued

    def _warn_full(self) -> None:
        self._dropped += 1
        if self._dropped == 1 or self._dropped % 1000 == 0:
            log.warning("task-definition queue full (%d); %d records or definitions dropped, to be taken at their "
                        "next report", self.max_waiting, self._dropped)  # fmt: skip

    # The worker side.

    def run_once(self) -> int:
        """Take every task definition due now, asking ECS about at most one; returns how many were written."""
        now = self.clock()
        with self._cond:
            while self._retries and self._retries[0][0] <= now:
                self._due.append(heapq.heappop(self._retries)[2])
            due = [self._waiting[arn] for arn in self._due if arn in self._waiting]
            self._due.clear()
            self._busy = bool(due)
        written = 0
        later = []
        try:
            for waiting in due:
                definition = self._known.get(waiting.arn) or self._noted(waiting)
                if waiting.deferred:
                    self._look_again(waiting, CLAIM_RECHECK)
                    continue
                if definition is None:
                    if self.clock() - self._last_call < self.min_interval:
                        later.append(waiting.arn)  # one call per interval: a later run asks
                        continue
                    definition = self._describe(waiting)
                if definition is not None:
                    written += self._write(waiting, definition)
        finally:
            with self._cond:
                self._due.extend(later)
            with self._cond:
                self._busy = False
                self._cond.notify_all()
        return written

    def _noted(self, waiting: Waiting) -> Definition | None:
        """What a replica noted of the definition, remembered. None when none has: then this replica claims it (and
        asks ECS when its turn comes), unless another claimed it lately (``waiting.deferred``: look again later)."""
        waiting.deferred = False
        if waiting.claimed:
            return None
        key = note_key(waiting.arn)
        try:
            text = self.notes.get_note(key)
        except StoreError as exc:
            log.warning("could not read the note of task definition %s: %s", waiting.arn, exc)
            text = None
        definition = None if text is None else Definition.from_note(text, waiting.arn)
        if definition is not None:
            self._known.put(waiting.arn, definition)
            return definition
        claim = _claim_of(text, waiting.arn)
        now = self.wall_clock()
        if claim is not None and claim[0] != self.identity and 0 <= now - claim[1] < CLAIM_SECONDS:
            waiting.deferred = True
            return None
        waiting.claimed = True
        try:
            self.notes.put_note(key, COMPACT_JSON.encode({"arn": waiting.arn, "claim": self.identity, "at": now}))
        except StoreError as exc:  # asked all the same; another replica may ask too
            log.warning("could not note the claim of task definition %s: %s", waiting.arn, exc)
        return None

    def _look_again(self, waiting: Waiting, delay: float) -> None:
        with self._cond:
            heapq.heappush(self._retries, (self.clock() + delay, next(self._seq), waiting.arn))

    def _describe(self, waiting: Waiting) -> Definition | None:
        """Ask ECS; the definition (MISSING if ECS has none), or None to retry (or to give up on)."""
        self._last_call = self.clock()
        self.calls += 1
        try:
            definition = Definition.described(self.ecs.describe_task_definition(waiting.arn))
        except EcsNotConfigured as exc:
            self._give_up(exc)
            return None
        except EcsNotFound as exc:
            log.info("task definition %s: %s; its records get no labels", waiting.arn, exc)
            definition = MISSING
        except EcsError as exc:
            self._warn_once("DescribeTaskDefinition failed for %s: %s", waiting.arn, exc)
            self._retry(waiting)
            return None
        self._last_failure = ""
        self._known.put(waiting.arn, definition)
        try:
            self.notes.put_note(note_key(waiting.arn), definition.note(waiting.arn))
        except StoreError as exc:  # the records still get it; other replicas may ask ECS once more
            log.warning("could not note task definition %s: %s", waiting.arn, exc)
        return definition

    def _write(self, waiting: Waiting, definition: Definition) -> int:
        """Write the definition's fields onto every record that waited for it; how many were written."""
        with self._cond:
            records = list(waiting.records.values())
        written = 0
        for record in records:
            try:
                self.store.update_container(record["container_id"], definition.fields(record))
            except StoreError as exc:
                log.warning("could not write the task definition of %s: %s", record["container_id"], exc)
                self._retry(waiting)
                return written
            with self._cond:
                waiting.records.pop(record["container_id"], None)
                self._count -= 1
            written += 1
        with self._cond:
            if not waiting.records:
                self._waiting.pop(waiting.arn, None)
            else:  # reports queued more meanwhile: the next run writes them, the definition known by now
                self._due.append(waiting.arn)
        return written

    def _retry(self, waiting: Waiting) -> None:
        waiting.attempts += 1
        if waiting.attempts >= self.max_attempts:
            log.warning("gave up on task definition %s after %d attempts", waiting.arn, waiting.attempts)
            self._forget(waiting)
            return
        due = self.clock() + self.backoff.delay(waiting.attempts)
        with self._cond:
            heapq.heappush(self._retries, (due, next(self._seq), waiting.arn))

    def _forget(self, waiting: Waiting) -> None:
        with self._cond:
            if self._waiting.pop(waiting.arn, None) is not None:
                self._count -= len(waiting.records)

    def _give_up(self, exc: EcsNotConfigured) -> None:
        """ECS cannot be asked at all: drop everything waiting and queue nothing until the configuration changes."""
        self._warn_once("task definitions are off until the AWS configuration changes: %s", exc)
        self._unusable = (self.clock(), self._aws_configuration())
        with self._cond:
            self._waiting.clear()
            self._due.clear()
            self._retries.clear()
            self._count = 0

    # The thread (server.queue_worker): while more is due, wait until min_interval after the last call.

    def _has_work(self) -> bool:
        return bool(self._due)

    def _pause_after(self, asked: int) -> float:
        return max(0.0, self._last_call + self.min_interval - self.clock()) if self._due else 0.0

    def waiting(self) -> int:
        """How many records wait for their task definition."""
        with self._cond:
            return self._count
