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

Modules: `store` (claim, complete, release and purge in the database, and the fingerprint),
`middleware` (the ASGI layer). The table is `wharf.core.protect.idempotency.models`.
"""

from wharf.core.protect.idempotency.middleware import Idempotency
from wharf.core.protect.idempotency.store import fingerprint, purge_expired

__all__ = ["Idempotency", "fingerprint", "purge_expired"]
