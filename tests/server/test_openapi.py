"""``GET /openapi.json``: a valid OpenAPI 3.1 document that lists exactly the app's routes."""

from __future__ import annotations

import re

import pytest
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate

from server import schema
from tests.server import samples
from tests.server.samples import API_ID, TASK_LONG

#: Flask's ``<name>`` or ``<converter:name>`` → OpenAPI's ``{name}``.
FLASK_PARAMETER = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")
IGNORED_METHODS = {"HEAD", "OPTIONS"}


@pytest.fixture
def document(client):
    response = client.get("/openapi.json")
    assert response.status_code == 200
    return response.get_json()


def app_operations(app) -> set[tuple[str, str]]:
    return {
        (FLASK_PARAMETER.sub(r"{\1}", rule.rule), method.lower())
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static"
        for method in rule.methods - IGNORED_METHODS
    }


def test_the_document_is_valid_openapi_3_1(document):
    validate(document)
    assert document["openapi"].startswith("3.1")


def test_it_lists_exactly_the_apps_routes(app, document):
    documented = {(path, method) for path, item in document["paths"].items() for method in item}
    assert documented == app_operations(app)


def test_every_path_parameter_is_declared(document):
    for path, item in document["paths"].items():
        in_path = set(re.findall(r"{(\w+)}", path))
        for method, operation in item.items():
            declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert declared == in_path, (path, method)


def test_every_answer_and_error_is_described(document):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            assert "200" in responses, (path, method)
            for status, answer in responses.items():
                if status.startswith(("4", "5")):
                    schema_ = answer["content"]["application/json"]["schema"]
                    assert schema_ == {"$ref": "#/components/schemas/Error"}, (path, method, status)


def test_report_bodies_carry_the_servers_limits(document):
    schemas = document["components"]["schemas"]
    assert schemas["MapReport"]["properties"]["containers"]["maxItems"] == schema.MAX_ITEMS
    assert schemas["Container"]["properties"]["ports"]["maxItems"] == schema.MAX_PORTS
    assert schemas["Container"]["properties"]["networks"]["maxItems"] == schema.MAX_NETWORKS
    assert set(schemas["Host"]["properties"]) == set(schema.HOST_FIELDS)


def test_the_document_needs_no_token(make_app, settings):
    client = make_app({**settings, "read_token": "r3ad"}).test_client()
    assert client.get("/openapi.json").status_code == 200


def test_real_answers_conform_to_the_document(app, client, report, document):
    report(samples.container(), events=[samples.event("e-1")])
    calls = [
        ("/health", 200),
        (f"/query/container_id/{API_ID}/_all", 200),
        (f"/query/container_id/{API_ID}/urls", 200),
        (f"/query/container_id/{API_ID}/events", 200),
        (f"/query/task_id/{TASK_LONG}/_all", 200),
        (f"/query/task_id/{TASK_LONG}/containers", 200),
        (f"/query/task_id/{TASK_LONG}/events", 200),
        ("/sd/prometheus", 200),
        ("/query/container_id/" + "f" * 64 + "/_all", 404),
        ("/sd/prometheus?port=0", 400),
    ]
    routes = app.url_map.bind("localhost")
    for url, status in calls:
        response = client.get(url)
        assert response.status_code == status, url
        rule, _ = routes.match(url.partition("?")[0], return_rule=True)
        template = FLASK_PARAMETER.sub(r"{\1}", rule.rule)
        answer = document["paths"][template]["get"]["responses"][str(status)]
        # The answer's schema, with its $refs resolved against the whole document.
        OAS31Validator({**document, **answer["content"]["application/json"]["schema"]}).validate(response.get_json())
