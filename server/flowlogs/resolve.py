"""Who held a flow's addresses: the server's bulk form asked once per address, its holdings kept, and each flow's
time and port matched against their intervals here, so that a cached answer is exact at every edge of a life."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import requests

#: The most questions one request may ask (the server's ``MAX_QUESTIONS``).
BATCH = 1000
#: What a side of a flow shows, and the holding fields they come from.
SHOWN = (("task", "task_id"), ("container", "container_name"), ("service", "service_name"), ("cluster", "cluster_name"))
#: IANA protocol numbers of the protocols a port mapping names.
PROTOCOLS = {6: "tcp", 17: "udp"}
NO_HOLDER = "no holder on record"
NOT_PUBLISHED = "an instance address, and no container published the port"


class ServerError(Exception):
    """The server could not be asked, or refused the whole request."""


@dataclass(frozen=True)
class Side:
    """One end of a flow as resolved: the holders' fields (several joined with ``,`` when holdings overlap), or why
    there is none."""

    shown: dict[str, str] | None
    why: str = ""


@lru_cache(maxsize=65536)
def stored_time(seconds: int) -> str:
    """Seconds since 1970 in the record's time format, which sorts as times do."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


class Resolver:
    """Asks ``server`` (its base URL) about addresses in batches over keep-alive sessions, one per thread."""

    def __init__(
        self,
        server: str,
        token: str = "",
        *,
        parallel: int = 2,
        timeout: float = 60.0,
        session: Callable[[], requests.Session] = requests.Session,
    ):
        self.url = server.rstrip("/") + "/query/ip"
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.timeout = timeout
        self.parallel = parallel
        self.held: dict[str, list[dict[str, Any]]] = {}
        #: Addresses the server refused, with its message.
        self.refused: dict[str, str] = {}
        self.requests = 0
        self._session = session
        self._local = threading.local()
        self._pool = ThreadPoolExecutor(parallel) if parallel > 1 else None

    def close(self) -> None:
        if self._pool:
            self._pool.shutdown()

    def learn(self, wanted: Iterable[str]) -> None:
        """Ask about every address in ``wanted`` not asked about yet."""
        new = [a for a in dict.fromkeys(wanted) if a not in self.held and a not in self.refused]
        batches = [new[i : i + BATCH] for i in range(0, len(new), BATCH)]
        answered = self._pool.map(self.ask, batches) if self._pool and len(batches) > 1 else map(self.ask, batches)
        for batch, answers in zip(batches, answered, strict=True):
            for address, answer in zip(batch, answers, strict=True):
                if "holdings" in answer:
                    self.held[address] = answer["holdings"]
                else:
                    self.refused[address] = answer.get("message", "refused")

    def ask(self, batch: list[str]) -> list[dict[str, Any]]:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = self._session()
        body = {"questions": [{"address": address} for address in batch]}
        try:
            response = session.post(self.url, json=body, headers=self.headers, timeout=self.timeout)
        except requests.RequestException as exc:
            raise ServerError(f"cannot ask {self.url}: {exc}") from None
        self.requests += 1
        if response.status_code != 200:
            raise ServerError(f"{self.url} answered {response.status_code}: {response.text[:200].strip()}")
        answers: list[dict[str, Any]] = response.json()["answers"]
        if len(answers) != len(batch):
            raise ServerError(f"{self.url} answered {len(answers)} of {len(batch)} questions")
        return answers

    def side(self, address: str, port: int | None, protocol: int | None, seconds: int) -> Side:
        """Who held ``address`` at ``seconds`` (since 1970) for a flow on ``port``."""
        if address in self.refused:
            return Side(None, f"refused by the server: {self.refused[address]}")
        holdings = self.held.get(address)
        if not holdings:
            return Side(None, NO_HOLDER)
        moment = stored_time(seconds)
        now = [h for h in holdings if h["from"] <= moment and (h["to"] is None or moment <= h["to"])]
        if not now:
            return Side(None, NO_HOLDER)
        on_task = [h for h in now if h["via"] == "task"]
        # On an instance address only the port says whose the flow was (its host port); a task's address is the
        # task's on every port, and the port (its container port) only says which of its containers.
        published = [h for h in now if publishes(h, port, protocol)]
        chosen = [h for h in on_task if h in published] or on_task or published
        if not chosen:
            return Side(None, NOT_PUBLISHED)
        return Side({shown: joined(chosen, field) for shown, field in SHOWN})


def publishes(holding: dict[str, Any], port: int | None, protocol: int | None) -> bool:
    if port is None:
        return False
    key = "container_port" if holding["via"] == "task" else "host_port"
    wanted = PROTOCOLS.get(protocol) if protocol is not None else None
    return any(
        mapping.get(key) == port and (wanted is None or mapping.get("protocol", "tcp") == wanted)
        for mapping in holding.get("ports") or ()
    )


def joined(holdings: list[dict[str, Any]], field: str) -> str:
    """The holders' values of ``field``, each once, newest first; ``-`` when none has one."""
    return ",".join(dict.fromkeys(h.get(field) or "-" for h in holdings)) or "-"
