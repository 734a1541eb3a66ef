"""Links into New Relic: the application a container runs, and the application of a service.

Routes see only ``NewRelicClient``. Two implementations: NerdGraph (``server.nerdgraph``, the default) and the
REST API v2 here, which New Relic retires on 2027-07-31; ``ECS_ID_MAPPER_NEWRELIC_API`` chooses.
"""

from __future__ import annotations

import logging
import string
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, NoReturn
from urllib.parse import quote, urlsplit

import requests

from server.config import Config
from server.errors import ApiError

log = logging.getLogger(__name__)

API_KEY_VARIABLE = "ECS_ID_MAPPER_NEWRELIC_API_KEY"
ACCOUNT_ID_VARIABLE = "ECS_ID_MAPPER_NEWRELIC_ACCOUNT_ID"
#: (connect, read) seconds for every call to New Relic.
TIMEOUT = (3.05, 10.0)
#: Pages of one listing followed at most; filtered listings are one page in practice.
MAX_PAGES = 10


class NewRelicError(ApiError):
    """New Relic answered badly or not at all; 502."""

    status = 502


class NewRelicNotConfigured(NewRelicError):
    """The settings New Relic needs are missing; 404 naming the variables to set."""

    status = 404


class NewRelicNotFound(NewRelicError):
    """New Relic knows no such host or application; 404."""

    status = 404


class NewRelicAmbiguous(NewRelicError):
    """Several applications (or instances) match; 409, with ``candidates`` listing them."""

    status = 409


class NewRelicUnavailable(NewRelicError):
    """New Relic could not be reached, or asked us to slow down; 503."""

    status = 503


class NewRelicClient(ABC):
    """What the routes ask of New Relic."""

    @abstractmethod
    def instance_url(self, short_container_id: str) -> str:
        """The UI URL of the application instance running in the container whose host name is the short ID.

        Raises NewRelicNotFound, NewRelicAmbiguous, or another NewRelicError.
        """

    @abstractmethod
    def application_url(self, name: str) -> str:
        """The UI URL of the application called ``name``. Raises like ``instance_url``."""


class UnconfiguredClient(NewRelicClient):
    """Stands in while the API key or account ID is missing: every lookup says which variables to set."""

    def __init__(self, missing: list[str]):
        self.missing = missing

    def _refuse(self) -> NoReturn:
        raise NewRelicNotConfigured(f"New Relic is not configured: set {' and '.join(self.missing)}")

    def instance_url(self, short_container_id: str) -> str:
        return self._refuse()

    def application_url(self, name: str) -> str:
        return self._refuse()


class RestV2Client(NewRelicClient):
    """New Relic REST API v2 (``GET /v2/…json`` with ``X-Api-Key``), as the 2016 project used it.

    A container's host name is its short ID, so: the applications filtered by that host, then the
    application's hosts filtered by host name, then the host's application instance.
    """

    def __init__(
        self,
        api_key: str,
        account_id: str,
        api_url: str = Config.newrelic_api_url,
        instance_url_template: str = Config.newrelic_instance_url,
        application_url_template: str = Config.newrelic_application_url,
        session: requests.Session | None = None,
        timeout: float | tuple[float, float] = TIMEOUT,
    ):
        self._api_key = api_key
        self.account_id = account_id
        self.api_url = api_url.rstrip("/")
        self.instance_url_template = instance_url_template
        self.application_url_template = application_url_template
        self.session = session or requests.Session()
        self.timeout = timeout

    def __repr__(self) -> str:  # never show the key
        return f"RestV2Client(api_url={self.api_url!r}, account_id={self.account_id!r})"

    def instance_url(self, short_container_id: str) -> str:
        host = short_container_id.lower()
        application = self._one_application(
            self._list("applications", "/v2/applications.json", {"filter[host]": host}),
            f"New Relic knows no application on host {host}",
        )
        app_id = _ident(application["id"], "application")
        hosts = self._list("application_hosts", f"/v2/applications/{app_id}/hosts.json", {"filter[hostname]": host})
        hosts = [h for h in hosts if str(h.get("host", "")).lower() == host] or hosts
        if not hosts:
            raise NewRelicNotFound(f"New Relic application {application.get('name')!r} has no host {host}")
        instance_ids: set[Any] = {
            _ident(i, "application instance") for h in hosts for i in _list_of(_links(h).get("application_instances"))
        }
        if len(instance_ids) != 1:
            # The host does not name exactly one instance: ask for the instances on that host name.
            instances = self._list(
                "application_instances",
                f"/v2/applications/{app_id}/instances.json",
                {"filter[hostname]": host},
            )
            host_ids: set[Any] = {_ident(h["id"], "application host") for h in hosts if h.get("id") is not None}
            linked = [i for i in instances if any(_links(i).get("application_host") == h for h in host_ids)]
            named = [i for i in instances if str(i.get("host", "")).lower() == host]
            instance_ids = {_ident(i["id"], "application instance") for i in linked or named if i.get("id") is not None}
        if not instance_ids:
            raise NewRelicNotFound(f"New Relic application {application.get('name')!r} has no instance on {host}")
        urls = sorted(self._render(self.instance_url_template, app_id, i) for i in instance_ids)
        if len(urls) > 1:
            raise NewRelicAmbiguous(f"several New Relic application instances run on host {host}", candidates=urls)
        return urls[0]

    def application_url(self, name: str) -> str:
        applications = self._list("applications", "/v2/applications.json", {"filter[name]": name})
        # filter[name] matches names that contain it: keep the exact ones, then those equal but for case.
        exact = [a for a in applications if a.get("name") == name] or [
            a for a in applications if str(a.get("name", "")).lower() == name.lower()
        ]
        application = self._one_application(exact, f"New Relic knows no application named {name!r}")
        return self._render(self.application_url_template, application["id"], None)

    def _one_application(self, applications: list[dict], not_found: str) -> dict:
        applications = [{**a, "id": _ident(a["id"], "application")} for a in applications if a.get("id") is not None]
        if not applications:
            raise NewRelicNotFound(not_found)
        if len(applications) > 1:
            names = [f"{a.get('name')} ({a['id']})" for a in applications]
            raise NewRelicAmbiguous(
                f"several New Relic applications match: {', '.join(names)}",
                candidates=[
                    {
                        "id": a["id"],
                        "name": a.get("name"),
                        "url": self._render(self.application_url_template, a["id"]),
                    }
                    for a in applications
                ],
            )
        return applications[0]

    def _list(self, key: str, path: str, params: Mapping[str, str]) -> list[dict]:
        """Every item under ``key`` of a listing, following ``Link: rel=next`` for a few pages."""
        url: str | None = self.api_url + path
        query: Mapping[str, str] | None = params
        items: list[dict] = []
        for _ in range(MAX_PAGES):
            if url is None:
                break
            response = self._get(url, query)
            body = json_body(response)
            page = body.get(key) if isinstance(body, dict) else None
            if not isinstance(page, list) or not all(isinstance(item, dict) for item in page):
                raise NewRelicError(f"New Relic answered {path} without a list of {key}")
            items.extend(page)
            url, query = response.links.get("next", {}).get("url"), None
            if url and not url.startswith(self.api_url + "/"):
                break  # never send the key anywhere but the configured API
        return items

    def _get(self, url: str, params: Mapping[str, str] | None) -> requests.Response:
        return send(
            self.session, "GET", url, self._api_key, self.timeout,
            params=params, headers={"X-Api-Key": self._api_key, "Accept": "application/json"},
        )  # fmt: skip

    def _render(self, template: str, application_id: Any, instance_id: Any = None) -> str:
        values = {"account_id": self.account_id, "application_id": application_id, "instance_id": instance_id}
        quoted = {}
        for _, name, _, _ in string.Formatter().parse(template):
            if name is None:
                continue
            if values.get(name) is None:
                raise NewRelicNotConfigured(f"the New Relic URL template {template!r} uses unknown {{{name}}}")
            quoted[name] = quote(str(values[name]), safe="")
        return template.format_map(quoted)


def send(
    session: requests.Session,
    method: str,
    url: str,
    api_key: str,
    timeout: float | tuple[float, float],
    **kwargs: Any,
) -> requests.Response:
    """One call to a New Relic API, its trouble raised as NewRelicError: 200 or an error with the right status.

    The key never appears in a message: New Relic's own error text is scrubbed of it.
    """
    try:
        response = session.request(method, url, timeout=timeout, allow_redirects=False, **kwargs)
    except requests.Timeout:
        raise NewRelicError(f"New Relic did not answer within {_seconds(timeout)} s") from None
    except requests.RequestException as exc:
        host = urlsplit(url).netloc
        raise NewRelicUnavailable(f"New Relic at {host} is unreachable ({type(exc).__name__})") from None
    if response.status_code == 200:
        return response
    if response.status_code in (401, 403):
        raise NewRelicError(f"New Relic refused the API key ({response.status_code}): check {API_KEY_VARIABLE}")
    if response.status_code == 429:
        raise NewRelicUnavailable("New Relic is rate-limiting requests; try again shortly")
    title = scrub(_error_title(response), api_key)
    raise NewRelicError(f"New Relic answered {response.status_code}" + (f": {title}" if title else ""))


def scrub(text: str, api_key: str) -> str:
    """``text`` without the API key in it."""
    return text.replace(api_key, "[api key]") if api_key else text


def json_body(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        raise NewRelicError("New Relic answered with malformed JSON") from None


def _links(item: dict) -> dict:
    links = item.get("links")
    return links if isinstance(links, dict) else {}


def _error_title(response: requests.Response) -> str:
    """What a non-200 answer says: REST's ``error.title`` or GraphQL's first ``errors[].message``."""
    try:
        body = response.json()
    except ValueError:
        return ""
    if not isinstance(body, dict):
        return ""
    error, errors = body.get("error"), body.get("errors")
    title = error.get("title") if isinstance(error, dict) else None
    if title is None and isinstance(errors, list) and errors and isinstance(errors[0], dict):
        title = errors[0].get("message")
    return str(title)[:200] if title else ""


def _seconds(timeout: float | tuple[float, float]) -> str:
    return f"{max(timeout) if isinstance(timeout, tuple) else timeout:g}"


def _ident(value: Any, what: str) -> int | str:
    """An ID as New Relic gives one, a number or a non-empty string; anything else is a malformed answer."""
    if isinstance(value, bool) or not isinstance(value, int | str) or value == "":
        raise NewRelicError(f"New Relic answered a malformed {what} ID: {value!r}")
    return value


def _list_of(value: Any) -> list:
    """A listing's ``links`` entry that should be a list of IDs; a lone ID counts as one."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]
