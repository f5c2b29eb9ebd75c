"""Rate-limit counters: in this process's memory (the default) or in Redis, shared by every
worker and host; Redis failures fail open behind a circuit breaker (see the package docstring)."""

from __future__ import annotations

import asyncio
import logging
import math
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING

from wharf.core.metrics import BACKEND_ERRORS
from wharf.core.ratelimit.policies import Policy, Verdict, verdict

if TYPE_CHECKING:
    from limits.aio.storage import RedisStorage
    from limits.aio.strategies import SlidingWindowCounterRateLimiter

log = logging.getLogger("wharf.ratelimit")

_REDIS_TIMEOUT = 0.5  # seconds; Redis answers in well under a millisecond when healthy
_PAUSE_SECONDS = 1.0  # how long Redis is skipped after a failure
_WARN_EVERY = 10.0  # seconds between "Redis is down" warnings


class MemoryStore:
    """Counters in this process's memory (the default). Each policy has its own table of
    key -> [window number, last window's count, this window's count]."""

    def __init__(
        self, max_keys: int = 100_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_keys = max_keys
        self.clock = clock
        self.tables: dict[str, dict[str, list[int]]] = {}

    def hit(self, policy: Policy, key: str) -> Verdict:
        result, entry = self.check(policy, key)
        if result[0]:
            entry[2] += 1
        return result

    def check(self, policy: Policy, key: str) -> tuple[Verdict, list[int]]:
        """The verdict, and the entry to add one to when the request goes ahead."""
        window = policy.window
        now = self.clock()
        number = int(now // window)
        left = window - now % window
        table = self.tables.get(policy.name)
        if table is None:
            table = self.tables[policy.name] = {}
        entry = table.get(key)
        if entry is None:
            if len(table) >= self.max_keys:
                self._prune(table, number)
            entry = table[key] = [number, 0, 0]
        elif entry[0] != number:
            entry[1] = entry[2] if entry[0] == number - 1 else 0
            entry[2] = 0
            entry[0] = number
        return verdict(policy.limit, window, entry[1], left, entry[2], left), entry

    def _prune(self, table: dict[str, list[int]], number: int) -> None:
        # Entries older than the last window count for nothing; if the table is still full,
        # the oldest keys go (which only ever loosens a limit, never refuses wrongly).
        for key in [k for k, e in table.items() if e[0] < number - 1]:
            del table[key]
        excess = len(table) - self.max_keys * 9 // 10
        for key in list(table)[: max(excess, 0)]:
            del table[key]


class RedisStore:
    """Counters in Redis, shared by every worker and host, through limits' async storage."""

    def __init__(self, url: str, key_prefix: str) -> None:
        # Imported here, so a missing `redis` extra fails at startup rather than failing open.
        import redis.asyncio
        from limits.aio.storage import RedisStorage
        from limits.aio.strategies import SlidingWindowCounterRateLimiter

        self.connection_pool = redis.asyncio.ConnectionPool
        self.storage_class = RedisStorage
        self.limiter_class = SlidingWindowCounterRateLimiter
        self.url = url
        self.key_prefix = key_prefix
        # redis.asyncio connections belong to the loop that made them (tests run several).
        self.clients: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, tuple[RedisStorage, SlidingWindowCounterRateLimiter]
        ] = weakref.WeakKeyDictionary()
        self.paused_until = 0.0
        self.warned_at = -math.inf
        self.down = False

    def _client(self) -> tuple[RedisStorage, SlidingWindowCounterRateLimiter]:
        loop = asyncio.get_running_loop()
        client = self.clients.get(loop)
        if client is None:
            # A pool of our own: timeouts bound an outage's cost, and no retries.
            pool = self.connection_pool.from_url(
                self.url, socket_timeout=_REDIS_TIMEOUT, socket_connect_timeout=_REDIS_TIMEOUT
            )
            storage = self.storage_class(
                f"async+{self.url}",
                implementation="redispy",
                key_prefix=self.key_prefix,
                connection_pool=pool,  # type: ignore[arg-type]  # documented, typed narrower
            )
            client = self.clients[loop] = (storage, self.limiter_class(storage))
        return client

    async def check(self, policy: Policy, key: str) -> Verdict | None:
        """The verdict before counting, or None when Redis is unavailable (serve unlimited).

        Reading first means a refused request costs one round trip (an attacker's usual
        case) and counts against nothing."""
        if time.monotonic() < self.paused_until:
            return None
        try:
            storage, _ = self._client()
            window = policy.window
            prev, prev_ttl, cur, cur_ttl = await storage.get_sliding_window(
                policy.item.key_for(key), window
            )
        except Exception as exc:  # any backend failure: serve the request, never a 5xx
            self._failed(exc)
            return None
        self._up()
        left = cur_ttl - window if cur_ttl > window else float(window)
        return verdict(policy.limit, window, prev, prev_ttl, cur, left)

    async def take(self, policy: Policy, key: str) -> bool:
        """Count one request; False if a racing worker took the last slot since `check`
        (limits' Lua script checks again atomically). A failure lets the request through."""
        try:
            _, limiter = self._client()
            return await limiter.hit(policy.item, key)
        except Exception as exc:
            self._failed(exc)
            return True

    def _up(self) -> None:
        if self.down:
            self.down = False
            log.info("redis is back: rate limits are enforced again")

    def _failed(self, exc: Exception) -> None:
        BACKEND_ERRORS.labels(backend="redis").inc()
        self.down = True
        now = time.monotonic()
        self.paused_until = now + _PAUSE_SECONDS
        if now - self.warned_at >= _WARN_EVERY:
            self.warned_at = now
            log.warning(
                "redis unavailable, rate limits not enforced: %s: %s", type(exc).__name__, exc
            )
