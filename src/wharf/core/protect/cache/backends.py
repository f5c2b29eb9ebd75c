"""Where cached responses live: process memory, Redis, or memory in front of Redis.

Failures are the backend's to absorb: an unreachable Redis answers None (a miss), so every
request is then served from the database.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import OrderedDict
from typing import Protocol
from weakref import WeakKeyDictionary

import orjson

from wharf.core.metrics import BACKEND_ERRORS

log = logging.getLogger("wharf.cache")

# What an entry is stored under: (group, the generations it depends on, who sees it, host,
# path, query).
Key = tuple[str, tuple[int, ...], str, bytes, str, bytes]


class Entry:
    """A cached 200: the response headers worth keeping, and the body.

    The header lists a hit sends are built once, when the entry is made, not on every hit.
    """

    __slots__ = ("body", "etag", "headers", "not_modified", "size", "start")

    def __init__(self, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        self.headers = headers
        self.body = body
        self.etag = next((v for k, v in headers if k == b"etag"), None)
        self.start = [*headers, (b"content-length", b"%d" % len(body))]
        self.not_modified = [(k, v) for k, v in headers if k != b"content-type"]
        self.size = len(body) + sum(len(k) + len(v) for k, v in headers)

    def encode(self) -> bytes:
        head = [[k.decode("latin-1"), v.decode("latin-1")] for k, v in self.headers]
        return orjson.dumps(head) + b"\n" + self.body

    @classmethod
    def decode(cls, stored: bytes) -> Entry:
        head, _, body = stored.partition(b"\n")
        return cls(
            [(k.encode("latin-1"), v.encode("latin-1")) for k, v in orjson.loads(head)], body
        )


class Backend(Protocol):
    def lookup(self, key: Key) -> Entry | None:
        """The entry if this process holds it, without waiting on anything."""

    async def get(self, key: Key) -> Entry | None:
        """The entry, from wherever the backend keeps it."""

    async def set(self, key: Key, entry: Entry) -> None: ...


class MemoryBackend:
    """A per-process LRU bounded by bytes. Each worker has its own; keys keep them correct."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self.entries: OrderedDict[Key, Entry] = OrderedDict()

    async def get(self, key: Key) -> Entry | None:
        return self.lookup(key)

    def lookup(self, key: Key) -> Entry | None:
        """`get` without the coroutine, for the hit path."""
        entry = self.entries.get(key)
        if entry is not None:
            self.entries.move_to_end(key)
        return entry

    async def set(self, key: Key, entry: Entry) -> None:
        old = self.entries.pop(key, None)
        if old is not None:
            self.size -= old.size
        self.entries[key] = entry
        self.size += entry.size
        while self.size > self.max_bytes and self.entries:
            _, evicted = self.entries.popitem(last=False)
            self.size -= evicted.size


class RedisBackend:
    """Shared by every worker and host. After a failure it is skipped for a moment (a circuit
    breaker), so an outage costs one timeout per pause rather than one per request."""

    PAUSE_SECONDS = 2.0

    def __init__(self, url: str, ttl_seconds: int, prefix: str) -> None:
        self.url = url
        self.ttl = ttl_seconds
        self.prefix = prefix  # the deployment's: two databases sharing a Redis never mix
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

    def lookup(self, key: Key) -> Entry | None:  # noqa: ARG002 (the protocol's signature)
        return None  # every entry is a network round trip away

    def name(self, key: Key) -> str:
        # repr() of a tuple of str, bytes and int is unambiguous, so distinct keys never meet.
        return self.prefix + hashlib.blake2b(repr(key).encode(), digest_size=16).hexdigest()

    async def get(self, key: Key) -> Entry | None:
        if time.monotonic() < self.paused_until:
            return None
        try:
            value = await self._client().get(self.name(key))  # type: ignore[attr-defined]
        except Exception as exc:
            self._failed(exc)
            return None
        if not isinstance(value, bytes):
            return None
        try:
            return Entry.decode(value)
        except (ValueError, UnicodeError):  # not ours, or damaged: a miss, refilled
            return None

    async def set(self, key: Key, entry: Entry) -> None:
        if time.monotonic() < self.paused_until:
            return
        try:
            await self._client().set(  # type: ignore[attr-defined]
                self.name(key), entry.encode(), ex=self.ttl
            )
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

    async def get(self, key: Key) -> Entry | None:
        entry = self.near.lookup(key)
        if entry is None:
            entry = await self.far.get(key)
            if entry is not None:
                await self.near.set(key, entry)
        return entry

    def lookup(self, key: Key) -> Entry | None:
        return self.near.lookup(key)

    async def set(self, key: Key, entry: Entry) -> None:
        await self.near.set(key, entry)
        await self.far.set(key, entry)
