"""The agent reports over HTTPS to a server whose certificate a private CA signed: verified with
ECS_ID_MAPPER_CA_BUNDLE, refused without it. The server is the real app behind a real TLS listener on loopback; the
CA and the server's certificate are made here."""

from __future__ import annotations

import datetime
import ipaddress
import logging
import os
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from werkzeug.serving import make_server

from agent.config import Config, ConfigError, load_config
from agent.daemon import Agent

try:
    from server import create_app
    from server.state import state
except ImportError:  # pragma: no cover - an agent-only checkout
    pytest.skip("the server package is not importable", allow_module_level=True)

TOKEN = "tls-token"


def certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Certificate | None,
    issuer_key: ec.EllipticCurvePrivateKey,
) -> x509.Certificate:
    """A CA's certificate (no ``issuer``: self-signed) or a server's for 127.0.0.1, signed by ``issuer``."""
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key((issuer_key if issuer else key).public_key()),
            critical=False,
        )
    )
    if issuer is None:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True).add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
    else:
        builder = (
            builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        )
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture
def private_ca(tmp_path: Path) -> dict[str, Path]:
    """A CA's bundle, and a server certificate and key it signed, as PEM files."""
    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = certificate("ECS ID Mapper test CA", ca_key, None, ca_key)
    served = certificate("127.0.0.1", server_key, ca, ca_key)
    files = {"bundle": tmp_path / "ca.pem", "cert": tmp_path / "server.pem", "key": tmp_path / "server.key"}
    files["bundle"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files["cert"].write_bytes(served.public_bytes(serialization.Encoding.PEM))
    files["key"].write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return files


@pytest.fixture
def https_server(tmp_path: Path, private_ca: dict[str, Path]) -> Iterator[tuple[str, object]]:
    """The server's app on SQLite behind TLS on a free loopback port: its URL and the app."""
    app = create_app({"store": f"sqlite:///{tmp_path}/mapper.sqlite3", "token": TOKEN})
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(private_ca["cert"], private_ca["key"])
    server = make_server("127.0.0.1", 0, app, threaded=True, ssl_context=context)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_port}", app
    finally:
        server.shutdown()
        thread.join(10)
        state(app).close()


def agent_for(url: str, ecs_host, **settings: str) -> Agent:
    environ = {
        "ECS_ID_MAPPER_SERVER_URL": url,
        "ECS_ID_MAPPER_TOKEN": TOKEN,
        "ECS_ID_MAPPER_ECS_AGENT_URL": ecs_host.ecs_url,
        "ECS_ID_MAPPER_IMDS_URL": ecs_host.imds_url,
        "ECS_ID_MAPPER_START_SPREAD": "0",  # the first report at once
        **{f"ECS_ID_MAPPER_{name.upper()}": value for name, value in settings.items()},
    }
    return Agent(load_config(environ), requests.Session())


def stored(app, container_id: str) -> bool:
    return app.test_client().get(f"/query/container_id/{container_id}").status_code == 200


def test_the_agent_verifies_the_server_with_the_ca_bundle(https_server, private_ca, ecs_host):
    url, app = https_server
    running = ecs_host.host.start_task()
    ecs_host.host.advance(running, "running")
    agent = agent_for(url, ecs_host, ca_bundle=str(private_ca["bundle"]))
    agent.poll_once()
    assert agent.delivery.last_success is not None
    assert stored(app, running.containers[0].docker_id)


def test_without_the_bundle_the_server_is_refused_and_nothing_is_sent(https_server, ecs_host, caplog):
    url, app = https_server
    running = ecs_host.host.start_task()
    ecs_host.host.advance(running, "running")
    agent = agent_for(url, ecs_host)  # the system's CAs, which never signed this server
    with caplog.at_level(logging.WARNING, logger="agent"):
        agent.poll_once()
    assert agent.delivery.last_success is None
    assert not stored(app, running.containers[0].docker_id)
    assert "CERTIFICATE_VERIFY_FAILED" in caplog.text


def test_a_bundle_of_another_ca_is_refused_too(https_server, ecs_host, tmp_path):
    url, app = https_server
    other_key = ec.generate_private_key(ec.SECP256R1())
    other = tmp_path / "other-ca.pem"
    other.write_bytes(certificate("another CA", other_key, None, other_key).public_bytes(serialization.Encoding.PEM))
    running = ecs_host.host.start_task()
    ecs_host.host.advance(running, "running")
    agent = agent_for(url, ecs_host, ca_bundle=str(other))
    agent.poll_once()
    assert agent.delivery.last_success is None
    assert not stored(app, running.containers[0].docker_id)


def test_the_bundle_is_checked_at_start(tmp_path, private_ca):
    base = {"ECS_ID_MAPPER_SERVER_URL": "https://mapper.example.com"}
    assert load_config({**base, "ECS_ID_MAPPER_CA_BUNDLE": str(private_ca["bundle"])}).ca_bundle == str(
        private_ca["bundle"]
    )
    assert load_config(base).ca_bundle is None
    with pytest.raises(ConfigError, match=r"^ECS_ID_MAPPER_CA_BUNDLE: cannot read"):
        load_config({**base, "ECS_ID_MAPPER_CA_BUNDLE": str(tmp_path / "missing.pem")})
    with pytest.raises(ConfigError, match=r"^ECS_ID_MAPPER_CA_BUNDLE: .* holds no PEM certificate"):
        load_config({**base, "ECS_ID_MAPPER_CA_BUNDLE": str(private_ca["key"])})


def test_the_bundle_goes_on_the_session_the_reports_use(private_ca):
    config = Config(server_url="https://mapper.example.com", ca_bundle=str(private_ca["bundle"]))
    session = requests.Session()
    agent = Agent(config, session)
    assert agent.delivery.session is session
    assert session.verify == str(private_ca["bundle"])
    # requests lets REQUESTS_CA_BUNDLE override Session.verify: the adapter holds the bundle whatever the environment.
    assert session.get_adapter("https://mapper.example.com").bundle == str(private_ca["bundle"])
    assert not hasattr(session.get_adapter("http://127.0.0.1:51678"), "bundle")


@pytest.mark.slow
def test_the_agent_process_reports_to_gunicorn_over_https(tmp_path, private_ca, ecs_host):
    """``python -m agent`` with ECS_ID_MAPPER_CA_BUNDLE, against gunicorn serving the app with TLS."""
    import subprocess
    import sys

    from tests.support import ROOT, AgentProcess, eventually, free_port

    port = free_port()
    url = f"https://127.0.0.1:{port}"
    env = {
        **os.environ,
        "ECS_ID_MAPPER_STORE": f"sqlite:///{tmp_path}/mapper.sqlite3",
        "ECS_ID_MAPPER_TOKEN": TOKEN,
        "ECS_ID_MAPPER_SERVICE_NAMES": "false",
        "ECS_ID_MAPPER_TASK_DEFINITIONS": "false",
        "ECS_ID_MAPPER_CONTAINER_INSTANCES": "false",
    }
    command = [
        sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "1",
        "--certfile", str(private_ca["cert"]), "--keyfile", str(private_ca["key"]), "server:create_app()",
    ]  # fmt: skip
    with open(tmp_path / "server.log", "wb") as log:
        server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    verify = str(private_ca["bundle"])

    def health() -> bool:
        try:
            return requests.get(f"{url}/health", timeout=2, verify=verify).status_code == 200
        except (requests.ConnectionError, requests.Timeout):  # not listening yet, or its worker still booting
            assert server.poll() is None, (tmp_path / "server.log").read_text()
            return False

    running = ecs_host.host.start_task()
    ecs_host.host.advance(running, "running")
    container_id = running.containers[0].docker_id
    trusting = AgentProcess(url, ecs_host, TOKEN, tmp_path / "trusting.log", ca_bundle=verify)
    doubting = AgentProcess(url, ecs_host, TOKEN, tmp_path / "doubting.log")
    try:
        eventually(health, "gunicorn to answer over HTTPS")
        doubting.start()
        eventually(lambda: "CERTIFICATE_VERIFY_FAILED" in doubting.log(), "the agent without the bundle to refuse")
        assert requests.get(f"{url}/query/container_id/{container_id}", verify=verify, timeout=5).status_code == 404
        trusting.start()
        eventually(
            lambda: requests.get(f"{url}/query/container_id/{container_id}", verify=verify, timeout=5).ok,
            "the agent with the bundle to report",
        )
    finally:
        for agent in (trusting, doubting):
            if agent.process is not None:
                agent.stop()
        server.terminate()
        server.wait(15)
