"""New Relic through NerdGraph, its GraphQL API, which outlives the REST API v2 (retired on 2027-07-31).

A container's host name is its short ID, and every APM ``Transaction`` event carries the ``host`` it ran on and
the ``entityGuid`` of its application. So a container's application is an NRQL query (run through NerdGraph)
for the GUIDs that recorded transactions on that host lately, then those entities for their names and
permalinks. A service's application is an entity search by name.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

import requests

from server.config import Config
from server.newrelic import (
    API_KEY_VARIABLE,
    TIMEOUT,
    NewRelicAmbiguous,
    NewRelicClient,
    NewRelicError,
    NewRelicNotFound,
    NewRelicUnavailable,
    json_body,
    scrub,
    send,
)

log = logging.getLogger(__name__)

#: How far back the host query looks: New Relic keeps Transaction events 8 days unless the account pays for more.
LOOKBACK_DAYS = 7
#: NerdGraph's ``entities`` field takes at most this many GUIDs at once.
MAX_GUIDS = 25

HOST_QUERY = """query ($account: Int!, $nrql: Nrql!) {
  actor { account(id: $account) { nrql(query: $nrql) { results } } }
}"""
ENTITIES_QUERY = """query ($guids: [EntityGuid!]!) {
  actor { entities(guids: $guids) { guid name permalink } }
}"""
SEARCH_QUERY = """query ($search: String!) {
  actor { entitySearch(query: $search) { results { entities { guid name permalink } } } }
}"""

#: ``extensions`` values by which NerdGraph says the key or its user may not do this.
REFUSED = {"BAD_API_KEY", "UNAUTHORIZED", "UNAUTHENTICATED", "FORBIDDEN"}
#: ... that it is shedding load.
THROTTLED = {"TOO_MANY_REQUESTS", "RATE_LIMITED"}


class NerdGraphClient(NewRelicClient):
    """``POST {api_url}/graphql`` with the user key as ``API-Key``; links are the entities' permalinks."""

    def __init__(
        self,
        api_key: str,
        account_id: str,
        api_url: str = Config.newrelic_api_url,
        session: requests.Session | None = None,
        timeout: float | tuple[float, float] = TIMEOUT,
    ):
        self._api_key = api_key
        self.account_id = int(account_id)
        self.endpoint = api_url.rstrip("/") + "/graphql"
        self.session = session or requests.Session()
        self.timeout = timeout

    def __repr__(self) -> str:  # never show the key
        return f"NerdGraphClient(endpoint={self.endpoint!r}, account_id={self.account_id!r})"

    def instance_url(self, short_container_id: str) -> str:
        host = short_container_id.lower()
        nrql = (
            f"SELECT uniques(entityGuid) AS 'guids' FROM Transaction WHERE host = {quoted(host)} "
            f"SINCE {LOOKBACK_DAYS} days ago"
        )
        data = self._query(HOST_QUERY, {"account": self.account_id, "nrql": nrql})
        results = _field(data, "actor", "account", "nrql", "results")
        if not isinstance(results, list) or not all(isinstance(row, dict) for row in results):
            raise NewRelicError("New Relic answered the NRQL query without a list of results")
        guids = sorted({guid for row in results for guid in _strings(row.get("guids", []))})
        not_found = f"New Relic saw no APM transactions on host {host} in the last {LOOKBACK_DAYS} days"
        if not guids:
            raise NewRelicNotFound(not_found)
        data = self._query(ENTITIES_QUERY, {"guids": guids[:MAX_GUIDS]})
        return self._one(_entities(_field(data, "actor", "entities")), not_found, f"on host {host}")

    def application_url(self, name: str) -> str:
        search = f"domain = 'APM' AND type = 'APPLICATION' AND accountId = {self.account_id} AND name = {quoted(name)}"
        data = self._query(SEARCH_QUERY, {"search": search})
        found = _entities(_field(data, "actor", "entitySearch", "results", "entities"))
        # The search matches names loosely: keep the exact ones, then those equal but for case.
        exact = [e for e in found if e["name"] == name] or [e for e in found if e["name"].lower() == name.lower()]
        return self._one(exact, f"New Relic knows no APM application named {name!r}", f"named {name!r}")

    def _one(self, entities: list[dict], not_found: str, where: str) -> str:
        if not entities:
            raise NewRelicNotFound(not_found)
        if len(entities) > 1:
            names = ", ".join(f"{e['name']} ({e['guid']})" for e in entities)
            raise NewRelicAmbiguous(
                f"several New Relic applications run {where}: {names}",
                candidates=[{"guid": e["guid"], "name": e["name"], "url": _permalink(e)} for e in entities],
            )
        return _permalink(entities[0])

    def _query(self, query: str, variables: dict[str, Any]) -> dict:
        """The ``data`` of one GraphQL request; NerdGraph's ``errors`` (which come in a 200 answer) raised."""
        response = send(
            self.session, "POST", self.endpoint, self._api_key, self.timeout,
            json={"query": query, "variables": variables},
            headers={"API-Key": self._api_key, "Accept": "application/json"},
        )  # fmt: skip
        body = json_body(response)
        if not isinstance(body, dict):
            raise NewRelicError("New Relic answered NerdGraph with something other than a JSON object")
        errors = body.get("errors") or []
        if not isinstance(errors, list):
            raise NewRelicError("New Relic answered NerdGraph with malformed errors")
        serious = [e for e in errors if not _deprecation(e)]
        if serious:
            raise self._error(serious)
        for warning in errors:
            log.warning("NerdGraph: %s", scrub(str(warning.get("message", ""))[:200], self._api_key))
        data = body.get("data")
        if not isinstance(data, dict):
            raise NewRelicError("New Relic answered NerdGraph without data")
        return data

    def _error(self, errors: list[Any]) -> NewRelicError:
        kinds: set[str] = set()
        messages = []
        for error in errors:
            error = error if isinstance(error, dict) else {"message": str(error)}
            extensions = error.get("extensions")
            if not isinstance(extensions, dict):
                extensions = {}
            kinds.update(str(extensions.get(k, "")).upper() for k in ("errorClass", "error_code", "code"))
            messages.append(scrub(str(error.get("message", "")), self._api_key)[:200])
        said = "; ".join(m for m in messages if m) or "no message"
        if kinds & REFUSED:
            return NewRelicError(f"New Relic refused the request ({said}): check {API_KEY_VARIABLE} and the account ID")
        if kinds & THROTTLED:
            return NewRelicUnavailable("New Relic is rate-limiting requests; try again shortly")
        if "TIMEOUT" in kinds:
            return NewRelicError(f"New Relic timed out answering NerdGraph: {said}")
        return NewRelicError(f"New Relic answered NerdGraph with errors: {said}")


def quoted(value: str) -> str:
    """A string literal for NRQL and entity search: single quotes, with backslashes and quotes escaped."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _field(data: Any, *path: str) -> Any:
    for name in path:
        if not isinstance(data, dict):
            raise NewRelicError(f"New Relic answered NerdGraph without {'.'.join(path)}")
        data = data.get(name)
    return data


def _strings(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise NewRelicError("New Relic answered the NRQL query with GUIDs that are not a list of strings")
    return value


def _entities(value: Any) -> list[dict]:
    """Entities with a GUID and a name, by name; ``null`` (nothing found) is an empty list."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise NewRelicError("New Relic answered NerdGraph without a list of entities")
    entities = [e for e in value if isinstance(e, dict) and isinstance(e.get("guid"), str)]
    for entity in entities:
        entity["name"] = str(entity.get("name") or "")
    return sorted(entities, key=lambda e: (e["name"], e["guid"]))


def _permalink(entity: dict) -> str:
    """The entity's page; only a New Relic https URL, since the server redirects people to it."""
    url = entity.get("permalink")
    parts = urlsplit(url) if isinstance(url, str) else None
    host = (parts.hostname or "") if parts else ""
    if not parts or parts.scheme != "https" or not (host == "newrelic.com" or host.endswith(".newrelic.com")):
        raise NewRelicError(f"New Relic answered entity {entity['guid']} without a newrelic.com permalink")
    return str(url)


def _deprecation(error: Any) -> bool:
    """NerdGraph reports the use of a deprecated field as an error beside the data: a warning, not a failure."""
    return isinstance(error, dict) and str(error.get("message", "")).startswith("This field is deprecated")
