"""The EC2 instance behind each ECS container instance (its ID and private IPv4 address), learnt off the request
path once per container instance ARN for the life of the deployment: an instance never changes under its ARN.

An ECS event of an EC2 task names its container instance, not its EC2 instance, so a container the feed alone
knows on bridge or host networking has its host ports but no address to reach them at (``instance_ip``). The ECS
event route and the feed hand their records to ``ContainerInstances.enrich`` before they are stored: a record whose
container instance this process knows gains ``instance_ip`` and ``ec2_instance_id``; one it does not know is
queued to learn, and after the store took the records ``submit`` queues those still without an address, written
once it is known. One worker thread per process takes each container instance once: from this process's memory,
else from the note any replica left in the store (``Store.get_note``), else from ECS (``DescribeContainerInstances``,
up to 100 of one cluster a call) and EC2 (``DescribeInstances``, the same batch): at most one such round per
``min_interval``, failures retried with backoff, what it learnt noted (``Store.put_note``) for every replica.
Unlike task definitions there is no claim: a round costs the same for one instance as for a hundred, so replicas
that meet a new instance at the same moment may each ask once, and none again.

A record an agent reported (``instance_id``, ``instance_ip``) is never written: the agent's values win. The EC2
instance ID goes in ``ec2_instance_id``, not ``instance_id``: ``server.liveness`` takes a record with an
``instance_id`` (or ``host_name``) for an agent's, kept alive by its host's lease, and a record of the feed must stay
ended by the feed's own STOPPED, not lost for want of an agent that never ran.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from server import aws
from server.backoff import Backoff
from server.ecs import DESCRIBE_BATCH, EcsError, EcsNotConfigured, EcsNotFound
from server.ecs_events import CONTAINER_INSTANCE_ARN
from server.lru import LRU
from server.queue_worker import QueueWorker
from server.store import Record, Store, StoreError

log = logging.getLogger(__name__)

NOTE_PREFIX = "container-instance/"
#: The fields an agent's report sets for its host: a record with either is not the feed's to fill.
AGENT_FIELDS = ("instance_id", "instance_ip")


class Ecs(Protocol):
    def describe_container_instances(self, cluster: str, arns: list[str]) -> tuple[list[dict], list[dict]]: ...


class Ec2(Protocol):
    def private_addresses(self, instance_ids: list[str]) -> dict[str, str]: ...


@dataclass(frozen=True)
class Instance:
    """What the server keeps of one container instance: its EC2 instance ID and private IPv4 address."""

    instance_id: str = ""
    address: str = ""

    def fields(self) -> Record:
        found = {"ec2_instance_id": self.instance_id, "instance_ip": self.address}
        return {name: value for name, value in found.items() if value}

    def note(self, arn: str) -> str:
        return json.dumps({"arn": arn, "instance_id": self.instance_id, "address": self.address}, sort_keys=True)

    @classmethod
    def from_note(cls, text: str, arn: str) -> Instance | None:
        """The instance a replica noted, or None for a note that is not ``arn``'s (or unreadable)."""
        try:
            noted = json.loads(text)
            if noted.get("arn") != arn:
                return None
            return cls(str(noted["instance_id"]), str(noted["address"]))
        except (ValueError, TypeError, KeyError, AttributeError):
            return None


#: What ECS said of a container instance it does not have (deregistered long ago, or of another region): nothing.
MISSING = Instance()


def instance_arn(record: Record, stored: Mapping[str, Record] | None = None) -> str:
    """The container instance ARN of a record that needs its address (no agent's host fields, in the record nor in
    ``stored``, container ID → the record as on file), else ""."""
    arn = record.get("container_instance_arn", "")
    if not arn or not CONTAINER_INSTANCE_ARN.fullmatch(arn):
        return ""
    on_file = (stored or {}).get(record.get("container_id", "")) or {}
    if any(record.get(name) or on_file.get(name) for name in AGENT_FIELDS):
        return ""
    return arn


def cluster_of(arn: str, record: Record) -> str:
    """The cluster to ask about ``arn``: named in its long form (``…:container-instance/CLUSTER/ID``), else the
    record's."""
    path = arn.partition(":container-instance/")[2]
    return path.split("/")[0] if "/" in path else record.get("cluster_name", "")


def note_key(arn: str) -> str:
    # An ARN may be longer than a note's key (256 characters): a digest, with the ARN kept in the note itself.
    return NOTE_PREFIX + hashlib.blake2b(arn.encode(), digest_size=16).hexdigest()


def _ec2_id(value: Any) -> str:
    # An external instance (ECS Anywhere) answers a managed instance ID ("mi-…"): no EC2 instance to ask about.
    return value if isinstance(value, str) and value.startswith("i-") else ""


def _resource_id(arn: str) -> str:
    # ECS may answer an instance under either ARN form: the ID alone is the same in both.
    return arn.rsplit("/", 1)[-1]


@dataclass
class Waiting:
    """A container instance to take, its cluster, and the records (container ID → record) that wait for it."""

    arn: str
    cluster: str
    records: dict[str, Record] = field(default_factory=dict)
    attempts: int = 0


class ContainerInstances(QueueWorker):
    """The container instances this process knows, the queue of those it does not yet, and the worker that learns
    them."""

    thread_name = "container-instances"
    failure_message = "container-instance worker failed; continuing"
    logger = log

    def __init__(
        self,
        ecs: Ecs,
        ec2: Ec2,
        store: Store,
        *,
        notes: Store | None = None,
        min_interval: float = 1.0,
        base_delay: float = 5.0,
        max_delay: float = 600.0,
        max_attempts: int = 8,
        max_waiting: int = 10_000,
        remembered: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
        autostart: bool = True,
        idle_exit: float = 60.0,
        recheck: float = 3600.0,
        aws_configuration: Callable[[], object] = aws.configuration,
    ):
        self.ecs = ecs
        self.ec2 = ec2
        self.store = store
        self.notes = notes if notes is not None else store  # where every replica finds what one learnt
        self.min_interval = min_interval
        self.backoff = Backoff(base_delay, max_delay)
        self.max_attempts = max_attempts
        self.max_waiting = max_waiting
        self.clock = clock
        self.autostart = autostart
        self.idle_exit = idle_exit
        self.recheck = recheck
        self._aws_configuration = aws_configuration
        self._known: LRU[str, Instance] = LRU(remembered)
        super().__init__()
        self._waiting: dict[str, Waiting] = {}  # by ARN
        self._due: deque[str] = deque()
        self._retries: list[tuple[float, int, str]] = []
        self._seq = itertools.count()
        self._count = 0  # records waiting, over every instance
        self._last_call = -float("inf")
        self._last_failure = ""
        self._unusable: tuple[float, object] | None = None
        #: Rounds of DescribeContainerInstances (each with its DescribeInstances) made, for the tests.
        self.calls = 0

    # The request side: never waits on AWS or the store.

    def enrich(self, records: Iterable[Record], stored: Mapping[str, Record] | None = None) -> list[Record]:
        """``records`` with the address of each one's container instance, where this process knows it and neither
        the record nor its stored form (``stored``: container ID → record) has an agent's; the container instances
        it does not know are queued to learn."""
        enriched: list[Record] = []
        unknown: list[tuple[str, str, Record | None]] = []
        for record in records:
            arn = instance_arn(record, stored)
            instance = self._known.get(arn) if arn else None
            if instance is not None:
                record = {**record, **instance.fields()}
            elif arn:
                unknown.append((arn, cluster_of(arn, record), None))
            enriched.append(record)
        if unknown:
            self._queue(unknown)
        return enriched

    def submit(self, records: Iterable[Record], stored: Mapping[str, Record] | None = None) -> int:
        """Queue the stored records still without an address, to be written once their container instance is
        known; returns how many were queued."""
        return self._queue([
            (arn, cluster_of(arn, r), r) for r in records if (arn := instance_arn(r, stored))
        ])  # fmt: skip

    def _queue(self, entries: list[tuple[str, str, Record | None]]) -> int:
        if self._unusable is not None and not self._may_retry():
            return 0
        queued = 0
        with self._cond:
            for arn, cluster, record in entries:
                waiting = self._waiting.get(arn)
                if waiting is None:
                    if len(self._waiting) >= self.max_waiting or not cluster:
                        continue
                    waiting = self._waiting[arn] = Waiting(arn, cluster)
                    self._due.append(arn)
                    queued += record is None
                if record is None or record["container_id"] in waiting.records or self._count >= self.max_waiting:
                    continue
                waiting.records[record["container_id"]] = record
                self._count += 1
                queued += 1
            if queued:
                self._cond.notify_all()
        if queued and self.autostart:
            self._ensure_worker()
        return queued

    # The worker side.

    def run_once(self) -> int:
        """Take every container instance due now, asking AWS about at most one batch (one cluster's, up to 100);
        returns how many records were written."""
        now = self.clock()
        with self._cond:
            while self._retries and self._retries[0][0] <= now:
                self._due.append(heapq.heappop(self._retries)[2])
            due = [self._waiting[arn] for arn in dict.fromkeys(self._due) if arn in self._waiting]
            self._due.clear()
            self._busy = bool(due)
        written = 0
        unknown: list[Waiting] = []
        later: list[Waiting] = []
        try:
            for waiting in due:
                instance = self._known.get(waiting.arn) or self._noted(waiting.arn)
                if instance is None:
                    unknown.append(waiting)
                else:
                    written += self._write(waiting, instance)
            later = unknown
            if unknown and self.clock() - self._last_call >= self.min_interval:
                batch = [w for w in unknown if w.cluster == unknown[0].cluster][:DESCRIBE_BATCH]
                asked = {w.arn for w in batch}
                later = [w for w in unknown if w.arn not in asked]
                for waiting, instance in self._describe(batch):
                    written += self._write(waiting, instance)
        finally:
            with self._cond:
                self._due.extend(w.arn for w in later)  # one round per interval: a later run asks
                self._busy = False
                self._cond.notify_all()
        return written

    def _noted(self, arn: str) -> Instance | None:
        try:
            text = self.notes.get_note(note_key(arn))
        except StoreError as exc:
            log.warning("could not read the note of container instance %s: %s", arn, exc)
            return None
        instance = None if text is None else Instance.from_note(text, arn)
        if instance is not None:
            self._known.put(arn, instance)
        return instance

    def _describe(self, batch: list[Waiting]) -> list[tuple[Waiting, Instance]]:
        """Ask ECS, then EC2, about one cluster's batch: what they answered, by container instance (MISSING for one
        ECS does not have); the others are retried (or given up on)."""
        self._last_call = self.clock()
        self.calls += 1
        cluster = batch[0].cluster
        try:
            try:
                found, failures = self.ecs.describe_container_instances(cluster, [w.arn for w in batch])
            except EcsNotFound as exc:  # the cluster is gone, and its instances with it
                log.info("container instances of cluster %s: %s; their records get no address", cluster, exc)
                found, failures = [], [{"arn": w.arn, "reason": "MISSING"} for w in batch]
            ec2_ids = {
                _resource_id(str(answer.get("containerInstanceArn"))): _ec2_id(answer.get("ec2InstanceId"))
                for answer in found
            }
            wanted = sorted({i for i in ec2_ids.values() if i})
            addresses = self.ec2.private_addresses(wanted) if wanted else {}
        except EcsNotConfigured as exc:
            self._give_up(exc)
            return []
        except EcsError as exc:
            self._warn_once("DescribeContainerInstances or DescribeInstances failed for cluster %s: %s", cluster, exc)
            for waiting in batch:
                self._retry(waiting)
            return []
        self._last_failure = ""
        missing = {_resource_id(str(f.get("arn"))) for f in failures if f.get("reason") == "MISSING"}
        learnt = []
        for waiting in batch:
            key = _resource_id(waiting.arn)
            if key in ec2_ids:
                instance = Instance(ec2_ids[key], addresses.get(ec2_ids[key], ""))
            elif key in missing:
                instance = MISSING
            else:  # neither found nor missing (an unexpected failure): asked again later
                self._retry(waiting)
                continue
            self._known.put(waiting.arn, instance)
            try:
                self.notes.put_note(note_key(waiting.arn), instance.note(waiting.arn))
            except StoreError as exc:  # the records still get it; other replicas may ask once more
                log.warning("could not note container instance %s: %s", waiting.arn, exc)
            learnt.append((waiting, instance))
        return learnt

    def _write(self, waiting: Waiting, instance: Instance) -> int:
        """Write the instance's fields onto every record that waited for it, where its stored form has none of an
        agent's; how many were written."""
        with self._cond:
            records = list(waiting.records)
        written = 0
        fields = instance.fields()
        for container_id in records:
            try:
                on_file = self.store.get_container(container_id) if fields else None
                if on_file is not None and not any(on_file.get(name) for name in AGENT_FIELDS):
                    self.store.update_container(container_id, {k: v for k, v in fields.items() if not on_file.get(k)})
                    written += 1
            except StoreError as exc:
                log.warning("could not write the address of %s: %s", container_id, exc)
                self._retry(waiting)
                return written
            with self._cond:
                waiting.records.pop(container_id, None)
                self._count -= 1
        with self._cond:
            if not waiting.records:
                self._waiting.pop(waiting.arn, None)
            else:  # reports queued more meanwhile: the next run writes them, the instance known by now
                self._due.append(waiting.arn)
        return written

    def _retry(self, waiting: Waiting) -> None:
        waiting.attempts += 1
        if waiting.attempts >= self.max_attempts:
            log.warning("gave up on container instance %s after %d attempts", waiting.arn, waiting.attempts)
            with self._cond:
                if self._waiting.pop(waiting.arn, None) is not None:
                    self._count -= len(waiting.records)
            return
        due = self.clock() + self.backoff.delay(waiting.attempts)
        with self._cond:
            heapq.heappush(self._retries, (due, next(self._seq), waiting.arn))

    def _give_up(self, exc: EcsNotConfigured) -> None:
        """AWS cannot be asked at all: drop everything waiting and queue nothing until the configuration changes."""
        self._warn_once("container instance addresses are off until the AWS configuration changes: %s", exc)
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
        """How many records wait for their container instance's address."""
        with self._cond:
            return self._count
