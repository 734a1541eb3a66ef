"""``GET /openapi.json``: a valid OpenAPI 3.1 document that lists exactly the app's routes."""

from __future__ import annotations

import re
import time
from urllib.parse import quote

import pytest
from jsonschema import FormatChecker
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate

from server import schema
from server.state import state
from tests.server import ecs_samples, samples
from tests.server.documents import validator
from tests.server.samples import API_ID, AUTH, TASK_LONG

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
        # The page for people (``server/page/``) answers HTML, not the API the document describes.
        if rule.endpoint != "static" and not rule.endpoint.startswith("page.")
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
                assert "X-Request-ID" in answer["headers"], (path, method, status)  # every answer carries it
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


def conforms(document: dict, body: object, schema_name: str) -> bool:
    """Whether ``body`` is valid under the document's ``schema_name`` (formats checked too)."""
    validator = OAS31Validator(
        {**document, "$ref": f"#/components/schemas/{schema_name}"}, format_checker=FormatChecker()
    )
    return validator.is_valid(body)


def parameter_schema(document: dict, path: str, name: str) -> dict:
    (parameter,) = [p for p in document["paths"][path]["get"]["parameters"] if p["name"] == name]
    return parameter["schema"]


def test_lost_records_and_labelled_target_groups_conform(make_app, settings, document):
    from server.discovery import target_groups

    lapsing = make_app({**settings, "host_lease": "0.05"})
    client = lapsing.test_client()
    assert client.post("/report/map", json=samples.map_report(samples.container()), headers=AUTH).status_code == 200
    state(lapsing).leases.interval = 0
    time.sleep(0.1)
    shown = client.get(f"/query/container_id/{API_ID}/_all").get_json()
    assert "lost_since" in shown and conforms(document, shown, "Record")

    record = {**state(lapsing).store.get_container(API_ID), "docker_labels": '{"PROMETHEUS_EXPORTER_PORT": "8000"}'}
    (group,) = target_groups([record])
    assert group["labels"]["__meta_ecs_container_label_PROMETHEUS_EXPORTER_PORT"] == "8000"
    assert conforms(document, group, "TargetGroup")
    assert not conforms(
        document, {"targets": [], "labels": {"job": "x", "__meta_ecs_container_port": "1"}}, "TargetGroup"
    )


def test_the_bodies_agents_and_eventbridge_send_conform(document):
    assert conforms(document, samples.map_report(samples.container(), events=[samples.event("e-1")]), "MapReport")
    assert conforms(document, {"events": [samples.event("e-1", from_=None)]}, "EventReport")
    assert conforms(document, ecs_samples.fargate_lifecycle(), "EcsEvents")


# Each was a body the document allowed and the server refused (found by tests/server/test_fuzz.py).
REFUSED_REPORTS = {
    "time before 2000": samples.map_report(samples.container(sample_time="0999-01-01T00:00:00Z")),
    "no task_id nor task_arn": samples.map_report(samples.container(task_arn="", task_id=None)),
    "malformed task_id": samples.map_report(samples.container(task_id="not-a-task")),
    "empty container_name": samples.map_report(samples.container(container_name="")),
    "NUL in a text field": samples.map_report(samples.container(image="a\x00b")),
    "host instance_ip not an address": samples.map_report(samples.container(), host={"instance_ip": "not-an-ip"}),
    "network address not IPv4": samples.map_report(
        samples.container(networks=[{"network_mode": "awsvpc", "ipv4_addresses": [""]}])
    ),
    "event container_id not 64 hex": samples.map_report(events=[samples.event("e-1", container_id="abc")]),
    "event from not a status": samples.map_report(events=[samples.event("e-1", **{"from": "LOST"})]),
}


@pytest.mark.parametrize("body", REFUSED_REPORTS.values(), ids=REFUSED_REPORTS.keys())
def test_a_report_the_server_refuses_is_outside_the_document(client, document, body):
    assert not conforms(document, body, "MapReport")
    response = client.post("/report/map", json=body, headers=AUTH)
    assert response.status_code == 400, response.get_json()


def test_an_ecs_event_without_time_or_a_readable_task_arn_is_outside_the_document(client, document):
    for broken in ({"time": None}, {"detail": {"taskArn": "arn:aws:ecs:eu-central-1:1:task/web/not-an-id"}}):
        event = ecs_samples.fargate_lifecycle()[0]
        event["detail"].pop("updatedAt")
        event.update(broken if "time" in broken else {"detail": {**event["detail"], **broken["detail"]}})
        event = {key: value for key, value in event.items() if value is not None}
        assert not conforms(document, event, "EcsEvent")
        assert client.post("/report/ecs-events", json=event, headers=AUTH).status_code == 400


ID_PARAMETERS = {
    "container_id": (
        [API_ID, API_ID[:12].upper(), ecs_samples.API_RUNTIME_ID, ecs_samples.API_RUNTIME_ID[:34]],
        [API_ID[:11], API_ID + "0", f" {API_ID[:12]}", f"{API_ID[:12]}\n", "g" * 12, ""],
    ),
    "task_id": (
        [TASK_LONG, TASK_LONG.upper(), samples.TASK_UUID],
        [TASK_LONG[:31], f"{TASK_LONG}\u00a0", samples.TASK_UUID.replace("-", "_"), ""],
    ),
}


@pytest.mark.parametrize("name", ID_PARAMETERS)
def test_id_parameters_take_exactly_the_ids_the_server_takes(client, document, name):
    # As ECMA-262 reads ^…$ (to the very end: Python's $ also matches before a final newline).
    pattern = re.compile(parameter_schema(document, f"/query/{name}/{{{name}}}", name)["pattern"].strip("^$"))
    taken, refused = ID_PARAMETERS[name]
    for value in taken:
        assert pattern.fullmatch(value), value
        assert client.get(f"/query/{name}/{value}/events").status_code == 404, value  # well formed, not on record
    for value in refused:
        assert not pattern.fullmatch(value), value
        if value:
            assert client.get(f"/query/{name}/{quote(value)}/events").status_code == 400, value


#: Refused for what the document says in words: a JSON Schema cannot compare one field with another.
IN_WORDS = {
    "container of another task ARN", "runtime ID of another task", "runtime ID shared by two containers",
    "container name twice",
}  # fmt: skip


@pytest.mark.parametrize("name", ecs_samples.HOSTILE)
def test_an_ecs_event_the_server_refuses_is_outside_the_document_or_refused_in_its_words(client, document, name):
    body = ecs_samples.HOSTILE[name]
    assert client.post("/report/ecs-events", json=body, headers=AUTH).status_code == 400
    # As ECMA-262 reads the patterns' $ (the very end); the ECS grammars are written for it.
    assert ecma_conforms(document, body, "EcsEvent") == (name in IN_WORDS)


def test_the_ecs_events_the_examples_show_conform_in_every_variant_the_server_takes(client, document):
    running = ecs_samples.fargate_lifecycle()[2]
    variants = [
        running,
        {**running, "region": None, "detail": {**running["detail"], "group": None, "containers": None}},
        {**running, "detail": {**running["detail"], "version": 4.0, "attachments": ecs_samples.eni(
            ("privateIPv6Address", "2a05:d014::1"), ("macAddress", "02:5e:8a:11:22:33"))}},
        ecs_samples.ec2_event(3, "RUNNING", [ecs_samples.container(
            "api", "RUNNING", API_ID, exitCode=None, networkBindings=[ecs_samples.binding(80, 32768, "::")])]),
    ]  # fmt: skip
    for body in variants:
        assert ecma_conforms(document, body, "EcsEvent"), body
        assert client.post("/report/ecs-events", json=body, headers=AUTH).status_code == 200, body


def ecma_conforms(document: dict, body: object, schema_name: str) -> bool:
    return validator(document, schema_name).is_valid(body)
