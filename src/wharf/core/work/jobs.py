"""Queueing, claiming and finishing jobs. Claims and results are short transactions of their
own; the work itself (an HTTP call, say) runs between them, holding no transaction."""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Connection, Engine, and_, event, insert, or_, select, update

from wharf.core.data.db import utcnow
from wharf.core.work.models import DONE, FAILED, PENDING, RUNNING, Job

# Set when a transaction that queued a job has committed in this process, so this process's
# worker starts on it at once instead of at its next poll (other processes find it by polling).
WAKE = threading.Event()
_QUEUED, _COMMITTED = "wharf_jobs_queued", "wharf_jobs_committed"


def enqueue(
    conn: Connection, kind: str, payload: dict[str, Any], *, due_at: datetime | None = None
) -> int:
    """Queue a job in the caller's transaction: it exists exactly when that transaction commits."""
    now = utcnow()
    job_id: int = conn.execute(
        insert(Job)
        .values(
            kind=kind,
            payload=payload,
            state=PENDING,
            due_at=due_at or now,
            attempts=0,
            created_at=now,
            updated_at=now,
        )
        .returning(Job.id)
    ).scalar_one()
    conn.info[_QUEUED] = True
    return job_id


def watch_commits(engine: Engine) -> None:
    """Wake this process's worker once a transaction that queued a job has committed.

    SQLAlchemy's `commit` event fires just *before* the database commits, and a worker woken
    then can look, see nothing yet, and sleep a whole poll. So the commit only marks the
    connection, and the wake comes when it goes back to the pool, after the commit.
    """
    if not event.contains(engine, "commit", _on_commit):
        event.listen(engine, "commit", _on_commit)
        event.listen(engine, "rollback", _on_rollback)
        event.listen(engine.pool, "checkin", _on_checkin)


def _on_commit(conn: Connection) -> None:
    if not conn.invalidated and conn.info.pop(_QUEUED, False):
        conn.info[_COMMITTED] = True


def _on_rollback(conn: Connection) -> None:
    # A connection the database dropped has no `info` to reach (SQLAlchemy would try to
    # reconnect inside the rollback); its pool record, and so the mark, is discarded anyway.
    if not conn.invalidated:
        conn.info.pop(_QUEUED, None)


def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
    if record is not None and record.info.pop(_COMMITTED, False):
        WAKE.set()


@dataclass(frozen=True)
class ClaimedJob:
    id: int
    kind: str
    payload: dict[str, Any]
    attempts: int  # including this one
    # Set when this claim took the job over from a worker whose lease ran out (it stopped
    # mid-run): when that worker's claim began. Its attempt (`attempts - 1`) never finished.
    interrupted_at: datetime | None = None


@dataclass(frozen=True)
class Outcome:
    """What became of one run. `retry_in` overrides the handler's schedule (Retry-After)."""

    state: Literal["done", "retry", "failed"]
    error: str | None = None
    retry_in: float | None = None
    # What the run learned (a status code, a duration), for the handler's `record`.
    facts: dict[str, Any] = field(default_factory=dict)


def claim(
    engine: Engine,
    *,
    kinds: Collection[str],
    owner: str,
    lease: timedelta,
    limit: int,
    on_takeover: Callable[[Connection, ClaimedJob], None] | None = None,
) -> list[ClaimedJob]:
    """Take up to `limit` due jobs: pending ones whose time has come, and running ones whose
    worker's lease ran out (it died). Each claim counts as an attempt.

    `on_takeover` is called, in the claim's transaction, for each job taken over that way, so
    the attempt the dead worker never finished is recorded exactly once, however many
    workers die in a row."""
    now = utcnow()
    claimable = or_(
        and_(Job.state == PENDING, Job.due_at <= now),
        and_(Job.state == RUNNING, Job.lease_expires_at < now),
    )
    with engine.connect() as conn:
        # An idle worker looks before it locks: a plain read costs readers and writers
        # nothing, where the claim's write transaction (BEGIN IMMEDIATE on SQLite) would take
        # the database's write lock on every poll.
        with conn.begin():
            due = conn.execute(
                select(Job.id).where(claimable, Job.kind.in_(list(kinds))).limit(1)
            ).first()
        if due is None:
            return []
        conn.execution_options(wharf_write=True)  # SQLite: BEGIN IMMEDIATE, one claimer at a time
        with conn.begin():
            rows = conn.execute(
                select(Job.id, Job.kind, Job.payload, Job.attempts, Job.state, Job.updated_at)
                .where(claimable, Job.kind.in_(list(kinds)))
                .order_by(Job.due_at, Job.id)
                .limit(limit)
                .with_for_update(skip_locked=True)  # PostgreSQL; SQLite ignores it
            ).all()
            if not rows:
                return []
            conn.execute(
                update(Job)
                .where(Job.id.in_([row.id for row in rows]))
                .values(
                    state=RUNNING,
                    lease_owner=owner,
                    lease_expires_at=now + lease,
                    attempts=Job.attempts + 1,
                    updated_at=now,
                )
            )
            claimed = [
                ClaimedJob(
                    r.id,
                    r.kind,
                    dict(r.payload),
                    r.attempts + 1,
                    # A running job's updated_at is when its last claim was made.
                    interrupted_at=r.updated_at if r.state == RUNNING else None,
                )
                for r in rows
            ]
            if on_takeover is not None:
                for job in claimed:
                    if job.interrupted_at is not None:
                        on_takeover(conn, job)
    return claimed


def finish(
    conn: Connection,
    job: ClaimedJob,
    *,
    owner: str,
    state: str,
    error: str | None,
    due_at: datetime | None,
) -> bool:
    """Record a run's result, if the lease is still ours; False when another worker took the
    job over meanwhile (then the caller rolls back, and that worker's result stands)."""
    now = utcnow()
    values: dict[str, Any] = {
        "state": state,
        "last_error": error,
        "lease_owner": None,
        "lease_expires_at": None,
        "updated_at": now,
    }
    if state == PENDING:
        values["due_at"] = due_at or now
    else:
        values["finished_at"] = now
    changed = conn.execute(
        update(Job)
        .where(Job.id == job.id, Job.state == RUNNING, Job.lease_owner == owner)
        .values(**values)
    ).rowcount
    return bool(changed)


def renew(engine: Engine, job_ids: Collection[int], *, owner: str, lease: timedelta) -> None:
    """Extend the leases this worker still holds on jobs it is running: a long job (an
    import) stays its worker's for as long as that worker lives, and is taken over only
    once the worker has stopped renewing, that is, stopped."""
    if not job_ids:
        return
    now = utcnow()
    with engine.connect() as conn:
        conn.execution_options(wharf_write=True)
        with conn.begin():
            conn.execute(
                update(Job)
                .where(Job.id.in_(list(job_ids)), Job.state == RUNNING, Job.lease_owner == owner)
                .values(lease_expires_at=now + lease)
            )


def requeue(conn: Connection, job_id: int) -> bool:
    """Run a finished job again, from its first attempt (a manual retry)."""
    now = utcnow()
    changed = conn.execute(
        update(Job)
        .where(Job.id == job_id, Job.state.in_([DONE, FAILED]))
        .values(state=PENDING, due_at=now, attempts=0, finished_at=None, updated_at=now)
    ).rowcount
    if changed:
        conn.info[_QUEUED] = True
    return bool(changed)
