"""Password hashing, token secrets, and the authenticated principal of a request.

`core` knows no accounts table: the accounts domain registers a `TokenResolver` on the app
(see `wharf.app`), and this module only asks it who a token hash belongs to.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from fastapi import Request, Security
from fastapi.security import OAuth2PasswordBearer, SecurityScopes
from sqlalchemy import Connection, Engine

from wharf.core.data.db import Db
from wharf.core.data.generations import GenerationReader
from wharf.core.errors import Forbidden, Unauthorized

log = logging.getLogger("wharf.security")

SCOPES = {
    "read": "Read data (GET).",
    "write": "Create, change and delete data.",
    "admin": "Manage users, other people's tokens, imports and webhooks.",
}
ROLE_SCOPES = {"admin": frozenset(SCOPES), "user": frozenset({"read", "write"})}
TOKEN_PREFIX = "wharf_"  # noqa: S105 (a marker that makes leaked tokens greppable)

# OWASP Password Storage Cheat Sheet: argon2id, m=19 MiB, t=2, p=1.
_hasher = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)
# Verified against when the email is unknown, so response time does not reveal which emails exist.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    # Tokens carry 256 random bits, so a fast hash is safe here (unlike passwords); what is
    # stored cannot be replayed, and lookup by hash is one indexed query.
    return hashlib.sha256(token.encode()).hexdigest()


def same_secret(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


@dataclass(frozen=True)
class Principal:
    """Who is calling, with which token, allowed to do what."""

    user_id: int
    role: str
    token_id: int
    scopes: frozenset[str]
    expires_at: datetime | None = None  # lets the response cache reuse it until then

    @property
    def is_admin(self) -> bool:
        # Admin powers need the admin role *and* a token that carries the admin scope.
        return self.role == "admin" and "admin" in self.scopes


TokenResolver = Callable[[Connection, str], Principal | None]
# Request state under which a layer in front of routing leaves (token digest, principal) it
# has already resolved for this request.
PRINCIPAL_STATE = "resolved_principal"
ACCOUNTS = "accounts"  # the data generation that covers users and tokens


class PrincipalMemo:
    """Tokens already resolved, reused while the accounts generation has not moved.

    Every change to users or tokens (a revocation, a role change) bumps that generation in
    its own transaction (`core.data.generations`), and a generation read that starts after
    the commit returned sees it; a principal is kept with the generation read *before* its
    lookup, so it is reused only while nothing that could change it has committed. Expiry is
    checked against the clock. Unknown tokens are not kept: each one asks the database.
    One per app, shared by the response cache and `authenticate`.
    """

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
        if len(self.known) > self.max_size:
            self.known.popitem(last=False)

    def clear(self) -> None:
        self.known.clear()


def _expiry(principal: Principal) -> float:
    expires = principal.expires_at
    if expires is None:
        return math.inf
    if expires.tzinfo is None:  # SQLite returns naive UTC
        expires = expires.replace(tzinfo=UTC)
    return expires.timestamp()


oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", scopes=SCOPES, auto_error=False)


async def authenticate(
    request: Request,
    required: SecurityScopes,
    db: Db,
    token: Annotated[str | None, Security(oauth2_scheme)],
) -> Principal:
    return await _principal(db, request, required, token)


async def authenticate_apart(
    request: Request,
    required: SecurityScopes,
    token: Annotated[str | None, Security(oauth2_scheme)],
) -> Principal:
    """`authenticate` on a connection of its own, returned at once: for the few routes that
    run long (streamed uploads) and must not hold the request's transaction, which for a
    write on SQLite is the database's write lock, while they do."""
    engine: Engine = request.app.state.engine
    with engine.connect() as conn:
        return await _principal(conn, request, required, token)


async def _principal(
    conn: Connection, request: Request, required: SecurityScopes, token: str | None
) -> Principal:
    if not token:
        raise Unauthorized("Send a bearer token: Authorization: Bearer <token>.")
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        raise Unauthorized("The bearer token is malformed.")
    digest = token_hash(token)
    # The response cache resolved this very token for this request when it looked for a hit,
    # checked against the accounts generation: a miss then costs no second lookup.
    seen: tuple[str, Principal] | None = getattr(request.state, PRINCIPAL_STATE, None)
    if seen is not None and seen[0] == digest:
        principal: Principal | None = seen[1]
    else:
        principal = await _resolve(conn, request, digest)
    if principal is None:
        raise Unauthorized("The bearer token is unknown, expired or revoked.")
    missing = [s for s in required.scopes if s not in principal.scopes]
    if missing:
        raise Forbidden(f"This token lacks the scope {', '.join(missing)} needed here.")
    request.state.principal_id = principal.user_id
    return principal


async def _resolve(conn: Connection, request: Request, digest: str) -> Principal | None:
    """The token's principal: from the memo while the accounts generation stands (on SQLite
    a memory read; on PostgreSQL one read shared by concurrent requests, off the event loop),
    else from the database, on the request's connection."""
    reader: GenerationReader = request.app.state.generations
    memo: PrincipalMemo = request.app.state.principals
    try:
        accounts = (await reader.current()).get(ACCOUNTS)
    except Exception as exc:  # the lookup below then meets the same trouble, and says so
        log.warning("principal memo bypassed, generations unreadable: %s", type(exc).__name__)
        accounts = None
    principal = memo.get(digest, accounts) if accounts is not None else None
    if principal is None:
        resolve: TokenResolver = request.app.state.token_resolver
        principal = resolve(conn, digest)
        if accounts is not None:
            memo.put(digest, accounts, principal)
    return principal


Reader = Annotated[Principal, Security(authenticate, scopes=["read"])]
Writer = Annotated[Principal, Security(authenticate, scopes=["write"])]
Admin = Annotated[Principal, Security(authenticate, scopes=["admin"])]
# A writer checked outside the request's transaction (see `authenticate_apart`).
StreamWriter = Annotated[Principal, Security(authenticate_apart, scopes=["write"])]
