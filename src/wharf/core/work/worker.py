"""The job worker: claims due jobs, runs each kind's handler, records the outcome.

It runs as one thread inside each `wharf serve` worker process (and standalone from the
CLI); the work a handler does is I/O (HTTP), so a few jobs run at once on a small pool.
"""

from __future__ import annotations

import logging
import os
import random
import secrets
import socket
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import Connection, Engine

from wharf.core.db import utcnow
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
        jobs.watch_commits(engine)

    def run_once(self) -> int:
        """Claim what is due now and run it; how many jobs ran."""
        if not self.handlers:
            return 0
        claimed = jobs.claim(
            self.engine,
            kinds=self.handlers.keys(),
            owner=self.owner,
            lease=self.lease,
            limit=self.concurrency,
        )
        for _ in self.pool.map(self._run, claimed):
            pass
        return len(claimed)

    def run_forever(self) -> None:
        while not self.stopping.is_set():
            try:
                ran = self.run_once()
            except Exception:  # the database is away: keep trying, never die
                log.exception("job worker could not claim jobs")
                ran = 0
            if not ran:
                jobs.WAKE.wait(self.poll)
                jobs.WAKE.clear()

    def start(self) -> None:
        self.thread = threading.Thread(target=self.run_forever, name="wharf-jobs", daemon=True)
        self.thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self.stopping.set()
        jobs.WAKE.set()
        if self.thread is not None:
            self.thread.join(timeout)
        self.pool.shutdown(wait=False, cancel_futures=True)

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
