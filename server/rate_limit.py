"""The bound on how many map reports one token may send: no more than its hosts' agents could. Past it, 429 with
Retry-After. Kept per server process, so only approximate across workers and replicas.

The bound: each host a token reported for within the last ten minutes allows ECS_ID_MAPPER_REPORTS_PER_HOST_MINUTE
reports a minute (600; an agent sends one a poll, every 5 s by default, ten a poll while it drains a backlog), and a
token counts at most ECS_ID_MAPPER_HOSTS_PER_TOKEN hosts, so hosts made up in its reports cannot raise it without
end. A token bucket per token name holds up to one minute's allowance, so a burst the size of a minute's is taken
at once. Tokens are told apart by ``flask.g.token_name``, which authentication sets; reports sent without a named
token share the bucket of ``""``.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from flask import Flask, current_app, g

from server import liveness
from server.errors import ApiError

log = logging.getLogger(__name__)

#: The key of the limiter in ``app.extensions``.
EXTENSION = "ecs_id_mapper.rate_limit"
#: A host counts towards its token's allowance for this long after its last report (an agent reports at least once
#: a minute while it runs).
HOST_WINDOW = 600.0


class TooManyReports(ApiError):
    status = 429


@dataclass
class Bucket:
    level: float
    updated: float
    hosts: dict[str, float] = field(default_factory=dict)  # host key → when it last reported
    pruned: float = 0.0


class ReportLimiter:
    """Token buckets by token name, each filled at ``per_host_minute`` reports a minute for every host its token
    reported for lately (at most ``max_hosts`` of them). Thread-safe: gunicorn's threads share it."""

    def __init__(
        self,
        per_host_minute: float,
        max_hosts: int,
        clock: Callable[[], float] = time.monotonic,
        host_window: float = HOST_WINDOW,
    ) -> None:
        self.per_host_minute = per_host_minute
        self.max_hosts = max_hosts
        self.clock = clock
        self.host_window = host_window
        self._buckets: dict[str, Bucket] = {}
        self._lock = threading.Lock()
        self._warned: dict[str, float] = {}  # token name → when its refusals were last logged

    def admit(self, token_name: str, host: str) -> float | None:
        """None when the report may go ahead (and is counted); else the seconds until it may."""
        now = self.clock()
        with self._lock:
            bucket = self._buckets.get(token_name)
            if bucket is None:
                bucket = self._buckets[token_name] = Bucket(level=0.0, updated=now, pruned=now)
            self._forget_quiet_hosts(bucket, now)
            if host in bucket.hosts or len(bucket.hosts) < self.max_hosts:
                if host not in bucket.hosts:
                    bucket.level += self.per_host_minute  # each host brings a minute's allowance with it
                bucket.hosts[host] = now
            hosts = max(1, len(bucket.hosts))
            rate = self.per_host_minute * hosts / 60.0  # reports a second
            capacity = self.per_host_minute * hosts
            bucket.level = min(capacity, bucket.level + (now - bucket.updated) * rate)
            bucket.updated = now
            if bucket.level >= 1.0:
                bucket.level -= 1.0
                return None
            return (1.0 - bucket.level) / rate

    def _forget_quiet_hosts(self, bucket: Bucket, now: float) -> None:
        # A tenth of the window apart: a walk over thousands of hosts on every report would cost more than it saves.
        if now - bucket.pruned < self.host_window / 10:
            return
        bucket.pruned = now
        for key in [k for k, seen in bucket.hosts.items() if now - seen > self.host_window]:
            del bucket.hosts[key]

    def should_log(self, token_name: str) -> bool:
        """Whether a refusal of ``token_name`` is worth a log line: once a minute per token, not once a report."""
        now = self.clock()
        with self._lock:
            if now - self._warned.get(token_name, -math.inf) < 60.0:
                return False
            self._warned[token_name] = now
            return True

    def allowance(self, token_name: str) -> float:
        """Reports a minute the token may send now (for logs and tests)."""
        with self._lock:
            bucket = self._buckets.get(token_name)
            return self.per_host_minute * max(1, len(bucket.hosts) if bucket else 0)


def init_app(app: Flask, per_host_minute: float, max_hosts: int) -> None:
    """Give ``app`` its limiter; a ``per_host_minute`` of 0 turns the bound off."""
    app.extensions[EXTENSION] = ReportLimiter(per_host_minute, max_hosts) if per_host_minute > 0 else None


def check_report(host: Mapping[str, str]) -> None:
    """Count a map report from ``host`` (its ``host`` fields) against the sending token's bound; TooManyReports (429
    with Retry-After) past it."""
    limiter: ReportLimiter | None = current_app.extensions.get(EXTENSION)
    if limiter is None:
        return
    token_name = g.get("token_name", "")
    wait = limiter.admit(token_name, liveness.host_key(host))
    if wait is None:
        return
    seconds = max(1, math.ceil(wait))
    if limiter.should_log(token_name):
        # The token's name only, never its value.
        log.warning(
            "token %r sends more reports than its hosts could (%g a minute): refusing them with 429",
            token_name, limiter.allowance(token_name),
        )  # fmt: skip
    raise TooManyReports(
        f"too many reports for this token: at most {limiter.per_host_minute:g} a minute for each of its hosts; "
        f"try again in {seconds} s",
        headers={"Retry-After": str(seconds)},
        retry_after=seconds,
    )
