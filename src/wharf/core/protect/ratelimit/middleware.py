"""The rate-limit ASGI layer: which policies and key a request counts against, the RateLimit
fields on its response, and the 429 (see the package docstring)."""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from wharf.core.http.asgi import bearer_digest, with_response_headers
from wharf.core.http.responses import PROBLEM_JSON, problem_body
from wharf.core.protect.ratelimit.policies import Policy, Verdict, parse_policies
from wharf.core.protect.ratelimit.stores import MemoryStore, RedisStore

if TYPE_CHECKING:
    from wharf.core.config import Settings

_FORM_CAP = 64 * 1024  # a login form is tiny; past this the account is not parsed


class RateLimit:
    """The pure ASGI layer. Build it with `app.add_middleware(RateLimit, settings=...)`."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        settings: Settings,
        login_paths: Collection[str],
        api_prefix: str = "/api/",
    ) -> None:
        self.app = app
        self.login_paths = frozenset(login_paths)
        self.api_prefix = api_prefix
        self.api = parse_policies("api", settings.rate_limit_api)
        self.login_account = parse_policies("login", settings.rate_limit_login)
        self.login_address = parse_policies("login-address", settings.rate_limit_login_address)
        self.api_policy_field = b", ".join(p.policy_member for p in self.api)
        self.login_policy_field = b", ".join(
            p.policy_member for p in (*self.login_account, *self.login_address)
        )
        self.memory = MemoryStore() if not settings.redis_url else None
        self.redis = (
            RedisStore(settings.redis_url, f"{settings.redis_key_prefix}:rl")
            if settings.redis_url
            else None
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.api_prefix):
            await self.app(scope, receive, send)
            return
        if scope["method"] == "POST" and scope["path"] in self.login_paths:
            receive, checks, policy_field = await self._login(scope, receive)
        elif self.memory is not None and len(self.api) == 1:
            # The common case, kept lean: one policy, one key, counted in memory.
            policy = self.api[0]
            allowed, left, seconds = self.memory.hit(policy, self._caller(scope))
            extra = [
                (b"ratelimit-policy", self.api_policy_field),
                (b"ratelimit", policy.member_start + b"%d;t=%d" % (left, seconds)),
            ]
            if not allowed:
                await self._refuse(scope, send, policy, seconds, extra)
                return
            await self.app(scope, receive, with_response_headers(scope, send, extra))
            return
        else:
            key = self._caller(scope)
            checks = [(policy, key) for policy in self.api]
            policy_field = self.api_policy_field

        # Every policy is checked before any counts, so a request refused by one uses up
        # none of the others.
        if self.memory is not None:
            results: list[Verdict] | None = self.memory.hit_all(checks)
        else:
            assert self.redis is not None
            results = await self.redis.hit(checks)

        extra = [(b"ratelimit-policy", policy_field)]
        members: list[bytes] = []
        refused: tuple[Policy, int] | None = None
        for (policy, _), (allowed, left, seconds) in zip(checks, results or (), strict=False):
            # No results: Redis is down. Serve, and say nothing about what is left.
            members.append(policy.member_start + b"%d;t=%d" % (left, seconds))
            if not allowed and (refused is None or seconds > refused[1]):
                refused = (policy, seconds)  # the longest wait is the one to report
        if members:
            extra.append((b"ratelimit", b", ".join(members)))
        if refused is not None:
            await self._refuse(scope, send, *refused, extra)
            return

        await self.app(scope, receive, with_response_headers(scope, send, extra))

    @staticmethod
    def _caller(scope: Scope) -> str:
        """The sha256 of a well-formed bearer token, else the client address."""
        digest = bearer_digest(scope)
        return "a:" + _address(scope) if digest is None else "t:" + digest

    async def _login(
        self, scope: Scope, receive: Receive
    ) -> tuple[Receive, list[tuple[Policy, str]], bytes]:
        messages, body = await _buffer(receive, _FORM_CAP)
        account = _account(scope, body) if body is not None else ""
        address = _address(scope)
        by_account = f"{address}/{hashlib.sha256(account.encode()).hexdigest()[:32]}"
        checks = [(p, by_account) for p in self.login_account]
        checks += [(p, address) for p in self.login_address]
        return _replay(messages, receive), checks, self.login_policy_field

    @staticmethod
    async def _refuse(
        scope: Scope, send: Send, policy: Policy, retry_after: int, extra: list[tuple[bytes, bytes]]
    ) -> None:
        policy.rejected.inc()
        body = problem_body(
            429,
            "Too many requests",
            f"The {policy.name!r} limit of {policy.limit} requests per {policy.window} s is "
            f"used up; retry in {retry_after} s.",
            scope["path"],
        )
        await send(
            {
                "type": "http.response.start",
                "status": 429,
                "headers": [
                    (b"content-type", PROBLEM_JSON.encode()),
                    (b"content-length", str(len(body)).encode()),
                    (b"retry-after", str(retry_after).encode()),
                    *extra,
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _address(scope: Scope) -> str:
    # The peer as the server saw it; behind a proxy, run uvicorn with --forwarded-allow-ips
    # so this is the client's address rather than the proxy's.
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def _account(scope: Scope, body: bytes) -> str:
    """The form's `username`, lower-cased. A multipart login has none here, so all of an
    address's multipart attempts share one account bucket (stricter, never looser)."""
    for name, value in scope["headers"]:
        if name == b"content-type":
            if not value.lower().startswith(b"application/x-www-form-urlencoded"):
                return ""
            break
    for key, value in parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True):
        if key == "username":
            return value.strip().lower()
    return ""


async def _buffer(receive: Receive, cap: int) -> tuple[list[Message], bytes | None]:
    """Read the request body (up to `cap`), keeping every message for `_replay`."""
    messages: list[Message] = []
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return messages, None
        chunk: bytes = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if not message.get("more_body", False):
            return messages, b"".join(chunks)
        if size > cap:
            return messages, None


def _replay(messages: Sequence[Message], upstream: Receive) -> Receive:
    pending: deque[Message] = deque(messages)

    async def receive() -> Message:
        if pending:
            return pending.popleft()
        return await upstream()

    return receive
