"""Rate-limit policies: settings parsed into quotas, their RateLimit field members, and the
sliding window counter's verdict (see the package docstring)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import limits
from limits import RateLimitItem

from wharf.core.metrics import RATE_LIMITED

if TYPE_CHECKING:
    from prometheus_client import Counter

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
