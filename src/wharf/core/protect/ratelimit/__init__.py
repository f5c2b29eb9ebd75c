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

Stores: with `redis_url`, one Lua script of ours (`stores.RedisStore`): every policy's check
and count at once, atomic, on Redis's clock, in one round trip; the requests that arrive while
a call is under way go together in the next call, counted exactly as one call each would be.
limits' Redis storage was used before; it needs two round trips for a verdict plus the numbers
the fields report (a read, then its atomic check-and-count), which halved throughput with
Redis. limits still parses the limit strings. Without Redis, a synchronous in-process table
with the same arithmetic: limits' own async memory storage costs 12-18 us a hit here (an
asyncio lock per key, and a task per hit that rescans every key) against ~0.5 us, and the event
loop already makes a read-and-increment with no await in between atomic. Measure with
`python -m bench.ratelimit_overhead`.

When Redis fails the request is served unlimited (fail open: no 5xx, only the RateLimit-Policy
field), BACKEND_ERRORS counts it, a warning is logged at most every few seconds, and Redis is
skipped for a moment (a circuit breaker, so an outage costs one timeout per pause, not one per
request); limiting resumes by itself once Redis answers again.

Modules: `policies` (settings into policies, their RateLimit field members, the verdict),
`stores` (the memory and Redis counters), `middleware` (the ASGI layer).
"""

from wharf.core.protect.ratelimit.middleware import RateLimit
from wharf.core.protect.ratelimit.policies import Policy, Verdict, parse_policies, verdict
from wharf.core.protect.ratelimit.stores import MemoryStore, RedisStore

__all__ = [
    "MemoryStore",
    "Policy",
    "RateLimit",
    "RedisStore",
    "Verdict",
    "parse_policies",
    "verdict",
]
