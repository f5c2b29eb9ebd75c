"""Who a bearer token belongs to, resolved in front of routing and reused while nothing that
could change the answer has committed.

A token lookup is a database round trip on every request. Every change to users or tokens (a
revocation, a role change, whoever makes it) bumps the `accounts` data generation inside its
own transaction (`core.data.generations`), so a principal looked up after a generation read
stays right for as long as that generation does, up to the token's expiry. On SQLite the
generation costs a memory read; on PostgreSQL one round trip, off the event loop and shared
by the requests that arrive together.

It serves the API's reads (GET, HEAD); writes look their token up in their own transaction.
It runs as a pure ASGI layer, in front of routing, for one reason: on PostgreSQL the
generation read is awaited, and a request must not hold a pooled connection while it waits.
Inside FastAPI, `authenticate` runs after the request's connection is checked out; out here
none is held, and `authenticate` and the response cache take what this layer left in the
request's state (`security.PRINCIPAL_STATE`, and the generations under `GENERATIONS_STATE`).
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from datetime import UTC

from sqlalchemy import Engine
from starlette.types import ASGIApp, Receive, Scope, Send

from wharf.core.data.db import SAFE_METHODS
from wharf.core.data.generations import GenerationReader
from wharf.core.http.asgi import bearer_digest
from wharf.core.security import PRINCIPAL_STATE, Principal, TokenResolver

log = logging.getLogger("wharf.principals")

ACCOUNTS = "accounts"  # the data generation that covers users and tokens
# Request state: every group's generation, read after the request arrived (the cache keys on
# them; a read made for this very request is as fresh as one made a moment later).
GENERATIONS_STATE = "data_generations"
API_PREFIX = "/api/"


class PrincipalMemo:
    """Tokens already resolved, each with the accounts generation read before its lookup.
    Unknown tokens are not kept: each one asks the database."""

    def __init__(self, max_size: int = 10_000) -> None:
        # token digest -> (principal, accounts generation it was read at, expiry as epoch)
        self.known: OrderedDict[str, tuple[Principal, int, float]] = OrderedDict()
        self.max_size = max_size

    def get(self, digest: str, accounts: int) -> Principal | None:
        known = self.known.get(digest)
        if known is None or known[1] != accounts or known[2] <= time.time():
            return None
        self.known.move_to_end(digest)
        return known[0]

    def put(self, digest: str, accounts: int, principal: Principal | None) -> None:
        if principal is None:
            self.known.pop(digest, None)
            return
        self.known[digest] = (principal, accounts, _expiry(principal))
        self.known.move_to_end(digest)  # a token seen again after a change is recent too
        if len(self.known) > self.max_size:
            self.known.popitem(last=False)

    def clear(self) -> None:
        self.known.clear()


class ResolvePrincipal:
    """Pure ASGI layer: inside the rate limiter (a flood is refused before any database
    work), outside the response cache and routing."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        engine: Engine,
        resolver: TokenResolver,
        generations: GenerationReader,
        memo: PrincipalMemo,
    ) -> None:
        self.app = app
        self.engine = engine
        self.resolver = resolver
        self.generations = generations
        self.memo = memo

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Reads of the API only. A write checks its token inside its own transaction, after
        # its body has arrived, as it always did: a token revoked while a slow client sends
        # a body is refused. And outside /api/ no rate limit stands in front of this work.
        if (
            scope["type"] == "http"
            and scope["method"] in SAFE_METHODS
            and scope["path"].startswith(API_PREFIX)
        ):
            digest = bearer_digest(scope)
            if digest is not None:
                await self.resolve(scope, digest)
        await self.app(scope, receive, send)

    async def resolve(self, scope: Scope, digest: str) -> None:
        """Leave the generations and the token's principal in the scope's state."""
        # Any trouble leaves the state empty: `authenticate` then looks the token up on the
        # request's own connection and answers the failure as every request does (503).
        try:
            generations = await self.generations.current()
        except Exception as exc:
            log.warning("principal not resolved, generations unreadable: %s", type(exc).__name__)
            return
        state = scope.setdefault("state", {})
        state[GENERATIONS_STATE] = generations
        accounts = generations.get(ACCOUNTS)
        if accounts is None:
            return
        principal = self.memo.get(digest, accounts)
        if principal is None:
            try:
                # A brief connection of its own: nothing is awaited while it is held.
                with self.engine.connect() as conn:
                    principal = self.resolver(conn, digest)
            except Exception as exc:
                log.warning("principal not resolved, token unreadable: %s", type(exc).__name__)
                return
            self.memo.put(digest, accounts, principal)
        state[PRINCIPAL_STATE] = (digest, principal)


def _expiry(principal: Principal) -> float:
    expires = principal.expires_at
    if expires is None:
        return math.inf
    if expires.tzinfo is None:  # SQLite returns naive UTC
        expires = expires.replace(tzinfo=UTC)
    return expires.timestamp()
