"""Delivering the outbox to the server's `POST /report/map`, with capped, jittered backoff after failures."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import requests

from agent.backoff import Backoff, retry_after
from agent.credentials import TokenSource
from agent.outbox import Batch, Outbox
from agent.wire import MAX_BODY_BYTES

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5  # for answers that retrying might fix but probably will not (404, 409, a redirect…)
MAX_REQUESTS_PER_CYCLE = 10  # after an outage, drain this many reports per poll at most
BAD_BODY = (400, 413, 422)  # the server will never take this body: drop it rather than block what follows
MIN_BODY_BYTES = 64 * 1024  # the smallest report size to fall back to when the server says 413
# Servers close idle keep-alive connections on their own schedule (gunicorn after 2 s by default), and a report
# sent on one at that moment is reset, not retried. Below this idle time, a pooled connection is reused.
MAX_IDLE_REUSE = 1.0


class Delivery:
    """Sends what the outbox holds, one report per request, and keeps the time of the next attempt."""

    def __init__(
        self,
        session: requests.Session,
        server_url: str,
        token: str | TokenSource,
        timeout: tuple[float, float],
        backoff: Backoff,
        clock: Callable[[], float] = time.monotonic,
        max_idle_reuse: float = MAX_IDLE_REUSE,
    ) -> None:
        self.session = session
        self.url = server_url.rstrip("/") + "/report/map"
        self.headers = {"Content-Type": "application/json"}
        self.token = token if isinstance(token, TokenSource) else TokenSource(token)
        self._refused_token: str | None = None  # the token of the last 401 or 403
        self.timeout = timeout
        self.backoff = backoff
        self.clock = clock
        self.next_attempt = 0.0
        self.max_idle_reuse = max_idle_reuse
        self._last_request: float | None = None
        self.max_body = MAX_BODY_BYTES  # lowered when the server's body limit turns out smaller
        self._attempts = 0  # of the batch at the head of the outbox, for answers not worth retrying forever
        self._failing = False
        self.last_success: float | None = None  # by clock: when the server last accepted a report
        self.dropped_events = 0  # in reports the server refused for good

    def due(self) -> bool:
        # A token refused, then replaced (its file rotated): no need to wait out the backoff to try the new one.
        if self._refused_token is not None and self.token.current() != self._refused_token:
            return True
        return self.clock() >= self.next_attempt

    def deliver(self, outbox: Outbox, host: dict[str, str], timeout: tuple[float, float] | None = None) -> bool:
        """Send pending reports until the outbox is empty or an attempt fails; False if one failed."""
        for _ in range(MAX_REQUESTS_PER_CYCLE):
            if not outbox.pending() or not self.due():
                break
            if not self._send(outbox, outbox.take(host, self.max_body), timeout or self.timeout):
                return False
        return True

    def keep_alive(self, outbox: Outbox, host: dict[str, str]) -> bool:
        """Send a report of no changes (``outbox`` is empty), which renews the host's lease on the server."""
        return self._send(outbox, outbox.take(host, self.max_body), self.timeout)

    def _send(self, outbox: Outbox, batch: Batch, timeout: tuple[float, float]) -> bool:
        """One attempt; False when it failed and the next must wait for the backoff."""
        if self._last_request is not None and self.clock() - self._last_request >= self.max_idle_reuse:
            self.session.close()  # drops the pooled connections; the next request opens a new one
        token = self.token.current()
        headers = {**self.headers, "Authorization": f"Bearer {token}"} if token else self.headers
        try:
            response = self.session.post(
                self.url, data=batch.body, headers=headers, timeout=timeout, allow_redirects=False
            )
        except requests.RequestException as exc:
            self._retry(f"{exc.__class__.__name__}: {exc}")
            return False
        finally:
            self._last_request = self.clock()
        code = response.status_code
        self._refused_token = token if code in (401, 403) else None
        if 200 <= code < 300:
            outbox.remove(batch)
            self.backoff.reset()
            self._attempts = 0
            self.last_success = self.clock()
            if self._failing:
                log.info("server %s reachable again", self.url)
            self._failing = False
            log.debug("reported %d containers, %d events", len(batch.containers), len(batch.events))
            return True
        reason = f"HTTP {code}: {response.text[:300]}"
        if code in (401, 403):
            # Not the data's fault: keep it, and keep saying so until someone fixes the token.
            log.error(
                "server %s refused the report (%s): check ECS_ID_MAPPER_TOKEN(_FILE) against the server's tokens",
                self.url, reason,
            )  # fmt: skip
            self._retry(reason, quiet=True)
            return False
        if code == 413 and len(batch.containers) + len(batch.events) > 1 and self.max_body > MIN_BODY_BYTES:
            self.max_body = max(MIN_BODY_BYTES, len(batch.body) // 2)
            log.warning(
                "server %s refused a %d-byte report as too large: sending smaller ones", self.url, len(batch.body)
            )
            return True  # nothing failed for good: the same changes go again, in smaller reports
        if code in BAD_BODY:
            self._drop(outbox, batch, reason)
            return True
        if code in (408, 429) or code >= 500:
            self._retry(reason, retry_after(response.headers.get("Retry-After")))
            return False
        self._attempts += 1
        if self._attempts >= MAX_ATTEMPTS:
            self._drop(outbox, batch, f"{reason}, {self._attempts} times")
            return True
        self._retry(reason, retry_after(response.headers.get("Retry-After")))
        return False

    def _retry(self, reason: str, wait: float | None = None, quiet: bool = False) -> None:
        delay = self.backoff.next_delay(wait)
        self.next_attempt = self.clock() + delay
        if not self._failing and not quiet:
            log.warning("cannot report to %s (%s): keeping the changes, retrying with backoff", self.url, reason)
        else:
            log.debug("report to %s failed again (%s); next attempt in %.1f s", self.url, reason, delay)
        self._failing = True

    def _drop(self, outbox: Outbox, batch: Batch, reason: str) -> None:
        log.error(
            "server %s rejected a report (%s): dropping %d container states and %d events",
            self.url, reason, len(batch.containers), len(batch.events),
        )  # fmt: skip
        outbox.remove(batch)
        self.dropped_events += len(batch.events)
        self._attempts = 0
        self.backoff.reset()
        self.next_attempt = 0.0
