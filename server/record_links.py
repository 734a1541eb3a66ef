"""A record's links as the routes show them: rendered from the configured templates, or (New Relic) looked up
once and then cached in the record."""

from __future__ import annotations

from contextlib import suppress

from server import links
from server.enrichment import store_newrelic_url
from server.errors import ApiError
from server.records import public, utc_now
from server.state import state
from server.store import Record


def link_names() -> list[str]:
    """Every link name the routes answer: the built-in ones, then those configured with ECS_ID_MAPPER_LINK_*."""
    return [*links.LINKS, "newrelic", *state().config.links]


def link_url(name: str, record: Record, lookup: bool = False) -> str:
    """The rendered link, or 404 saying what to configure or what the record lacks.

    ``lookup``: find a New Relic URL not on record yet through New Relic (and cache it in the record).
    """
    if name == "newrelic":
        if not record.get("newrelic_url"):
            if lookup:
                app_state = state()
                return store_newrelic_url(app_state.store, app_state.newrelic, record)
            raise ApiError("no New Relic URL is on record for this container", 404)
        return record["newrelic_url"]
    variable = links.variable(name)
    template = _template(name)
    if not template:
        raise ApiError(f"{name} links are not configured: set {variable}", 404)
    try:
        return links.render(template, record)
    except links.MissingValue as exc:
        raise ApiError(f"the record has no {exc.args[0]}, which {variable} needs", 404) from None
    except links.InvalidLink as exc:
        raise ApiError(f"the record's values make no valid URL from {variable}: {exc}", 404) from None


def _template(name: str) -> str:
    """The configured template of link ``name`` (not New Relic's), "" when it is not configured."""
    config = state().config
    return getattr(config, f"{name}_url") if name in links.LINKS else config.links.get(name, "")


def configured_links(record: Record) -> dict[str, str]:
    """Every link this record has, by name; links not configured or lacking a value are left out.

    The same links as ``link_url`` gives, without an error built for every link left out (a lookup's hot path).
    """
    urls = {}
    for name in link_names():
        if name == "newrelic":
            if record.get("newrelic_url"):
                urls[name] = record["newrelic_url"]
        elif template := _template(name):
            with suppress(links.MissingValue, links.InvalidLink):
                urls[name] = links.render(template, record)
    return urls


def full_record(record: Record) -> dict:
    """A record as JSON, with its rendered links."""
    return {**public(record), **{f"{name}_url": url for name, url in configured_links(record).items()}}


def as_shown(records: list[Record]) -> list[Record]:
    """The records as answers show them: those whose host stopped reporting gain ``lost_since`` and
    ``lost_reason`` (``server.liveness``), read against the process's cached leases."""
    return state().leases.annotate(records, utc_now())
