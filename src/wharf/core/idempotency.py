"""`Idempotency-Key` on every POST (Stripe semantics), as one pure ASGI layer over the database.

A POST that carries a key first records it as in flight, in its own short committed
transaction; the unique (user_id, key) constraint makes exactly one of any number of racing
requests, on any worker, the one that runs. When it has finished, its status, the headers a
client acts on and the exact body bytes are stored *before* the response leaves, so a client
that saw the response can only ever get it replayed. Retrying:

- the same request within the TTL replays the stored response, `Idempotent-Replayed: true`;
- another method, path, query or body under the same key is 422;
- while the first still runs, 409 with `Retry-After`; an in-flight row older than the lock
  timeout belongs to a worker that died, and the next retry takes it over;
- a 5xx or an exception stores nothing (the in-flight row is deleted), so a retry runs again.

Keys are scoped to the user behind the bearer token. A request whose token does not resolve
passes through untouched and the app answers 401. The layer sits inside the rate limiter and
`HttpContract` (so paths are already normalised and bodies already bounded), and outside the
exception handlers, so it sees every handled error as the response it becomes.

The one gap a middleware cannot close: the endpoint commits before the response is stored, so
if the database fails in between, the key stays in flight until the lock timeout and a retry
after that runs again. It is logged.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import anyio
from sqlalchemy import Connection, Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from wharf.core.db import utcnow
from wharf.core.models_idempotency import IdempotencyKey
from wharf.core.responses import PROBLEM_JSON, problem_body
from wharf.core.security import TOKEN_PREFIX, TokenResolver, token_hash

log = logging.getLogger("wharf.idempotency")

HEADER = b"idempotency-key"
REPLAYED_HEADER = (b"idempotent-replayed", b"true")
# What a replay repeats besides the body; per-response headers (request id, rate limits) are
# added afresh by the outer layers.
STORED_HEADERS = frozenset({b"content-type", b"location", b"etag", b"cache-control"})
_KEY = re.compile(r"[\x20-\x7e]{1,255}")  # printable ASCII, as Stripe's keys are
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


# Database side: plain functions on an engine, run in the threadpool by the middleware.


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


def _resolve(engine: Engine, resolver: TokenResolver, token: str) -> int | None:
    with engine.connect() as conn:
        principal = resolver(conn, token_hash(token))
    return None if principal is None else principal.user_id


# ASGI side.


class Idempotency:
    """Replays, 422s and 409s for POSTs under `api_prefix` that carry an `Idempotency-Key`.

    `secret_paths` refuse the header with 400: their responses carry a bearer secret, which
    Wharf never stores, so there is nothing it could replay.

    Unlike the rest of Wharf, its database calls run in the threadpool: a claim may wait for
    SQLite's write lock, and the holder may be a request suspended on this very event loop.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        ttl_hours: int = 24,
        lock_timeout_seconds: int = 60,
        api_prefix: str = "/api/",
        secret_paths: Iterable[str] = (),
    ) -> None:
        self.app = app
        self.ttl = timedelta(hours=ttl_hours)
        self.lock_timeout = timedelta(seconds=lock_timeout_seconds)
        self.api_prefix = api_prefix
        self.secret_paths = frozenset(secret_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or not scope["path"].startswith(self.api_prefix)
        ):
            await self.app(scope, receive, send)
            return
        keys = [value for name, value in scope["headers"] if name == HEADER]
        if not keys:
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        refusal = self._refuse(path, keys)
        if refusal is not None:
            await _send_problem(send, path, 400, "Bad request", refusal)
            return
        key = keys[0].decode("latin-1")

        token = _bearer(scope["headers"])
        state = scope["app"].state
        engine: Engine = state.engine
        user_id: int | None = None
        if token is not None:
            try:
                user_id = await run_in_threadpool(_resolve, engine, state.token_resolver, token)
            except OperationalError:
                await _unavailable(send, path)
                return
        if user_id is None:
            await self.app(scope, receive, send)  # the app answers 401; no key is kept
            return
        # For the access log, which otherwise learns the caller only when the endpoint runs.
        scope.setdefault("state", {})["principal_id"] = user_id

        body = await _read_body(receive)
        if body is None:
            return  # the client went away before sending its body
        replay_receive = _replay(body, receive)
        try:
            outcome = await run_in_threadpool(
                claim,
                engine,
                user_id=user_id,
                key=key,
                fingerprint=fingerprint("POST", path, scope.get("query_string", b""), body),
                ttl=self.ttl,
                lock_timeout=self.lock_timeout,
            )
        except OperationalError:
            await _unavailable(send, path)
            return

        if isinstance(outcome, Stored):
            await _send_stored(send, outcome)
        elif isinstance(outcome, Mismatch):
            await _send_problem(
                send,
                path,
                422,
                "Unprocessable content",
                "This Idempotency-Key was already used for a different request (another "
                "method, path or body). Send a new key for a new request.",
                extra={
                    "errors": [
                        {
                            "loc": ["header", "Idempotency-Key"],
                            "msg": "already used for a different request",
                            "type": "idempotency_key_reused",
                        }
                    ]
                },
            )
        elif isinstance(outcome, InFlight):
            await _send_problem(
                send,
                path,
                409,
                "Conflict",
                "A request with this Idempotency-Key is still being processed. Retry shortly "
                "to receive its response.",
                headers=[(b"retry-after", b"1")],
            )
        else:
            await self._run(scope, replay_receive, send, engine, outcome)

    def _refuse(self, path: str, keys: list[bytes]) -> str | None:
        if path in self.secret_paths:
            return (
                f"Idempotency-Key is not accepted on POST {path}: its response holds a secret "
                "that Wharf never stores, so it could not be replayed. Send the request "
                "without the header."
            )
        if len(keys) > 1:
            return "Send one Idempotency-Key header, not several."
        if not _KEY.fullmatch(keys[0].decode("latin-1")):
            return (
                "Idempotency-Key must be 1 to 255 printable ASCII characters; a random UUID "
                "is a good key."
            )
        return None

    async def _run(
        self, scope: Scope, receive: Receive, send: Send, engine: Engine, claimed: Claimed
    ) -> None:
        messages: list[Message] = []

        async def capture(message: Message) -> None:
            messages.append(message)

        try:
            await self.app(scope, receive, capture)
        except BaseException:
            await _let_go(engine, claimed)
            raise
        stored = _response(messages)
        if stored is None or stored.status >= 500 or stored.status == 401:
            # A failure (or a token revoked since we looked) is not a result: a retry runs again.
            await _let_go(engine, claimed)
        else:
            try:
                kept = await run_in_threadpool(complete, engine, claimed, stored)
            except SQLAlchemyError:  # the endpoint has committed: its answer must still go out
                kept = False
            if not kept:
                log.warning(
                    "idempotent response not stored; the key stays in flight until taken over",
                    extra={"request_id": scope.get("state", {}).get("request_id", "-")},
                )
        for message in messages:
            await send(message)


async def _let_go(engine: Engine, claimed: Claimed) -> None:
    # Shielded: a cancelled request (client gone) must still free its key.
    with anyio.CancelScope(shield=True):
        try:
            await run_in_threadpool(release, engine, claimed)
        except Exception:  # the original error matters more; the lock timeout cleans up
            log.exception("could not release an idempotency key")


def _response(messages: list[Message]) -> Stored | None:
    """The status, replayable headers and whole body of a captured response, if complete."""
    start = next((m for m in messages if m["type"] == "http.response.start"), None)
    if start is None:
        return None
    chunks: list[bytes] = []
    finished = False
    for message in messages:
        if message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                finished = True
    if not finished:
        return None
    headers = [
        [name.decode("latin-1"), value.decode("latin-1")]
        for name, value in start.get("headers", [])
        if name.lower() in STORED_HEADERS
    ]
    return Stored(int(start["status"]), headers, b"".join(chunks))


def _bearer(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            token = token.strip()
            if scheme.lower() == "bearer" and token.startswith(TOKEN_PREFIX) and len(token) <= 200:
                return token
            return None
    return None


async def _read_body(receive: Receive) -> bytes | None:
    # HttpContract (outside) has already bounded and buffered the body: this is one message.
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, upstream: Receive) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await upstream()

    return receive


async def _send_stored(send: Send, stored: Stored) -> None:
    headers = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in stored.headers]
    headers += [(b"content-length", str(len(stored.body)).encode()), REPLAYED_HEADER]
    await send({"type": "http.response.start", "status": stored.status, "headers": headers})
    await send({"type": "http.response.body", "body": stored.body})


async def _unavailable(send: Send, path: str) -> None:
    await _send_problem(
        send,
        path,
        503,
        "Service unavailable",
        "The database is unreachable right now; retry shortly.",
        headers=[(b"retry-after", b"1")],
    )


async def _send_problem(
    send: Send,
    path: str,
    status: int,
    title: str,
    detail: str,
    *,
    extra: dict[str, Any] | None = None,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    body = problem_body(status, title, detail, path, extra=extra)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", PROBLEM_JSON.encode()),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
