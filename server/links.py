"""Monitoring links rendered from configured URL templates at query time.

Placeholders are record fields plus ``{short_id}``; every value is URL-quoted, and the template itself comes only
from configuration, so a link can never point anywhere the operator did not choose.
"""

from __future__ import annotations

import string
from urllib.parse import quote

from werkzeug.urls import iri_to_uri

from server.records import FIELDS

PLACEHOLDERS = (*FIELDS, "short_id")

#: link name → the variable that configures its template
LINKS = {"cadvisor": "ECS_ID_MAPPER_CADVISOR_URL", "graylog": "ECS_ID_MAPPER_GRAYLOG_URL"}


class MissingValue(LookupError):
    """The record lacks a value the template needs."""


class InvalidLink(ValueError):
    """The rendered link is no URL a client could follow (say, a host name that is not one)."""


def placeholders(template: str) -> list[str]:
    return [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]


def _plain(template: str) -> bool:
    """True when no placeholder carries a conversion or format spec, which would bypass URL-quoting."""
    return not any(spec or conversion for _, _, spec, conversion in string.Formatter().parse(template))


def validate_template(template: str, known: tuple[str, ...] = PLACEHOLDERS) -> str:
    """Check a template at start: an http(s) URL using ``known`` placeholders only."""
    if not template:
        return template
    if not template.startswith(("http://", "https://")):
        raise ValueError(f"expected an http(s) URL template, got {template!r}")
    try:
        names = placeholders(template)
        plain = _plain(template)
    except ValueError as exc:
        raise ValueError(f"malformed template {template!r}: {exc}") from None
    if not plain:
        raise ValueError(f"placeholders take no conversion or format spec: {template!r}")
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
    url = template.format_map(quoted)
    try:
        iri_to_uri(url)  # what a redirect does to it: fails on a host part that is not a host name
    except (UnicodeError, ValueError) as exc:
        raise InvalidLink(str(exc)) from None
    return url
