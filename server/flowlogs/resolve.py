"""Who held a flow's addresses: the server's bulk form asked once per address, its holdings kept, and each flow's
time and port matched against their intervals here, so that a cached answer is exact at every edge of a life."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import requests

#: The most questions one request may ask (the server's ``MAX_QUESTIONS``).
BATCH = 1000
#: The most holdings the server reads for one question (``server.addresses.LIMIT``): an address with this many may
#: have older holders the answer left out, so its flows are asked about one moment at a time.
CUT = 200
#: What a side of a flow shows, and the holding fields they come from.
SHOWN = (("task", "task_id"), ("container", "container_name"), ("service", "service_name"), ("cluster", "cluster_name"))
#: IANA protocol numbers of the protocols a port mapping names.
PROTOCOLS = {6: "tcp", 17: "udp"}
NO_HOLDER = "no holder on record"
NOT_PUBLISHED = "an instance address, and no container published the port"


class ServerError(Exception):
    """The server could not be asked, or refused the whole request."""


class Side(NamedTuple):
    """One end of a flow as resolved: the holders' fields (several joined with ``,`` when holdings overlap) as a
    map and as the words a record gets, or why there is none."""

    shown: dict[str, str] | None
    text: str = " ".join("-" for _ in SHOWN)
    why: str = ""


class Holder(NamedTuple):
    """A holding as the resolver matches it: its interval in milliseconds since 1970 (``until`` OPEN while it
    holds), how it was held, the (port, protocol) pairs it published there, and its side ready to write."""

    since: int
    until: int
    on_task: bool
    ports: frozenset[tuple[int, str]]
    side: Side


#: Later than every time the record writes.
OPEN = 1 << 62
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MILLISECOND = timedelta(milliseconds=1)
NOBODY = Side(None, why=NO_HOLDER)
UNPUBLISHED = Side(None, why=NOT_PUBLISHED)
NO_ADDRESS = Side(None, why="no address in the record")
NO_FLOW = Side(None)


def side_of(holding: dict[str, Any]) -> Side:
    """What a record gets for this holder. A value is one word in the record: "-" for none, spaces made "_"."""
    shown = {name: "_".join(str(holding.get(field) or "-").split()) or "-" for name, field in SHOWN}
    return Side(shown, " ".join(shown.values()))


def joined(sides: list[Side]) -> Side:
    """Several holders of one moment: each field's values once, newest first, joined with ``,``."""
    shown = {name: ",".join(dict.fromkeys(s.shown[name] for s in sides if s.shown)) for name, _ in SHOWN}
    return Side(shown, " ".join(shown.values()))


def holder(holding: dict[str, Any]) -> Holder:
    """``holding`` as the server answers it; ValueError saying what is wrong when it is not in that shape."""
    try:
        on_task = holding["via"] == "task"
        key = "container_port" if on_task else "host_port"
        mappings = [m for m in holding.get("ports") or () if isinstance(m, dict)]
        ports = frozenset((m[key], m.get("protocol") or "tcp") for m in mappings if m.get(key))
        since, until = millis(holding["from"]), millis(holding["to"]) if holding["to"] else OPEN
        return Holder(since, until, on_task, ports, side_of(holding))
    except (KeyError, TypeError, AttributeError):
        raise ValueError("a holding without its interval or how it was held") from None


def millis(moment: str) -> int:
    """A time as the record writes it (``2026-11-20T08:00:00.000Z``) in milliseconds since 1970."""
    try:
        parsed = datetime.fromisoformat(moment)
    except ValueError:
        raise ValueError("a holding whose interval is not made of times") from None
    return ((parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)) - EPOCH) // MILLISECOND


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
        self.held: dict[str, list[Holder]] = {}
        #: Addresses whose answer may have left older holders out, and their holders asked moment by moment.
        self.cut: set[str] = set()
        self.at_moment: dict[tuple[str, int], list[Holder]] = {}
        #: Addresses the server refused, with its message.
        self.refused: dict[str, str] = {}
        #: Holdings in answers the tool could not read, by what was wrong with them.
        self.malformed: Counter[str] = Counter()
        self.requests = 0
        #: Seconds spent waiting for answers (those of requests in flight together counted once).
        self.waited = 0.0
        self.session_factory = session
        self._local = threading.local()
        self._pool = ThreadPoolExecutor(parallel) if parallel > 1 else None

    def close(self) -> None:
        if self._pool:
            self._pool.shutdown()

    def learn(self, wanted: Iterable[str]) -> None:
        """Ask about every address in ``wanted`` not asked about yet: all its holdings."""
        new = [a for a in dict.fromkeys(wanted) if a not in self.held and a not in self.refused]
        for address, answer in zip(new, self.answers([{"address": a} for a in new]), strict=True):
            if "holdings" in answer:
                self.held[address] = self.holders(answer)
                if isinstance(answer["holdings"], list) and len(answer["holdings"]) >= CUT:
                    self.cut.add(address)
            else:
                self.refused[address] = str(answer.get("message", "refused"))

    def learn_moments(self, wanted: Iterable[tuple[str, int]]) -> None:
        """Ask about the (address, seconds) in ``wanted`` whose address's answer was cut: its holders then."""
        new = [w for w in dict.fromkeys(wanted) if w[0] in self.cut and w not in self.at_moment]
        questions = [{"address": address, "at": seconds} for address, seconds in new]
        for asked, answer in zip(new, self.answers(questions), strict=True):
            self.at_moment[asked] = self.holders(answer)

    def holders(self, answer: dict[str, Any]) -> list[Holder]:
        """An answer's holdings; one the tool cannot read is left out, and counted (``malformed``)."""
        found = answer.get("holdings")
        if not isinstance(found, list):
            if found is not None:
                self.malformed["holdings that are not a list"] += 1
            return []
        read = []
        for holding in found:
            try:
                read.append(holder(holding))
            except ValueError as exc:
                self.malformed[str(exc)] += 1
        return read

    def answers(self, questions: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The server's answers to ``questions``, in order: BATCH a request, ``parallel`` requests at once."""
        batches = [questions[i : i + BATCH] for i in range(0, len(questions), BATCH)]
        began = time.monotonic()
        pool = self._pool if len(batches) > 1 else None
        answered = list(pool.map(self.ask, batches) if pool else map(self.ask, batches))
        self.waited += time.monotonic() - began
        return [answer for answers in answered for answer in answers]

    def ask(self, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = self.session_factory()
        try:
            response = session.post(self.url, json={"questions": batch}, headers=self.headers, timeout=self.timeout)
        except requests.RequestException as exc:
            raise ServerError(f"cannot ask {self.url}: {exc}") from None
        self.requests += 1
        if response.status_code != 200:
            raise ServerError(f"{self.url} answered {response.status_code}: {response.text[:200].strip()}")
        try:
            answers = response.json()["answers"]
            shaped = isinstance(answers, list) and all(isinstance(a, dict) for a in answers)
        except (ValueError, TypeError, KeyError):
            shaped = False
        if not shaped:
            raise ServerError(f"{self.url} answered what is not a bulk answer: {response.text[:200].strip()}")
        if len(answers) != len(batch):
            raise ServerError(f"{self.url} answered {len(answers)} of {len(batch)} questions")
        return answers

    def side(self, address: str, port: int | None, protocol: int | None, seconds: int) -> Side:
        """Who held ``address`` at ``seconds`` (since 1970) for a flow on ``port``."""
        holders = self.at_moment.get((address, seconds)) if address in self.cut else self.held.get(address)
        if not holders:
            if address in self.refused:
                return Side(None, why=f"refused by the server: {self.refused[address]}")
            return NOBODY
        moment = seconds * 1000
        if len(holders) == 1 and holders[0].on_task:  # nearly always: one task's own address
            only = holders[0]
            return only.side if only.since <= moment < only.until else NOBODY
        now = [h for h in holders if h.since <= moment < h.until]  # half-open: at its stop it is no longer theirs
        if not now:
            return NOBODY
        # On an instance address only the port says whose the flow was (its host port); a task's address is the
        # task's on every port, and the port (its container port) only says which of its containers.
        wanted = (port, PROTOCOLS.get(protocol, "")) if protocol is not None else None
        published = [h for h in now if port is not None and (wanted in h.ports if wanted else port in dict(h.ports))]
        on_task = [h for h in now if h.on_task]
        chosen = [h for h in on_task if h in published] or on_task or published
        if not chosen:
            return UNPUBLISHED
        if len(chosen) == 1:
            return chosen[0].side
        return joined([h.side for h in chosen])
