"""schemathesis against the live server (``python -m server`` under gunicorn), driven by its own ``/openapi.json``:
no 5xx, and every answer's status, content type and body as the document says. Once on SQLite, once on SimpleDB
through moto's HTTP server; ECS (for the service routes) is moto's too, so that those answer from a real API."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from server.openapi import document
from tests.server.samples import AUTH, TOKEN
from tests.store.conftest import REGION, strict_moto  # noqa: F401 - moto's SimpleDB with select
from tests.support import Moto, ServerProcess

pytestmark = pytest.mark.slow

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
#: Examples per operation and store: about a minute for the whole module on two cores.
EXAMPLES = 12

schema = schemathesis.openapi.from_dict(document())


@pytest.fixture(scope="module")
def moto() -> Iterator[Moto]:
    server = Moto().start()
    yield server
    server.stop()


@pytest.fixture(scope="module", params=["sqlite", "sdb"])
def live(request: pytest.FixtureRequest, moto: Moto, tmp_path_factory: pytest.TempPathFactory):
    directory = tmp_path_factory.mktemp(f"fuzz-{request.param}")
    store = {
        "sqlite": f"sqlite:///{directory}/store.sqlite3",
        "sdb": f"sdb://fuzz{uuid.uuid4().hex[:8]}?region={REGION}&endpoint_url={moto.url}",
    }[request.param]
    env = {
        "ECS_ID_MAPPER_STORE": store,
        "ECS_ID_MAPPER_TOKEN": TOKEN,  # every request carries it as a bearer token, so reports reach the store
        "ECS_ID_MAPPER_READ_TOKEN": "r3ad-token",  # reads need a token too (the report token is one)
        "ECS_ID_MAPPER_SERVICE_NAMES": "false",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_ENDPOINT_URL_ECS": moto.url,
    }
    with ServerProcess(env, directory / "server.log") as running:
        yield running
    assert "Traceback" not in running.log()


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_live_server_answers_as_its_document_says(case, live):
    case.call_and_validate(base_url=live.url, headers=AUTH, checks=CHECKS)


@schema.exclude(path=["/health", "/openapi.json"]).parametrize()
@settings(max_examples=2, deadline=None, phases=[Phase.generate], suppress_health_check=list(HealthCheck))
def test_a_request_without_a_token_is_a_documented_401(case, live):
    case.headers.pop("Authorization", None)  # schemathesis makes up one from the security scheme
    response = case.call_and_validate(base_url=live.url, checks=CHECKS)
    assert (response.status_code, response.headers["www-authenticate"]) == (401, ["Bearer"])
