"""Both images built by `make images` (scripts/build-images: buildah where no Docker daemon answers, the stand-in base
where no registry does) and the whole loop run as containers with podman on the host network, loopback only: the
server on SQLite on a volume with a read-only root, the feed from the server image reading moto's SQS, the agent
polling a simulated ECS host. Skipped where buildah, podman or runc is missing (`.ci/run` installs them)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
import requests

from simhost import SimHostServer, SimulatedHost
from tests.deploy.dockerfile import ignored
from tests.server.ecs_samples import API_RUNTIME_ID, FARGATE_TASK, fargate_lifecycle
from tests.support import ROOT, Moto, eventually, free_port

MISSING = [tool for tool in ("buildah", "podman", "runc") if shutil.which(tool) is None]
pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(1800),  # a cold build: the stand-in base, then both images
    pytest.mark.skipif(bool(MISSING), reason=f"missing {', '.join(MISSING)} (apt-get install buildah podman runc)"),
]

PREFIX, TAG = "localhost/ecs-id-mapper-test", "test"
TOKEN = "container-token"
REGION = "us-east-1"
AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION}
# runc: crun refuses some hosts' hybrid cgroup layout. Ulimits under what root may raise there (podman's defaults are
# not). No systemd, so no timer runs a HEALTHCHECK: `podman healthcheck run` does, when asked.
PODMAN = ["podman", "--runtime", "runc"]
LIMITS = ["--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096"]
# No tmpfs but those asked for, and no volume for the images' VOLUMEs but those mounted: only what is named writes.
READ_ONLY = ["--read-only", "--read-only-tmpfs=false", "--image-volume", "ignore"]
TMP = ["--tmpfs", "/tmp:rw,mode=1777,size=64m"]
HEALTH = ["--health-interval", "disable"]  # no timer: checked with `podman healthcheck run`


def podman(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    result = subprocess.run([*PODMAN, *args], capture_output=True, text=True, timeout=timeout)
    if check:
        assert result.returncode == 0, f"podman {' '.join(args)}: {result.stdout[-1000:]}{result.stderr[-2000:]}"
    return result


def build(**settings: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "IMAGE_PREFIX": PREFIX, "TAG": TAG, **settings}
    return subprocess.run(
        [str(ROOT / "scripts" / "build-images")], env=env, capture_output=True, text=True, timeout=1500
    )


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    out = tmp_path_factory.mktemp("images")
    built = build(OUT=str(out))
    assert built.returncode == 0, built.stdout + built.stderr
    names = {image: f"{PREFIX}-{image}:{TAG}" for image in ("server", "agent")}
    for image, name in names.items():
        assert name in built.stdout and " MB " in built.stdout  # its size and build time, printed
        sbom = json.loads((out / f"{image}.cdx.json").read_text())
        assert sbom["bomFormat"] == "CycloneDX" and sbom["metadata"]["component"]["name"] == "ecs-id-mapper"
        assert "requests" in {component["name"] for component in sbom["components"]}
    return names


class Containers:
    """The containers and volumes one test makes, removed after it."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.volumes: list[str] = []

    def volume(self) -> str:
        name = f"ecs-id-mapper-test-{uuid.uuid4().hex[:10]}"
        podman("volume", "create", name)
        self.volumes.append(name)
        return name

    def run(self, image: str, *flags: str, env: dict[str, str], command: tuple[str, ...] = ()) -> str:
        name = f"ecs-id-mapper-test-{uuid.uuid4().hex[:10]}"
        settings = [f"--env={key}={value}" for key, value in env.items()]
        podman("run", "--detach", "--name", name, "--network", "host", *LIMITS, *flags, *settings, image, *command)
        self.names.append(name)
        return name

    def stop(self, name: str) -> int:
        """SIGTERM (podman stop), then the exit status the container's command returned."""
        podman("stop", "--time", "30", name, timeout=90)
        return int(podman("inspect", "--format", "{{.State.ExitCode}}", name).stdout)

    def healthy(self, name: str) -> bool:
        return podman("healthcheck", "run", name, check=False, timeout=60).returncode == 0

    def python(self, name: str, code: str) -> subprocess.CompletedProcess:
        return podman("exec", name, "python", "-c", code, check=False)

    def logs(self, name: str) -> str:
        return podman("logs", name, check=False).stdout + podman("logs", name, check=False).stderr

    def close(self) -> None:
        for name in self.names:
            podman("rm", "--force", "--volumes", "--time", "0", name, check=False)
        for volume in self.volumes:
            podman("volume", "rm", "--force", volume, check=False)


@pytest.fixture
def containers() -> Iterator[Containers]:
    made = Containers()
    yield made
    made.close()


def listing(image: str) -> dict:
    """What is under /app in ``image``, whether a .git or the build's CA secret is anywhere, and the environment."""
    code = (
        "import json, os\n"
        "files = [os.path.relpath(os.path.join(d, f), '/app') for d, _, fs in os.walk('/app') for f in fs]\n"
        "gits = [d for d, subdirs, _ in os.walk('/') if '.git' in subdirs and not d.startswith(('/proc', '/sys'))]\n"
        "print(json.dumps({'files': files, 'git': gits, 'secrets': os.path.exists('/run/secrets/pip-ca'),"
        " 'env': dict(os.environ)}))"
    )
    flags = ("--rm", "--network", "none", "--image-volume", "ignore", "--no-healthcheck", *LIMITS)
    ran = podman("run", *flags, image, "python", "-c", code)
    return json.loads(ran.stdout)


@pytest.mark.parametrize("image", ["server", "agent"])
def test_an_image_holds_only_what_dockerignore_lets_in_and_is_labelled(images, image):
    found = listing(images[image])
    assert found["files"], "nothing under /app"
    for path in found["files"]:
        assert path.startswith(f"{image}/") and not ignored(path, ROOT / ".dockerignore"), path
    expected = {str(p.relative_to(ROOT)) for p in (ROOT / image).rglob("*.py") if "__pycache__" not in p.parts}
    assert {p for p in found["files"] if p.endswith(".py")} == expected  # all of the package, none of the tests
    assert found["git"] == [] and not found["secrets"]
    assert not {key for key in found["env"] if key.startswith("PIP_CERT")}
    inspected = json.loads(podman("image", "inspect", images[image]).stdout)[0]
    config = inspected["Config"]
    assert config["User"] == "10001:10001"
    # Kept by building in Docker's format: the OCI image format has no healthcheck.
    assert inspected["Healthcheck"]["Test"] == ["CMD", "python", "-m", f"{image}.healthcheck"]
    labels = config["Labels"]
    revision = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    assert labels["org.opencontainers.image.revision"] == (revision or "unknown")
    assert labels["org.opencontainers.image.version"] == "0.1.0"
    assert labels["org.opencontainers.image.created"][:2] == "20"


def test_a_hash_mismatch_fails_the_build(images, tmp_path):
    for name in ("Dockerfile.agent", "Dockerfile.server", ".dockerignore", "pyproject.toml"):
        shutil.copy(ROOT / name, tmp_path / name)
    for name in ("locks", "agent"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    lock = tmp_path / "locks" / "agent.txt"
    lines = lock.read_text().splitlines()
    at = next(n for n, line in enumerate(lines) if line.startswith("idna=="))
    while lines[at + 1].strip().startswith("--hash="):  # every file of idna's release "has" another hash
        lines[at + 1] = "    --hash=sha256:" + "0" * 64 + (" \\" if lines[at + 1].endswith("\\") else "")
        at += 1
    lock.write_text("\n".join(lines) + "\n")
    built = build(CONTEXT=str(tmp_path), OUT=str(tmp_path / "out"), IMAGES="agent", TAG="tampered")
    assert built.returncode != 0
    assert "DO NOT MATCH THE HASHES" in built.stderr, built.stderr[-3000:]


def test_the_whole_loop_as_containers(images, containers, tmp_path):
    host = SimulatedHost(seed=22)
    sim = SimHostServer(host).start()
    moto = Moto().start()
    try:
        run_the_loop(images, containers, host, sim, moto)
    finally:
        for name in containers.names:
            print(f"--- {name}\n{containers.logs(name)[-3000:]}")
        moto.stop()
        sim.stop()


def run_the_loop(images: dict[str, str], c: Containers, host: SimulatedHost, sim: SimHostServer, moto: Moto) -> None:
    port, metrics_port = free_port(), free_port()
    url = f"http://127.0.0.1:{port}"
    aws = {**AWS, **{f"AWS_ENDPOINT_URL_{service}": moto.url for service in ("SQS", "ECS", "EC2")}}
    data, spool = c.volume(), c.volume()
    server_env = {
        "ECS_ID_MAPPER_BIND": f"127.0.0.1:{port}",
        "ECS_ID_MAPPER_TOKEN": TOKEN,
        "ECS_ID_MAPPER_WORKERS": "1",
        "ECS_ID_MAPPER_SERVICE_NAMES": "false",
        **aws,
    }
    server = c.run(images["server"], *READ_ONLY, *TMP, *HEALTH, "--volume", f"{data}:/data", env=server_env)
    eventually(lambda: requests.get(f"{url}/health", timeout=5).status_code == 200, "the server's health", 90)

    sqs = boto3.client("sqs", endpoint_url=moto.url, region_name=REGION, aws_access_key_id="testing",
                       aws_secret_access_key="testing")  # fmt: skip
    queue = sqs.create_queue(QueueName="ecs-events")["QueueUrl"]
    feed_env = {**server_env, "ECS_ID_MAPPER_EVENTS_QUEUE_URL": queue}
    feed_flags = (*READ_ONLY, "--no-healthcheck", "--volume", f"{data}:/data")  # it writes only the store
    feed = c.run(images["server"], *feed_flags, env=feed_env, command=("python", "-m", "server.feed"))
    agent_env = {
        "ECS_ID_MAPPER_SERVER_URL": url,
        "ECS_ID_MAPPER_TOKEN": TOKEN,
        "ECS_ID_MAPPER_ECS_AGENT_URL": sim.ecs_url,
        "ECS_ID_MAPPER_IMDS_URL": sim.imds_url,
        "ECS_ID_MAPPER_POLL_INTERVAL": "0.5",
        "ECS_ID_MAPPER_START_SPREAD": "0",  # one host: its first report at once
        "ECS_ID_MAPPER_METRICS_PORT": f"127.0.0.1:{metrics_port}",
    }
    agent_flags = (*READ_ONLY, *HEALTH, "--volume", f"{spool}:/spool")
    agent = c.run(images["agent"], *agent_flags, env=agent_env)

    # The agent's report lands, and the server's queries answer it.
    task = host.start_task("api")
    for step in ("created", "running"):
        host.advance(task, step)
    cid = task.containers[0].docker_id

    def record(container_id: str) -> dict:
        answer = requests.get(f"{url}/query/container_id/{container_id}/_all", timeout=5)
        return answer.json() if answer.status_code == 200 else {}

    found = eventually(lambda: record(cid).get("known_status") == "RUNNING" and record(cid), "the agent's report", 60)
    assert (found["task_arn"], found["instance_id"]) == (task.arn, host.instance["instance-id"])
    assert requests.get(f"{url}/query/container_id/{cid[:12]}", timeout=5).text == f"{task.task_id}\n"

    # The feed's events land in the same store.
    for event in fargate_lifecycle():
        sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(event))
    fargate = eventually(lambda: record(API_RUNTIME_ID).get("exit_code") and record(API_RUNTIME_ID), "the feed", 90)
    assert (fargate["task_id"], fargate["exit_code"]) == (FARGATE_TASK, "137")

    # Each runs as 10001, on a root filesystem it cannot write.
    for name in (server, feed, agent):
        status = c.python(name, "print(open('/proc/1/status').read())").stdout
        assert "\nUid:\t10001\t10001\t10001\t10001\n" in status and "\nGid:\t10001\t" in status, status
        written = c.python(name, "open('/opt/venv/probe', 'w')")
        assert written.returncode != 0 and "Read-only file system" in written.stderr, written.stderr

    # The healthchecks: healthy, then not while the server's workers cannot answer, then healthy again.
    assert c.healthy(server) and c.healthy(agent)
    signal_workers = (
        "import os, signal\nfor pid in os.listdir('/proc'):\n"
        "    if pid.isdigit() and int(pid) not in (1, os.getpid()):\n        os.kill(int(pid), signal.{})"
    )
    assert c.python(server, signal_workers.format("SIGSTOP")).returncode == 0
    try:
        assert not c.healthy(server)
    finally:
        assert c.python(server, signal_workers.format("SIGCONT")).returncode == 0
    eventually(lambda: c.healthy(server), "the server to be healthy again", 30)

    # The server goes; what the agent sees meanwhile waits in its spool, which a new agent container picks up.
    assert c.stop(server) == 0
    assert not c.healthy(server)
    for step in ("stopping", "stopped"):
        host.advance(task, step)
    assert sim.wait_for_polls(3)
    assert c.stop(agent) == 0
    mountpoint = Path(podman("volume", "inspect", "--format", "{{.Mountpoint}}", spool).stdout.strip())
    state = json.loads((mountpoint / "agent-state.json").read_text())
    assert cid in json.dumps(state["outbox"]), state  # the stop, not delivered
    host.advance(task, "vanished")  # the host no longer lists it: only the spool knows how it ended
    agent = c.run(images["agent"], *agent_flags, env=agent_env)
    podman("start", server)
    eventually(lambda: record(cid).get("known_status") == "STOPPED", "the spooled stop to land", 90)
    events = requests.get(f"{url}/query/container_id/{cid}/events", timeout=5).json()
    assert ("known_status", "RUNNING", "STOPPED") in [(e["event"], e["from"], e["to"]) for e in events]

    for name in (agent, feed, server):
        assert c.stop(name) == 0, c.logs(name)
        assert "Traceback" not in c.logs(name), c.logs(name)
