"""Packaging: `pip install .` is the agent and `requests`, nothing of the server; `.[server]` adds the server's
dependencies; requirements.txt pins exactly the packages pyproject.toml names."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.support import ROOT

PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
SERVER_ONLY = {"flask", "werkzeug", "gunicorn", "boto3", "botocore", "prometheus-client", "pyyaml"}


def name(requirement: str) -> str:
    """The canonical distribution name of a requirement line (PEP 503)."""
    return re.sub(r"[-_.]+", "-", re.split(r"[\s\[<>=!~;]", requirement.strip(), maxsplit=1)[0]).lower()


def pinned() -> dict[str, str]:
    """requirements.txt as canonical name → its pin line."""
    lines = (line.split("#")[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines())
    return {name(line): line for line in lines if line}


def test_the_agent_needs_requests_alone_and_the_server_the_rest_of_what_requirements_txt_pins():
    agent = {name(r) for r in PROJECT["dependencies"]}
    server = {name(r) for r in PROJECT["optional-dependencies"]["server"]}
    assert agent == {"requests"}
    assert server == SERVER_ONLY
    assert set(pinned()) == agent | server
    assert all("==" in line for line in pinned().values())


def pip(python: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    # pip as configured on this machine (index, find-links, cache): the same source CI installs from.
    result = subprocess.run(
        [str(python), "-m", "pip", "--disable-pip-version-check", "--no-input", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return result


@pytest.mark.slow
def test_the_agent_installs_and_starts_without_the_servers_dependencies(tmp_path):
    source = tmp_path / "source"  # a copy: building in place would leave build/ and *.egg-info in the checkout
    for part in ("agent", "server", "simhost"):
        shutil.copytree(ROOT / part, source / part, ignore=shutil.ignore_patterns("__pycache__"))
    for part in ("pyproject.toml", "requirements.txt", "README.md", "LICENSE"):
        shutil.copy(ROOT / part, source / part)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"

    pip(python, "install", "--quiet", "--constraint", "requirements.txt", ".", cwd=source)

    installed = {name(d["name"]) for d in json.loads(pip(python, "list", "--format=json", cwd=tmp_path).stdout)}
    assert "requests" in installed
    assert not installed & SERVER_ONLY, installed & SERVER_ONLY
    imports = subprocess.run(
        [str(python), "-c", "import agent.__main__, agent.daemon\ntry:\n import flask\nexcept ImportError: pass\n"
         "else: raise SystemExit('flask is importable')"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert imports.returncode == 0, imports.stderr
    started = subprocess.run(
        [str(venv / "bin" / "ecs-id-mapper-agent")], cwd=tmp_path, env={}, capture_output=True, text=True, timeout=60
    )
    assert started.returncode == 2  # it ran, and asks for its one required setting
    assert "ECS_ID_MAPPER_SERVER_URL: required" in started.stderr

    report = tmp_path / "server.json"
    pip(
        python, "install", "--dry-run", "--quiet", "--ignore-installed", "--report", str(report),
        "--constraint", "requirements.txt", ".[server]", cwd=source,
    )  # fmt: skip
    would_install = {name(i["metadata"]["name"]) for i in json.loads(report.read_text())["install"]}
    assert would_install >= SERVER_ONLY
