"""What the stores on AWS (SimpleDB, DynamoDB) share: URL options, a client made again after a fork, botocore's
errors said as store errors, a fork-safe pool, and upserts by read, merge and conditional write."""

from __future__ import annotations

import logging
import os
import threading
from abc import abstractmethod
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from datetime import datetime
from typing import Any, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError

from server import aws, records
from server.flags import parse_bool
from server.lru import LRU
from server.store.base import Record, Store, StoreUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


def number(store: str, name: str, value: object, kind: type) -> Any:
    """A URL option as a non-negative number; ValueError naming the option otherwise."""
    try:
        parsed = kind(value)
    except (TypeError, ValueError):
        raise ValueError(f"{store} store option {name}={value!r} is not a number") from None
    if parsed < 0 or parsed != parsed:
        raise ValueError(f"{store} store option {name}={value!r} must not be negative")
    return parsed


def flag(store: str, name: str, value: str) -> bool:
    """A URL option as a bool (``true``, ``false``, ``1``, ``0``, …); ValueError naming the option otherwise."""
    try:
        return parse_bool(value)
    except ValueError as exc:
        raise ValueError(f"{store} store option {name}: {exc}") from None


def client_config(store: str, max_attempts: object, connect_timeout: object, read_timeout: object, pool: int) -> Config:
    """botocore's settings: standard retry mode (throttling and 5xx retried with backoff), bounded timeouts."""
    return Config(
        retries={"mode": "standard", "total_max_attempts": max(1, number(store, "max_attempts", max_attempts, int))},
        connect_timeout=number(store, "connect_timeout", connect_timeout, float),
        read_timeout=number(store, "read_timeout", read_timeout, float),
        max_pool_connections=pool,
    )


class Pool:
    """Runs requests side by side on a bounded thread pool, made again after a fork (gunicorn workers)."""

    def __init__(self, size: int, name: str):
        self.size = size
        self.name = name
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._executor: ThreadPoolExecutor | None = None

    def map(self, work: Callable[[T], R], inputs: Sequence[T]) -> list[R]:
        """``work`` over ``inputs``; waits for all, then raises the first failure."""
        if len(inputs) <= 1:
            return [work(x) for x in inputs]
        with self._lock:
            if self._executor is None or self._pid != os.getpid():
                self._executor = ThreadPoolExecutor(self.size, thread_name_prefix=self.name)
                self._pid = os.getpid()
            executor = self._executor
        futures = [executor.submit(work, x) for x in inputs]
        wait(futures)
        return [f.result() for f in futures]

    def close(self) -> None:
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None and self._pid == os.getpid():
            executor.shutdown(wait=True)


def worth_writing(stored: Record, new: Record, last_seen_resolution: float) -> bool:
    """Whether ``new`` differs from ``stored`` by more than a ``last_seen`` younger than the resolution (seconds).

    Keeping a recent ``last_seen`` instead of moving it makes an unchanged resync cost no write.
    """
    if new == stored:
        return False
    if {**new, "last_seen": ""} != {**stored, "last_seen": ""}:
        return True
    try:
        age = datetime.fromisoformat(new["last_seen"]) - datetime.fromisoformat(stored["last_seen"])
    except (KeyError, ValueError):
        return True
    return age.total_seconds() >= last_seen_resolution


def changed_beyond_liveness(stored: Record, new: Record) -> bool:
    """Whether ``new`` differs from ``stored`` by more than when it was last sampled and seen (``sample_time``,
    ``last_seen``): what a heartbeat carries for a running container."""
    return {**new, "last_seen": "", "sample_time": ""} != {**stored, "last_seen": "", "sample_time": ""}


def new_client(service: str, region: str | None, endpoint_url: str | None, config: Config) -> Any:
    """A boto3 client; a missing region or a malformed endpoint is the store URL's fault, said as ValueError."""
    try:
        return boto3.session.Session().client(
            service, region_name=aws.region(region), endpoint_url=endpoint_url, config=config
        )
    except BotoCoreError as exc:
        raise ValueError(f"{service} store: {exc} (add ?region=REGION to the store URL)") from exc


class MergingStore(Store):
    """Upserts for stores whose writes are conditional on what was read: read (or remember), merge, write; a
    writer that lost a race reads again and merges again, ``MERGE_TRIES`` times, then fails with 503.

    A backend supplies ``_cached_or_read_held`` (records as remembered, else read), ``_read_held`` (records as
    read now) and ``_save`` (conditional writes; the IDs that lost). Their values are held copies with a ``record``
    attribute, None for a container not stored yet.
    """

    #: Merges of one report tried against a record that keeps changing under it before the report fails (503).
    MERGE_TRIES = 5
    last_seen_resolution: float = 0.0

    @abstractmethod
    def _ready_to_use(self) -> None: ...

    @abstractmethod
    def _cached_or_read_held(self, container_ids: list[str]) -> dict[str, Any]: ...

    @abstractmethod
    def _read_held(self, container_ids: list[str]) -> dict[str, Any]: ...

    @abstractmethod
    def _save(self, changes: list[tuple[Any, Record]]) -> set[str]: ...

    def upsert_containers(self, records_: Iterable[Record], now: str) -> list[Record]:
        return self._upsert(records_, now)

    def _upsert(
        self,
        records_: Iterable[Record],
        now: str,
        carried: Collection[str] = (),
        read: Mapping[str, Any] | None = None,
        written: list[tuple[Record | None, Record]] | None = None,
    ) -> list[Record]:
        """``upsert_containers``, where a running container in ``carried`` (IDs whose liveness a heartbeat keeps)
        is written only if more than its ``last_seen`` and ``sample_time`` changed, and ``read`` holds copies the
        caller has just read in a batch, merged against instead of reading or remembering. Each record written is
        appended to ``written`` as (the record it replaced, or None; the record written), for
        ``server.records.untold``."""
        self._ready_to_use()
        reports: dict[str, list[Record]] = {}
        for entry in records_:
            reports.setdefault(entry["container_id"], []).append(entry)
        if not reports:
            return []
        created: list[Record] = []
        given = {cid: held for cid, held in (read or {}).items() if cid in reports}
        known = {**self._cached_or_read_held([cid for cid in reports if cid not in given]), **given}
        for attempt in range(self.MERGE_TRIES):
            if attempt:  # another writer changed these since they were read (or remembered): read them again
                known = self._read_held(list(reports))
            changes, first = self._merged(reports, known, now, carried)
            lost = self._save(changes)
            created += [record for cid, record in first.items() if cid not in lost]
            if written is not None:
                written += [(held.record, record) for held, record in changes if record["container_id"] not in lost]
            if not lost:
                return created
            reports = {cid: entries for cid, entries in reports.items() if cid in lost}
        raise StoreUnavailable("records kept changing under this report; try again")

    def _merged(
        self, reports: dict[str, list[Record]], known: dict[str, Any], now: str, carried: Collection[str] = ()
    ) -> tuple[list[tuple[Any, Record]], dict[str, Record]]:
        """The records worth writing after merging each container's entries, and the new ones as first merged."""
        changes: list[tuple[Any, Record]] = []
        first: dict[str, Record] = {}
        for cid, entries in reports.items():
            held = known[cid]
            record = held.record
            for entry in entries:
                record = records.merge(record, entry, now)
                if held.record is None and cid not in first:
                    first[cid] = record
            assert record is not None
            beating = cid in carried and record.get("known_status") == "RUNNING"
            if held.record is None or (
                changed_beyond_liveness(held.record, record)
                if beating
                else worth_writing(held.record, record, self.last_seen_resolution)
            ):
                changes.append((held, record))
        return changes, first

    def _set_fields(self, load: Callable[[], Iterable[Any]], fields: Record) -> None:
        """Set ``fields`` on the records ``load`` reads, reading again those another writer changed meanwhile."""
        self._rewrite(load, lambda record: {**record, **fields}, f"setting {sorted(fields)}")

    def _rewrite(self, load: Callable[[], Iterable[Any]], change: Callable[[Record], Record], what: str) -> None:
        """Write ``change(record)`` for each record ``load`` reads that it changes, reading again those another
        writer changed meanwhile."""
        for _ in range(self.MERGE_TRIES):
            changes = [(held, change(held.record)) for held in load() if held.record]
            if not self._save([(held, new) for held, new in changes if new != held.record]):
                return
        raise StoreUnavailable(f"records kept changing while {what}; try again")


def reject_unknown(store: str, unknown: Mapping[str, object]) -> None:
    """ValueError naming the URL options a store does not take."""
    if unknown:
        raise ValueError(f"unknown {store} store option(s): {', '.join(sorted(unknown))}")


def error_code(exc: ClientError) -> str:
    """The code of an error answer (``ConditionalCheckFailed``, ``ResourceNotFoundException``, …)."""
    return exc.response.get("Error", {}).get("Code", "")


class AwsStore(MergingStore):
    """A merging store on one AWS service through boto3: the options every such store takes, its client (made again
    in a process forked after it was made, as gunicorn's workers are), requests whose failures are
    ``StoreUnavailable``, a bounded pool for requests side by side, and the records it last read or wrote.

    A backend names its ``service`` (boto3's name, also the URL scheme) and ``title``, calls ``connect`` from its
    constructor, makes its client in ``_new_client`` (in the module that makes its requests, so that the
    service's name stands beside them), and says in ``_refused`` what it makes of the error answers it expects.
    """

    #: boto3's name of the service, also the store's URL scheme.
    service: str
    #: The service's name in messages.
    title: str

    def connect(
        self,
        region: str | None,
        endpoint_url: str | None,
        *,
        max_workers: int | str,
        connect_timeout: float | str,
        read_timeout: float | str,
        max_attempts: int | str,
        last_seen_resolution: float | str,
        cache_size: int | str,
    ) -> None:
        """Take the options every AWS store shares (numbers as the store URL gives them: text) and make the client.

        ``region`` and ``endpoint_url`` go straight to boto3. ``max_workers``: requests side by side (and the
        client's connections). ``max_attempts`` counts the first try. ``cache_size``: records this process
        remembers to merge the next report against without a read (0: none).
        """
        self.region = region or None
        self.endpoint_url = endpoint_url or None
        self.max_workers = max(1, number(self.service, "max_workers", max_workers, int))
        self.last_seen_resolution = number(self.service, "last_seen_resolution", last_seen_resolution, float)
        self.config = client_config(self.service, max_attempts, connect_timeout, read_timeout, self.max_workers)
        self._cache: LRU[str, Any] = LRU(number(self.service, "cache_size", cache_size, int))
        self.pool = Pool(self.max_workers, self.service)
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._ready = False
        self.client = self._new_client()

    def start(self) -> None:
        """Get the service ready (``_ready_to_use``); one that does not answer yet is tried again by the next call."""
        try:
            self._ready_to_use()
        except StoreUnavailable as exc:
            # The process still starts: /health answers 503 and the next call tries again.
            log.warning("%s not reachable at start, will retry: %s", self.title, exc)

    @abstractmethod
    def _new_client(self) -> Any:
        """The service's client (``new_client``), made at start and again in a forked process."""

    def _forked(self) -> None:
        # A client made before gunicorn forked is not safe to use in the worker (the pool sees to itself).
        if self._pid != os.getpid():
            with self._lock:
                if self._pid != os.getpid():
                    self.client, self._pid = self._new_client(), os.getpid()

    def _call(self, operation: str, **params: Any) -> dict[str, Any]:
        """One request; an error answer the store expects as ``_refused`` raises it, any other failure as
        StoreUnavailable."""
        try:
            return getattr(self.client, operation)(**params)
        except ClientError as exc:
            self._refused(operation, error_code(exc), exc)
            raise StoreUnavailable(f"{self.title} {operation} failed: {exc}") from exc
        except (BotoCoreError, ResponseParserError) as exc:  # an answer that is not the service's format too
            raise StoreUnavailable(f"{self.title} {operation} failed: {exc}") from exc

    @abstractmethod
    def _refused(self, operation: str, code: str, exc: ClientError) -> None:
        """Raise what the store makes of the error answer ``code`` to ``operation``; return for a failure."""

    def _cached_or_read_held(self, container_ids: list[str]) -> dict[str, Any]:
        """Records as this process last saw them where it remembers them, else as read now.

        Only writes use it: a stale copy costs a refused conditional write, after which ``_read_held`` reads.
        """
        hits = {c: held for c in container_ids if (held := self._cache.get(c)) is not None}
        return {**hits, **self._read_held([c for c in container_ids if c not in hits])}

    def close(self) -> None:
        self.pool.close()
        self.client.close()
