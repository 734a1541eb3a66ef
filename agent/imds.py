"""EC2 instance metadata for the host fields: IMDSv2 tokens first, plain GETs only if tokens are refused."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import requests

from agent import wire

log = logging.getLogger(__name__)

TOKEN_TTL = 21600  # seconds; the longest IMDS grants
TOKEN_MARGIN = 60  # refresh this long before the token expires
FIELDS = {
    "instance_id": "meta-data/instance-id",
    "instance_ip": "meta-data/local-ipv4",
    "instance_type": "meta-data/instance-type",
    "instance_az": "meta-data/placement/availability-zone",
    "region": "meta-data/placement/region",
}


def body(response: requests.Response) -> str:
    """The answer as UTF-8 text: IMDS answers are ASCII, and without a Content-Type `requests` would guess."""
    return response.content.decode("utf-8", "replace").strip()


class ImdsUnavailable(Exception):
    """The instance metadata service did not answer, or answered with an error."""


class InstanceMetadata:
    """The instance metadata service at `base_url` (http://169.254.169.254 on EC2)."""

    def __init__(
        self,
        session: requests.Session,
        base_url: str,
        timeout: tuple[float, float],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/") + "/latest/"
        self.timeout = timeout
        self.clock = clock
        self._token: str | None = None
        self._token_expires = 0.0
        self._v1 = False  # the token PUT was refused: this service only knows plain GETs

    def _new_token(self) -> None:
        try:
            response = self.session.put(
                self.base_url + "api/token",
                headers={"X-aws-ec2-metadata-token-ttl-seconds": str(TOKEN_TTL)},
                timeout=self.timeout,
                allow_redirects=False,  # instance metadata never redirects; whatever does is not it
            )
        except requests.Timeout:
            # A PUT that never comes back is IMDSv2 behind one network hop too many; plain GETs may work.
            self._v1 = True
            return
        except requests.RequestException as exc:
            raise ImdsUnavailable(f"token: {exc.__class__.__name__}") from None
        if response.status_code in (403, 404, 405):
            self._v1 = True
            return
        if response.status_code != 200 or not body(response):
            raise ImdsUnavailable(f"token: HTTP {response.status_code}")
        self._token = body(response)
        self._token_expires = self.clock() + TOKEN_TTL - TOKEN_MARGIN

    def _headers(self) -> dict[str, str]:
        if self._v1:
            return {}
        if self._token is None or self.clock() >= self._token_expires:
            self._token = None
            self._new_token()
        return {} if self._token is None else {"X-aws-ec2-metadata-token": self._token}

    def _get(self, path: str) -> str:
        for attempt in (1, 2):
            headers = self._headers()
            try:
                response = self.session.get(
                    self.base_url + path, headers=headers, timeout=self.timeout, allow_redirects=False
                )
            except requests.RequestException as exc:
                raise ImdsUnavailable(f"{path}: {exc.__class__.__name__}") from None
            if response.status_code == 401 and attempt == 1:
                # The token expired early or was revoked, or tokens became required: ask for a new one.
                self._token, self._v1 = None, False
                continue
            if response.status_code == 404:
                return ""  # older instances have no placement/region
            if response.status_code != 200:
                raise ImdsUnavailable(f"{path}: HTTP {response.status_code}")
            return wire.text(body(response)) or ""
        raise ImdsUnavailable(f"{path}: HTTP 401 with a new token")

    def read(self) -> dict[str, str]:
        """The instance fields (instance_id, _ip, _type, _az, region); ImdsUnavailable if unreadable."""
        fields = {name: self._get(path) for name, path in FIELDS.items()}
        if fields["instance_ip"] and not wire.ip_address(fields["instance_ip"]):
            log.warning(
                "instance metadata: local-ipv4 is not an IP address (%r): left empty", fields["instance_ip"][:80]
            )
            fields["instance_ip"] = ""
        if not fields["region"] and fields["instance_az"][-1:].isalpha():
            fields["region"] = fields["instance_az"][:-1]  # eu-central-1a → eu-central-1
        return fields
