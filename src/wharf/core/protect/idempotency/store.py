"""Idempotency keys in the database: claim, complete, release and purge, and the request
fingerprint. Plain functions on an engine, run in the threadpool by the middleware."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from wharf.core.data.db import utcnow
from wharf.core.protect.idempotency.models import IdempotencyKey
from wharf.core.security import TokenResolver, token_hash

PURGE_BATCH = 100  # expired rows deleted on each new key: bounded work, enough to keep up
_CLAIM_ATTEMPTS = 5

K = IdempotencyKey


def fingerprint(method: str, path: str, query: bytes, body: bytes) -> str:
    """What makes a retry "the same request": sha256 over length-prefixed parts."""
    digest = hashlib.sha256()
    for part in (method.encode(), path.encode(), query, body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


@dataclass(frozen=True)
class Claimed:
    row_id: int
    lock: str


@dataclass(frozen=True)
class Stored:
    status: int
    headers: list[list[str]]
    body: bytes


class Mismatch:
    """The key was first used with another request."""


class InFlight:
    """The first request with this key is still running."""


Outcome = Claimed | Stored | Mismatch | InFlight


def _write(engine: Engine) -> Connection:
    conn = engine.connect()
    conn.execution_options(wharf_write=True)  # SQLite: BEGIN IMMEDIATE, never a stale read
    return conn


def _purge(conn: Connection, now: datetime, limit: int) -> int:
    # SKIP LOCKED (PostgreSQL; SQLite ignores it) keeps concurrent purges off each other's rows.
    expired = (
        select(K.id)
        .where(K.expires_at <= now)
        .order_by(K.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return conn.execute(delete(K).where(K.id.in_(expired))).rowcount


def purge_expired(engine: Engine, *, batch: int = 1000) -> int:
    """Delete every expired key, in batches; returns how many went. For `wharf idempotency`."""
    total = 0
    while True:
        with _write(engine) as conn, conn.begin():
            deleted = _purge(conn, utcnow(), batch)
        total += deleted
        if deleted < batch:
            return total


def claim(
    engine: Engine,
    *,
    user_id: int,
    key: str,
    fingerprint: str,
    ttl: timedelta,
    lock_timeout: timedelta,
) -> Outcome:
    """Start the request under this key, or say why not (replay, mismatch, in flight)."""
    for _ in range(_CLAIM_ATTEMPTS):
        now = utcnow()
        lock = secrets.token_hex(16)
        try:
            with _write(engine) as conn, conn.begin():
                _purge(conn, now, PURGE_BATCH)
                row_id = conn.execute(
                    insert(K)
                    .values(
                        user_id=user_id,
                        key=key,
                        fingerprint=fingerprint,
                        lock=lock,
                        created_at=now,
                        locked_at=now,
                        expires_at=now + ttl,
                    )
                    .returning(K.id)
                ).scalar_one()
            return Claimed(row_id, lock)
        except IntegrityError:
            pass  # the key exists: look at it

        with engine.connect() as conn:
            row = conn.execute(
                select(
                    K.id,
                    K.fingerprint,
                    K.lock,
                    K.status,
                    K.headers,
                    K.body,
                    (K.expires_at <= now).label("expired"),
                    (K.locked_at <= now - lock_timeout).label("stale"),
                ).where(K.user_id == user_id, K.key == key)
            ).first()
        if row is None:
            continue  # the first request failed and let go of the key: run this one
        if row.expired:
            # Forgotten, even if not purged yet: the key is free again.
            with _write(engine) as conn, conn.begin():
                conn.execute(delete(K).where(K.id == row.id, K.expires_at <= now))
            continue
        if row.fingerprint != fingerprint:
            return Mismatch()
        if row.status is not None:
            return Stored(row.status, row.headers or [], row.body or b"")
        if row.stale:
            # Its worker died mid-request (or is hopelessly slow): take the key over, unless
            # another retry already did.
            with _write(engine) as conn, conn.begin():
                taken = conn.execute(
                    update(K)
                    .where(K.id == row.id, K.lock == row.lock, K.status.is_(None))
                    .values(lock=lock, locked_at=now)
                ).rowcount
            if taken:
                return Claimed(row.id, lock)
            continue
        return InFlight()
    return InFlight()  # the key changed hands under us every time: let the client retry


def complete(engine: Engine, claimed: Claimed, stored: Stored) -> bool:
    """Store the finished response; False if the key was taken over meanwhile."""
    with _write(engine) as conn, conn.begin():
        done = conn.execute(
            update(K)
            .where(K.id == claimed.row_id, K.lock == claimed.lock, K.status.is_(None))
            .values(status=stored.status, headers=stored.headers, body=stored.body, lock=None)
        ).rowcount
    return done == 1


def release(engine: Engine, claimed: Claimed) -> None:
    """Forget an in-flight key whose request failed, so that a retry runs again."""
    with _write(engine) as conn, conn.begin():
        conn.execute(
            delete(K).where(K.id == claimed.row_id, K.lock == claimed.lock, K.status.is_(None))
        )


def resolve_user(engine: Engine, resolver: TokenResolver, token: str) -> int | None:
    with engine.connect() as conn:
        principal = resolver(conn, token_hash(token))
    return None if principal is None else principal.user_id
