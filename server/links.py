"""Monitoring links rendered from configured URL templates at query time.

Placeholders are record fields plus ``{short_id}``; every value is URL-quoted, and the template itself comes only
from configuration, so a link can never point anywhere the operator did not choose.
"""

from __future__ import annotations

import ipaddress
import re
import string
from functools import lru_cache
from urllib.parse import quote, urlsplit

from werkzeug.urls import iri_to_uri

from server.records import FIELDS

PLACEHOLDERS = (*FIELDS, "short_id")

#: What may stand in a URL's host part: dot-separated labels of letters, digits and inner hyphens.
HOST_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*\.?")

#: A placeholder in a template.
FIELD = re.compile(r"\{[^{}]*\}")

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
    """Check a template at start: an http(s) URL with a host, a port that can be one, ``known`` placeholders."""
    if not template:
        return template
    if not template.startswith(("http://", "https://")):
        raise ValueError(f"expected an http(s) URL template, got {template!r}")
    if any(c.isspace() or not c.isprintable() for c in template):
        raise ValueError(f"whitespace or a control character in the template: {template!r}")
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
    host, port = _host_and_port(template)
    if not host:
        raise ValueError(f"the template has no host: {template!r}")
    if port is not None:
        literal = FIELD.sub("", port)  # placeholders in the port are checked when rendered
        if not port or (literal and not (literal.isascii() and literal.isdigit())):
            raise ValueError(f"the port of {template!r} is not a number")
        if literal == port and not 0 < int(port) <= 65535:
            raise ValueError(f"the port of {template!r} is out of range (1-65535)")
    return template


def render(template: str, record: dict[str, str]) -> str:
    """The link for one record; raises MissingValue naming an empty field the template needs, InvalidLink when
    a value cannot stand where the template puts it (a host part that is no host, a port that is no port)."""
    values = {**record, "short_id": record.get("container_id", "")[:12]}
    names, in_host, in_port, whole_host = _parsed(template)
    rendered = {}
    for name in names:
        if not values.get(name):
            raise MissingValue(name)
        value = values[name]
        if name in in_host:
            rendered[name] = _host(name, value, whole=name == whole_host)
        elif name in in_port:
            rendered[name] = _port(name, value)
        else:
            rendered[name] = quote(value, safe="")
    url = template.format_map(rendered)
    problem = _authority_problem(_authority(url))
    if problem:
        raise InvalidLink(problem)
    return url


@lru_cache(maxsize=256)
def _parsed(template: str) -> tuple[tuple[str, ...], frozenset[str], frozenset[str], str | None]:
    """A template's placeholders; those in its host part and in its port; and the one that is the whole host, if
    any (templates are few: parse each once)."""
    host, port = _host_and_port(template)
    whole_host = host[1:-1] if FIELD.fullmatch(host) else None
    return tuple(placeholders(template)), frozenset(placeholders(host)), frozenset(placeholders(port or "")), whole_host


@lru_cache(maxsize=4096)
def _authority_problem(authority: str) -> str:
    """Why a redirect could not carry a URL with this host[:port] (a host name no DNS could hold), or "".

    Only the authority can fail: every other value is URL-quoted. Hosts repeat (many containers per instance),
    so each is checked once.
    """
    try:
        iri_to_uri(f"http://{authority}/")
        urlsplit(f"http://{authority}/").port  # noqa: B018 -- raises ValueError past 65535
    except (UnicodeError, ValueError) as exc:
        return str(exc)
    return ""


def _authority(template: str) -> str:
    """The host[:port] part of a URL template (validated to start with a scheme)."""
    return re.split(r"[/?#]", template.partition("://")[2], maxsplit=1)[0]


def _host_and_port(template: str) -> tuple[str, str | None]:
    """The host and port parts of a URL template's authority (None where it gives no port)."""
    authority = _authority(template)
    if authority.startswith("["):  # an IPv6 literal
        host, _, rest = authority.partition("]")
        return host + "]", rest[1:] if rest.startswith(":") else None
    host, colon, port = authority.partition(":")
    return host, port if colon else None


@lru_cache(maxsize=4096)  # hosts repeat (many containers per instance): each is parsed once
def _host(name: str, value: str, whole: bool) -> str:
    """A value placed in the host part, never quoted: the whole host may be a host name or an IP address (IPv6
    in brackets); a piece of a host may only be host-name labels, so that no value can move the link elsewhere."""
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        if HOST_NAME.fullmatch(value):
            return value
        raise InvalidLink(f"{name} {value!r} is not a host name") from None
    if not whole:
        raise InvalidLink(f"{name} {value!r} is an address: it can only stand as a whole host, not a piece of one")
    if address.version == 6:
        if "%" in value:
            raise InvalidLink(f"{name} {value!r} is a link-local address with a zone: no other host can reach it")
        return f"[{value}]"
    return value


def _port(name: str, value: str) -> str:
    """A value placed in the port: digits only."""
    if not (value.isascii() and value.isdigit()):
        raise InvalidLink(f"{name} {value!r} is not a port number")
    return value
