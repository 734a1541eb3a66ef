"""The images' lock files (locks/*.txt, written by `make lock`) against what they lock: requirements.txt and
pyproject.toml. Offline: a lock is stale when its top-level pins differ from its inputs' pins, when it holds a
package nothing needs, or when it names a package it does not pin. The images install nothing else, by hash."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import ROOT

LOCKS = ROOT / "locks"
# How each lock's annotations name the input that asked for a package, and the file that names those packages.
INPUTS = {
    "server.txt": "-r requirements.txt",
    "agent.txt": "ecs-id-mapper (pyproject.toml)",
    "sbom.txt": "-r locks/sbom.in",
}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass
class Locked:
    version: str
    hashes: list[str]
    via: list[str]  # the packages (or input files) that ask for it


def read_lock(path: Path) -> tuple[dict[str, Locked], str]:
    """The packages of a uv/pip-tools lock, and the command its header records."""
    packages: dict[str, Locked] = {}
    command = ""
    current: Locked | None = None
    in_via = False
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if line.startswith("#    uv pip compile"):
            command = stripped.lstrip("# ")
        elif line and not line[0].isspace() and not line.startswith("#"):
            requirement = line.split(";")[0].rstrip(" \\")
            name, _, version = requirement.partition("==")
            assert version, f"{path.name}: {line!r} is not pinned with =="
            current = packages[canonical(name)] = Locked(version.strip(), [], [])
            in_via = False
        elif current and stripped.startswith("--hash="):
            current.hashes.append(stripped.removeprefix("--hash=").rstrip(" \\"))
        elif current and stripped.startswith("# via"):
            rest = stripped.removeprefix("# via").strip()
            in_via = not rest
            if rest:
                current.via.append(rest)
        elif current and in_via and stripped.startswith("#   "):
            current.via.append(stripped.removeprefix("#").strip())
        else:
            in_via = False
    return packages, command


def pins(text: str) -> dict[str, str]:
    """``NAME==VERSION`` lines (comments and blank lines ignored) as canonical name → version."""
    found = {}
    for line in text.splitlines():
        requirement = line.split("#")[0].strip()
        if requirement:
            name, _, version = requirement.partition("==")
            found[canonical(name)] = version.strip()
    return found


def wanted(lock: str, root: Path = ROOT) -> dict[str, str | None]:
    """The top-level packages a lock must hold, with the version its inputs pin (None: any)."""
    requirements = pins((root / "requirements.txt").read_text())
    if lock == "server.txt":
        return dict(requirements)
    if lock == "agent.txt":
        project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
        names = [canonical(re.split(r"[\s\[<>=!~;]", dependency)[0]) for dependency in project["dependencies"]]
        return {name: requirements.get(name) for name in names}
    return dict(pins((root / "locks" / "sbom.in").read_text()))


def stale(lock: str, root: Path = ROOT) -> list[str]:
    """Why ``locks/<lock>`` no longer matches its inputs under ``root``: empty when it does."""
    packages, command = read_lock(root / "locks" / lock)
    problems = []
    top = {name for name, locked in packages.items() if INPUTS[lock] in locked.via}
    for name, version in wanted(lock, root).items():
        if name not in packages:
            problems.append(f"{name} is not in the lock")
        elif version and packages[name].version != version:
            problems.append(f"{name}: the lock has {packages[name].version}, the inputs pin {version}")
    problems += [f"{name} is locked as asked for, but no input names it" for name in top - set(wanted(lock, root))]
    for name, locked in packages.items():
        if not locked.hashes:
            problems.append(f"{name} has no hash")
        askers = [via.split(" ")[0] for via in locked.via if not via.startswith("-")]
        needed = [asker for asker in askers if canonical(asker) in packages or asker == "ecs-id-mapper"]
        if name not in top and not needed:
            problems.append(f"{name}: nothing in the lock needs it")
    if f"-o locks/{lock}" not in command or "--generate-hashes" not in command:
        problems.append(f"the header's command is not what `make lock` runs: {command!r}")
    return problems


@pytest.mark.parametrize("lock", sorted(INPUTS))
def test_lock_is_current_with_its_inputs(lock):
    assert stale(lock) == [], f"locks/{lock} is stale: run `make lock`"


def test_the_lock_files_are_what_the_dockerfiles_install():
    for image, lock in (("server", "server.txt"), ("agent", "agent.txt")):
        dockerfile = (ROOT / f"Dockerfile.{image}").read_text()
        assert f"locks/{lock}" in dockerfile
        assert "--require-hashes" in dockerfile and "--no-deps" in dockerfile
        assert "locks/sbom.txt" in dockerfile


def copy_inputs(into: Path) -> Path:
    (into / "locks").mkdir(parents=True)
    for name in ("requirements.txt", "pyproject.toml", "locks/sbom.in", *(f"locks/{lock}" for lock in INPUTS)):
        (into / name).write_text((ROOT / name).read_text())
    return into


def test_a_changed_pin_makes_the_lock_stale(tmp_path):
    root = copy_inputs(tmp_path)
    requirements = (root / "requirements.txt").read_text()
    flask = pins(requirements)["flask"]
    (root / "requirements.txt").write_text(requirements.replace(f"Flask=={flask}", "Flask==0.12.4"))
    assert stale("server.txt", root) == [f"flask: the lock has {flask}, the inputs pin 0.12.4"]
    assert stale("agent.txt", root) == []  # the agent does not have Flask


def test_an_added_or_dropped_requirement_makes_the_lock_stale(tmp_path):
    root = copy_inputs(tmp_path)
    requirements = (root / "requirements.txt").read_text()
    (root / "requirements.txt").write_text(requirements + "tabulate==0.9.0\n")
    assert stale("server.txt", root) == ["tabulate is not in the lock"]
    kept = [line for line in requirements.splitlines() if not line.startswith("gunicorn==")]
    (root / "requirements.txt").write_text("\n".join(kept) + "\n")
    assert stale("server.txt", root) == ["gunicorn is locked as asked for, but no input names it"]
    pyproject = (root / "pyproject.toml").read_text()
    (root / "pyproject.toml").write_text(pyproject.replace('dependencies = ["requests"]', 'dependencies = ["idna"]'))
    assert "idna is locked as asked for" not in " ".join(stale("agent.txt", root))
    assert "requests is locked as asked for, but no input names it" in stale("agent.txt", root)


def test_a_package_left_over_or_without_hashes_makes_the_lock_stale(tmp_path):
    root = copy_inputs(tmp_path)
    lock = root / "locks" / "agent.txt"
    lock.write_text(lock.read_text() + "six==1.17.0 \\\n    --hash=sha256:" + "0" * 64 + "\n    # via old-thing\n")
    assert stale("agent.txt", root) == ["six: nothing in the lock needs it"]
    text = lock.read_text()
    lock.write_text(re.sub(r"(idna==\S+) \\\n(\s+--hash=\S+( \\)?\n)+", r"\1\n", text))
    assert "idna has no hash" in stale("agent.txt", root)
