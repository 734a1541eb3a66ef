"""The token file (``ECS_ID_MAPPER_TOKEN_FILE``): named tokens, each held as the SHA-256 of its value with what it
may do, read from YAML so that every error names its line. Schema and a worked example: docs/tokens.md.

The file holds no usable secret: a token is a long random string, so its SHA-256 cannot be reversed or guessed,
and a slow password hash would only slow down every request (see docs/tokens.md).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

#: A token's name: shown in logs, in ``flask.g.token_name`` and in history (``by``), so plain and short.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
SHA256 = re.compile(r"[0-9a-f]{64}")
#: What a token entry may say: its hash and its scopes.
TOKEN_KEYS = ("sha256", "report", "events", "read")
EVENT_KEYS = ("account", "region", "cluster")
TOP_KEYS = ("tokens", "reads")
READS = ("tokens", "open")
#: The longest pattern taken (a cluster name is at most 255 characters).
MAX_PATTERN = 255
BOOL_TAG = "tag:yaml.org,2002:bool"
#: libyaml's parser where PyYAML was built with it (its wheels are): forty times faster, with the same line marks.
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
#: The names the single-token settings go by; a token file cannot use them.
LEGACY_NAMES = ("token", "read-token")


class TokenFileError(ValueError):
    """The token file cannot be used; the message names the file and, where it can, the line."""


@dataclass(frozen=True)
class EventScope:
    """Which ECS events a token may send: account, region and cluster name, each a shell-style pattern."""

    account: str
    region: str
    cluster: str

    def covers(self, account: str, region: str, cluster: str) -> bool:
        return (
            fnmatchcase(account, self.account)
            and fnmatchcase(region, self.region)
            and fnmatchcase(cluster, self.cluster)
        )


ANYWHERE = EventScope("*", "*", "*")


@dataclass(frozen=True)
class Token:
    """A named token: the SHA-256 of its value and what it may do. ``report``: cluster name patterns it may report
    for; ``events``: where the ECS events it sends may come from; ``read``: whether it may read."""

    name: str
    digest: bytes
    report: tuple[str, ...] = ()
    events: tuple[EventScope, ...] = ()
    read: bool = False

    @property
    def reports_anywhere(self) -> bool:
        return "*" in self.report

    @property
    def sends_events_anywhere(self) -> bool:
        return ANYWHERE in self.events

    def may_report(self, cluster: str) -> bool:
        """Whether the token may report for (and change the records of) cluster ``cluster``."""
        return any(fnmatchcase(cluster, pattern) for pattern in self.report)

    def may_send_events(self, accounts: Iterable[str], regions: Iterable[str], cluster: str) -> bool:
        """Whether one scope of the token covers every account and region an event names, and its cluster."""
        accounts, regions = list(accounts), list(regions)
        return any(
            all(scope.covers(a, r, cluster) for a in accounts or [""] for r in regions or [""]) for scope in self.events
        )

    def may_change_by_report(self, record: dict[str, str]) -> bool:
        return self.may_report(record.get("cluster_name", ""))

    def may_change_by_event(self, record: dict[str, str]) -> bool:
        accounts, regions, cluster = owner(record)
        return self.may_send_events(accounts, regions, cluster)


def owner(record: dict[str, str]) -> tuple[set[str], set[str], str]:
    """The accounts, regions and cluster a stored record is of, as far as it tells: its ARNs' and its fields."""
    accounts, regions = set(), set()
    for arn in (record.get("task_arn", ""), record.get("container_instance_arn", "")):
        parts = arn.split(":")
        if len(parts) >= 6 and parts[0] == "arn":
            regions.add(parts[3])
            accounts.add(parts[4])
    if record.get("region"):
        regions.add(record["region"])
    return accounts, regions, record.get("cluster_name", "")


def digest_of(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()


def unscoped(name: str, value: str, writes: bool = True) -> Token:
    """A token of the single-token settings: every scope (``writes``) or only reads."""
    if not writes:
        return Token(name, digest_of(value), read=True)
    return Token(name, digest_of(value), ("*",), (ANYWHERE,), True)


@dataclass(frozen=True)
class TokenFile:
    """What a token file says: its tokens, and whether reads stay open (``reads: open``)."""

    tokens: tuple[Token, ...]
    open_reads: bool = False


def read(path: str | Path) -> TokenFile:
    """The token file at ``path``; TokenFileError for any reason it cannot be used."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TokenFileError(f"cannot read {path}: {exc}") from None
    return parse(text, str(path))


def parse(text: str, source: str = "<token file>") -> TokenFile:
    """The tokens ``text`` lists; TokenFileError naming ``source`` and the line otherwise."""
    try:
        root = yaml.compose(text, Loader=LOADER)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f" line {mark.line + 1}" if mark is not None else ""
        raise TokenFileError(f"{source}{line}: not YAML: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise TokenFileError(f"{source}: not YAML: {exc}") from None
    return _Reader(source).file(root)


class _Reader:
    def __init__(self, source: str):
        self.source = source

    def fail(self, node: Node | None, message: str) -> TokenFileError:
        line = f" line {node.start_mark.line + 1}" if node is not None else ""
        return TokenFileError(f"{self.source}{line}: {message}")

    def mapping(self, node: Node, what: str) -> dict[str, tuple[Node, Node]]:
        """The entries of a mapping by key (each with its key's node); refuses a key given twice."""
        if not isinstance(node, MappingNode):
            raise self.fail(node, f"{what}: expected a mapping")
        entries: dict[str, tuple[Node, Node]] = {}
        for key, value in node.value:
            if not isinstance(key, ScalarNode):
                raise self.fail(key, f"{what}: expected plain keys")
            if key.value in entries:
                first = entries[key.value][0].start_mark.line + 1
                raise self.fail(key, f"{what}: {key.value!r} is given twice (first on line {first})")
            entries[key.value] = (key, value)
        return entries

    def text(self, node: Node, what: str) -> str:
        if not isinstance(node, ScalarNode) or not node.value or node.tag == BOOL_TAG:
            raise self.fail(node, f"{what}: expected a non-empty string")
        if len(node.value) > MAX_PATTERN:
            raise self.fail(node, f"{what}: longer than {MAX_PATTERN} characters")
        return node.value

    def file(self, root: Node | None) -> TokenFile:
        if root is None:
            raise self.fail(None, "empty: expected a mapping with 'tokens:'")
        top = self.mapping(root, "the file")
        for name, (key, _) in top.items():
            if name not in TOP_KEYS:
                raise self.fail(key, f"unknown key {name!r} (expected {', '.join(TOP_KEYS)})")
        if "tokens" not in top:
            raise self.fail(root, "no 'tokens:' mapping")
        open_reads = False
        if "reads" in top:
            reads = self.text(top["reads"][1], "reads")
            if reads not in READS:
                raise self.fail(top["reads"][1], f"reads: expected one of {', '.join(READS)}, got {reads!r}")
            open_reads = reads == "open"
        tokens: list[Token] = []
        lines: dict[bytes, tuple[str, int]] = {}
        for name, (key, entry) in self.mapping(top["tokens"][1], "tokens").items():
            token = self.token(name, key, entry)
            if token.digest in lines:
                other, line = lines[token.digest]
                raise self.fail(entry, f"token {name!r} has the same sha256 as {other!r} (line {line})")
            lines[token.digest] = (name, key.start_mark.line + 1)
            tokens.append(token)
        return TokenFile(tuple(tokens), open_reads)

    def token(self, name: str, key: Node, node: Node) -> Token:
        if not NAME.fullmatch(name):
            raise self.fail(key, f"token name {name!r}: expected 1-64 of A-Z a-z 0-9 . _ - (a letter or digit first)")
        if name in LEGACY_NAMES:
            raise self.fail(key, f"token name {name!r} is taken by the ECS_ID_MAPPER_TOKEN settings")
        what = f"token {name!r}"
        entries = self.mapping(node, what)
        for scope, (scope_key, _) in entries.items():
            if scope not in TOKEN_KEYS:
                raise self.fail(scope_key, f"{what}: unknown scope {scope!r} (expected {', '.join(TOKEN_KEYS)})")
        if "sha256" not in entries:
            raise self.fail(node, f"{what}: no sha256 (the SHA-256 of the token, 64 hex digits)")
        hashed = entries["sha256"][1]
        if not (isinstance(hashed, ScalarNode) and SHA256.fullmatch(hashed.value.lower())):
            # The value is never repeated: it may be the token itself, written here by mistake.
            raise self.fail(hashed, f"{what}: sha256 must be 64 hex digits, the SHA-256 of the token, never the "
                            "token itself (a token in the clear?)")  # fmt: skip
        report = self.patterns(entries["report"][1], f"{what}: report") if "report" in entries else ()
        events = self.event_scopes(entries["events"][1], f"{what}: events") if "events" in entries else ()
        read = False
        if "read" in entries:
            flag = entries["read"][1]
            if not (isinstance(flag, ScalarNode) and flag.tag == BOOL_TAG):
                raise self.fail(flag, f"{what}: read: expected true or false")
            read = bool(yaml.constructor.SafeConstructor.bool_values[flag.value.lower()])
        if not (report or events or read):
            raise self.fail(node, f"{what}: grants nothing: give it report, events or read: true")
        return Token(name, bytes.fromhex(hashed.value.lower()), report, events, read)

    def patterns(self, node: Node, what: str) -> tuple[str, ...]:
        if not isinstance(node, SequenceNode) or not node.value:
            raise self.fail(node, f'{what}: expected a list of cluster names or patterns, such as [prod-eu] or ["*"]')
        return tuple(self.text(item, what) for item in node.value)

    def event_scopes(self, node: Node, what: str) -> tuple[EventScope, ...]:
        if not isinstance(node, SequenceNode) or not node.value:
            raise self.fail(node, f"{what}: expected a list of {{account, region, cluster}}")
        scopes = []
        for item in node.value:
            entries = self.mapping(item, what)
            for key, (key_node, _) in entries.items():
                if key not in EVENT_KEYS:
                    raise self.fail(key_node, f"{what}: unknown key {key!r} (expected {', '.join(EVENT_KEYS)})")
            missing = [key for key in EVENT_KEYS if key not in entries]
            if missing:
                raise self.fail(item, f'{what}: missing {", ".join(missing)} (use "*" for any)')
            scopes.append(EventScope(*(self.text(entries[key][1], f"{what}: {key}") for key in EVENT_KEYS)))
        return tuple(scopes)
