"""The tokens a server process accepts: the single-token settings' and the token file's (``server.token_file``),
matched in constant time, and the file read again when it changes (checked at most every second) or when asked.

A file that turns bad while the server runs is not taken: the last good one stays in force, and the process says
so in its log once per bad version (and in ``Registry.problem``).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from server.token_file import Token, TokenFile, TokenFileError, read, unscoped

log = logging.getLogger(__name__)

#: Seconds between two looks at the token file's metadata: a stat per second per process costs nothing.
CHECK_INTERVAL = 1.0
#: The writer of reports when no token is configured and anonymous reports are allowed.
ANONYMOUS = unscoped("", "", writes=True)


@dataclass(frozen=True)
class TokenSet:
    """The tokens in force at one moment."""

    tokens: tuple[Token, ...]
    #: Reads need no token (no read token set, or the token file says ``reads: open``).
    open_reads: bool

    def match(self, given: str) -> Token | None:
        """The token whose value is ``given``, or None. Its SHA-256 is compared with every token's, each in
        constant time and without stopping at a match, so the time taken tells nothing of which one matched."""
        digest = hashlib.sha256(given.encode()).digest()
        found = None
        for token in self.tokens:
            if hmac.compare_digest(digest, token.digest):
                found = token
        return found


def _signature(path: str) -> tuple[int, int, int, int] | None:
    """What changes when the file is written or replaced (a rename, a Secrets Manager or Kubernetes symlink swap)."""
    try:
        found = os.stat(path)
    except OSError:
        return None
    return found.st_mtime_ns, found.st_size, found.st_ino, found.st_dev


class Registry:
    """The tokens of one process: ``current()`` is the set in force, re-read from ``path`` when its metadata
    changed (looked at no more often than ``interval`` seconds), or at once after ``reload()``."""

    def __init__(
        self,
        token: str = "",
        read_token: str = "",
        path: str = "",
        loaded: TokenFile | None = None,
        interval: float = CHECK_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.path = path
        self.interval = interval
        self.clock = clock
        self._legacy = tuple(
            unscoped(name, value, writes)
            for name, value, writes in (("token", token, True), ("read-token", read_token, False))
            if value
        )
        self._protected_reads = bool(read_token or path)
        self._lock = threading.Lock()
        self._next_check = 0.0
        #: Why the file on disk is not the one in force (a bad edit), or None.
        self.problem: str | None = None
        self._bad_signature: tuple[int, int, int, int] | None = None
        # A file read elsewhere (gunicorn's master, before the fork) is read again at the first look: it may have
        # changed since.
        self._signature = _signature(path) if path and loaded is None else None
        self._set = self._combine(loaded if loaded is not None else (read(path) if path else TokenFile(())))

    @property
    def guards_reports(self) -> bool:
        """Whether reports need a token (a report token or a token file is configured)."""
        return bool(self.path) or any(t.name == "token" for t in self._legacy)

    def _combine(self, file: TokenFile) -> TokenSet:
        return TokenSet(
            (*self._legacy, *file.tokens), open_reads=not self._protected_reads or (bool(self.path) and file.open_reads)
        )

    def current(self) -> TokenSet:
        """The tokens in force, after a look at the file when one is due."""
        if self.path and self.clock() >= self._next_check:
            with self._lock:
                if self.clock() >= self._next_check:
                    self._next_check = self.clock() + self.interval
                    if _signature(self.path) != self._signature:
                        self._load()
        return self._set

    def reload(self) -> bool:
        """Read the file now, changed or not; whether it was taken (else the last good one stays)."""
        with self._lock:
            self._next_check = self.clock() + self.interval
            return self._load()

    def _load(self) -> bool:
        before = _signature(self.path)
        try:
            file = read(self.path)
        except TokenFileError as exc:
            self._signature = before
            if self.problem is None or before != self._bad_signature:
                log.error("ECS_ID_MAPPER_TOKEN_FILE: %s; the last good token file stays in force", exc)
            self.problem, self._bad_signature = str(exc), before
            return False
        if _signature(self.path) != before:
            return False  # written while it was read: read again at the next look
        self._signature = before
        self._set = self._combine(file)
        if self.problem is not None:
            log.info("ECS_ID_MAPPER_TOKEN_FILE: %s is good again", self.path)
        self.problem = self._bad_signature = None
        log.info("token file %s loaded: %s", self.path, ", ".join(t.name for t in file.tokens) or "no tokens")
        return True
