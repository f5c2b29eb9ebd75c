"""Background work: one table of leased jobs, the worker that runs them, and named leases.

Everything that outlives a request (webhook deliveries today; imports and the sales inbox
watcher next) is a row in `jobs`, written in the same transaction as the change that caused
it, so a rollback queues nothing and a crash loses nothing. Workers claim due rows with a
lease (`FOR UPDATE SKIP LOCKED` on PostgreSQL, `BEGIN IMMEDIATE` on SQLite), so any number of
workers on any number of hosts share the work, and a dead worker's claims are taken over
once their lease runs out. A named lease (`leases`) gives work that must run on exactly one
worker at a time.
"""

from wharf.core.work.jobs import ClaimedJob, Outcome, enqueue
from wharf.core.work.leases import acquire_lease, release_lease
from wharf.core.work.worker import Handler, Worker

__all__ = [
    "ClaimedJob",
    "Handler",
    "Outcome",
    "Worker",
    "acquire_lease",
    "enqueue",
    "release_lease",
]
