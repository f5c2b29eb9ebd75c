"""Browser sessions: an HttpOnly cookie that stands for a bearer token, checked against CSRF.

The dashboard must never hold a bearer token where a script injected into the page could read
it. So `POST /api/v1/auth/session` (the accounts domain) logs in and puts the token in an
`HttpOnly; SameSite=Strict` cookie, and this layer, in front of every other, turns that cookie
back into `Authorization: Bearer <token>`. Rate limits, the response cache, idempotency keys
and every route's scope checks then see one kind of caller, with no second way in.

A request that brings its own Authorization header is left as it is: the cookie is ignored.

A change (any method but GET, HEAD and OPTIONS) made with the cookie must also send
`X-CSRF-Token`, a value derived from the token that our page reads from
`GET /api/v1/auth/session` and another site cannot. SameSite=Strict already keeps the cookie
off cross-site requests; the header is the second lock, and an `Origin`, when the browser
sends one, must be this server's own.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlsplit

from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Receive, Scope, Send

from wharf.core.http.asgi import send_problem

COOKIE = "wharf_session"
CSRF_HEADER = "X-CSRF-Token"
SESSION_PATH = "/api/v1/auth/session"
_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})
_TOKEN_MAX = 200  # as core.security checks a bearer token


def csrf_token(token: str) -> str:
    """The CSRF value of a session: keyed by its token, so it is unguessable without it and
    changes with every login; nothing to store."""
    return hmac.new(token.encode(), b"wharf-csrf-v1", hashlib.sha256).hexdigest()


def set_cookie(token: str, *, max_age: int, secure: bool) -> str:
    """The Set-Cookie value for a new session (Secure when the page came over TLS)."""
    flags = "; Secure" if secure else ""
    return f"{COOKIE}={token}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict{flags}"


def clear_cookie(*, secure: bool) -> str:
    flags = "; Secure" if secure else ""
    return f"{COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict{flags}"


class SessionCookies:
    """Pure ASGI layer: the session cookie becomes a bearer token, after the CSRF checks."""

    def __init__(self, app: ASGIApp, *, api_prefix: str = "/api/") -> None:
        self.app = app
        self.api_prefix = api_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith(self.api_prefix):
            await self.app(scope, receive, send)
            return
        token = csrf = origin = host = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                await self.app(scope, receive, send)  # the caller's own credentials win
                return
            if name == b"cookie":
                token = cookie_parser(value.decode("latin-1")).get(COOKIE) or token
            elif name == b"x-csrf-token":
                csrf = value
            elif name == b"origin":
                origin = value.decode("latin-1")
            elif name == b"host":
                host = value.decode("latin-1")
        method = scope["method"]
        if method not in _SAFE and origin is not None and not _same_origin(origin, scope, host):
            await send_problem(
                send,
                path,
                403,
                "Cross-origin request refused",
                f"This request came from {origin}, another site than this server's.",
            )
            return
        # Logging in replaces whatever session the browser had: its old cookie is not used.
        if not token or len(token) > _TOKEN_MAX or (method == "POST" and path == SESSION_PATH):
            await self.app(scope, receive, send)
            return
        if method not in _SAFE and (
            csrf is None or not hmac.compare_digest(csrf, csrf_token(token).encode())
        ):
            await send_problem(
                send,
                path,
                403,
                "CSRF check failed",
                f"A change made with the session cookie must send the {CSRF_HEADER} header "
                f"that GET {SESSION_PATH} gives.",
            )
            return
        headers = [*scope["headers"], (b"authorization", b"Bearer " + token.encode("latin-1"))]
        await self.app({**scope, "headers": headers}, receive, send)


def _same_origin(origin: str, scope: Scope, host: str | None) -> bool:
    parts = urlsplit(origin)
    return parts.scheme == scope.get("scheme", "http") and parts.netloc == host
