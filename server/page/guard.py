"""What keeps the page safe to open: its security headers, and its sign-in with the read token kept in a cookie."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Request, Response
from werkzeug.wrappers import Response as BaseResponse

from server.auth import accepts_read

#: The cookie that carries the read token: HttpOnly (no script reads it) and SameSite=Strict.
COOKIE = "ecs_id_mapper_read"
#: A day: long enough for a shift on call, short enough that a forgotten browser forgets it.
COOKIE_AGE = 86_400

#: Scripts and styles only from the app's own static files: no inline script, style or attribute, nothing from
#: another origin, no framing; forms post only to the page itself.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    # Not no-referrer: under it a browser sends ``Origin: null`` with the sign-in post, which then cannot be told
    # from another site's. Other sites (the links' tools) still learn nothing of the page's URLs.
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def secure_headers(response: Response) -> Response:
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    if response.mimetype == "text/html":
        # A page shows records that change: never served from a shared cache (and never with another's cookie).
        response.headers.setdefault("Cache-Control", "no-store")
    return response


def signed_in(request: Request) -> bool:
    """Whether the request carries a token that may read: the page's cookie, or a bearer token as the API's."""
    scheme, _, bearer = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and accepts_read(bearer.strip()):
        return True
    return accepts_read(request.cookies.get(COOKIE, ""))


def same_origin(request: Request) -> bool:
    """Whether a form post comes from the page itself.

    The sign-in form needs no CSRF token: another site cannot make a browser post it with the victim's cookie (it
    sets the cookie, it does not need one), the cookie is SameSite=Strict so no cross-site request carries it, and
    a post whose ``Origin`` (or, failing that, ``Sec-Fetch-Site``) names another site is refused here, so no site
    can sign a browser in with a token of its choosing either.
    """
    origin = request.headers.get("Origin")
    if origin is not None and origin != "null":
        return urlsplit(origin).netloc == request.host
    fetched_from = request.headers.get("Sec-Fetch-Site")
    if fetched_from is not None:
        return fetched_from == "same-origin"
    return origin is None  # a client that sends neither (curl, an old browser) is no cross-site form


def behind_https(request: Request) -> bool:
    """Whether the browser reached the page over HTTPS: directly, or through the load balancer, which says so."""
    forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    return request.is_secure or forwarded == "https"


def keep_token(response: BaseResponse, token: str, secure: bool) -> None:
    response.set_cookie(COOKIE, token, max_age=COOKIE_AGE, path="/", httponly=True, samesite="Strict", secure=secure)


def local_path(target: str) -> str:
    """``target`` when it is a path on this server (where to go after signing in), else ``/``: no open redirect."""
    if target.startswith("/") and not target.startswith("//") and "\\" not in target and not urlsplit(target).netloc:
        return target
    return "/"
