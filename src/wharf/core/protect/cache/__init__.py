"""The response cache: authenticated GETs answered in front of routing, never stale.

An entry's key holds the generation of the data it was built from (see `core.generations`):
the generation is read before the request runs, and writes bump it in their own transaction,
so after a write has returned no worker can reach an entry from before it. A hit still checks
the bearer token, as `core.protect.principals` resolved it in front: a resolved principal is
reused only while the accounts generation (users and tokens) is unchanged, so a token revoked
on one worker is refused on the next request on every worker. Entries live in process memory
or, when configured, in Redis shared by all workers with process memory in front; when Redis
is unreachable every request is served from the database instead.
"""

from wharf.core.protect.cache.backends import (
    Backend,
    Entry,
    Key,
    MemoryBackend,
    RedisBackend,
    TieredBackend,
)
from wharf.core.protect.cache.layer import Group, ResponseCache

__all__ = [
    "Backend",
    "Entry",
    "Group",
    "Key",
    "MemoryBackend",
    "RedisBackend",
    "ResponseCache",
    "TieredBackend",
]
