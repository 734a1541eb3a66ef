"""How the agent verifies the server over HTTPS: with ECS_ID_MAPPER_CA_BUNDLE's CAs (a private CA) when it is set."""

from __future__ import annotations

from typing import Any

import requests
from requests.adapters import HTTPAdapter


class VerifyWith(HTTPAdapter):
    """Verifies every HTTPS request it sends against ``bundle``. ``Session.verify`` alone would not do: requests lets
    REQUESTS_CA_BUNDLE and CURL_CA_BUNDLE, which many images set to the system's store, override it per request."""

    def __init__(self, bundle: str) -> None:
        super().__init__()
        self.bundle = bundle

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        kwargs["verify"] = self.bundle
        return super().send(request, **kwargs)


def verify_with(session: requests.Session, bundle: str | None) -> None:
    """Make ``session`` trust only ``bundle``'s CAs for HTTPS; with None, the defaults stay."""
    if bundle:
        session.verify = bundle
        session.mount("https://", VerifyWith(bundle))
