"""Rate limits as one pure ASGI layer: per token for the API, per address and account for logins.

Placement: inside `HttpContract` (paths are already normalised, bodies already bounded, and a
429 gets its request id) and outside the response cache and routing, so a cache hit counts
like any other request. `HttpContract`'s own refusals (400/406/413/415) are answered before
this layer: they cost no database work, and they carry no RateLimit fields.

Policies (limits are settings, in the `limits` string syntax, e.g. `1200/minute`):
- `api`: every `/api/` request, keyed by the sha256 of its bearer token (no database lookup);
  without a well-formed token, by client address.
- `login`: `POST /api/v1/auth/token` per client address and account (the form's `username`,
  lower-cased), so a burst of wrong passwords for one account is refused long before it
  learns anything; `login-address`: per client address over all accounts, against spraying
  one password over many accounts. A login counts against these, not against `api`.

Fields (IETF httpapi RateLimit header fields, draft 10, structured-field lists):
`RateLimit-Policy: "api";q=1200;w=60` and `RateLimit: "api";r=1187;t=42`, where `r` is what
is left after this request and `t` the seconds until the current window rolls over. A 429 is
problem+json with `Retry-After`: the whole seconds until one more request fits.

Algorithm: the sliding window counter (two counters per key: this window's and the last one's,
weighted by how much of it still overlaps the sliding window). Unlike a fixed window it does
not allow a double burst across a window boundary; unlike the moving window (one timestamp per
request: 1,200 entries per token at the default, O(limit) work per hit in Redis) it is O(1) in
memory and time per key, which is what a layer in front of every request can afford. Every
policy of a request is checked before any counts, so a request refused by one uses up none.

Stores: with `redis_url`, limits' async Redis storage (its Lua scripts keep the counters
consistent across workers and hosts, and the asyncio client never blocks the loop); a request
costs two round trips there (read, then an atomic check-and-count), a refused one only the
first. Without Redis, a synchronous in-process table with the same arithmetic: limits' own
async memory storage costs 12-18 us a hit here (an asyncio lock per key, and a task per hit
that rescans every key) against ~0.5 us, and the event loop already makes a read-and-increment
with no await in between atomic. Measure with `python -m bench.ratelimit_overhead`.

When Redis fails the request is served unlimited (fail open: no 5xx, only the RateLimit-Policy
field), BACKEND_ERRORS counts it, a warning is logged at most every few seconds, and Redis is
skipped for a moment (a circuit breaker, so an outage costs one timeout per pause, not one per
request); limiting resumes by itself once Redis answers again.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

import limits
from limits import RateLimitItem
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from wharf.core.metrics import BACKEND_ERRORS, RATE_LIMITED
from wharf.core.responses import PROBLEM_JSON, problem_body
from wharf.core.security import TOKEN_PREFIX

if TYPE_CHECKING:
    from limits.aio.storage import RedisStorage
    from limits.aio.strategies import SlidingWindowCounterRateLimiter
    from prometheus_client import Counter

    from wharf.core.config import Settings

log = logging.getLogger("wharf.ratelimit")

_TOKEN_PREFIX = TOKEN_PREFIX.encode()
_FORM_CAP = 64 * 1024  # a login form is tiny; past this the account is not parsed
_REDIS_TIMEOUT = 0.5  # seconds; Redis answers in well under a millisecond when healthy
_PAUSE_SECONDS = 1.0  # how long Redis is skipped after a failure
_WARN_EVERY = 10.0  # seconds between "Redis is down" warnings

# (allowed, remaining after this request, whole seconds: until the window rolls over if
# allowed, until one more request fits if not)
Verdict = tuple[bool, int, int]


@dataclass(frozen=True, eq=False)
class Policy:
    """One quota: `limit` requests per `window` seconds, named in the RateLimit fields."""

    name: str
    item: RateLimitItem
    limit: int = field(init=False)
    window: int = field(init=False)
    policy_member: bytes = field(init=False)  # its member of the RateLimit-Policy list
    member_start: bytes = field(init=False)  # the start of its member of the RateLimit list
    rejected: Counter = field(init=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "limit", self.item.amount)
        set_(self, "window", self.item.get_expiry())
        set_(self, "policy_member", f'"{self.name}";q={self.limit};w={self.window}'.encode())
        set_(self, "member_start", f'"{self.name}";r='.encode())
        set_(self, "rejected", RATE_LIMITED.labels(policy=self.name))


def parse_policies(name: str, value: str) -> list[Policy]:
    """`10/minute` is one policy named `name`; `10/minute;100/day` two, `name-60s` and so on."""
    items = limits.parse_many(value)
    if len(items) == 1:
        return [Policy(name, items[0])]
    return [Policy(f"{name}-{item.get_expiry()}s", item) for item in items]


def verdict(limit: int, window: int, prev: int, prev_ttl: float, cur: int, left: float) -> Verdict:
    """Decide one request from the two counters, before counting it.

    `prev_ttl` is how long the last window still overlaps the sliding window (its weight is
    `prev_ttl / window`), `left` how long until the current window rolls over. limits' sliding
    window counter, except that the weighted count is not rounded down: rounding lets one
    extra request through just after every window boundary.
    """
    used = prev * prev_ttl / window + cur
    if used + 1 <= limit:
        return True, int(limit - 1 - used), math.ceil(left)
    if cur < limit:  # the last window's share must decay until one more fits
        wait = prev_ttl - (limit - 1 - cur) * window / prev
    else:  # this window alone is full: wait for it to roll over, then for its share to decay
        wait = left + window * (1 - (limit - 1) / cur)
    return False, 0, max(math.ceil(wait), 1)


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


class RateLimit:
    """The pure ASGI layer. Build it with `app.add_middleware(RateLimit, settings=...)`."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        settings: Settings,
        login_path: str,
        api_prefix: str = "/api/",
    ) -> None:
        self.app = app
        self.login_path = login_path
        self.api_prefix = api_prefix
        self.api = parse_policies("api", settings.rate_limit_api)
        self.login_account = parse_policies("login", settings.rate_limit_login)
        self.login_address = parse_policies("login-address", settings.rate_limit_login_address)
        self.api_policy_field = b", ".join(p.policy_member for p in self.api)
        self.login_policy_field = b", ".join(
            p.policy_member for p in (*self.login_account, *self.login_address)
        )
        self.memory = MemoryStore() if not settings.redis_url else None
        self.redis = (
            RedisStore(settings.redis_url, f"{settings.redis_key_prefix}:rl")
            if settings.redis_url
            else None
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.api_prefix):
            await self.app(scope, receive, send)
            return
        if scope["method"] == "POST" and scope["path"] == self.login_path:
            receive, checks, policy_field = await self._login(scope, receive)
        elif self.memory is not None and len(self.api) == 1:
            # The common case, kept lean: one policy, one key, counted in memory.
            policy = self.api[0]
            allowed, left, seconds = self.memory.hit(policy, self._caller(scope))
            extra = [
                (b"ratelimit-policy", self.api_policy_field),
                (b"ratelimit", policy.member_start + b"%d;t=%d" % (left, seconds)),
            ]
            if not allowed:
                await self._refuse(scope, send, policy, seconds, extra)
                return
            await self.app(scope, receive, _sending(send, extra))
            return
        else:
            key = self._caller(scope)
            checks = [(policy, key) for policy in self.api]
            policy_field = self.api_policy_field

        # Every policy is checked before any counts, so a request refused by one uses up
        # none of the others.
        results: list[Verdict | None] = []
        entries: list[list[int]] = []
        for policy, key in checks:
            if self.memory is not None:
                checked, entry = self.memory.check(policy, key)
                results.append(checked)
                entries.append(entry)
            else:
                assert self.redis is not None
                results.append(await self.redis.check(policy, key))
        if all(r is None or r[0] for r in results):
            for entry in entries:
                entry[2] += 1
            if self.redis is not None:
                for i, (policy, key) in enumerate(checks):
                    if results[i] is not None and not await self.redis.take(policy, key):
                        results[i] = (False, 0, 1)

        extra = [(b"ratelimit-policy", policy_field)]
        members: list[bytes] = []
        refused: tuple[Policy, int] | None = None
        for (policy, _), result in zip(checks, results, strict=True):
            if result is None:  # Redis is down: serve, and say nothing about what is left
                continue
            allowed, left, seconds = result
            members.append(policy.member_start + b"%d;t=%d" % (left, seconds))
            if not allowed and (refused is None or seconds > refused[1]):
                refused = (policy, seconds)  # the longest wait is the one to report
        if members:
            extra.append((b"ratelimit", b", ".join(members)))
        if refused is not None:
            await self._refuse(scope, send, *refused, extra)
            return

        await self.app(scope, receive, _sending(send, extra))

    def _caller(self, scope: Scope) -> str:
        """The sha256 of a well-formed bearer token, else the client address."""
        for name, value in scope["headers"]:
            if name == b"authorization":
                token = value[7:]
                if (
                    value[:7].lower() == b"bearer "
                    and token.startswith(_TOKEN_PREFIX)
                    and len(token) <= 200
                    and token.isascii()
                ):
                    # Equal to core.security.token_hash (tokens are ASCII), without a decode
                    # and re-encode on the hot path.
                    return "t:" + hashlib.sha256(token).hexdigest()
                break
        return "a:" + _address(scope)

    async def _login(
        self, scope: Scope, receive: Receive
    ) -> tuple[Receive, list[tuple[Policy, str]], bytes]:
        messages, body = await _buffer(receive, _FORM_CAP)
        account = _account(scope, body) if body is not None else ""
        address = _address(scope)
        by_account = f"{address}/{hashlib.sha256(account.encode()).hexdigest()[:32]}"
        checks = [(p, by_account) for p in self.login_account]
        checks += [(p, address) for p in self.login_address]
        return _replay(messages, receive), checks, self.login_policy_field

    @staticmethod
    async def _refuse(
        scope: Scope, send: Send, policy: Policy, retry_after: int, extra: list[tuple[bytes, bytes]]
    ) -> None:
        policy.rejected.inc()
        body = problem_body(
            429,
            "Too many requests",
            f"The {policy.name!r} limit of {policy.limit} requests per {policy.window} s is "
            f"used up; retry in {retry_after} s.",
            scope["path"],
        )
        await send(
            {
                "type": "http.response.start",
                "status": 429,
                "headers": [
                    (b"content-type", PROBLEM_JSON.encode()),
                    (b"content-length", str(len(body)).encode()),
                    (b"retry-after", str(retry_after).encode()),
                    *extra,
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _sending(send: Send, extra: list[tuple[bytes, bytes]]) -> Send:
    async def send_with_fields(message: Message) -> None:
        if message["type"] == "http.response.start":
            # A new dict and list: the cache inside may replay the messages it was given.
            message = {**message, "headers": [*message.get("headers", ()), *extra]}
        await send(message)

    return send_with_fields


def _address(scope: Scope) -> str:
    # The peer as the server saw it; behind a proxy, run uvicorn with --forwarded-allow-ips
    # so this is the client's address rather than the proxy's.
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def _account(scope: Scope, body: bytes) -> str:
    """The form's `username`, lower-cased. A multipart login has none here, so all of an
    address's multipart attempts share one account bucket (stricter, never looser)."""
    for name, value in scope["headers"]:
        if name == b"content-type":
            if not value.lower().startswith(b"application/x-www-form-urlencoded"):
                return ""
            break
    for key, value in parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True):
        if key == "username":
            return value.strip().lower()
    return ""


async def _buffer(receive: Receive, cap: int) -> tuple[list[Message], bytes | None]:
    """Read the request body (up to `cap`), keeping every message for `_replay`."""
    messages: list[Message] = []
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return messages, None
        chunk: bytes = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if not message.get("more_body", False):
            return messages, b"".join(chunks)
        if size > cap:
            return messages, None


def _replay(messages: Sequence[Message], upstream: Receive) -> Receive:
    pending: deque[Message] = deque(messages)

    async def receive() -> Message:
        if pending:
            return pending.popleft()
        return await upstream()

    return receive
