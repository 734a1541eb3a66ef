"""Monitoring links rendered from configured URL templates at query time.

Placeholders are record fields plus ``{short_id}``; every value is URL-quoted, and the template itself comes only
from configuration, so a link can never point anywhere the operator did not choose.
"""

from __future__ import annotations

import ipaddress
import re
import string
from urllib.parse import quote

from werkzeug.urls import iri_to_uri

from server.records import FIELDS

PLACEHOLDERS = (*FIELDS, "short_id")

#: What may stand in a URL's host part: dot-separated labels of letters, digits and inner hyphens.
HOST_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*\.?")

#: The built-in links, rendered from templates: name → the variable that configures the template.
LINKS = {"cadvisor": "ECS_ID_MAPPER_CADVISOR_URL", "graylog": "ECS_ID_MAPPER_GRAYLOG_URL"}
#: Names no configured link may take: the built-in links and the fixed route segments beside them
#: (``/query/container_id/<id>/<name>``, ``/query/task_id/<id>/<name>``).
RESERVED = (*LINKS, "newrelic", "_all", "urls", "events", "containers")
#: A link name: it becomes a path segment and the JSON key ``<name>_url``.
LINK_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")


class MissingValue(LookupError):
    """The record lacks a value the template needs."""


class InvalidLink(ValueError):
    """The rendered link is no URL a client could follow (say, a host name that is not one)."""


def validate_name(name: str) -> str:
    """Check the name of a configured link at start: lower-case letters, digits and ``_``, not a route's."""
    if not LINK_NAME.fullmatch(name):
        raise ValueError(f"link name {name!r} must be a letter, then up to 63 letters, digits or '_'")
    if name in LINKS:
        raise ValueError(f"{name} is a built-in link: set {LINKS[name]} instead")
    if name in RESERVED:
        raise ValueError(f"link name {name!r} is taken (reserved: {', '.join(RESERVED)})")
    return name


def variable(name: str) -> str:
    """The variable that configures the template of the link called ``name``."""
    return LINKS.get(name) or f"ECS_ID_MAPPER_LINK_{name.upper()}"


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
    """The link for one record; raises MissingValue naming an empty field the template needs, InvalidLink when
    a value cannot stand where the template puts it (a host part that is no host)."""
    values = {**record, "short_id": record.get("container_id", "")[:12]}
    in_host = set(placeholders(_authority(template)))
    rendered = {}
    for name in placeholders(template):
        if not values.get(name):
            raise MissingValue(name)
        rendered[name] = _host(name, values[name]) if name in in_host else quote(values[name], safe="")
    url = template.format_map(rendered)
    try:
        iri_to_uri(url)  # what a redirect does to it: fails on a host name no DNS could hold
    except (UnicodeError, ValueError) as exc:
        raise InvalidLink(str(exc)) from None
    return url


def _authority(template: str) -> str:
    """The host[:port] part of a URL template (validated to start with a scheme)."""
    return re.split(r"[/?#]", template.partition("://")[2], maxsplit=1)[0]


def _host(name: str, value: str) -> str:
    """A value placed in the host part: a host name or an IP address (IPv6 in brackets), never quoted."""
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        if HOST_NAME.fullmatch(value):
            return value
        raise InvalidLink(f"{name} {value!r} is not a host name") from None
    if address.version == 6:
        if "%" in value:
            raise InvalidLink(f"{name} {value!r} is a link-local address with a zone: no other host can reach it")
        return f"[{value}]"
    return value
