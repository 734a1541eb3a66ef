"""The server's console scripts, installed by ``pip install .`` without the ``server`` extra, say in one line which
extra they need, instead of a traceback."""

from __future__ import annotations

import subprocess
import sys
import tomllib

import pytest

from tests.support import ROOT

# Runs a script's entry point in an interpreter where importing BLOCKED fails, as it does without the extra.
WITHOUT = """
import importlib.abc, sys
BLOCKED = sys.argv[1]

class Missing(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == BLOCKED or name.startswith(BLOCKED + "."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Missing())
from server import console_scripts
getattr(console_scripts, sys.argv[2])()
"""


def run_without(module: str, entry: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT, module, entry], cwd=ROOT, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("entry", "script", "module"),
    [
        ("server", "ecs-id-mapper-server", "flask"),
        ("server", "ecs-id-mapper-server", "gunicorn"),
        ("feed", "ecs-id-mapper-feed", "boto3"),
        ("feed", "ecs-id-mapper-feed", "flask"),
    ],
)
def test_without_the_server_extra_a_script_names_the_extra_in_one_line(entry, script, module):
    ran = run_without(module, entry)
    assert ran.returncode == 1
    assert ran.stdout == ""
    assert ran.stderr == (
        f"{script} needs the server extra: pip install 'ecs-id-mapper[server]' (no module named {module!r})\n"
    )


def test_a_missing_module_outside_the_extra_is_not_taken_for_it():
    ran = run_without("server.backoff", "feed")  # one of the project's own: a fault to show whole, not an extra
    assert ran.returncode == 1
    assert "Traceback" in ran.stderr and "server extra" not in ran.stderr


def test_the_scripts_pip_installs_are_these_entry_points():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["ecs-id-mapper-server"] == "server.console_scripts:server"
    assert scripts["ecs-id-mapper-feed"] == "server.console_scripts:feed"


def test_with_the_extra_the_server_script_runs_the_server_main(monkeypatch):
    from server import __main__ as server_main
    from server import console_scripts

    ran = []
    monkeypatch.setattr(server_main, "main", lambda: ran.append("server"))
    console_scripts.server()
    assert ran == ["server"]
