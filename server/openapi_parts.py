"""Pieces of the OpenAPI document (``server.openapi``): JSON Schema helpers, and the ECS task state change as
``POST /report/ecs-events`` takes it, built from ``server.ecs_events``' own grammars so that the document and the
checks cannot drift apart."""

from __future__ import annotations

import re
from typing import Any

from server import address_questions, ecs_events, schema, validation

NO_NUL = "[^\\u0000]*"
TEXT = {"type": "string", "maxLength": validation.MAX_BYTES, "pattern": f"^{NO_NUL}$"}


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def array(items: dict[str, Any], most: int | None = None) -> dict[str, Any]:
    return {"type": "array", "items": items} | ({"maxItems": most} if most else {})


def grammar(pattern: re.Pattern[str]) -> dict[str, Any]:
    """A string matching one of ``server.ecs_events``' grammars whole."""
    return {"type": "string", "pattern": f"^(?:{pattern.pattern})$"}


def nullable(schema_: dict[str, Any]) -> dict[str, Any]:
    """An optional field of an ECS event: null is taken as absent."""
    return {"anyOf": [schema_, {"type": "null"}]}


def ip_address(version: int) -> dict[str, Any]:
    return {"type": "string", "format": f"ipv{version}"}


#: ECS times: RFC 3339 from the year 2000 (UTC) on; more than 5 minutes ahead of the server is taken as then.
ECS_TIME = {"type": "string", "format": "date-time", "pattern": f"^{validation.RFC3339.pattern}$"}
ECS_STATUS = {"type": "string", "enum": list(ecs_events.STATUSES)}

ECS_EVENT_SCHEMAS: dict[str, Any] = {
    "EcsEvent": {
        "type": "object",
        "description": "an EventBridge `ECS Task State Change`; `detail` has the shape of a DescribeTasks task. "
        "Optional fields may be absent or null; what is given must match, an empty value too. Fields not named "
        "here are not read, but the whole body is JSON as RFC 8259 has it: UTF-8 (no lone surrogate escapes), "
        "no NaN or Infinity",
        "required": ["source", "detail-type", "time", "detail"],
        "properties": {
            "source": {"const": ecs_events.SOURCE},
            "detail-type": {"const": ecs_events.DETAIL_TYPE},
            "time": ECS_TIME,
            "region": nullable(grammar(ecs_events.REGION_NAME)),
            "detail": ref("EcsTask"),
        },
    },
    "EcsTask": {
        "type": "object",
        "required": ["taskArn", "lastStatus", "version"],
        "properties": {
            "taskArn": grammar(ecs_events.TASK_ARN),
            "clusterArn": nullable(grammar(ecs_events.CLUSTER_ARN)),
            "containerInstanceArn": nullable(grammar(ecs_events.CONTAINER_INSTANCE_ARN)),
            "taskDefinitionArn": nullable(grammar(ecs_events.TASK_DEFINITION_ARN)),
            "group": nullable(grammar(ecs_events.GROUP)),
            "launchType": nullable(grammar(ecs_events.LAUNCH_TYPE)),
            "availabilityZone": nullable(grammar(ecs_events.AVAILABILITY_ZONE)),
            "lastStatus": ECS_STATUS,
            "desiredStatus": nullable(ECS_STATUS),
            "version": {
                "type": "integer",
                "minimum": 0,
                "maximum": ecs_events.MAX_VERSION,
                "description": "orders the task's states: a lower one than the record's changes nothing",
            },
            **dict.fromkeys(ecs_events.TIMES, nullable(ECS_TIME)),
            "stoppedReason": nullable(TEXT),
            "stopCode": nullable(grammar(ecs_events.STOP_CODE)),
            "attachments": nullable(array(ref("EcsAttachment"), ecs_events.MAX_ATTACHMENTS)),
            "containers": nullable(array(ref("EcsContainer"), ecs_events.MAX_CONTAINERS)),
        },
    },
    "EcsAttachment": {
        "type": "object",
        "properties": {"details": nullable(array(ref("EcsAttachmentDetail"), ecs_events.MAX_DETAILS))},
    },
    "EcsAttachmentDetail": {
        "type": "object",
        "properties": {"name": nullable(TEXT), "value": nullable(TEXT)},
        "allOf": [
            {
                "if": {"required": ["name"], "properties": {"name": {"const": name}}},
                "then": {"required": ["value"], "properties": {"value": ip_address(version)}},
            }
            for name, version in ecs_events.ADDRESS_DETAILS.items()
        ],
    },
    "EcsContainer": {
        "type": "object",
        "description": "one container of the task: its `name` and `runtimeId` once in the task; a runtime ID "
        "(Fargate) begins with the task's ID, and a Docker ID on record under another task is refused",
        "required": ["name"],
        "properties": {
            "name": grammar(ecs_events.CONTAINER_NAME),
            "taskArn": nullable(grammar(ecs_events.TASK_ARN) | {"description": "the task's `taskArn`, if given"}),
            "runtimeId": nullable(grammar(ecs_events.RUNTIME_ID)),
            "lastStatus": nullable(ECS_STATUS),
            "exitCode": nullable(
                {"type": "integer", "minimum": ecs_events.EXIT_CODES[0], "maximum": ecs_events.EXIT_CODES[1]}
            ),
            "reason": nullable(TEXT),
            "image": nullable(TEXT),
            "imageDigest": nullable(grammar(ecs_events.IMAGE_DIGEST)),
            "networkBindings": nullable(array(ref("EcsNetworkBinding"), schema.MAX_PORTS)),
            "networkInterfaces": nullable(array(ref("EcsNetworkInterface"), ecs_events.MAX_INTERFACES)),
        },
    },
    "EcsNetworkBinding": {
        "type": "object",
        "description": "a port mapping; one without `containerPort` (a port range) is not read further",
        "properties": {
            "bindIP": nullable({"anyOf": [ip_address(4), ip_address(6)]}),
            "containerPort": nullable({"type": "integer", "minimum": 1, "maximum": 65535}),
            "hostPort": nullable({"type": "integer", "minimum": 0, "maximum": 65535}),
            "protocol": nullable({"type": "string", "enum": list(schema.PROTOCOLS)}),
        },
    },
    "EcsNetworkInterface": {
        "type": "object",
        "properties": {"privateIpv4Address": nullable(ip_address(4)), "ipv6Address": nullable(ip_address(6))},
    },
    "EcsEvents": {"oneOf": [ref("EcsEvent"), array(ref("EcsEvent"), schema.MAX_ITEMS)]},
}

ADDRESS = {"anyOf": [ip_address(4), ip_address(6)]}
#: Times the address routes take: ISO 8601 (``Z``, an offset, or none for UTC) or seconds since 1970.
MOMENT = {
    "anyOf": [
        {"type": "string", "format": "date-time"},
        {"type": "string", "pattern": f"^{address_questions.EPOCH_SECONDS.pattern}$"},
        {"type": "number", "minimum": 946684800},
    ]
}
PORT = {"type": "integer", "minimum": 1, "maximum": 65535}
HELD_TIME = {"type": "string", "format": "date-time"}
SHOWN_FIELD = {"type": "string"}

ADDRESS_SCHEMAS: dict[str, Any] = {
    "Holding": {
        "type": "object",
        "description": "one container's hold on an address: from when to when (`to` null while it still holds it), "
        "how each end is known, and whether another holding covers the same moment (`overlap`, never hidden)",
        "required": ["address", "via", "ports", "from", "from_by", "to", "to_by", "overlap"],
        "properties": {
            **dict.fromkeys(address_questions.IDENTIFIERS, SHOWN_FIELD),
            "address": ADDRESS,
            "via": {
                "type": "string",
                "enum": ["task", "instance"],
                "description": "`task`: the task's own address (awsvpc); `instance`: the EC2 instance's address, "
                "the container reached on its host ports",
            },
            "ports": array(ref("Port")),
            "from": HELD_TIME,
            "from_by": {"type": "string", "description": "how the start is known: `started`, `first_seen`, `event`…"},
            "to": {"anyOf": [HELD_TIME, {"type": "null"}]},
            "to_by": {
                "type": ["string", "null"],
                "description": "how the end is known: `stopped`, `last_seen`, `lost`, `vanished`…",
            },
            "overlap": {"type": "boolean"},
        },
    },
    "AddressHoldings": {
        "type": "object",
        "required": ["address", "at", "port", "holdings"],
        "properties": {
            "address": ADDRESS,
            "at": {"anyOf": [HELD_TIME, {"type": "null"}]},
            "port": {"anyOf": [PORT, {"type": "null"}]},
            "holdings": array(ref("Holding")),
        },
    },
    "HostHoldings": {
        "type": "object",
        "required": ["instance_id", "at", "holdings"],
        "properties": {
            "instance_id": {"type": "string"},
            "at": {"anyOf": [HELD_TIME, {"type": "null"}]},
            "holdings": array(ref("Holding")),
        },
    },
    "AddressQuestions": {
        "type": "object",
        "required": ["questions"],
        "properties": {
            "questions": array(
                {
                    "type": "object",
                    "required": ["address"],
                    "properties": {
                        "address": {"type": "string", "description": "IPv4 or IPv6, in any spelling it normalises"},
                        "at": {"anyOf": [MOMENT, {"type": "null"}], "description": "absent or null: ever"},
                        "port": {"anyOf": [PORT, {"type": "null"}], "description": "absent or null: any"},
                    },
                },
                address_questions.MAX_QUESTIONS,
            )
        },
    },
    "AddressAnswers": {
        "type": "object",
        "required": ["answers"],
        "properties": {
            "answers": array(
                {
                    "description": "in the order asked: the holdings (none is an empty list), or why the question "
                    "was refused (the others are answered all the same)",
                    "oneOf": [ref("AddressHoldings"), ref("Error")],
                },
                address_questions.MAX_QUESTIONS,
            )
        },
    },
}
