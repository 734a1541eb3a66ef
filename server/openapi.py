"""``GET /openapi.json``: the API described in OpenAPI 3.1, written beside the routes it describes.

The report bodies take their limits from ``server.schema`` and ``server.validation``, so the document and the
checks cannot drift apart; ``tests/server/test_openapi.py`` holds the paths to the app's URL map.
"""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, Response, jsonify

from server import ids, schema
from server.openapi_parts import ADDRESS_SCHEMAS, ECS_EVENT_SCHEMAS, MOMENT, NO_NUL, PORT, TEXT, array, ref
from server.records import STATUSES
from server.requestlog import HEADER as REQUEST_ID_HEADER
from server.requestlog import SANE_ID

bp = Blueprint("openapi", __name__)

STRING = {"type": "string"}
ECS_NAME = {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,255}$"}
#: The time grammar of reports: ISO 8601 from the year 2000 on (earlier is a clock never set, answered 400).
TIME = {"type": "string", "format": "date-time", "pattern": "^[2-9][0-9]{3}-"}


def any_case(pattern: re.Pattern[str]) -> str:
    """An ID grammar of ``server.ids``, its hex digits in either case as the server takes them."""
    return f"(?:{pattern.pattern.replace('a-f', 'a-fA-F')})"


CONTAINER_ID_SCHEMA = {"type": "string", "pattern": f"^{any_case(ids.CONTAINER_ID)}$"}
TASK_ID_SCHEMA = {"type": "string", "pattern": f"^{any_case(ids.TASK_ID)}$"}
#: Either ARN form (``…:task/ID``, ``…:task/CLUSTER/ID``) ends in its task ID.
TASK_ARN = {"type": "string", "pattern": f"^arn:{NO_NUL}:task/(?:[^/]+/)?{any_case(ids.TASK_ID)}$"}
IP_ADDRESS = {"anyOf": [{"const": ""}, {"type": "string", "format": "ipv4"}, {"type": "string", "format": "ipv6"}]}
REPORT_AUTH: list[dict[str, list[str]]] = [{"bearer": []}]
#: Reads are open unless ECS_ID_MAPPER_READ_TOKEN is set; then the read or the report token.
READ_AUTH: list[dict[str, list[str]]] = [{}, {"bearer": []}]

RECORD_FIELDS = (
    "container_id", "container_name", "container_port", "task_id", "task_name", "task_version", "instance_port",
    "instance_ip", "instance_id", "instance_type", "instance_az", "desired_status", "known_status", "host_name",
    "cluster_name", "ecs_agent_version", "sample_time", "task_arn", "docker_name", "image", "image_id", "created_at",
    "started_at", "region", "container_instance_arn", "first_seen", "last_seen", "stopped_at", "service_name",
    "newrelic_url",
)  # fmt: skip


#: On every answer of the app: the request's ID, the client's own when it sent a sane one.
ANSWER_HEADERS = {
    REQUEST_ID_HEADER: {
        "description": "the request's ID, as the request log names it",
        "required": True,
        "schema": {"type": "string", "pattern": f"^{SANE_ID.pattern}$"},
    }
}


def json_answer(description: str, body: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "headers": ANSWER_HEADERS, "content": {"application/json": {"schema": body}}}


def errors(*statuses: int) -> dict[str, Any]:
    """The error answers a route can give, each the one JSON error shape."""
    described = {
        400: "a malformed ID, parameter or body",
        401: "no bearer token (with `WWW-Authenticate: Bearer`)",
        403: "a wrong token, or reports refused because no token is configured",
        404: "nothing on record, or no such link",
        409: "an ID prefix that matches several containers (`matches` lists some)",
        413: "a body over `ECS_ID_MAPPER_MAX_BODY_BYTES`",
        502: "an upstream (ECS, New Relic) answered something unusable",
        503: "the store or an upstream does not answer; `Retry-After` may say when to retry",
    }
    return {str(status): json_answer(described[status], ref("Error")) for status in statuses}


def path_parameter(name: str, description: str, schema_: dict[str, Any] = STRING) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": description, "schema": schema_}


def query_parameter(name: str, description: str, schema_: dict[str, Any] = STRING) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema_}


EVENT_STATUS = {"anyOf": [ref("Status"), {"const": ""}, {"type": "null"}]}
CONTAINER_ID = path_parameter(
    "container_id",
    "a container ID (64 hex digits, or on Fargate a runtime ID) or a unique prefix of at least 12 characters",
    {"type": "string", "pattern": f"^{any_case(ids.CONTAINER_PREFIX)}$"},
)
TASK_ID = path_parameter("task_id", "a task ID (32 hex digits or a UUID): its ARN's last segment", TASK_ID_SCHEMA)
LINK = path_parameter("link", "a link name: `cadvisor`, `graylog`, `newrelic` or one set with ECS_ID_MAPPER_LINK_*")
REDIR = query_parameter("redir", "`true` answers 302 to the URL instead of the URL as text", ref("Flag"))
CONTAINER = query_parameter("container", "the container of the task, by name (default: the first by name)")
REQUEST_ID = {
    "name": REQUEST_ID_HEADER,
    "in": "header",
    "required": False,
    "description": "kept when 1-128 characters of `A-Za-z0-9._:-`, else replaced; every answer carries it back",
    "schema": STRING,
}


def read(summary: str, answer: dict[str, Any], *parameters: dict[str, Any], fails=(400, 401, 403, 404, 503)):
    return {
        "get": {
            "summary": summary,
            "security": READ_AUTH,
            "parameters": [*parameters, REQUEST_ID],
            "responses": {"200": answer, **errors(*fails)},
        }
    }


def plain(description: str) -> dict[str, Any]:
    return {"description": description, "headers": ANSWER_HEADERS, "content": {"text/plain": {"schema": STRING}}}


def url_answer(summary: str, *parameters: dict[str, Any], fails=(400, 401, 403, 404, 409, 502, 503)):
    route = read(summary, plain("the URL, as text"), *parameters, REDIR, fails=fails)
    route["get"]["responses"]["302"] = {
        "description": "with `?redir=true`: a redirect to the URL",
        "headers": {"Location": {"required": True, "schema": {"type": "string", "format": "uri"}}, **ANSWER_HEADERS},
    }
    return route


def report(summary: str, body: str) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "security": REPORT_AUTH,
            "parameters": [REQUEST_ID],
            "requestBody": {"required": True, "content": {"application/json": {"schema": ref(body)}}},
            "responses": {"200": json_answer("accepted", ref("ReportAnswer")), **errors(400, 401, 403, 413, 503)},
        }
    }


SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error", "message"],
        "properties": {"error": STRING, "message": STRING, "matches": array(STRING)},
    },
    "Flag": {"type": "string", "pattern": "^(?i:true|false|yes|no|on|off|1|0)?$"},
    "Status": {"type": "string", "enum": list(STATUSES)},
    "Port": {
        "type": "object",
        "required": ["container_port"],
        "properties": {
            "container_port": {"type": "integer", "minimum": 1, "maximum": 65535},
            "host_port": {"type": "integer", "minimum": 0, "maximum": 65535},
            "protocol": {"type": "string", "enum": list(schema.PROTOCOLS)},
        },
    },
    "Network": {
        "type": "object",
        "properties": {
            "network_mode": TEXT,
            "ipv4_addresses": array({"type": "string", "format": "ipv4"}, schema.MAX_ADDRESSES),
            "ipv6_addresses": array({"type": "string", "format": "ipv6"}, schema.MAX_ADDRESSES),
        },
    },
    "Host": {"type": "object", "properties": dict.fromkeys(schema.HOST_FIELDS, TEXT) | {"instance_ip": IP_ADDRESS}},
    "Container": {
        "type": "object",
        "required": ["container_id", "container_name", "known_status", "sample_time"],
        "anyOf": [{"required": ["task_id"]}, {"required": ["task_arn"]}],
        "properties": {
            "container_id": CONTAINER_ID_SCHEMA,
            "container_name": TEXT | {"minLength": 1},
            "task_arn": TASK_ARN,
            "task_id": TASK_ID_SCHEMA,
            "task_version": {"type": ["string", "integer"]},
            "desired_status": {"anyOf": [ref("Status"), {"const": ""}]},
            "known_status": ref("Status"),
            "sample_time": TIME,
            "ports": array(ref("Port"), schema.MAX_PORTS),
            "networks": array(ref("Network"), schema.MAX_NETWORKS),
            **dict.fromkeys(schema.CONTAINER_TEXT_FIELDS, TEXT),
        },
    },
    "Event": {
        "type": "object",
        "required": ["event_id", "container_id", "task_id", "event", "timestamp"],
        "properties": {
            "event_id": {"type": "string", "pattern": f"^{schema.EVENT_ID.pattern}$"},
            "container_id": CONTAINER_ID_SCHEMA,
            "task_id": TASK_ID_SCHEMA,
            "event": {"type": "string", "enum": list(schema.EVENT_KINDS)},
            "from": EVENT_STATUS,
            "to": EVENT_STATUS,
            "timestamp": TIME,
        },
    },
    "MapReport": {
        "type": "object",
        "required": ["containers"],
        "properties": {
            "host": ref("Host"),
            "containers": array(ref("Container"), schema.MAX_ITEMS),
            "events": array(ref("Event"), schema.MAX_ITEMS),
            "full": {"type": "boolean"},
        },
    },
    "EventReport": {
        "type": "object",
        "required": ["events"],
        "properties": {"events": array(ref("Event"), schema.MAX_ITEMS)},
    },
    **ECS_EVENT_SCHEMAS,
    **ADDRESS_SCHEMAS,
    "ReportAnswer": {
        "type": "object",
        "required": ["containers", "events"],
        "properties": {"containers": {"type": "integer"}, "events": {"type": "integer"}},
    },
    "Record": {
        "type": "object",
        "description": "every attribute on record, plus `<link>_url` for each configured link",
        "properties": {
            **dict.fromkeys(RECORD_FIELDS, STRING),
            "ports": array(ref("Port")),
            "networks": array(ref("Network")),
            "lost_since": {
                **STRING,
                "description": "only on a container not stopped whose host stopped reporting: when its host's "
                "lease lapsed (its last renewal + ECS_ID_MAPPER_HOST_LEASE); `known_status` stays the last reported",
            },
            "lost_reason": {
                **STRING,
                "description": "only with `lost_since`: why, with when the host's lease was last renewed",
            },
        },
        "patternProperties": {"_url$": STRING},
    },
    "TaskRecord": {
        "allOf": [ref("Record")],
        "properties": {"task_containers": array(STRING)},
    },
    "Links": {"type": "object", "additionalProperties": {"type": "string", "format": "uri"}},
    "Service": {
        "type": "object",
        "required": ["cluster_name", "service_name", "tasks", "missing"],
        "properties": {
            "cluster_name": STRING,
            "service_name": STRING,
            "tasks": array(
                {
                    "type": "object",
                    "required": ["task_id", "containers"],
                    "properties": {"task_id": STRING, "containers": array(ref("Record"))},
                }
            ),
            "missing": array(STRING),
        },
    },
    "TargetGroup": {
        "type": "object",
        "description": "one port of one running container (a container whose host stopped reporting is none)",
        "required": ["targets", "labels"],
        "properties": {
            "targets": array(STRING),
            "labels": {
                "type": "object",
                "description": "`__meta_ecs_*` labels; `__meta_ecs_container_port` always, `__meta_ecs_host_port` "
                "where the port is published on the EC2 instance (not on awsvpc), "
                "`__meta_ecs_container_label_<name>` for each Docker label, its name sanitised",
                "required": ["__meta_ecs_container_port"],
                "propertyNames": {"pattern": "^__meta_ecs_[a-zA-Z0-9_]+$"},
                "additionalProperties": STRING,
            },
        },
    },
    "Health": {
        "type": "object",
        "required": ["status", "store"],
        "properties": {"status": {"const": "ok"}, "store": STRING},
    },
}

CLUSTER = path_parameter("cluster", "an ECS cluster name", ECS_NAME)
AT = query_parameter("at", "the moment: ISO 8601 (`Z` or an offset) or seconds since 1970; absent: ever", MOMENT)
FORMAT = query_parameter(
    "format",
    "`text` or `json`; absent: JSON when `Accept` prefers it to text",
    {"type": "string", "enum": ["text", "json"]},
)


def holdings_answer(summary: str, body: str, *parameters: dict[str, Any]) -> dict[str, Any]:
    """A route answering the holders' task IDs as text, or their holdings as JSON."""
    route = read(summary, plain("the task IDs, one per line, newest first"), *parameters, AT, FORMAT)
    route["get"]["responses"]["200"]["content"]["application/json"] = {"schema": ref(body)}
    return route


SERVICE = path_parameter("service", "an ECS service name", ECS_NAME)

PATHS: dict[str, Any] = {
    "/health": {
        "get": {
            "summary": "200 while the store answers, 503 when it does not; never needs a token",
            "parameters": [REQUEST_ID],
            "responses": {"200": json_answer("the store answers", ref("Health")), **errors(503)},
        }
    },
    "/openapi.json": {
        "get": {
            "summary": "this document",
            "parameters": [REQUEST_ID],
            "responses": {"200": json_answer("OpenAPI 3.1", {"type": "object"})},
        }
    },
    "/report/map": report("what changed on one host (or its whole snapshot with `full`)", "MapReport"),
    "/report/event": report("events alone", "EventReport"),
    "/report/ecs-events": report("ECS task state changes as EventBridge sends them", "EcsEvents"),
    "/query/container_id/{container_id}": read(
        "the container's task ID", plain("the task ID, as text"), CONTAINER_ID, fails=(400, 401, 403, 404, 409, 503)
    ),
    "/query/container_id/{container_id}/_all": read(
        "every attribute of the container",
        json_answer("the record", ref("Record")),
        CONTAINER_ID,
        fails=(400, 401, 403, 404, 409, 503),
    ),
    "/query/container_id/{container_id}/{link}": url_answer("a link for the container", CONTAINER_ID, LINK),
    "/query/container_id/{container_id}/urls": read(
        "every configured link of the container",
        json_answer("link name → URL", ref("Links")),
        CONTAINER_ID,
        fails=(400, 401, 403, 404, 409, 503),
    ),
    "/query/container_id/{container_id}/events": read(
        "the container's events, oldest first",
        json_answer("events", array(ref("Event"))),
        CONTAINER_ID,
        fails=(400, 401, 403, 404, 409, 503),
    ),
    "/query/task_id/{task_id}": read("the task's container IDs", plain("one container ID per line"), TASK_ID),
    "/query/task_id/{task_id}/_all": read(
        "the attributes of one container of the task",
        json_answer("the record, with `task_containers`", ref("TaskRecord")),
        TASK_ID,
        CONTAINER,
    ),
    "/query/task_id/{task_id}/containers": read(
        "every container record of the task", json_answer("records", array(ref("Record"))), TASK_ID
    ),
    "/query/task_id/{task_id}/{link}": url_answer("a link for one container of the task", TASK_ID, LINK, CONTAINER),
    "/query/task_id/{task_id}/urls": read(
        "every configured link of one container of the task",
        json_answer("link name → URL", ref("Links")),
        TASK_ID,
        CONTAINER,
    ),
    "/query/task_id/{task_id}/events": read(
        "the events of all the task's containers, oldest first",
        json_answer("events", array(ref("Event"))),
        TASK_ID,
    ),
    "/query/service/{cluster}/{service}/_all": read(
        "the service's running tasks (from ECS) with their records",
        json_answer("tasks, and running tasks with no record yet", ref("Service")),
        CLUSTER,
        SERVICE,
        query_parameter("include_stopped", "also the service's stopped tasks on record", ref("Flag")),
        fails=(400, 401, 403, 404, 502, 503),
    ),
    "/query/service/{cluster}/{service}/newrelic": url_answer(
        "the New Relic application of the service", CLUSTER, SERVICE, fails=(400, 401, 403, 404, 409, 502, 503)
    ),
    "/query/ip/{address}": holdings_answer(
        "who held an IP address: every holding, newest first",
        "AddressHoldings",
        path_parameter("address", "IPv4 or IPv6 (`::ffff:a.b.c.d` is `a.b.c.d`; any case)"),
        query_parameter("port", "only the holder publishing it: the host port on an instance address", PORT),
    ),
    "/query/host/{instance_id}": holdings_answer(
        "what ran on an EC2 instance",
        "HostHoldings",
        path_parameter(
            "instance_id", "an EC2 instance ID", {"type": "string", "pattern": "^i-(?:[0-9a-fA-F]{8}|[0-9a-fA-F]{17})$"}
        ),
    ),
    "/query/ip": {
        "post": {
            "summary": "who held each address: many questions at once, each answered or refused on its own",
            "security": READ_AUTH,
            "parameters": [REQUEST_ID],
            "requestBody": {"required": True, "content": {"application/json": {"schema": ref("AddressQuestions")}}},
            "responses": {
                "200": json_answer("the answers, in the order asked", ref("AddressAnswers")),
                **errors(400, 401, 403, 413, 503),
            },
        }
    },
    "/sd/prometheus": read(
        "Prometheus HTTP service discovery: one target group per TCP port of each running container",
        json_answer("target groups", array(ref("TargetGroup"))),
        query_parameter("cluster", "only this cluster", ECS_NAME),
        query_parameter("service", "only this service", ECS_NAME),
        query_parameter("container_name", "only containers of this name", ECS_NAME),
        query_parameter("port", "only this container port", {"type": "integer", "minimum": 1, "maximum": 65535}),
        fails=(400, 401, 403, 503),
    ),
    "/metrics": read(
        "the server's metrics, summed over every worker",
        plain("Prometheus text format (version 0.0.4)"),
        fails=(401, 403),
    ),
}


def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "ECS ID Mapper", "version": "1"},
        "paths": PATHS,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "reports: ECS_ID_MAPPER_TOKEN; reads, once ECS_ID_MAPPER_READ_TOKEN is set: "
                    "either token",
                }
            },
        },
    }


@bp.get("/openapi.json")
def openapi() -> Response:
    return jsonify(document())
