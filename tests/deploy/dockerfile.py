"""Reading a Dockerfile and a .dockerignore the way Docker does, enough to run an image's command without Docker."""

from __future__ import annotations

import fnmatch
import json
import shlex
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Dockerfile:
    instructions: tuple[tuple[str, str], ...]  # (KEYWORD, its arguments), in file order

    @classmethod
    def read(cls, path: Path) -> Dockerfile:
        """Comment lines dropped (also inside a continued instruction), continued lines joined."""
        instructions: list[tuple[str, str]] = []
        pending = ""
        for line in path.read_text().splitlines():
            if line.lstrip().startswith("#") or (not line.strip() and not pending):
                continue
            if line.rstrip().endswith("\\"):
                pending += line.rstrip()[:-1] + " "
                continue
            keyword, _, arguments = (pending + line).strip().partition(" ")
            instructions.append((keyword.upper(), arguments.strip()))
            pending = ""
        assert not pending, f"{path}: the last instruction ends in a continuation"
        return cls(tuple(instructions))

    def arguments(self, keyword: str) -> list[str]:
        return [arguments for kw, arguments in self.instructions if kw == keyword]

    @property
    def env(self) -> dict[str, str]:
        """Every ENV, applied in order (``KEY=VALUE ...`` and the old ``KEY VALUE`` form)."""
        env: dict[str, str] = {}
        for arguments in self.arguments("ENV"):
            words = shlex.split(arguments)
            if "=" not in words[0]:
                env[words[0]] = " ".join(words[1:])
                continue
            for word in words:
                key, _, value = word.partition("=")
                env[key] = value
        return env

    @property
    def cmd(self) -> list[str]:
        """The last CMD, which must be in exec form (a JSON list): a shell form would not get SIGTERM."""
        return _exec_form(self.arguments("CMD")[-1])

    @property
    def healthcheck(self) -> list[str]:
        """The command of the last HEALTHCHECK, after its options."""
        _, _, command = self.arguments("HEALTHCHECK")[-1].partition(" CMD ")
        return _exec_form(command)

    @property
    def volumes(self) -> list[str]:
        return [path for arguments in self.arguments("VOLUME") for path in _list_or_words(arguments)]

    @property
    def copied(self) -> list[str]:
        """The build-context paths every COPY reads (a ``COPY --from`` reads another stage, not the context)."""
        sources = []
        for arguments in self.arguments("COPY"):
            if "--from=" in arguments:
                continue
            words = [w for w in _list_or_words(arguments) if not w.startswith("--")]
            sources += words[:-1]
        return sources

    @property
    def user(self) -> str:
        return self.arguments("USER")[-1] if self.arguments("USER") else "root"


def _exec_form(text: str) -> list[str]:
    command = json.loads(text)
    assert isinstance(command, list) and all(isinstance(word, str) for word in command), text
    return command


def _list_or_words(text: str) -> list[str]:
    return json.loads(text) if text.startswith("[") else text.split()


def ignored(path: str, dockerignore: Path) -> bool:
    """Whether .dockerignore keeps ``path`` (relative, with / separators) out of the build context.

    The last pattern that matches the path or one of its parent directories decides; ``!`` re-includes.
    """
    parts = path.strip("/").split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    verdict = False
    for line in dockerignore.read_text().splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        exception = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        if any(_matches(candidate, pattern) for candidate in candidates):
            verdict = not exception
    return verdict


def _matches(path: str, pattern: str) -> bool:
    if pattern.startswith("**/"):  # any depth: the last component decides
        return fnmatch.fnmatchcase(path.rsplit("/", 1)[-1], pattern[3:])
    return path.count("/") == pattern.count("/") and fnmatch.fnmatchcase(path, pattern)
