"""Bearer tokens: agents' reports need the report token; reads need the read token (or the report token) once
``ECS_ID_MAPPER_READ_TOKEN`` is set. Every token is compared in constant time."""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from flask import Blueprint, Flask, request

from server.errors import ApiError
from server.state import state


def require_bearer(*accepted: str) -> None:
    """401 when the request carries no bearer token, 403 when it carries none of the ``accepted`` ones."""
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    given = given.strip()
    if scheme.lower() != "bearer" or not given:
        raise ApiError("missing Authorization: Bearer TOKEN", 401, headers={"WWW-Authenticate": "Bearer"})
    # Every token is compared, even after a match, so that the time taken tells nothing about which one matched.
    matches = [hmac.compare_digest(given.encode(), token.encode()) for token in accepted if token]
    if not any(matches):
        raise ApiError("wrong token", 403)


def authorize_report() -> None:
    cfg = state().config
    if not cfg.token:
        if cfg.allow_anonymous_reports:
            return
        raise ApiError(
            "reports are refused: set ECS_ID_MAPPER_TOKEN (or ECS_ID_MAPPER_ALLOW_ANONYMOUS_REPORTS=true)", 403
        )
    require_bearer(cfg.token)


def authorize_read() -> None:
    """The read token or the report token."""
    cfg = state().config
    require_bearer(cfg.read_token, cfg.token)


def accepts_read(given: str) -> bool:
    """Whether ``given`` is a token that may read: the read token or the report token (for the page's sign-in)."""
    cfg = state().config
    # Every token is compared, as in require_bearer, so that the time taken tells nothing about which one matched.
    matches = [hmac.compare_digest(given.encode(), token.encode()) for token in (cfg.read_token, cfg.token) if token]
    return bool(given) and any(matches)


def protect_reads(app: Flask, blueprints: Iterable[Blueprint]) -> None:
    """Put the routes of ``blueprints`` behind ``authorize_read``: ``create_app`` does it when a read token is set,
    so that open reads run no hook at all."""
    for blueprint in blueprints:
        app.before_request_funcs.setdefault(blueprint.name, []).append(authorize_read)
