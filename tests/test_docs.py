"""The documentation against the code: every setting the code reads is in docs/configuration.md and every setting
there is read; every relative link and anchor in README.md and docs/ resolves; every module is on the code map of
docs/architecture.md.

Setting names are found two ways. The source of every shipped package is scanned for names written out: a string
that holds ``ECS_ID_MAPPER_NAME``, or one made from a ``PREFIX = "ECS_ID_MAPPER_"`` constant (``PREFIX + "NAME"``,
``f"{PREFIX}NAME"``). Names the two loaders build from data are asked of the loaders themselves: the server reads
``ECS_ID_MAPPER_<FIELD>`` for each field of ``server.config.Config`` and ``ECS_ID_MAPPER_LINK_<NAME>`` for any
name, and the agent's ``load_config`` is run on an environment that writes down every variable asked of it.

A family of names is a pattern, written ``ECS_ID_MAPPER_LINK_<NAME>`` in the docs. In the code a name that ends in
``_`` and goes on with a placeholder is one: ``f"ECS_ID_MAPPER_LINK_{name}"``, or ``ECS_ID_MAPPER_LINK_*`` and
``ECS_ID_MAPPER_LINK_<NAME>`` in a docstring. A name in the docs that a pattern of the code covers (such as
``ECS_ID_MAPPER_LINK_GRAFANA``, an example) is read by the code.
"""

from __future__ import annotations

import ast
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import fields
from pathlib import Path

import pytest

from agent import config as agent_config
from server import config as server_config
from tests.support import ROOT

PREFIX = "ECS_ID_MAPPER_"
PACKAGES = ("agent", "server", "simhost")
DOCS = ROOT / "docs"
CONFIGURATION = DOCS / "configuration.md"
ARCHITECTURE = DOCS / "architecture.md"
MARKDOWN = [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]

#: What stands for "any name" after a prefix: a placeholder in an f-string (``\0`` here), ``*`` or ``<NAME>``.
_HOLE = r"(?:\x00|\*|<[A-Z][A-Z0-9_]*>)"
#: ``ECS_ID_MAPPER_SOME_NAME``, not followed by more of a name.
NAME = re.compile(rf"\b{PREFIX}((?:[A-Z0-9]+_)*[A-Z0-9]+)(?![A-Za-z0-9_])(?!{_HOLE})")
#: ``ECS_ID_MAPPER_SOME_<NAME>``: every name that starts ``ECS_ID_MAPPER_SOME_``.
PATTERN = re.compile(rf"\b{PREFIX}((?:[A-Z0-9]+_)+){_HOLE}")


def names_in_text(text: str) -> tuple[set[str], set[str]]:
    """The setting names in ``text`` and the patterns, each pattern as the prefix its names share."""
    return {PREFIX + m for m in NAME.findall(text)}, {PREFIX + m for m in PATTERN.findall(text)}


def names_in_source(source: str) -> tuple[set[str], set[str]]:
    """The setting names and patterns a module's source writes out (see the module's docstring)."""
    tree = ast.parse(source)
    prefixes = {
        target.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and node.value.value == PREFIX
        for target in node.targets
        if isinstance(target, ast.Name)
    }

    def is_prefix(node: ast.AST) -> bool:
        return isinstance(node, ast.Name) and node.id in prefixes

    texts: list[str] = []
    inside_fstrings: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            parts = []
            for value in node.values:
                inside_fstrings.add(id(value))
                if isinstance(value, ast.Constant):
                    parts.append(str(value.value))
                elif isinstance(value, ast.FormattedValue):
                    parts.append(PREFIX if is_prefix(value.value) else "\x00")
            texts.append("".join(parts))
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add) and is_prefix(node.left):
            right = node.right
            texts.append(PREFIX + (right.value if isinstance(right, ast.Constant) else "\x00"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in inside_fstrings:
            texts.append(node.value)
    found: tuple[set[str], set[str]] = (set(), set())
    for text in texts:
        names, patterns = names_in_text(text)
        found[0].update(names)
        found[1].update(patterns)
    found[1].discard(PREFIX)  # "ECS_ID_MAPPER_*": all of them, not a family
    return found


class RecordingEnviron(dict):
    """An environment that writes down every variable asked of it."""

    def __init__(self, values: dict[str, str]):
        super().__init__(values)
        self.asked: set[str] = set()

    def get(self, key, default=None):  # type: ignore[override]
        self.asked.add(key)
        return super().get(key, default)

    def __getitem__(self, key):
        self.asked.add(key)
        return super().__getitem__(key)

    def __contains__(self, key):
        self.asked.add(key)
        return super().__contains__(key)


def names_the_loaders_build() -> tuple[set[str], set[str]]:
    server = {PREFIX + f.name.upper() for f in fields(server_config.Config) if f.name != "links"}
    server_patterns = {PREFIX + server_config.LINK_PREFIX.upper()}
    environ = RecordingEnviron({PREFIX + "SERVER_URL": "http://127.0.0.1:5001"})
    agent_config.load_config(environ)
    agent = {name for name in environ.asked if name.startswith(PREFIX)}
    assert len(agent) > 5, agent  # the recording saw the loader at work
    return server | agent, server_patterns


def names_in_code() -> tuple[set[str], set[str]]:
    names, patterns = names_the_loaders_build()
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            found = names_in_source(path.read_text())
            names |= found[0]
            patterns |= found[1]
    return names, patterns


def covered(name: str, patterns: Iterable[str]) -> bool:
    return any(name.startswith(prefix) and len(name) > len(prefix) for prefix in patterns)


# (a) settings


def test_the_scanner_finds_names_written_out_built_from_the_prefix_and_patterns():
    source = '''
PREFIX = "ECS_ID_MAPPER_"
"""Reads ``ECS_ID_MAPPER_*`` variables, ``ECS_ID_MAPPER_LINK_*`` among them."""
a = os.environ.get("ECS_ID_MAPPER_PLAIN")
b = env.get(PREFIX + "JOINED", "")
c = f"{PREFIX}FORMATTED: expected a number"
d = f"ECS_ID_MAPPER_FAMILY_{name.upper()}"
e = PREFIX + key  # a name made from data: the loaders are asked for those
f = "PROMETHEUS_MULTIPROC_DIR"
'''
    assert names_in_source(source) == (
        {"ECS_ID_MAPPER_PLAIN", "ECS_ID_MAPPER_JOINED", "ECS_ID_MAPPER_FORMATTED"},
        {"ECS_ID_MAPPER_LINK_", "ECS_ID_MAPPER_FAMILY_"},
    )
    assert names_in_text("`ECS_ID_MAPPER_LINK_<NAME>=TEMPLATE` and `ECS_ID_MAPPER_LINK_GRAFANA`") == (
        {"ECS_ID_MAPPER_LINK_GRAFANA"},
        {"ECS_ID_MAPPER_LINK_"},
    )


def test_the_loaders_are_asked_for_the_names_they_build():
    names, patterns = names_the_loaders_build()
    assert {"ECS_ID_MAPPER_RETENTION_DAYS", "ECS_ID_MAPPER_IMDS_URL", "ECS_ID_MAPPER_RESYNC_INTERVAL"} <= names
    assert patterns == {"ECS_ID_MAPPER_LINK_"}


def test_every_setting_the_code_reads_is_in_the_configuration_page():
    names, patterns = names_in_code()
    documented, documented_patterns = names_in_text(CONFIGURATION.read_text())

    missing = sorted(n for n in names if n not in documented)
    missing += sorted(f"{p}<NAME>" for p in patterns - documented_patterns)
    assert not missing, f"read by the code, not in docs/configuration.md: {', '.join(missing)}"


def test_every_setting_in_the_docs_is_read_by_the_code():
    names, patterns = names_in_code()
    for page in MARKDOWN:
        documented, documented_patterns = names_in_text(page.read_text())
        unknown = sorted(n for n in documented if n not in names and not covered(n, patterns))
        unknown += sorted(f"{p}<NAME>" for p in documented_patterns - patterns)
        assert not unknown, f"{page.relative_to(ROOT)} names settings the code does not read: {', '.join(unknown)}"


# (b) links


FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.M | re.S)
CODE_SPAN = re.compile(r"(`+).+?\1", re.S)
LINK = re.compile(r"(?<!\\)\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t#]*$", re.M)


def prose(text: str) -> str:
    """Markdown without its code: fenced blocks and code spans, where a link is only text."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its text, lower case, without punctuation, spaces made hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading counts by its text
    text = "".join(c for c in text.lower() if c in " -_" or unicodedata.category(c)[0] in "LNM")
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    found: set[str] = set()
    seen: dict[str, int] = {}
    for heading in HEADING.findall(FENCE.sub("", page.read_text())):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def test_slugs_are_githubs():
    assert slug("`POST /report/map`") == "post-reportmap"
    assert slug("Hosts' heartbeats") == "hosts-heartbeats"
    assert slug("What changes on 2027-07-31") == "what-changes-on-2027-07-31"
    assert slug("Server: routes and answers") == "server-routes-and-answers"


@pytest.mark.parametrize("page", MARKDOWN, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_anchor_resolves(page: Path):
    broken = []
    for target in LINK.findall(prose(page.read_text())):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and (linked.suffix != ".md" or anchor not in anchors(linked)):
            broken.append(f"{target}: no such heading")
    assert not broken, f"{page.relative_to(ROOT)}: " + "; ".join(broken)


def test_the_link_finder_skips_code_and_sees_every_link():
    text = '[a](x.md) `[b](y.md)` [c [d]](z.md#e)\n```\n[f](w.md)\n```\n[g](<v.md> "title")'
    assert LINK.findall(prose(text)) == ["x.md", "z.md#e", "v.md"]


# (c) the code map


def map_section() -> str:
    text = ARCHITECTURE.read_text()
    start = text.index("\n## Code map")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else len(text)]


def named_paths(text: str) -> set[str]:
    """Every path of a module or a package directory named in ``text``."""
    return set(re.findall(r"(?<![\w/.])((?:agent|server|simhost)/(?:[\w]+/)*(?:[\w]+\.py)?)", text))


def unmapped(modules: Iterable[str], named: set[str], roots: Iterable[str]) -> list[str]:
    """The modules ``named`` leaves out. A module is named by its path; ``__init__.py`` also by its directory; and a
    package below a root by its directory, when the map names none of its modules one by one."""
    modules = sorted(modules)
    roots = {f"{root}/" for root in roots}

    def as_a_whole(directory: str) -> bool:
        return (
            directory in named
            and directory not in roots
            and not any(m.startswith(directory) and m in named for m in modules)
        )

    missing = []
    for module in modules:
        directory = module.rpartition("/")[0] + "/"
        if module in named or (module.endswith("/__init__.py") and directory in named):
            continue
        parts = module.split("/")[:-1]
        if any(as_a_whole("/".join(parts[: i + 1]) + "/") for i in range(len(parts))):
            continue
        missing.append(module)
    return missing


def test_the_map_rule_takes_a_package_as_a_whole_or_module_by_module():
    modules = ["server/app.py", "server/store/base.py", "server/store/sdb/__init__.py", "server/store/sdb/items.py"]
    assert unmapped(modules, {"server/app.py", "server/store/base.py", "server/store/sdb/"}, ["server"]) == []
    assert unmapped(modules, {"server/app.py", "server/store/"}, ["server"]) == []  # store as a whole
    assert unmapped(modules, {"server/app.py", "server/store/", "server/store/base.py"}, ["server"]) == [
        "server/store/sdb/__init__.py",
        "server/store/sdb/items.py",
    ]  # store module by module, then sdb/ must be named too
    assert unmapped(modules, {"server/"}, ["server"]) == modules  # a root is never named as a whole
    assert named_paths("`server/store/sdb/`, `server/app.py` and tests/server/test_app.py") == {
        "server/store/sdb/",
        "server/app.py",
    }


def test_every_module_is_on_the_code_map():
    roots = ("agent", "server", "simhost")
    modules = [str(p.relative_to(ROOT)) for root in roots for p in (ROOT / root).rglob("*.py")]
    missing = unmapped(modules, named_paths(map_section()), roots)
    assert not missing, f"not on the code map of docs/architecture.md: {', '.join(missing)}"
