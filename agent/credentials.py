"""The bearer token the agent sends: ``ECS_ID_MAPPER_TOKEN``, or the file ``ECS_ID_MAPPER_TOKEN_FILE`` names, read
again whenever it changes, so that a rotated token (a Secrets Manager rotation written to the file) is sent
without a restart."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from agent.config import TOKEN

log = logging.getLogger(__name__)


def read_token(path: Path) -> str:
    """The token in ``path`` (surrounding whitespace and newlines removed); ValueError saying why it is not one."""
    value = path.read_text(encoding="utf-8").strip()
    if not value:
        raise ValueError("the file is empty")
    if not TOKEN.fullmatch(value):
        raise ValueError("expected printable ASCII without spaces (it goes in an HTTP header)")
    return value


def _signature(path: Path) -> tuple[int, int, int] | None:
    try:
        found = os.stat(path)
    except OSError:
        return None
    return found.st_mtime_ns, found.st_size, found.st_ino


class TokenSource:
    """The token to send now: ``path``'s, re-read when its metadata changes (a stat per request), else ``value``.

    A file that cannot be read or holds no token keeps the last good one in use, said once per bad version.
    """

    def __init__(self, value: str = "", path: Path | None = None):
        self.path = path
        self._value = value
        self._good: tuple[int, int, int] | None = None
        self._bad: tuple[int, int, int] | bool | None = False  # False: no bad version seen yet
        if path is not None:
            self.current()

    def current(self) -> str:
        if self.path is None:
            return self._value
        seen = _signature(self.path)
        if (seen is not None and seen == self._good) or seen == self._bad:
            return self._value
        try:
            value = read_token(self.path)
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            log.warning("token file %s: %s; still sending the last good token", self.path, exc)
            self._bad = seen
            return self._value
        if value != self._value and self._good is not None:
            log.info("token file %s changed: sending its new token", self.path)
        self._value, self._good, self._bad = value, seen, False
        return value
