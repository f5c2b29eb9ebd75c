"""Users and logins. Passwords are hashed by the caller's thread, never stored in clear."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, bindparam, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from wharf.accounts.models import ApiToken, User
from wharf.core.data.db import utcnow
from wharf.core.data.pagination import Page
from wharf.core.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    Unauthorized,
)
from wharf.core.http.concurrency import Precondition
from wharf.core.security import (
    ROLE_SCOPES,
    Principal,
    hash_password,
    new_token,
    token_hash,
    verify_password,
)

USER_COLUMNS = (
    User.id,
    User.email,
    User.name,
    User.role,
    User.version,
    User.created_at,
    User.updated_at,
)


def _visible_user(conn: Connection, user_id: int, viewer: Principal) -> dict[str, Any]:
    # Another user's account does not exist for a non-admin: 404, so ids cannot be probed.
    if viewer.user_id != user_id and not viewer.is_admin:
        raise NotFound(f"No user {user_id}.")
    row = conn.execute(select(*USER_COLUMNS).where(User.id == user_id)).mappings().first()
    if row is None:
        raise NotFound(f"No user {user_id}.")
    return dict(row)


def _email_taken(email: str) -> Conflict:
    return Conflict(f"A user with email {email} already exists.")


def create_user(
    conn: Connection, *, email: str, name: str, password: str, role: str = "user"
) -> dict[str, Any]:
    now = utcnow()
    if conn.execute(select(User.id).where(User.email == email)).first() is not None:
        raise _email_taken(email)
    try:
        row = (
            conn.execute(
                insert(User)
                .values(
                    email=email,
                    name=name,
                    role=role,
                    password_hash=hash_password(password),
                    version=1,
                    created_at=now,
                    updated_at=now,
                )
                .returning(*USER_COLUMNS)
            )
            .mappings()
            .one()
        )
    except IntegrityError as exc:  # a concurrent insert of the same email won the race
        raise _email_taken(email) from exc
    return dict(row)


def get_user(conn: Connection, *, user_id: int, viewer: Principal) -> dict[str, Any]:
    return _visible_user(conn, user_id, viewer)


def list_users(conn: Connection, *, page: Page) -> tuple[list[dict[str, Any]], int]:
    total = conn.execute(select(func.count()).select_from(User)).scalar_one()
    rows = conn.execute(
        select(*USER_COLUMNS).order_by(User.id).limit(page.limit).offset(page.offset)
    ).mappings()
    return [dict(r) for r in rows], total


def update_user(
    conn: Connection,
    *,
    user_id: int,
    viewer: Principal,
    changes: dict[str, Any],
    expected: Precondition,
) -> dict[str, Any]:
    current = _visible_user(conn, user_id, viewer)
    if "role" in changes and changes["role"] != current["role"]:
        if not viewer.is_admin:
            raise Forbidden("Only an admin can change a user's role.")
        if current["role"] == "admin":
            _keep_one_admin(conn, user_id)
    if current["version"] != expected.version:
        raise expected.stale(current["version"], f"User {user_id}")
    values = {k: v for k, v in changes.items() if k != "password"}
    if "password" in changes:
        values["password_hash"] = hash_password(changes["password"])
    if not values:  # an empty PATCH changes nothing, so it must not bump the version either
        return current
    email = values.get("email")
    if email and email != current["email"]:
        taken = conn.execute(select(User.id).where(User.email == email)).first()
        if taken is not None:
            raise _email_taken(email)
    try:
        row = (
            conn.execute(
                update(User)
                .where(User.id == user_id, User.version == expected.version)
                .values(**values, version=User.version + 1, updated_at=utcnow())
                .returning(*USER_COLUMNS)
            )
            .mappings()
            .first()
        )
    except IntegrityError as exc:
        raise _email_taken(str(email)) from exc
    if row is None:  # changed between our read and our write
        raise expected.stale(current["version"] + 1, f"User {user_id}")
    return dict(row)


def _keep_one_admin(conn: Connection, user_id: int) -> None:
    # The admins' rows are locked until commit (PostgreSQL; SQLite's writers queue anyway), so
    # two admins demoting or deleting each other at once cannot both see the other remain.
    admins = conn.execute(select(User.id).where(User.role == "admin").with_for_update()).all()
    if not any(row.id != user_id for row in admins):
        raise Conflict("This is the last admin; make another user admin first.")


def delete_user(
    conn: Connection, *, user_id: int, viewer: Principal, expected: Precondition | None
) -> None:
    current = _visible_user(conn, user_id, viewer)
    if expected is not None and current["version"] != expected.version:
        raise expected.stale(current["version"], f"User {user_id}")
    if current["role"] == "admin":
        _keep_one_admin(conn, user_id)
    # Tokens go with the user (ON DELETE CASCADE), so every session ends on the next request.
    conn.execute(delete(ApiToken).where(ApiToken.user_id == user_id))
    conn.execute(delete(User).where(User.id == user_id))


def login(
    conn: Connection, *, email: str, password: str, scope: str, ttl_seconds: int
) -> dict[str, Any]:
    """OAuth2 password grant: a short-lived token with the asked-for scopes (default: all)."""
    row = conn.execute(
        select(User.id, User.role, User.password_hash).where(User.email == email.strip().lower())
    ).first()
    if not verify_password(row.password_hash if row else None, password) or row is None:
        raise Unauthorized("The email or password is wrong.")
    allowed = ROLE_SCOPES.get(row.role, frozenset())
    asked = frozenset(scope.split()) or allowed
    if not asked <= allowed:
        raise BadRequest(
            f"This account may ask for the scopes {' '.join(sorted(allowed))} only.",
            extra={"error": "invalid_scope"},
        )
    secret = issue_token(
        conn,
        user_id=row.id,
        name="login",
        scopes=asked,
        lifetime=timedelta(seconds=ttl_seconds),
    )
    return {
        "access_token": secret,
        "token_type": "bearer",
        "expires_in": ttl_seconds,
        "scope": " ".join(sorted(asked)),
    }


def issue_token(
    conn: Connection, *, user_id: int, name: str, scopes: frozenset[str], lifetime: timedelta
) -> str:
    """Store a new token's hash and return its secret, which is never stored."""
    secret = new_token()
    now = utcnow()
    conn.execute(
        insert(ApiToken).values(
            user_id=user_id,
            name=name,
            token_hash=token_hash(secret),
            scopes=" ".join(sorted(scopes)),
            created_at=now,
            expires_at=now + lifetime,
        )
    )
    return secret


TOKEN_COLUMNS = (
    ApiToken.id,
    ApiToken.user_id,
    ApiToken.name,
    ApiToken.scopes,
    ApiToken.created_at,
    ApiToken.expires_at,
    ApiToken.revoked_at,
)


def _token_dict(row: Any) -> dict[str, Any]:
    out = dict(row)
    out["scopes"] = out["scopes"].split()
    return out


def create_api_token(
    conn: Connection,
    *,
    owner: Principal,
    name: str,
    scopes: Sequence[str],
    days: int,
    max_days: int,
) -> dict[str, Any]:
    """A named token for scripts; it can never carry more than the token that minted it."""
    if days > max_days:
        raise InvalidInput(
            f"A token may live at most {max_days} days.", loc=["body", "expires_in_days"]
        )
    extra = sorted(set(scopes) - owner.scopes)
    if extra:
        raise Forbidden(f"You cannot grant scopes your own token lacks: {', '.join(extra)}.")
    secret = issue_token(
        conn,
        user_id=owner.user_id,
        name=name,
        scopes=frozenset(scopes),
        lifetime=timedelta(days=days),
    )
    row = conn.execute(
        select(*TOKEN_COLUMNS).where(ApiToken.token_hash == token_hash(secret))
    ).one()
    return {**_token_dict(row._mapping), "token": secret}


def list_tokens(
    conn: Connection, *, viewer: Principal, user_id: int | None, page: Page
) -> tuple[list[dict[str, Any]], int]:
    # Other people's tokens are an admin matter; anyone else only ever sees their own.
    owner = user_id if viewer.is_admin else viewer.user_id
    where = [] if owner is None else [ApiToken.user_id == owner]
    total = conn.execute(select(func.count()).select_from(ApiToken).where(*where)).scalar_one()
    rows = conn.execute(
        select(*TOKEN_COLUMNS)
        .where(*where)
        .order_by(ApiToken.id)
        .limit(page.limit)
        .offset(page.offset)
    ).mappings()
    return [_token_dict(r) for r in rows], total


def get_token(conn: Connection, *, viewer: Principal, token_id: int) -> dict[str, Any]:
    row = conn.execute(select(*TOKEN_COLUMNS).where(ApiToken.id == token_id)).mappings().first()
    if row is None or (row["user_id"] != viewer.user_id and not viewer.is_admin):
        raise NotFound(f"No token {token_id}.")
    return _token_dict(row)


def revoke_token(conn: Connection, *, viewer: Principal, token_id: int) -> None:
    """Revoked at once: every request looks the token up, so the next one is refused."""
    get_token(conn, viewer=viewer, token_id=token_id)
    conn.execute(
        update(ApiToken)
        .where(ApiToken.id == token_id, ApiToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )


# Runs on every authenticated request: built once, executed with bound values.
_LIVE_TOKEN = (
    select(ApiToken.id, ApiToken.scopes, ApiToken.user_id, ApiToken.expires_at, User.role)
    .join(User, User.id == ApiToken.user_id)
    .where(
        ApiToken.token_hash == bindparam("digest"),
        ApiToken.revoked_at.is_(None),
        ApiToken.expires_at > bindparam("now", type_=ApiToken.expires_at.type),
    )
)


def resolve_token(conn: Connection, digest: str) -> Principal | None:
    """Who holds this token hash, if it is live. Registered on the app as its TokenResolver."""
    row = conn.execute(_LIVE_TOKEN, {"digest": digest, "now": utcnow()}).first()
    if row is None:
        return None
    # A demoted admin's old tokens lose the admin scope at once.
    scopes = frozenset(row.scopes.split()) & ROLE_SCOPES.get(row.role, frozenset())
    return Principal(
        user_id=row.user_id,
        role=row.role,
        token_id=row.id,
        scopes=scopes,
        expires_at=row.expires_at,
    )
