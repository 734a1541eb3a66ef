"""The agent's state on disk (outbox and last snapshot), so that a restart loses and doubles nothing."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

VERSION = 1


class Spool:
    """One JSON file, replaced atomically: a crash mid-write leaves the previous version whole."""

    def __init__(self, directory: Path) -> None:
        self.path = Path(directory) / "agent-state.json"
        self._failing = False

    def load(self) -> dict[str, Any]:
        """The saved state, or {} when there is none or it cannot be read (said once, then started afresh)."""
        try:
            with self.path.open("rb") as file:
                state = json.load(file)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, RecursionError) as exc:
            log.warning("spool %s unreadable (%s): starting without it", self.path, exc)
            return {}
        if not isinstance(state, dict) or state.get("version") != VERSION:
            log.warning("spool %s has an unknown format: starting without it", self.path)
            return {}
        return state

    def save(self, state: dict[str, Any]) -> None:
        """Write `state` in place of the last one; a failure is logged and the agent carries on."""
        try:
            fd, tmp = tempfile.mkstemp(prefix=".agent-state.", dir=self.path.parent)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as file:
                    json.dump({"version": VERSION, **state}, file, separators=(",", ":"))
                    file.flush()
                    os.fsync(file.fileno())
                os.replace(tmp, self.path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            if not self._failing:
                log.error("cannot write spool %s (%s): pending reports would not survive a restart", self.path, exc)
            self._failing = True
            return
        if self._failing:
            log.info("spool %s writable again", self.path)
        self._failing = False
