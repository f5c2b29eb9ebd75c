"""The job worker: claims due jobs, runs each kind's handler, records the outcome.

It runs as one thread inside each `wharf serve` worker process (and standalone from the
CLI); the work a handler does is I/O (HTTP), so a few jobs run at once on a small pool.
Each slot of the pool is refilled as soon as its job ends, so one slow receiver holds one
slot, never the others' jobs.
"""

from __future__ import annotations

import functools
import logging
import os
import random
import secrets
import socket
import threading
import time
from collections.abc import Sequence
from concurrent import futures
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import Connection, Engine

from wharf.core.data.db import utcnow
from wharf.core.metrics import JOB_DURATION, JOBS
from wharf.core.work import jobs
from wharf.core.work.jobs import ClaimedJob, Outcome
from wharf.core.work.models import DONE, FAILED, PENDING

log = logging.getLogger("wharf.jobs")
JITTER = 0.1  # +-10%: retries of many jobs that failed together do not return together


class Handler(Protocol):
    """One kind of job."""

    kind: str
    # Seconds before each retry; a job that fails once more than this allows is failed.
    delays: Sequence[float]

    def run(self, job: ClaimedJob) -> Outcome:
        """Do the work, holding no transaction. Exceptions count as a retryable failure."""
        ...

    def record(self, conn: Connection, job: ClaimedJob, outcome: Outcome, state: str) -> None:
        """Write what the run means for the handler's own tables, in the job's transaction."""
        ...

    def taken_over(self, conn: Connection, job: ClaimedJob) -> None:
        """The job's previous attempt (`job.attempts - 1`, begun at `job.interrupted_at`)
        never finished: its worker stopped and its lease ran out. Write that down, in the
        transaction of the claim that took the job over."""
        ...


def worker_name() -> str:
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(3)}"


class Worker:
    def __init__(
        self,
        engine: Engine,
        handlers: Sequence[Handler],
        *,
        poll_seconds: float,
        lease_seconds: float,
        concurrency: int = 4,
    ) -> None:
        self.engine = engine
        self.handlers = {handler.kind: handler for handler in handlers}
        self.poll = poll_seconds
        self.lease = timedelta(seconds=lease_seconds)
        self.concurrency = concurrency
        self.owner = worker_name()
        self.pool = ThreadPoolExecutor(concurrency, thread_name_prefix="wharf-job")
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None
        # The jobs `run_forever` has in flight: it claims only as many as there are free
        # slots, so this worker never holds a lease on a job it is not running (a claimed job
        # left waiting for a slot could see its lease run out and be run twice). Changed by
        # the loop and by pool threads as jobs end, hence the lock.
        self.running: dict[Future[None], ClaimedJob] = {}
        self.lock = threading.Lock()
        self.renewed_at = time.monotonic()
        jobs.watch_commits(engine)

    def run_once(self) -> int:
        """Claim what is due now and run it; how many jobs ran.

        A one-shot (tests, `wharf webhooks deliver --once`): it waits for the whole batch,
        which is what its callers want. Not to be mixed with `run_forever` on one worker.
        """
        if not self.handlers:
            return 0
        claimed = self._claim(self.concurrency)
        for _ in self.pool.map(self._run, claimed):
            pass
        return len(claimed)

    def run_forever(self) -> None:
        """Keep up to `concurrency` jobs in flight until `stop()`."""
        while not self.stopping.is_set():
            # Cleared before looking: a wake (a commit that queued a job, a job ending,
            # `stop()`) that comes while we look then makes the wait below return at once;
            # cleared between the look and the wait, it would be lost for a whole poll.
            jobs.WAKE.clear()
            with self.lock:
                free = self.concurrency - len(self.running)
            if free > 0 and self.handlers:
                try:
                    claimed = self._claim(free)
                except Exception:  # the database is away: keep trying, never die
                    log.exception("job worker could not claim jobs")
                    claimed = []
                try:
                    for job in claimed:
                        self._submit(job)
                except RuntimeError:
                    # The pool is shut down: `stop()` gave up waiting for this claim. The
                    # leases of what it took run out, and another worker takes the jobs.
                    return
            self._renew()
            # Nothing more to do until a job is queued, a slot frees up, or the poll comes
            # round (for jobs due later, and ones queued by other processes).
            jobs.WAKE.wait(self.poll)

    def start(self) -> None:
        self.thread = threading.Thread(target=self.run_forever, name="wharf-jobs", daemon=True)
        self.thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop claiming at once, and give the jobs in flight until `timeout` to end.

        One still running then is left to its thread: its result is recorded if it ends
        while the process lives, and if the process ends first its lease runs out and
        another worker takes the job over.
        """
        deadline = time.monotonic() + timeout
        self.stopping.set()
        jobs.WAKE.set()
        if self.thread is not None:
            self.thread.join(timeout)
        with self.lock:
            running = list(self.running)
        futures.wait(running, timeout=max(0.0, deadline - time.monotonic()))
        self.pool.shutdown(wait=False, cancel_futures=True)

    def _renew(self) -> None:
        """Renew the leases of the jobs in flight at a third of their life, so a job that
        outlasts one lease (an import of many images) is never run twice while this worker
        lives. A renewal that fails is tried again at the next turn of the loop."""
        if time.monotonic() - self.renewed_at < self.lease.total_seconds() / 3:
            return
        with self.lock:
            ids = [job.id for job in self.running.values()]
        try:
            jobs.renew(self.engine, ids, owner=self.owner, lease=self.lease)
        except Exception:  # the database is away: the loop keeps trying
            log.exception("job worker could not renew its leases")
            return
        self.renewed_at = time.monotonic()

    def _claim(self, limit: int) -> list[ClaimedJob]:
        return jobs.claim(
            self.engine,
            kinds=self.handlers.keys(),
            owner=self.owner,
            lease=self.lease,
            limit=limit,
            on_takeover=self._taken_over,
        )

    def _taken_over(self, conn: Connection, job: ClaimedJob) -> None:
        log.warning("job %s taken over: attempt %s never finished", job.id, job.attempts - 1)
        self.handlers[job.kind].taken_over(conn, job)

    def _submit(self, job: ClaimedJob) -> None:
        future = self.pool.submit(self._run, job)
        # Added before the callback is attached: a job that has already ended runs the
        # callback at once, and it must find the job here to take it out.
        with self.lock:
            self.running[future] = job
        future.add_done_callback(functools.partial(self._ended, job))

    def _ended(self, job: ClaimedJob, future: Future[None]) -> None:
        """A job's slot is free (called on the pool thread as `_run` returns)."""
        with self.lock:
            self.running.pop(future, None)
        if not future.cancelled() and (exc := future.exception()) is not None:
            # `_run` turns a handler's errors into outcomes; this is the database failing
            # as it recorded one. The job stays leased, and is run again when the lease ends.
            log.error("job %s (%s) could not be recorded", job.id, job.kind, exc_info=exc)
        # Wake the loop to fill the slot. WAKE is per process, so any other worker in this
        # process looks too, which costs it one plain read.
        jobs.WAKE.set()

    def _run(self, job: ClaimedJob) -> None:
        handler = self.handlers[job.kind]
        start = time.perf_counter()
        try:
            outcome = handler.run(job)
        except Exception as exc:
            log.exception("job %s (%s) raised", job.id, job.kind)
            outcome = Outcome("retry", error=f"unexpected error: {type(exc).__name__}")
        JOB_DURATION.labels(job.kind).observe(time.perf_counter() - start)
        state, due_at, error = self._next(handler, job, outcome)
        with self.engine.connect() as conn:
            conn.execution_options(wharf_write=True)
            with conn.begin() as tx:
                if not jobs.finish(
                    conn, job, owner=self.owner, state=state, error=error, due_at=due_at
                ):
                    log.warning("job %s was taken over by another worker", job.id)
                    tx.rollback()
                    return
                handler.record(conn, job, outcome, state)
        JOBS.labels(job.kind, state).inc()
        log.info(
            "job finished",
            extra={"job_id": job.id, "kind": job.kind, "state": state, "attempt": job.attempts},
        )

    def _next(
        self, handler: Handler, job: ClaimedJob, outcome: Outcome
    ) -> tuple[str, datetime | None, str | None]:
        if outcome.state == "done":
            return DONE, None, None
        if outcome.state == "failed":
            return FAILED, None, outcome.error
        if job.attempts > len(handler.delays):
            return FAILED, None, f"gave up after {job.attempts} attempts: {outcome.error}"
        delay = outcome.retry_in
        if delay is None:
            delay = handler.delays[job.attempts - 1] * random.uniform(1 - JITTER, 1 + JITTER)  # noqa: S311
        return PENDING, utcnow() + timedelta(seconds=delay), outcome.error
