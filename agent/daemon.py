"""The agent's poll cycle (read, diff, deliver) and the loop around it."""

from __future__ import annotations

import logging
import math
import random
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import requests

from agent import wire
from agent.backoff import Backoff
from agent.config import Config
from agent.credentials import TokenSource
from agent.delivery import Delivery
from agent.diff import diff
from agent.ecs import EcsAgent, EcsUnavailable, Snapshot
from agent.imds import FIELDS, ImdsUnavailable, InstanceMetadata
from agent.outbox import Outbox
from agent.spool import Spool
from agent.tls import verify_with

log = logging.getLogger(__name__)

RECORD_KEYS = ("container_id", "task_id", "task_arn", "known_status", "desired_status")


def utc_now() -> str:
    """The current time as the wire format writes it: ISO 8601, milliseconds, UTC."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Agent:
    """One host's agent: `poll_once()` is a whole cycle; `run()` repeats it until told to stop."""

    def __init__(
        self,
        config: Config,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], str] = utc_now,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        session = session or requests.Session()
        verify_with(session, config.ca_bundle)  # only the server is reached over HTTPS: ECS and IMDS are plain HTTP
        self.clock = clock
        self.now = now
        self.ecs = EcsAgent(session, config.ecs_agent_url, config.ecs_timeout)
        self.imds = InstanceMetadata(session, config.imds_url, config.imds_timeout, clock)
        self.delivery = Delivery(
            session, config.server_url, TokenSource(config.token, config.token_file), config.server_timeout,
            Backoff(config.backoff_base, config.backoff_cap, rng), clock,
        )  # fmt: skip
        self.outbox = Outbox(config.max_containers, config.max_events)
        self.spool = Spool(config.spool_dir) if config.spool_dir else None
        self.snapshot = Snapshot()
        self.host: dict[str, str] = {}
        self._instance = dict.fromkeys(FIELDS, "")
        self._host_name = wire.text(socket.gethostname()) or ""
        self._instance_due = 0.0
        self._instance_warned = False
        self._last_full: float | None = None
        self._ecs_down = False
        self._started = clock()
        # The first report after a start waits a random part of the start window (see Config.start_spread); the
        # host is read meanwhile, so the report is the snapshot of the moment it goes. A stop flushes at once.
        self.first_report_delay = (rng or random.Random()).uniform(0, config.start_window)
        self.delivery.next_attempt = self._started + self.first_report_delay
        self.polls = 0
        self.poll_failures: Counter[str] = Counter()  # by cause, as agent.metrics names them
        if self.spool:
            self._restore(self.spool.load())

    def poll_once(self) -> None:
        """One cycle: read the ECS agent, queue what changed since the last read, deliver what is queued."""
        now = self.clock()
        self.polls += 1
        pending = (len(self.outbox), self.outbox.full)
        queued = False
        if now >= self._instance_due:
            self._read_instance(now)
        try:
            ecs_host, snapshot = self.ecs.read(refresh_host=self._resync_due(now))
        except EcsUnavailable as exc:
            if not self._ecs_down:
                log.warning("cannot read the ECS agent (%s): keeping the last known state, retrying each poll", exc)
            self._ecs_down = True
            self.poll_failures["ecs_agent"] += 1
        else:
            if self._ecs_down:
                log.info("ECS agent readable again")
            self._ecs_down = False
            queued = self._queue(ecs_host, snapshot, now)
        if self.outbox.pending() and self.delivery.due():
            delivered = self.delivery.deliver(self.outbox, self.host)
        else:
            delivered = not self._keepalive_due() or self.delivery.keep_alive(self.outbox, self.host)
        if not delivered:
            self.poll_failures["delivery"] += 1
        if self.spool and (queued or (len(self.outbox), self.outbox.full) != pending):
            self._save()

    def _queue(self, ecs_host: dict[str, str], snapshot: Snapshot, now: float) -> bool:
        """Put the changes from the last snapshot to `snapshot` in the outbox; True if anything was queued."""
        sample_time = self.now()
        host = {**self._instance, **ecs_host, "host_name": self._host_name}
        changes, self.snapshot = diff(self.snapshot, snapshot)
        events = [event for change in changes for event in change.events(sample_time)]
        # A changed host (say, the instance ARN known only after registration) is in every record: resend all.
        resync = self._resync_due(now) or host != self.host
        self.host = host
        if resync:
            records: Any = self.snapshot.containers.values()
            self._last_full = now
        else:
            records = (change.new for change in changes if change.new is not None)
        self.outbox.put(({**record, "sample_time": sample_time} for record in records), events, full=resync)
        return resync or bool(changes)

    def _keepalive_due(self) -> bool:
        """Nothing pending, and nothing delivered for a keep-alive interval: the server would think the host dead."""
        return (
            bool(self.host)
            and not self.outbox.pending()
            and self.delivery.due()
            and self.seconds_since_delivery() >= self.config.keepalive_interval
        )

    def _resync_due(self, now: float) -> bool:
        return self._last_full is None or now - self._last_full >= self.config.resync_interval

    def _read_instance(self, now: float) -> None:
        try:
            self._instance = self.imds.read()
        except ImdsUnavailable as exc:
            if not self._instance_warned:
                log.warning("no instance metadata (%s): instance fields stay empty (expected off EC2)", exc)
            self._instance_warned = True
            self.poll_failures["instance_metadata"] += 1
            self._instance_due = now + self.config.imds_retry_interval
        else:
            self._instance_due = math.inf

    def flush(self, timeout: float) -> None:
        """Try, for at most `timeout` seconds, to deliver what is pending; then save it to the spool."""
        deadline = self.clock() + timeout
        self.delivery.next_attempt = 0.0  # stopping: one more try now, not after the backoff
        connect, read = self.config.server_timeout
        while self.outbox.pending() and (remaining := deadline - self.clock()) > 0:
            if not self.delivery.deliver(self.outbox, self.host, (min(connect, remaining), min(read, remaining))):
                break
        if self.spool:
            self._save()
        if self.outbox.pending():
            log.warning(
                "stopping with %d changes undelivered%s", len(self.outbox),
                " (kept in the spool)" if self.spool else " (lost: no ECS_ID_MAPPER_SPOOL_DIR)",
            )  # fmt: skip

    def run(self, stop: threading.Event) -> None:
        """Poll every interval until `stop` is set, then flush; never raises for anything a poll meets."""
        log.info(
            "reading the ECS agent at %s every %s s, reporting to %s",
            self.config.ecs_agent_url,
            self.config.poll_interval,
            self.delivery.url,
        )
        if self.first_report_delay >= 1:
            log.info(
                "first report in %.0f s (spread after a start: ECS_ID_MAPPER_START_SPREAD)", self.first_report_delay
            )
        if not (self.config.token or self.config.token_file):
            log.warning("ECS_ID_MAPPER_TOKEN is not set: the server refuses reports unless it allows anonymous ones")
        self._cycle()
        while not stop.wait(self.config.poll_interval):
            self._cycle()
        self.flush(self.config.flush_timeout)

    def _cycle(self) -> None:
        try:
            self.poll_once()
        except Exception:  # the last line of defence: a daemon that dies reports nothing at all
            self.poll_failures["error"] += 1
            log.exception("poll failed; trying again next interval")

    def seconds_since_delivery(self) -> float:
        """Since the server last accepted a report, or since the agent started if it never has."""
        last = self.delivery.last_success
        return self.clock() - (self._started if last is None else last)

    def _save(self) -> None:
        assert self.spool is not None
        self.spool.save({"outbox": self.outbox.state(), "snapshot": list(self.snapshot.containers.values())})

    def _restore(self, state: dict[str, Any]) -> None:
        self.outbox.restore(state.get("outbox"))
        records = state.get("snapshot")
        if isinstance(records, list):
            valid = (r for r in records if isinstance(r, dict) and all(isinstance(r.get(k), str) for k in RECORD_KEYS))
            self.snapshot = Snapshot({r["container_id"]: r for r in valid})
        if len(self.outbox) or self.snapshot.containers:
            log.info(
                "spool: %d pending changes, %d known containers",
                len(self.outbox), len(self.snapshot.containers),
            )  # fmt: skip
