"""The project's modules import without a cycle and without reaching into each other's private names.

Every package the project ships (agent, server, simhost) is checked whole: no loop of imports (an import inside a
function counts), each module importable alone. The private-name check also reads the benchmarks and the tests.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Collection
from functools import cache
from pathlib import Path

import pytest

from tests.support import ROOT

SHIPPED = ("agent", "server", "simhost")
#: Read for private names too; tests and benches import the shipped modules, never the other way round.
READ = (*SHIPPED, "bench", "testkit", "tests")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for top in READ for path in sorted((ROOT / top).rglob("*.py"))}
SHIPPED_MODULES = {name: path for name, path in MODULES.items() if name.partition(".")[0] in SHIPPED}


@cache
def tree(name: str) -> ast.Module:
    return ast.parse(MODULES[name].read_text(), str(MODULES[name]))


def is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def base_of(node: ast.ImportFrom, importer: str, package: bool) -> str:
    """The absolute module a ``from … import`` reads from, relative forms resolved against ``importer``."""
    if not node.level:
        return node.module or ""
    anchor = importer.split(".") if package else importer.split(".")[:-1]
    anchor = anchor[: len(anchor) - node.level + 1]
    return ".".join([*anchor, node.module] if node.module else anchor)


def imported(name: str, source: ast.Module, modules: Collection[str], package: bool = False) -> set[str]:
    """The ``modules`` that module ``name`` imports anywhere in ``source``, functions included (a lazy import is
    an edge), and ``if TYPE_CHECKING:`` blocks too (an annotation names what the module depends on)."""
    found = set()
    for node in ast.walk(source):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = base_of(node, name, package)
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                found.add(submodule if submodule in modules else base)
    return {m for m in found if m in modules and m != name}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One loop of imports as a path that starts and ends on the same module, or None."""
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> list[str] | None:
        if module in path:
            return [*path[path.index(module) :], module]
        if module in done:
            return None
        for target in sorted(graph[module]):
            cycle = visit(target, [*path, module])
            if cycle:
                return cycle
        done.add(module)
        return None

    for module in sorted(graph):
        cycle = visit(module, [])
        if cycle:
            return cycle
    return None


def is_private(segment: str) -> bool:
    return segment.startswith("_") and not (segment.startswith("__") and segment.endswith("__"))


def trespass(importer: str, dotted: str, modules: Collection[str]) -> str | None:
    """The part of ``dotted`` up to the first underscore name that ``importer`` may not use, or None.

    A private name belongs to its module; a private module belongs to its package, whose own modules may import it.
    """
    parts = dotted.split(".")
    # The first part is left alone: a top-level ``_name`` (``_typeshed``, ``_thread``) is how a distribution names a
    # module of its own whose public names are there to be imported.
    for i, segment in enumerate(parts[1:], start=1):
        if is_private(segment):
            owner, here = ".".join(parts[:i]), ".".join(parts[: i + 1])
            inside = importer == owner or importer.startswith(owner + ".")
            if not (here in modules and inside):
                return here
    return None


def private_uses(name: str, source: ast.Module, modules: Collection[str], package: bool = False) -> list[str]:
    """Where module ``name`` takes another module's underscore name, as ``line N: module._name``: by
    ``from module import _name`` (of any module), or by ``module._name`` on a project module it imported."""
    found: set[tuple[int, str]] = set()
    tops = {module.partition(".")[0] for module in modules}
    bound: dict[str, str] = {}  # local name -> the project module an import bound it to
    for node in ast.walk(source):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if (private := trespass(name, alias.name, modules)) is not None:
                    found.add((node.lineno, private))
                if alias.asname and alias.name in modules:
                    bound[alias.asname] = alias.name
                elif not alias.asname and alias.name.partition(".")[0] in tops:
                    bound[alias.name.partition(".")[0]] = alias.name.partition(".")[0]
        elif isinstance(node, ast.ImportFrom):
            base = base_of(node, name, package)
            for alias in node.names:
                dotted = f"{base}.{alias.name}"
                if alias.name != "*" and (private := trespass(name, dotted, modules)) is not None:
                    found.add((node.lineno, private))
                if dotted in modules:
                    bound[alias.asname or alias.name] = dotted
    # A name also bound otherwise (a parameter, an assignment) may not be the module where it is read: left out.
    rebound = {n.arg for n in ast.walk(source) if isinstance(n, ast.arg)}
    rebound |= {n.id for n in ast.walk(source) if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Load)}
    modules_read = {local: module for local, module in bound.items() if local not in rebound}
    for node in ast.walk(source):
        if isinstance(node, ast.Attribute):
            chain, root = [node.attr], node.value
            while isinstance(root, ast.Attribute):
                chain.append(root.attr)
                root = root.value
            if isinstance(root, ast.Name) and root.id in modules_read:
                dotted = ".".join([modules_read[root.id], *reversed(chain)])
                if (private := trespass(name, dotted, modules)) is not None:
                    found.add((node.lineno, private))
    return [f"line {line}: {private}" for line, private in sorted(found)]


def shipped_graph() -> dict[str, set[str]]:
    return {name: imported(name, tree(name), SHIPPED_MODULES, is_package(name)) for name in SHIPPED_MODULES}


def test_no_module_of_a_shipped_package_is_on_an_import_cycle():
    graph = shipped_graph()
    # The reader sees the real imports: plain, lazy, and under TYPE_CHECKING.
    assert graph["server.app"] >= {"server.query", "server.state"}
    assert graph["agent.__main__"] >= {"agent.daemon", "agent.metrics"}
    assert "agent.daemon" in graph["agent.metrics"]
    assert find_cycle(graph) is None, " → ".join(find_cycle(graph) or [])


def test_no_shipped_package_imports_another():
    # The agent's image carries the agent and requests only; the simulated host stands in for ECS, not for code.
    for name, targets in shipped_graph().items():
        package = name.partition(".")[0]
        assert {t.partition(".")[0] for t in targets} <= {package}, f"{name} imports {sorted(targets)}"


def test_no_routes_module_imports_another():
    routes = {name for name, path in SHIPPED_MODULES.items() if "Blueprint(" in path.read_text()}
    assert {"server.query", "server.service_query", "server.health"} <= routes
    for name in sorted(routes):
        assert not imported(name, tree(name), MODULES, is_package(name)) & routes, (
            f"{name} imports another routes module"
        )


def test_no_module_uses_another_modules_private_name():
    found = {name: private_uses(name, tree(name), MODULES, is_package(name)) for name in MODULES}
    assert {name: uses for name, uses in found.items() if uses} == {}


def test_the_cycle_finder_finds_a_lazy_import_loop():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    modules = {"p", "p.a", "p.b", "p.c"}
    sources = {
        "p.a": "from p import b\n",
        "p.b": "def later():\n    from . import c\n",
        "p.c": "import typing\nif typing.TYPE_CHECKING:\n    from p.a import Thing\n",
    }
    graph = {name: imported(name, ast.parse(text), modules) for name, text in sources.items()}
    assert graph == {"p.a": {"p.b"}, "p.b": {"p.c"}, "p.c": {"p.a"}}
    assert find_cycle(graph) == ["p.a", "p.b", "p.c", "p.a"]


@pytest.mark.parametrize(
    ("importer", "source", "found"),
    [
        ("p.b", "from p.a import _check, public\n", ["line 1: p.a._check"]),
        ("p.b", "from .a import _check as check\n", ["line 1: p.a._check"]),
        ("p.b", "def f():\n    from p.a import _check\n", ["line 2: p.a._check"]),
        ("p.b", "from p import a\n\nx = a._check(1)\n", ["line 3: p.a._check"]),
        ("p.b", "import p.a\n\nx = p.a._check\n", ["line 3: p.a._check"]),
        ("p.b", "import p.a as a\n\nx = a._TABLE['k']\n", ["line 3: p.a._TABLE"]),
        ("p.b", "from p import _inner\n", ["line 1: p._inner"]),  # the package's own private name
        ("x.y", "from p._parts import thing\n", ["line 1: p._parts"]),  # a private module, from outside
        ("x.y", "from other import _secret\n", ["line 1: other._secret"]),  # any module's
        # Allowed: dunder names, aliasing a public name to a private one, a package's own private module,
        # a private attribute of an object, a parameter that shadows a module, names of the module itself,
        # public names of a top-level private module, private attributes of modules outside the project.
        ("p.b", "from p.a import __version__, public as _public\n", []),
        ("p.b", "from p import _parts\nfrom p._parts import thing\n", []),
        ("p.b", "from p import a\n\ndef f(a):\n    return a._check\n", []),
        ("p.b", "import p.a\n\nclass C:\n    def f(self):\n        return self._check\n", []),
        ("p.b", "def _own():\n    return _own\n", []),
        ("p.b", "from _typeshed.wsgi import StartResponse\n", []),
        ("p.b", "import os\n\nos._exit(0)\n", []),
    ],
)
def test_the_private_name_finder(importer, source, found):
    assert private_uses(importer, ast.parse(source), {"p", "p.a", "p.b", "p._parts"}) == found


@pytest.mark.parametrize("package", SHIPPED)
def test_each_module_imports_alone_in_a_fresh_interpreter(package):
    # One interpreter per package, with every module of the package forgotten before each import: the same as a
    # fresh start for the package's own modules, without paying for boto3 and Flask once per module.
    names = sorted(name for name in SHIPPED_MODULES if name.partition(".")[0] == package)
    script = (
        "import importlib, sys\n"
        f"for name in {names!r}:\n"
        f"    for loaded in [m for m in sys.modules if m == {package!r} or m.startswith({package + '.'!r})]:\n"
        "        del sys.modules[loaded]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception as exc:\n"
        "        print(f'{name}: {type(exc).__name__}: {exc}')\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
