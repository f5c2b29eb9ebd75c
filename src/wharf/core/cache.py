"""The response cache: authenticated GETs answered in front of routing, never stale.

An entry's key holds the generation of the data it was built from (see `core.generations`):
the generation is read before the request runs, and writes bump it in their own transaction,
so after a write has returned no worker can reach an entry from before it. A hit still checks
the bearer token: the resolved principal is reused only while the accounts generation (users
and tokens) is unchanged, so a token revoked on one worker is refused on the next request on
every worker. Entries live in process memory or, when configured, in Redis shared by all
workers; when Redis is unreachable every request is served from the database instead.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol
from weakref import WeakKeyDictionary

import orjson
from sqlalchemy import Engine
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from wharf.core.generations import GenerationReader
from wharf.core.metrics import BACKEND_ERRORS, CACHE
from wharf.core.security import TOKEN_PREFIX, Principal, TokenResolver, token_hash

log = logging.getLogger("wharf.cache")

ACCOUNTS = "accounts"  # the generation that covers users and tokens
_HIT, _MISS, _BYPASS = (CACHE.labels(result) for result in ("hit", "miss", "bypass"))
MAX_ENTRY_BYTES = 1024 * 1024
_KEPT_HEADERS = frozenset({b"content-type", b"etag", b"link"})


class Backend(Protocol):
    """Where cached responses live. Failures are the backend's to absorb: None is a miss."""

    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes) -> None: ...


class MemoryBackend:
    """A per-process LRU bounded by bytes. Each worker has its own; keys keep them correct."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self.entries: OrderedDict[str, bytes] = OrderedDict()

    async def get(self, key: str) -> bytes | None:
        value = self.entries.get(key)
        if value is not None:
            self.entries.move_to_end(key)
        return value

    async def set(self, key: str, value: bytes) -> None:
        old = self.entries.pop(key, None)
        if old is not None:
            self.size -= len(old)
        self.entries[key] = value
        self.size += len(value)
        while self.size > self.max_bytes and self.entries:
            _, evicted = self.entries.popitem(last=False)
            self.size -= len(evicted)


class RedisBackend:
    """Shared by every worker and host. After a failure it is skipped for a moment (a circuit
    breaker), so an outage costs one timeout per pause rather than one per request."""

    PAUSE_SECONDS = 2.0

    def __init__(self, url: str, ttl_seconds: int) -> None:
        self.url = url
        self.ttl = ttl_seconds
        self.paused_until = 0.0
        # redis.asyncio connections belong to the event loop that made them.
        self.clients: WeakKeyDictionary[asyncio.AbstractEventLoop, object] = WeakKeyDictionary()

    def _client(self) -> object:
        import redis.asyncio

        loop = asyncio.get_running_loop()
        client = self.clients.get(loop)
        if client is None:
            client = redis.asyncio.Redis.from_url(
                self.url, socket_timeout=0.25, socket_connect_timeout=0.25
            )
            self.clients[loop] = client
        return client

    async def get(self, key: str) -> bytes | None:
        if time.monotonic() < self.paused_until:
            return None
        try:
            value = await self._client().get(key)  # type: ignore[attr-defined]
        except Exception as exc:
            self._failed(exc)
            return None
        return value if isinstance(value, bytes) else None

    async def set(self, key: str, value: bytes) -> None:
        if time.monotonic() < self.paused_until:
            return
        try:
            await self._client().set(key, value, ex=self.ttl)  # type: ignore[attr-defined]
        except Exception as exc:
            self._failed(exc)

    def _failed(self, exc: Exception) -> None:
        BACKEND_ERRORS.labels("redis").inc()
        log.warning("redis unavailable, serving from the database: %s", type(exc).__name__)
        self.paused_until = time.monotonic() + self.PAUSE_SECONDS


class TieredBackend:
    """Process memory in front of Redis. An entry's key names the data generation it was
    built from, so a local copy can never be stale: memory serves the hot entries without a
    network round trip, and Redis shares every entry between workers and hosts."""

    def __init__(self, near: MemoryBackend, far: Backend) -> None:
        self.near = near
        self.far = far

    async def get(self, key: str) -> bytes | None:
        value = await self.near.get(key)
        if value is None:
            value = await self.far.get(key)
            if value is not None:
                await self.near.set(key, value)
        return value

    async def set(self, key: str, value: bytes) -> None:
        await self.near.set(key, value)
        await self.far.set(key, value)


@dataclass(frozen=True)
class Group:
    """Paths whose representations depend on one generation; `shared` when every reader
    with the read scope sees the same thing (so one entry serves them all)."""

    name: str
    prefixes: tuple[str, ...]
    shared: bool


class ResponseCache:
    """Pure ASGI layer: inside the rate limiter (hits still count), outside routing."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        engine: Engine,
        resolver: TokenResolver,
        backend: Backend,
        groups: tuple[Group, ...],
        namespace: str,
        key_prefix: str = "wharf",
        max_principals: int = 10_000,
    ) -> None:
        self.app = app
        self.engine = engine
        self.resolver = resolver
        self.backend = backend
        self.groups = groups
        self.generations = GenerationReader(engine)
        # The database's identity: two deployments sharing one Redis never share entries.
        database = hashlib.blake2b(namespace.encode(), digest_size=6).hexdigest()
        self.prefix = f"{key_prefix}:rc:{database}:"
        self.principals: OrderedDict[str, tuple[Principal, int]] = OrderedDict()
        self.max_principals = max_principals

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        group = self._group(scope["path"])
        headers = _headers(scope)
        token = headers.get(b"authorization", b"")[7:].decode("latin-1")
        if group is None or not token.startswith(TOKEN_PREFIX):
            await self.app(scope, receive, send)
            return
        try:
            generations = self.generations.read()
        except Exception as exc:  # database trouble: let the app path answer it (e.g. 503)
            log.warning("cache bypassed, generations unreadable: %s", type(exc).__name__)
            generations = {}
        principal = self._principal(token, generations)
        if principal is None or "read" not in principal.scopes or group.name not in generations:
            # Not ours to answer (401, 403) or no generation to key on: the app decides.
            _BYPASS.inc()
            await self.app(scope, receive, send)
            return
        scope.setdefault("state", {})["principal_id"] = principal.user_id
        seen_by = "all" if group.shared else f"{principal.user_id}:{int(principal.is_admin)}"
        key = self._key(scope, headers, group.name, generations[group.name], seen_by)
        cached = await self.backend.get(key)
        if cached is not None:
            _HIT.inc()
            await _replay(cached, headers.get(b"if-none-match"), send)
            return
        _MISS.inc()
        await self._fill(scope, receive, send, key)

    def _group(self, path: str) -> Group | None:
        for group in self.groups:
            for prefix in group.prefixes:
                if path == prefix or path.startswith(prefix + "/"):
                    return group
        return None

    def _principal(self, token: str, generations: Mapping[str, int]) -> Principal | None:
        accounts = generations.get(ACCOUNTS)
        if accounts is None:
            return None
        digest = token_hash(token)
        known = self.principals.get(digest)
        if known is not None and known[1] == accounts and _live(known[0]):
            self.principals.move_to_end(digest)
            return known[0]
        # Users or tokens changed (or first sight): ask the database again.
        with self.engine.connect() as conn:
            principal = self.resolver(conn, digest)
        if principal is None:
            self.principals.pop(digest, None)
            return None
        self.principals[digest] = (principal, accounts)
        if len(self.principals) > self.max_principals:
            self.principals.popitem(last=False)
        return principal

    def _key(
        self, scope: Scope, headers: Mapping[bytes, bytes], group: str, gen: int, seen_by: str
    ) -> str:
        # Everything the body depends on: the data's generation, who may see what, and the
        # exact URL (absolute `url` fields and Link headers echo host, path and query order).
        raw = b"|".join(
            (
                group.encode(),
                str(gen).encode(),
                seen_by.encode(),
                headers.get(b"host", b""),
                scope["path"].encode(),
                scope["query_string"],
            )
        )
        return self.prefix + hashlib.blake2b(raw, digest_size=16).hexdigest()

    async def _fill(self, scope: Scope, receive: Receive, send: Send, key: str) -> None:
        start: Message | None = None
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
            await send(message)

        await self.app(scope, receive, capture)
        if start is None or start["status"] != 200:
            return
        body = b"".join(chunks)
        if len(body) > MAX_ENTRY_BYTES:
            return
        kept = [
            [k.decode("latin-1"), v.decode("latin-1")]
            for k, v in start.get("headers", [])
            if k.lower() in _KEPT_HEADERS
        ]
        await self.backend.set(key, orjson.dumps(kept) + b"\n" + body)


def _headers(scope: Scope) -> dict[bytes, bytes]:
    return {k: v for k, v in scope["headers"] if k in _REQUEST_HEADERS}


_REQUEST_HEADERS = frozenset({b"authorization", b"host", b"if-none-match"})


def _live(principal: Principal) -> bool:
    expires = principal.expires_at
    if expires is None:
        return True
    if expires.tzinfo is None:  # SQLite returns naive UTC
        expires = expires.replace(tzinfo=UTC)
    return expires > datetime.now(UTC)


async def _replay(stored: bytes, if_none_match: bytes | None, send: Send) -> None:
    head, _, body = stored.partition(b"\n")
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in orjson.loads(head)]
    etag = next((v for k, v in headers if k == b"etag"), None)
    if etag is not None and if_none_match is not None and _matches(if_none_match, etag):
        kept = [(k, v) for k, v in headers if k != b"content-type"]
        await send({"type": "http.response.start", "status": 304, "headers": kept})
        await send({"type": "http.response.body", "body": b""})
        return
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _matches(if_none_match: bytes, etag: bytes) -> bool:
    # Weak comparison (RFC 9110 13.1.2), as core.concurrency.not_modified does for the app.
    if if_none_match.strip() == b"*":
        return True
    wanted = etag.removeprefix(b"W/")
    return any(t.strip().removeprefix(b"W/") == wanted for t in if_none_match.split(b","))
