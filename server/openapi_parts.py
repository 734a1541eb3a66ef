"""Pieces of the OpenAPI document (``server.openapi``): JSON Schema helpers, and the ECS task state change as
``POST /report/ecs-events`` takes it, built from ``server.ecs_events``' own grammars so that the document and the
checks cannot drift apart."""

from __future__ import annotations

import re
from typing import Any

from server import ecs_events, schema, validation

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
