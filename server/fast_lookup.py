"""The lookups asked most, answered before Flask's request: a container's task and a task's containers as text,
and a container's whole record, for a ``GET`` that asks nothing more (no query string, a printable ASCII ID).

A cached lookup costs little next to Flask's request context, URL matching and hooks around it. These routes read
nothing of the request but their ID, so they are called here as they are, in an app context only, once the client
is known to be allowed to read, and what they raise is answered by the handler Flask would use
(``errors.answer_to``). Every other request, and every client not allowed to read, goes on to Flask. The answers
are the same bytes either way (tests/server/test_fast_lookup.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, cast

from flask import Flask
from werkzeug.routing import Rule
from werkzeug.wrappers import Response

from server import auth, errors
from server.requestlog import RULE
from server.state import state

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

ID = r"[!-.0-~]+"  # printable ASCII but "/"
#: The paths answered here and the endpoints of their routes, none of which reads the request.
ROUTES = {
    re.compile(rf"/query/container_id/({ID})"): "query.task_of_container",
    re.compile(rf"/query/task_id/({ID})"): "query.containers_of_task",
    re.compile(rf"/query/container_id/({ID})/_all"): "query.container_all",
}


class FastLookups:
    """``app``'s WSGI app (``wsgi_app``) with the lookups of ``ROUTES`` answered in front of it."""

    def __init__(self, app: Flask, wsgi_app: WSGIApplication):
        self.flask, self.app = app, wsgi_app
        self.state = state(app)
        rules = {rule.endpoint: rule for rule in app.url_map.iter_rules()}
        self.routes = [
            (path, cast("Callable[[str], Response]", app.view_functions[endpoint]), rules[endpoint])
            for path, endpoint in ROUTES.items()
        ]

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        try:
            answered = self.answer(environ)
        except Exception:  # the read check or an error's own answer failed: Flask answers, and logs, as ever
            answered = None
        if answered is None:
            return self.app(environ, start_response)
        response, rule = answered
        environ[RULE] = rule
        # The status, headers and whole body, as werkzeug would send them, without its checks for redirects,
        # ranges and streamed bodies, which these answers never are.
        start_response(response.status, response.headers.to_wsgi_list())
        return [response.get_data()]

    def answer(self, environ: WSGIEnvironment) -> tuple[Response, Rule] | None:
        """The answer to a request of ``ROUTES`` from a client that may read, and its rule; None for Flask's."""
        if environ.get("REQUEST_METHOD") != "GET" or environ.get("QUERY_STRING"):
            return None
        path = environ.get("PATH_INFO", "")
        for pattern, view, rule in self.routes:
            asked = pattern.fullmatch(path)
            if asked is None:
                continue
            if not auth.may_read(self.state, environ.get("HTTP_AUTHORIZATION", "")):
                return None  # Flask refuses it, saying why
            with self.flask.app_context():
                try:
                    return view(asked[1]), rule
                except Exception as exc:  # answered as Flask would, by its handler
                    return errors.answer_to(exc), rule
        return None
