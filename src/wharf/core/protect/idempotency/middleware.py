"""The idempotency ASGI layer: validates the header, claims the key, and answers with a
replay, a 422, a 409 or the app's own response, stored on the way out (see the package
docstring)."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from datetime import timedelta

import anyio
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from wharf.core.http.asgi import read_body, replay, send_problem
from wharf.core.protect.idempotency.store import (
    Claimed,
    InFlight,
    Mismatch,
    Stored,
    claim,
    complete,
    fingerprint,
    release,
    resolve_user,
)
from wharf.core.security import TOKEN_PREFIX

log = logging.getLogger("wharf.idempotency")

HEADER = b"idempotency-key"
REPLAYED_HEADER = (b"idempotent-replayed", b"true")
# What a replay repeats besides the body; per-response headers (request id, rate limits) are
# added afresh by the outer layers.
STORED_HEADERS = frozenset({b"content-type", b"location", b"etag", b"cache-control"})
# Visible ASCII without spaces: a space at either end would not survive HTTP's whitespace
# trimming, so a key that holds one could not be sent back unchanged. As declared in OpenAPI.
_KEY = re.compile(r"[!-~]{1,255}")


class Idempotency:
    """Replays, 422s and 409s for POSTs under `api_prefix` that carry an `Idempotency-Key`.

    `secret_paths` refuse the header with 400: their responses carry a bearer secret, which
    Wharf never stores, so there is nothing it could replay. So do `streamed_paths`.

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
        streamed_paths: Iterable[str] = (),
    ) -> None:
        self.app = app
        self.ttl = timedelta(hours=ttl_hours)
        self.lock_timeout = timedelta(seconds=lock_timeout_seconds)
        self.api_prefix = api_prefix
        # Path templates (`/api/v1/webhooks/{webhook_id}/rotate-secret`), matched whole.
        self.secret_paths = re.compile(
            "|".join(re.sub(r"\\\{[^/]*?\\\}", "[^/]+", re.escape(path)) for path in secret_paths)
            or "(?!)"
        )
        # Uploads streamed to disk (HttpContract's `streams`): a replay would have to keep the
        # whole body, and what they do is idempotent by its content already.
        self.streamed_paths = frozenset(streamed_paths)

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
            await send_problem(send, path, 400, "Bad request", refusal)
            return
        key = keys[0].decode("latin-1")

        token = _bearer(scope["headers"])
        state = scope["app"].state
        engine: Engine = state.engine
        user_id: int | None = None
        if token is not None:
            try:
                user_id = await run_in_threadpool(resolve_user, engine, state.token_resolver, token)
            except OperationalError:
                await _unavailable(send, path)
                return
        if user_id is None:
            await self.app(scope, receive, send)  # the app answers 401; no key is kept
            return
        # For the access log, which otherwise learns the caller only when the endpoint runs.
        scope.setdefault("state", {})["principal_id"] = user_id

        body = await read_body(receive)
        if body is None:
            return  # the client went away before sending its body
        replay_receive = replay(body, receive)
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
            await send_problem(
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
            await send_problem(
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
        if self.secret_paths.fullmatch(path):
            return (
                f"Idempotency-Key is not accepted on POST {path}: its response holds a secret "
                "that Wharf never stores, so it could not be replayed. Send the request "
                "without the header."
            )
        if path in self.streamed_paths:
            return (
                f"Idempotency-Key is not accepted on POST {path}: the upload is streamed, never "
                "kept, and the same file sent again is recognised by its content anyway. Send "
                "the request without the header."
            )
        if len(keys) > 1:
            return "Send one Idempotency-Key header, not several."
        if not _KEY.fullmatch(keys[0].decode("latin-1")):
            return (
                "Idempotency-Key must be 1 to 255 printable ASCII characters without spaces; "
                "a random UUID is a good key."
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


async def _send_stored(send: Send, stored: Stored) -> None:
    headers = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in stored.headers]
    headers += [(b"content-length", str(len(stored.body)).encode()), REPLAYED_HEADER]
    await send({"type": "http.response.start", "status": stored.status, "headers": headers})
    await send({"type": "http.response.body", "body": stored.body})


async def _unavailable(send: Send, path: str) -> None:
    await send_problem(
        send,
        path,
        503,
        "Service unavailable",
        "The database is unreachable right now; retry shortly.",
        headers=[(b"retry-after", b"1")],
    )
