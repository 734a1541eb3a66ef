"""How the routes read bodies and answer besides JSON: JSON bodies within a limit, plain text for shell scripts,
redirects for dashboards, query flags."""

from __future__ import annotations

import json
from typing import Any

from flask import Response, redirect, request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wrappers import Response as BaseResponse

from server.errors import ApiError
from server.flags import parse_bool


def json_body(limit: int) -> Any:
    """The request's JSON body, at most ``limit`` bytes even when it comes chunked; 400 when it is not JSON."""
    if request.content_length is None:
        # Werkzeug would cut a chunked body at the limit without a word: read one byte more and refuse.
        raw = request.environ["wsgi.input"].read(limit + 1)
        if len(raw) > limit:
            raise RequestEntityTooLarge()
    else:
        raw = request.get_data(cache=False)
    try:
        return json.loads(raw)
    except RecursionError:
        raise ApiError("the body is nested too deeply") from None
    except ValueError:
        raise ApiError("the body is not JSON") from None


def text(*lines: str) -> Response:
    """One value per line, as ``text/plain``."""
    return Response("".join(f"{line}\n" for line in lines), mimetype="text/plain")


def flag(name: str) -> bool:
    """A true/false query parameter (absent is false); 400 for anything else."""
    try:
        return parse_bool(request.args.get(name, ""))
    except ValueError as exc:
        raise ApiError(f"{name}: {exc}") from None


def wants_redirect() -> bool:
    """``?redir=true``: answer with a redirect to the URL rather than the URL as text. Read it before any outside
    lookup, so that a bad flag is a 400 that costs nothing."""
    return flag("redir")


def url_answer(url: str, redirecting: bool) -> BaseResponse:
    """A redirect to ``url`` (302), or ``url`` as text."""
    return redirect(url, 302) if redirecting else text(url)
