"""The server's modules import without a cycle: each alone in a fresh interpreter, and none on a loop of imports."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.support import ROOT

PACKAGE = ROOT / "server"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imported(name: str, path: Path) -> set[str]:
    """The server modules ``name`` imports anywhere in its text, functions included (a lazy import is an edge)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                found.add(submodule if submodule in MODULES else base)
    return {m for m in found if m in MODULES and m != name}


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


def test_no_module_of_the_server_is_on_an_import_cycle():
    graph = {name: imported(name, path) for name, path in MODULES.items()}
    assert graph["server.app"] >= {"server.query", "server.state"}  # the reader sees the real imports
    assert find_cycle(graph) is None, " → ".join(find_cycle(graph) or [])


def test_no_routes_module_imports_another():
    routes = {name for name, path in MODULES.items() if "Blueprint(" in path.read_text()}
    assert {"server.query", "server.service_query", "server.health"} <= routes
    for name in sorted(routes):
        assert not imported(name, MODULES[name]) & routes, f"{name} imports another routes module"


def test_the_cycle_finder_finds_a_lazy_import_loop():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_each_module_imports_alone_in_a_fresh_interpreter():
    # One interpreter, with every server module forgotten before each import: the same as a fresh start for
    # the server's own modules, without paying for boto3 and Flask twenty times.
    script = (
        "import importlib, sys\n"
        f"for name in {sorted(MODULES)!r}:\n"
        "    for loaded in [m for m in sys.modules if m == 'server' or m.startswith('server.')]:\n"
        "        del sys.modules[loaded]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception as exc:\n"
        "        print(f'{name}: {type(exc).__name__}: {exc}')\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
