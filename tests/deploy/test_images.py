"""The two images, checked without Docker (CI has no daemon): hadolint on each Dockerfile, the build context its
COPY lines read, and each image's CMD, with its ENV applied, run as a local process from the repository root."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.deploy.dockerfile import Dockerfile, ignored
from tests.support import ROOT, eventually, free_port, wait_for

HADOLINT = Path(sys.executable).with_name("hadolint")
SERVER = Dockerfile.read(ROOT / "Dockerfile.server")
AGENT = Dockerfile.read(ROOT / "Dockerfile.agent")
TOKEN = "image-token"


def hadolint(path: Path) -> subprocess.CompletedProcess:
    """hadolint failing on any finding, even of the lowest level."""
    return subprocess.run(
        [HADOLINT, "--no-color", "--failure-threshold", "style", str(path)],
        capture_output=True,
        text=True,
        cwd=path.parent,
        timeout=60,
    )


@pytest.mark.parametrize("name", ["Dockerfile.server", "Dockerfile.agent"])
def test_dockerfile_lints_clean(name):
    result = hadolint(ROOT / name)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_fails_on_a_finding(tmp_path):
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM python:latest\nRUN pip install requests\nCMD python -m server\n")
    result = hadolint(dockerfile)
    assert result.returncode != 0
    for rule in ("DL3007", "DL3013", "DL3025"):  # `latest`, an unpinned package, a shell-form CMD
        assert rule in result.stdout


@pytest.mark.parametrize("image", [SERVER, AGENT], ids=["server", "agent"])
def test_image_copies_only_what_the_build_context_holds_and_runs_as_a_user(image):
    dockerignore = ROOT / ".dockerignore"
    for source in image.copied:
        assert (ROOT / source).exists(), source
        assert not ignored(source, dockerignore), f".dockerignore keeps {source} out of the build context"
    kept_out_paths = (
        "tests",
        ".venv",
        "data",
        ".git",
        "server/__pycache__",
        "build",
        "scripts",
        "requirements-dev.txt",
    )
    for kept_out in kept_out_paths:
        assert ignored(kept_out, dockerignore), kept_out
    assert image.user.split(":")[0] not in ("root", "0")


# What the agent image installs: `requests` and the distributions it depends on.
AGENT_DISTRIBUTIONS = {"requests", "urllib3", "idna", "certifi", "charset-normalizer"}
# What requests imports only when it is installed (SOCKS proxies), which the image does without.
OPTIONAL = {"PySocks"}
IMPORT_EVERY_AGENT_MODULE = """
import importlib.metadata, pkgutil, sys
before = set(sys.modules)
import agent
for module in pkgutil.walk_packages(agent.__path__, "agent."):
    __import__(module.name)
top = {name.split(".")[0] for name in set(sys.modules) - before} - set(sys.stdlib_module_names) - {"agent"}
owners = importlib.metadata.packages_distributions()
files = [name for name in top if getattr(sys.modules.get(name), "__file__", None)]
print(" ".join(sorted(dist for name in files for dist in owners.get(name, [name]))))
"""


def test_agent_imports_nothing_its_image_lacks():
    imported = subprocess.run(
        [sys.executable, "-c", IMPORT_EVERY_AGENT_MODULE], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert imported.returncode == 0, imported.stderr
    assert "requests" in imported.stdout.split()
    assert set(imported.stdout.split()) - OPTIONAL <= AGENT_DISTRIBUTIONS
    locked = {line.split("==")[0] for line in (ROOT / "locks" / "agent.txt").read_text().splitlines() if "==" in line}
    assert locked == AGENT_DISTRIBUTIONS
    assert not any(source.startswith("server") for source in AGENT.copied)


def environment(image: Dockerfile, rewrites: dict[str, str], **settings: str) -> dict[str, str]:
    """A container's environment: the image's ENV with volume paths rewritten, then what a deployment sets."""
    env = {"PATH": "/usr/bin:/bin", "NO_PROXY": "127.0.0.1", "AWS_ENDPOINT_URL_ECS": "http://127.0.0.1:9"}
    for key, value in image.env.items():
        for old, new in rewrites.items():
            value = value.replace(old, new)
        env[key] = value
    return {**env, **settings}


def command(image: Dockerfile) -> list[str]:
    """The image's CMD, with this interpreter standing in for the image's `python`."""
    cmd = image.cmd
    assert cmd[0] == "python", cmd
    return [sys.executable, *cmd[1:]]


class Running:
    """An image's command as a local process, its output in a log file, stopped with SIGTERM."""

    def __init__(self, image: Dockerfile, env: dict[str, str], log: Path):
        self.log_path = log
        with open(log, "ab") as out:
            self.process = subprocess.Popen(command(image), cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)

    def stop(self) -> int:
        self.process.terminate()
        try:
            return self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def server_image(tmp_path) -> Iterator[tuple[Running, str]]:
    """The server image's command on a free loopback port, its SQLite volume in a temporary directory."""
    volume, port = tmp_path / "data", free_port()
    assert SERVER.volumes == ["/data", "/tmp"]  # the store's directory, and gunicorn's and the metrics' scratch
    volume_path = "/data"
    assert SERVER.env["ECS_ID_MAPPER_BIND"] == "0.0.0.0:5001"
    assert SERVER.env["ECS_ID_MAPPER_STORE"].startswith(f"sqlite:///{volume_path}/")
    env = environment(
        SERVER,
        {volume_path: str(volume), "0.0.0.0:5001": f"127.0.0.1:{port}"},
        ECS_ID_MAPPER_TOKEN=TOKEN,
        HOME=str(tmp_path),
    )
    server = Running(SERVER, env, tmp_path / "server.log")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{url}/health", process=server.process)
        yield server, url
    finally:
        server.stop()
    assert "Traceback" not in server.log()
    assert list(volume.glob("*.sqlite3")), "the store's file is not in the volume"


@pytest.mark.slow
def test_server_image_command_answers_health_and_its_healthcheck_agrees(server_image, tmp_path):
    server, url = server_image
    health = requests.get(f"{url}/health", timeout=10)
    assert (health.status_code, health.json()) == (200, {"status": "ok", "store": "sqlite"})

    probe_env = environment(SERVER, {"0.0.0.0:5001": url.removeprefix("http://")})
    healthy = subprocess.run([sys.executable, *SERVER.healthcheck[1:]], env=probe_env, capture_output=True, timeout=30)
    assert healthy.returncode == 0, healthy.stderr
    assert server.stop() == 0
    dead = subprocess.run([sys.executable, *SERVER.healthcheck[1:]], env=probe_env, capture_output=True, timeout=30)
    assert dead.returncode != 0


@pytest.mark.slow
def test_agent_image_command_polls_a_host_and_its_report_reaches_the_server(server_image, ecs_host, tmp_path):
    _, server_url = server_image
    host = ecs_host.host
    sim_task = host.start_task()
    host.advance(sim_task, "running")
    cid = sim_task.containers[0].docker_id
    (spool_path,) = AGENT.volumes
    assert AGENT.env["ECS_ID_MAPPER_SPOOL_DIR"] == spool_path
    env = environment(
        AGENT,
        {spool_path: str(tmp_path / "spool")},
        ECS_ID_MAPPER_SERVER_URL=server_url,
        ECS_ID_MAPPER_TOKEN=TOKEN,
        ECS_ID_MAPPER_ECS_AGENT_URL=ecs_host.ecs_url,
        ECS_ID_MAPPER_IMDS_URL=ecs_host.imds_url,
        ECS_ID_MAPPER_POLL_INTERVAL="0.2",
        HOME=str(tmp_path),
    )
    agent = Running(AGENT, env, tmp_path / "agent.log")
    try:

        def record() -> dict | None:
            answer = requests.get(f"{server_url}/query/container_id/{cid}/_all", timeout=5)
            return answer.json() if answer.status_code == 200 else None

        found = eventually(record, "the agent's report to reach the server")
        assert (found["task_arn"], found["known_status"]) == (sim_task.arn, "RUNNING")
        assert found["instance_id"] == host.instance["instance-id"]
    finally:
        code = agent.stop()
    assert code == 0, agent.log()
    assert "Traceback" not in agent.log()
    assert (tmp_path / "spool").is_dir()
