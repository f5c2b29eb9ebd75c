"""Rate-limit counters: in this process's memory (the default) or in Redis, shared by every
worker and host; Redis failures fail open behind a circuit breaker (see the package docstring)."""

from __future__ import annotations

import asyncio
import logging
import math
import time
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from wharf.core.metrics import BACKEND_ERRORS
from wharf.core.protect.ratelimit.policies import Policy, Verdict, verdict

if TYPE_CHECKING:
    from redis.commands.core import AsyncScript

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

    def hit_all(self, checks: Sequence[tuple[Policy, str]]) -> list[Verdict]:
        """Each policy's verdict; the request counts against them only if all allow it."""
        results = [self.check(policy, key) for policy, key in checks]
        if all(result[0] for result, _ in results):
            for _, entry in results:
                entry[2] += 1
        return [result for result, _ in results]

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


# The sliding window counter of MemoryStore, atomic in Redis and on Redis's clock (so every
# worker and host agrees on the windows), for a batch of requests in one call: each request's
# policies are checked and counted as if it had made a call of its own, in order, so a batch
# is exactly the same calls one after another. ARGV, per request: how many policies it has,
# then the limit and window of each; KEYS: one hash per policy and caller, {w: window number,
# p: last window's count, c: this window's}. Nothing of a request counts unless every one of
# its policies allows it. Returns, per request: [allowed, then p, c and seconds left in the
# window of each policy, before counting].
_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local out, k, a = {}, 0, 1
while a <= #ARGV do
    local n = tonumber(ARGV[a])
    local state, allowed = {}, 1
    for i = 1, n do
        local limit, window = tonumber(ARGV[a + 2 * i - 1]), tonumber(ARGV[a + 2 * i])
        local number = math.floor(now / window)
        local left = window - (now - number * window)
        local saved = redis.call('HMGET', KEYS[k + i], 'w', 'p', 'c')
        local w, p, c = tonumber(saved[1]), tonumber(saved[2]) or 0, tonumber(saved[3]) or 0
        if w ~= number then
            if w == number - 1 then p = c else p = 0 end
            c = 0
        end
        if p * left / window + c + 1 > limit then allowed = 0 end
        state[i] = {number, p, c, left, window}
    end
    table.insert(out, allowed)
    for i = 1, n do
        local s = state[i]
        if allowed == 1 then
            redis.call('HSET', KEYS[k + i], 'w', s[1], 'p', s[2], 'c', s[3] + 1)
            redis.call('EXPIRE', KEYS[k + i], 2 * s[5])
        end
        table.insert(out, s[2])
        table.insert(out, s[3])
        table.insert(out, string.format('%.17g', s[4]))
    end
    k, a = k + n, a + 1 + 2 * n
end
return out
"""
# Requests in one call at most: the script blocks Redis while it runs (a few us a policy).
_MAX_BATCH = 128

Checks = Sequence[tuple[Policy, str]]


class _Batch:
    """One event loop's calls: the requests waiting for the next call, and whether a call is
    under way (redis.asyncio connections belong to the loop that made them)."""

    def __init__(self, script: AsyncScript) -> None:
        self.script = script
        self.waiting: list[tuple[Checks, asyncio.Future[list[Verdict] | None]]] = []
        self.calling: asyncio.Task[None] | None = None


class RedisStore:
    """Counters in Redis, shared by every worker and host: one script call for the requests
    that arrive together.

    Hand-written rather than limits' Redis storage, which needs two round trips for what the
    RateLimit fields need (a read for the counts, then its atomic check-and-count) and could
    overshoot between them; one script is one round trip, and exact.

    Requests that arrive while a call is under way go together in the next one, as the data
    generations' shared read does (core/data/generations.py): under load one round trip and
    one reply to parse serve many requests, where redis-py's own cost per call was the larger
    part of a cached request's. Each request still waits for a call that began after it
    arrived, and the script counts a batch exactly as the same calls one by one.
    """

    def __init__(self, url: str, key_prefix: str, timeout: float = _REDIS_TIMEOUT) -> None:
        # Imported here, so a missing `redis` extra fails at startup rather than failing open.
        import redis.asyncio

        self.redis = redis.asyncio
        self.url = url
        self.key_prefix = key_prefix
        self.timeout = timeout
        self.batches: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Batch] = (
            weakref.WeakKeyDictionary()
        )
        self.paused_until = 0.0
        self.warned_at = -math.inf
        self.down = False

    def _batch(self, loop: asyncio.AbstractEventLoop) -> _Batch:
        batch = self.batches.get(loop)
        if batch is None:
            # Timeouts bound an outage's cost; no retries.
            client = self.redis.Redis.from_url(
                self.url, socket_timeout=self.timeout, socket_connect_timeout=self.timeout
            )
            batch = self.batches[loop] = _Batch(client.register_script(_SCRIPT))
        return batch

    async def hit(self, checks: Checks) -> list[Verdict] | None:
        """Each policy's verdict, counted only if all allow; None when Redis is unavailable
        (serve the request unlimited)."""
        if time.monotonic() < self.paused_until:
            return None
        loop = asyncio.get_running_loop()
        batch = self._batch(loop)
        answer: asyncio.Future[list[Verdict] | None] = loop.create_future()
        batch.waiting.append((checks, answer))
        if batch.calling is None:
            batch.calling = loop.create_task(self._calls(batch))
        return await answer

    async def _calls(self, batch: _Batch) -> None:
        """Call while requests wait, each call taking those that arrived before it began."""
        taken: list[tuple[Checks, asyncio.Future[list[Verdict] | None]]] = []
        try:
            while batch.waiting:
                taken = batch.waiting[:_MAX_BATCH]
                del batch.waiting[:_MAX_BATCH]
                requests = [checks for checks, _ in taken]
                try:
                    answers = await self._call(batch.script, requests)
                except Exception as exc:  # any backend failure: serve them, never a 5xx
                    self._failed(exc)
                    answers = [None] * len(taken)
                for (_, answer), verdicts in zip(taken, answers, strict=True):
                    if not answer.done():  # its request may have been cancelled meanwhile
                        answer.set_result(verdicts)
        finally:
            batch.calling = None
            for _, answer in taken:  # cancelled mid-call (the loop is closing): unlimited
                if not answer.done():
                    answer.set_result(None)

    async def _call(
        self, script: AsyncScript, requests: list[Checks]
    ) -> list[list[Verdict] | None]:
        if time.monotonic() < self.paused_until:  # Redis failed while these waited
            return [None] * len(requests)
        keys = [
            f"{self.key_prefix}:{policy.name}:{key}"
            for checks in requests
            for policy, key in checks
        ]
        args: list[int] = []
        for checks in requests:
            args.append(len(checks))
            args += [n for policy, _ in checks for n in (policy.limit, policy.window)]
        out = await script(keys=keys, args=args)
        self._up()
        answers: list[list[Verdict] | None] = []
        at = 0
        for checks in requests:
            verdicts = []
            for i, (policy, _) in enumerate(checks):
                prev, cur = int(out[at + 3 * i + 1]), int(out[at + 3 * i + 2])
                left = float(out[at + 3 * i + 3])
                # The script's arithmetic, redone here on the same doubles for the fields.
                verdicts.append(verdict(policy.limit, policy.window, prev, left, cur, left))
            if not out[at] and all(v[0] for v in verdicts):  # never serve what was not counted
                verdicts[0] = (False, 0, 1)
            answers.append(verdicts)
            at += 1 + 3 * len(checks)
        return answers

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
