"""Password hashing, token secrets, and the authenticated principal of a request.

`core` knows no accounts table: the accounts domain registers a `TokenResolver` on the app
(see `wharf.app`), and this module only asks it who a token hash belongs to.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from fastapi import Request, Security
from fastapi.security import OAuth2PasswordBearer, SecurityScopes
from sqlalchemy import Connection, Engine

from wharf.core.data.db import Db
from wharf.core.errors import Forbidden, Unauthorized

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

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", scopes=SCOPES, auto_error=False)


async def authenticate(
    request: Request,
    required: SecurityScopes,
    db: Db,
    token: Annotated[str | None, Security(oauth2_scheme)],
) -> Principal:
    return _principal(db, request, required, token)


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
        return _principal(conn, request, required, token)


def _principal(
    conn: Connection, request: Request, required: SecurityScopes, token: str | None
) -> Principal:
    if not token:
        raise Unauthorized("Send a bearer token: Authorization: Bearer <token>.")
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        raise Unauthorized("The bearer token is malformed.")
    digest = token_hash(token)
    # For an API read, `core.protect.principals` resolved this very token for this request in
    # front of routing, checked against the accounts generation: no second lookup here.
    seen: tuple[str, Principal] | None = getattr(request.state, PRINCIPAL_STATE, None)
    if seen is not None and seen[0] == digest:
        principal: Principal | None = seen[1]
    else:
        resolve: TokenResolver = request.app.state.token_resolver
        principal = resolve(conn, digest)
    if principal is None:
        raise Unauthorized("The bearer token is unknown, expired or revoked.")
    missing = [s for s in required.scopes if s not in principal.scopes]
    if missing:
        raise Forbidden(f"This token lacks the scope {', '.join(missing)} needed here.")
    request.state.principal_id = principal.user_id
    return principal


Reader = Annotated[Principal, Security(authenticate, scopes=["read"])]
Writer = Annotated[Principal, Security(authenticate, scopes=["write"])]
Admin = Annotated[Principal, Security(authenticate, scopes=["admin"])]
# A writer checked outside the request's transaction (see `authenticate_apart`).
StreamWriter = Annotated[Principal, Security(authenticate_apart, scopes=["write"])]
