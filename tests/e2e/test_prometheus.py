"""A real Prometheus pointed at the real server: ``http_sd_configs`` with the read token and the relabelling that
docs/prometheus.md gives, checked through ``/api/v1/targets`` as containers start, stop and vanish and hosts go
silent.

Prometheus scrapes whatever discovery lists, so every address in these records is 127.0.0.1 and Prometheus reaches
everything through a proxy of the test that refuses any host but the loopback one: no scrape leaves the machine.
Prometheus comes from PATH (``.ci/run`` installs Debian's package); without it the tests skip.
"""

from __future__ import annotations

import contextlib
import copy
import http.client
import os
import select
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
import yaml

from tests.server.test_discovery import documented_scrape_configs
from tests.support import Moto, ServerProcess, eventually, free_port

pytestmark = pytest.mark.slow

TOKEN = "e2e-report-token"
READ_TOKEN = "e2e-read-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
LOOPBACK = {"127.0.0.1", "localhost"}
#: Prometheus refreshes discovery and scrapes this often: a target shows up or leaves within a few seconds.
INTERVAL = "1s"
#: How long a change may take to reach /api/v1/targets: a refresh, a scrape, and a loaded 2-core machine.
SETTLE = 20.0
#: moto's account, in every ARN the ECS feed case sends, so that the task definition it names is moto's.
ACCOUNT = "123456789012"
REGION = "us-west-2"
CLUSTER = "e2e"


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


# What Prometheus scrapes: a tiny exporter, reached through a proxy that only goes to the loopback host


class Exporter(BaseHTTPRequestHandler):
    """An exporter's ``/metrics``, or any path (the label convention may name one)."""

    def do_GET(self) -> None:
        body = b"# TYPE e2e_exporter_up gauge\ne2e_exporter_up 1\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


class LoopbackProxy(BaseHTTPRequestHandler):
    """An HTTP proxy that forwards to 127.0.0.1 or localhost and answers 403 to anything else, CONNECT included;
    every request it saw is in ``server.seen`` as (method, host)."""

    HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade"}

    def _refuse(self) -> None:
        self.send_response(403)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_CONNECT(self) -> None:
        host, _, port = self.path.rpartition(":")
        self.server.seen.append(("CONNECT", host))  # type: ignore[attr-defined]
        if host.strip("[]") not in LOOPBACK or not port.isdigit():
            return self._refuse()
        with socket.create_connection((host, int(port)), timeout=10) as upstream:
            self.send_response(200)
            self.end_headers()
            ends = [self.connection, upstream]
            while True:
                ready, _, _ = select.select(ends, [], [], 10)
                if not ready:
                    return
                for end in ready:
                    data = end.recv(65536)
                    if not data:
                        return
                    (upstream if end is self.connection else self.connection).sendall(data)

    def _forward(self) -> None:
        url = urlsplit(self.path)
        self.server.seen.append((self.command, url.hostname or ""))  # type: ignore[attr-defined]
        if url.scheme != "http" or url.hostname not in LOOPBACK:  # a path alone names no host: refused too
            return self._refuse()
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in self.HOP_BY_HOP}
        upstream = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=10)
        try:
            upstream.request(self.command, url.path + (f"?{url.query}" if url.query else ""), body, headers)
            answer = upstream.getresponse()
            data = answer.read()
        except OSError:
            self.send_response(502)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        finally:
            upstream.close()
        self.send_response(answer.status)
        for name, value in answer.getheaders():
            if name.lower() not in self.HOP_BY_HOP | {"content-length"}:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_HEAD = _forward

    def log_message(self, *args: Any) -> None:
        pass


@contextlib.contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    server.seen = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, name="e2e-http", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


# Prometheus with the documented configuration, pointed at loopback


def prometheus_config(server_url: str, token_file: Path, proxy_url: str, exporter_port: int) -> dict:
    """docs/prometheus.md's scrape configs, every URL on loopback, every request through the proxy, short
    intervals; the relabelling exactly as documented."""
    address = urlsplit(server_url).netloc
    jobs = []
    for job in copy.deepcopy(list(documented_scrape_configs().values())):
        job.update(scrape_interval=INTERVAL, scrape_timeout=INTERVAL, proxy_url=proxy_url)
        for sd in job.get("http_sd_configs", []):
            documented = urlsplit(sd["url"])
            # The documented ?port=9090 names the exporter's port here: the records publish that one.
            query = documented.query.replace("port=9090", f"port={exporter_port}")
            sd.update(url=f"{server_url}{documented.path}" + (f"?{query}" if query else ""))
            sd.update(refresh_interval=INTERVAL, proxy_url=proxy_url)
            sd["authorization"]["credentials_file"] = str(token_file)
        if "authorization" in job:
            job["authorization"]["credentials_file"] = str(token_file)
        for static in job.get("static_configs", []):
            static["targets"] = [address]
        jobs.append(job)
    return {"global": {"scrape_interval": INTERVAL, "evaluation_interval": INTERVAL}, "scrape_configs": jobs}


class Prometheus:
    """Our own ``prometheus`` process: its own config and data directory, a free loopback port; never the
    service Debian's package sets up."""

    def __init__(self, config: dict, workdir: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config_path = workdir / "prometheus.yml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.data = workdir / "prometheus-data"
        self.log_path = workdir / "prometheus.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> Prometheus:
        command = [
            shutil.which("prometheus") or "prometheus",
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.data}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=debug",
        ]
        # Only what it needs: no proxy variables, no AWS settings, the proxy comes from its configuration.
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.data)}
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            eventually(lambda: self._ready(), "prometheus to be ready", timeout=30)
        except BaseException:
            self.stop()
            raise
        return self

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            pytest.fail(f"prometheus exited with {self.process.returncode}:\n{self.log()}")
        return requests.get(f"{self.url}/-/ready", timeout=2).status_code == 200

    def targets(self) -> list[dict]:
        answer = requests.get(f"{self.url}/api/v1/targets", params={"state": "active"}, timeout=5)
        answer.raise_for_status()
        return answer.json()["data"]["activeTargets"]

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class Stack:
    """The server, the exporter, the proxy and Prometheus, and what a test does with them."""

    def __init__(self, server: ServerProcess, prometheus: Prometheus, exporter_port: int, proxy: ThreadingHTTPServer):
        self.server = server
        self.prometheus = prometheus
        self.exporter_port = exporter_port
        self.proxy = proxy

    def report(self, host: dict, *containers: dict, full: bool = False) -> None:
        body = {"host": host, "containers": list(containers), "full": full}
        answer = requests.post(f"{self.server.url}/report/map", json=body, headers=AUTH, timeout=10)
        assert answer.status_code == 200, answer.text

    def targets(self, job: str) -> dict[str, dict]:
        """The job's active targets by their ``instance`` label (TASK_ID/CONTAINER after the relabelling)."""
        return {t["labels"]["instance"]: t for t in self.prometheus.targets() if t["labels"]["job"] == job}

    def wait(self, check: Callable[[], Any], what: str, timeout: float = SETTLE) -> Any:
        return eventually(check, what, timeout=timeout)

    def scraped_up(self, job: str, instance: str) -> dict | None:
        target = self.targets(job).get(instance)
        return target if target and target["health"] == "up" else None


@pytest.fixture
def make_stack(tmp_path: Path) -> Iterator[Callable[..., Stack]]:
    """Start a stack; ``settings`` are more ``ECS_ID_MAPPER_*`` variables (or AWS ones) for the server."""
    if shutil.which("prometheus") is None:
        pytest.skip("prometheus is not on PATH: apt-get install prometheus (.ci/run installs it in CI)")
    started: list[Any] = []
    exits = contextlib.ExitStack()

    def make(**settings: str) -> Stack:
        workdir = tmp_path / f"stack{len(started)}"
        workdir.mkdir()
        exporter = exits.enter_context(serving(Exporter))
        proxy = exits.enter_context(serving(LoopbackProxy))
        token_file = workdir / "read.token"
        token_file.write_text(READ_TOKEN + "\n")
        env = {
            "ECS_ID_MAPPER_STORE": f"sqlite:///{workdir}/mapper.sqlite3",
            "ECS_ID_MAPPER_TOKEN": TOKEN,
            "ECS_ID_MAPPER_READ_TOKEN": READ_TOKEN,
            "ECS_ID_MAPPER_SERVICE_NAMES": "false",
            "ECS_ID_MAPPER_WORKERS": "1",
            **settings,
        }
        server = ServerProcess(env, workdir / "server.log").start()
        started.append(server)
        exporter_port = exporter.server_address[1]
        proxy_url = f"http://127.0.0.1:{proxy.server_address[1]}"
        config = prometheus_config(server.url, token_file, proxy_url, exporter_port)
        prometheus = Prometheus(config, workdir).start()
        started.append(prometheus)
        return Stack(server, prometheus, exporter_port, proxy)

    try:
        yield make
    finally:
        for process in reversed(started):
            process.stop()
        exits.close()
        logs = "".join(p.log() for p in started if isinstance(p, ServerProcess))
        assert "Traceback" not in logs, logs


def host(n: int) -> dict:
    return {
        "instance_id": f"i-0e2e{n:013x}",
        "instance_ip": "127.0.0.1",
        "instance_type": "m5.large",
        "instance_az": f"{REGION}a",
        "region": REGION,
        "host_name": "localhost",
        "cluster_name": CLUSTER,
        "container_instance_arn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:container-instance/{CLUSTER}/{n:032x}",
        "ecs_agent_version": "Amazon ECS Agent - v1.88.0 (4f2e1d0c)",
    }


def task_id(n: int) -> str:
    return f"{n:032x}"


def container(n: int, port: int, status: str = "RUNNING", name: str = "app") -> dict:
    """Container ``n`` of task ``n`` in the ``api`` family (the documented job keeps that family), publishing the
    exporter's port on the host (host networking: the same port inside and out)."""
    return {
        "container_id": f"{n:064x}",
        "container_name": name,
        "docker_name": f"ecs-api-1-{name}-{n:x}",
        "image": "registry.example/api:1.0",
        "task_arn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/{CLUSTER}/{task_id(n)}",
        "task_name": "api",
        "task_version": "1",
        "desired_status": "STOPPED" if status == "STOPPED" else "RUNNING",
        "known_status": status,
        "ports": [{"container_port": port, "host_port": port, "protocol": "tcp"}],
        "sample_time": now(),
    }


def instance(n: int, name: str = "app") -> str:
    return f"{task_id(n)}/{name}"


def only_loopback_was_asked(stack: Stack) -> None:
    seen = stack.proxy.seen  # type: ignore[attr-defined]
    assert seen, "Prometheus did not go through the proxy"
    assert {h for _, h in seen} <= LOOPBACK, seen


# Today's behaviour


def test_a_started_container_becomes_a_target_and_a_stopped_one_leaves(make_stack):
    stack = make_stack()
    stack.report(host(1), container(1, stack.exporter_port), full=True)

    target = stack.wait(lambda: stack.scraped_up("ecs", instance(1)), "the started container scraped up")

    assert target["scrapeUrl"] == f"http://127.0.0.1:{stack.exporter_port}/metrics"
    assert target["lastError"] == ""
    assert target["labels"]["cluster"] == CLUSTER  # the documented relabelling, run by Prometheus itself
    assert target["labels"]["container_id"] == f"{1:064x}"
    assert target["discoveredLabels"]["__meta_ecs_container_port"] == str(stack.exporter_port)
    assert target["discoveredLabels"]["__meta_ecs_host_port"] == str(stack.exporter_port)

    stack.report(host(1), container(1, stack.exporter_port, status="STOPPED"))
    stack.wait(lambda: instance(1) not in stack.targets("ecs"), "the stopped container to leave the targets")
    only_loopback_was_asked(stack)


def test_the_servers_own_metrics_scrape_clean_with_the_read_token(make_stack):
    stack = make_stack()

    target = stack.wait(lambda: stack.scraped_up("ecs-id-mapper", urlsplit(stack.server.url).netloc), "/metrics up")

    assert target["lastError"] == ""
    assert "Invalid content type" not in stack.prometheus.log()
    # Discovery answered (an empty list), not a 401: the token went with the Bearer scheme.
    assert "401" not in stack.prometheus.log()
    only_loopback_was_asked(stack)


def test_a_silent_hosts_containers_leave_discovery(make_stack):
    stack = make_stack(ECS_ID_MAPPER_HOST_LEASE="6")
    stack.report(host(2), container(2, stack.exporter_port), full=True)
    stack.wait(lambda: stack.scraped_up("ecs", instance(2)), "the container scraped up", timeout=6)

    # Nothing more from its host: once the lease lapsed, it is no target, although its record says RUNNING.
    stack.wait(lambda: instance(2) not in stack.targets("ecs"), "the lost container to leave the targets")
    shown = requests.get(
        f"{stack.server.url}/query/container_id/{2:064x}/_all",
        headers={"Authorization": f"Bearer {READ_TOKEN}"},
        timeout=10,
    ).json()
    assert (shown["known_status"], "lost_since" in shown) == ("RUNNING", True)


def test_a_host_that_keeps_reporting_keeps_its_containers(make_stack):
    stack = make_stack(ECS_ID_MAPPER_HOST_LEASE="6")
    stack.report(host(3), container(3, stack.exporter_port), full=True)
    stack.wait(lambda: stack.scraped_up("ecs", instance(3)), "the container scraped up", timeout=6)

    deadline = time.monotonic() + 10  # beyond the lease: only the keep-alives renew it
    while time.monotonic() < deadline:
        stack.report(host(3))  # the agent's keep-alive: its host, no containers
        assert instance(3) in stack.targets("ecs")
        time.sleep(1)


def test_a_container_its_hosts_full_snapshot_no_longer_lists_leaves(make_stack):
    stack = make_stack()
    port = stack.exporter_port
    stack.report(host(4), container(4, port), container(5, port), full=True)
    stack.wait(lambda: {instance(4), instance(5)} <= set(stack.targets("ecs")), "both containers as targets")

    stack.report(host(4), {**container(4, port), "sample_time": now()}, full=True)  # 5 vanished from its host

    stack.wait(lambda: instance(5) not in stack.targets("ecs"), "the vanished container to leave", timeout=10)
    assert instance(4) in stack.targets("ecs")


def test_a_fargate_task_from_the_ecs_feed_becomes_a_target(make_stack):
    import boto3

    moto = Moto().start()
    try:
        stack = make_stack(AWS_ENDPOINT_URL_ECS=moto.url, AWS_DEFAULT_REGION=REGION)
        ecs = boto3.client("ecs", endpoint_url=moto.url, region_name=REGION)
        definition = _register(ecs, stack.exporter_port)
        task = "f" * 32
        event = _fargate_event(task, definition, stack.exporter_port)
        answer = requests.post(f"{stack.server.url}/report/ecs-events", json=event, headers=AUTH, timeout=10)
        assert answer.status_code == 200, answer.text

        # The documented label convention: the task definition's PROMETHEUS_EXPORTER_PORT picks the port.
        target = stack.wait(
            lambda: stack.scraped_up("ecs-exporters", f"{task}/api"), "the Fargate task scraped up", timeout=15
        )
        assert target["scrapeUrl"] == f"http://127.0.0.1:{stack.exporter_port}/metrics"
        assert target["discoveredLabels"]["__meta_ecs_network_mode"] == "awsvpc"
    finally:
        moto.stop()


def _register(ecs: Any, port: int) -> str:
    answer = ecs.register_task_definition(
        family="orders-api",
        networkMode="awsvpc",
        requiresCompatibilities=["FARGATE"],
        cpu="256",
        memory="512",
        containerDefinitions=[
            {
                "name": "api",
                "image": "registry.example/orders-api:4.2.0",
                "essential": True,
                "portMappings": [{"containerPort": port, "protocol": "tcp"}],
                "dockerLabels": {"PROMETHEUS_EXPORTER_PORT": str(port)},
            }
        ],
    )
    return str(answer["taskDefinition"]["taskDefinitionArn"])


def _fargate_event(task: str, definition: str, port: int) -> dict:
    arn = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/{CLUSTER}/{task}"
    moment = now()
    return {
        "version": "0",
        "id": f"e2e-{task[:8]}",
        "detail-type": "ECS Task State Change",
        "source": "aws.ecs",
        "account": ACCOUNT,
        "time": moment,
        "region": REGION,
        "resources": [arn],
        "detail": {
            "clusterArn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/{CLUSTER}",
            "taskArn": arn,
            "taskDefinitionArn": definition,
            "group": "service:orders-api",
            "launchType": "FARGATE",
            "availabilityZone": f"{REGION}a",
            "lastStatus": "RUNNING",
            "desiredStatus": "RUNNING",
            "version": 3,
            "createdAt": moment,
            "startedAt": moment,
            "updatedAt": moment,
            "attachments": [{"type": "eni", "details": [{"name": "privateIPv4Address", "value": "127.0.0.1"}]}],
            "containers": [
                {
                    "name": "api",
                    "lastStatus": "RUNNING",
                    "image": "registry.example/orders-api:4.2.0",
                    "runtimeId": f"{task}-3107445921",
                    "networkInterfaces": [{"attachmentId": "e2e", "privateIpv4Address": "127.0.0.1"}],
                    "networkBindings": [],
                }
            ],
        },
    }


def test_the_proxy_refuses_every_host_but_loopback():
    with serving(LoopbackProxy) as proxy, serving(Exporter) as exporter:
        port = proxy.server_address[1]
        through = {"http": f"http://127.0.0.1:{port}", "https": f"http://127.0.0.1:{port}"}
        with requests.Session() as session:
            session.trust_env = False  # NO_PROXY must not bypass the proxy under test
            refused = session.get("http://198.51.100.7/metrics", proxies=through, timeout=5)
            assert refused.status_code == 403
            with pytest.raises(requests.exceptions.ProxyError):
                session.get("https://198.51.100.7/metrics", proxies=through, timeout=5)  # CONNECT: 403
            local = session.get(f"http://127.0.0.1:{exporter.server_address[1]}/metrics", proxies=through, timeout=5)
            assert local.status_code == 200 and b"e2e_exporter_up 1" in local.content
        assert proxy.seen == [("GET", "198.51.100.7"), ("CONNECT", "198.51.100.7"), ("GET", "127.0.0.1")]  # type: ignore[attr-defined]
