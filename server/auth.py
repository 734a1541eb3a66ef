"""Bearer tokens: who may report, send ECS events and read (``server.tokens``: the single-token settings and the
token file). A token accepted is named in ``flask.g.token_name`` ("" for an anonymous report) and kept whole in
``flask.g.token`` for the scope checks of the report routes. Every token is compared in constant time."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from flask import Blueprint, Flask, g, request

from server.errors import ApiError
from server.state import AppState, state
from server.token_file import Token
from server.tokens import ANONYMOUS

log = logging.getLogger(__name__)


def bearer_of(authorization: str) -> str:
    """The token of an ``Authorization: Bearer TOKEN`` header's value, "" when it names none."""
    scheme, _, given = authorization.partition(" ")
    return given.strip() if scheme.lower() == "bearer" else ""


def bearer() -> str:
    """The request's bearer token; 401 when it carries none."""
    given = bearer_of(request.headers.get("Authorization", ""))
    if not given:
        raise ApiError("missing Authorization: Bearer TOKEN", 401, headers={"WWW-Authenticate": "Bearer"})
    return given


def authenticate() -> Token:
    """The token the request carries, named in ``g``: 401 without one, 403 for one the server does not know."""
    token = state().tokens.current().match(bearer())
    if token is None:
        raise ApiError("wrong token", 403)
    g.token_name, g.token = token.name, token
    return token


def refuse(token: Token, message: str) -> ApiError:
    """A 403 for what ``token`` may not do, logged with the token's name (never its value)."""
    log.warning("refused token %r: %s", token.name, message)
    return ApiError(f"token {token.name!r} {message}", 403)


def authorize_report() -> None:
    """Before every report route: a token that may write (report or send ECS events), or anonymous where allowed."""
    app_state = state()
    if not app_state.tokens.guards_reports:
        if app_state.config.allow_anonymous_reports:
            g.token_name, g.token = "", ANONYMOUS
            return
        raise ApiError(
            "reports are refused: set ECS_ID_MAPPER_TOKEN or ECS_ID_MAPPER_TOKEN_FILE "
            "(or ECS_ID_MAPPER_ALLOW_ANONYMOUS_REPORTS=true)",
            403,
        )
    token = authenticate()
    if not (token.report or token.events):
        raise refuse(token, "may not write: it has no report or events scope")


def authorize_read() -> None:
    """A token that may read, unless reads are open (the token file's ``reads: open``)."""
    if state().tokens.current().open_reads:
        return
    token = authenticate()
    if not token.read:
        raise refuse(token, "may not read: it has no read scope")


def may_read(app: AppState, authorization: str) -> bool:
    """Whether a request with this ``Authorization`` header's value may read, without saying why not (the answers
    given before Flask, ``server.fast_lookup``, leave every refusal to ``authorize_read``)."""
    tokens = app.tokens.current()
    if tokens.open_reads:
        return True
    given = bearer_of(authorization)
    token = tokens.match(given) if given else None
    return token is not None and token.read


def reads_guarded() -> bool:
    """Whether reads need a token: a read token or a token file is set, and the file does not open reads."""
    app_state = state()
    cfg = app_state.config
    return bool(cfg.read_token or cfg.token_file) and not app_state.tokens.current().open_reads


def accepts_read(given: str) -> bool:
    """Whether ``given`` is a token that may read."""
    token = state().tokens.current().match(given) if given else None
    return token is not None and token.read


def protect_reads(app: Flask, blueprints: Iterable[Blueprint]) -> None:
    """Put the routes of ``blueprints`` behind ``authorize_read``: ``create_app`` does it when a read token or a
    token file is set, so that open reads run no hook at all."""
    for blueprint in blueprints:
        app.before_request_funcs.setdefault(blueprint.name, []).append(authorize_read)
