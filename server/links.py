"""Monitoring links rendered from configured URL templates at query time.

Placeholders are record fields plus ``{short_id}``; every value is URL-quoted, and the template itself comes only
from configuration, so a link can never point anywhere the operator did not choose.
"""

from __future__ import annotations

import string
from urllib.parse import quote

from server.records import FIELDS

PLACEHOLDERS = (*FIELDS, "short_id")

#: link name → the variable that configures its template
LINKS = {"cadvisor": "ECS_ID_MAPPER_CADVISOR_URL", "graylog": "ECS_ID_MAPPER_GRAYLOG_URL"}


class MissingValue(LookupError):
    """The record lacks a value the template needs."""


def placeholders(template: str) -> list[str]:
    return [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]


def validate_template(template: str, known: tuple[str, ...] = PLACEHOLDERS) -> str:
    """Check a template at start: an http(s) URL using ``known`` placeholders only."""
    if not template:
        return template
    if not template.startswith(("http://", "https://")):
        raise ValueError(f"expected an http(s) URL template, got {template!r}")
    try:
        names = placeholders(template)
    except ValueError as exc:
        raise ValueError(f"malformed template {template!r}: {exc}") from None
    unknown = sorted({n for n in names if n not in known})
    if unknown:
        raise ValueError(f"unknown placeholder(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return template


def render(template: str, record: dict[str, str]) -> str:
    """The link for one record; raises MissingValue naming an empty field the template needs."""
    values = {**record, "short_id": record.get("container_id", "")[:12]}
    quoted = {}
    for name in placeholders(template):
        if not values.get(name):
            raise MissingValue(name)
        quoted[name] = quote(values[name], safe="")
    return template.format_map(quoted)
