"""The background-work mechanism: leased jobs and named leases, on both databases."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, func, select, update

from wharf.core.data.db import create_db_engine, utcnow
from wharf.core.work import ClaimedJob, Outcome, Worker, acquire_lease, enqueue, jobs, release_lease
from wharf.core.work.models import RUNNING, Job


@pytest.fixture
def engine(database_url: str) -> Engine:
    return create_db_engine(database_url)


class Recorder:
    """A handler that records what it ran and answers from a script of outcomes."""

    kind = "test.record"

    def __init__(self, *outcomes: Outcome, delays: Sequence[float] = (0, 0)) -> None:
        self.outcomes = list(outcomes)
        self.delays = delays
        self.ran: list[ClaimedJob] = []
        self.recorded: list[str] = []
        self.taken: list[ClaimedJob] = []
        self.lock = threading.Lock()

    def run(self, job: ClaimedJob) -> Outcome:
        with self.lock:
            self.ran.append(job)
            return self.outcomes.pop(0) if self.outcomes else Outcome("done")

    def record(self, conn: Connection, job: ClaimedJob, outcome: Outcome, state: str) -> None:
        with self.lock:
            self.recorded.append(state)

    def taken_over(self, conn: Connection, job: ClaimedJob) -> None:
        with self.lock:
            self.taken.append(job)


def queue(engine: Engine, n: int = 1, kind: str = Recorder.kind) -> list[int]:
    with engine.begin() as conn:
        return [enqueue(conn, kind, {"n": i}) for i in range(n)]


def state(engine: Engine, job_id: int) -> tuple[str, int, str | None]:
    with engine.connect() as conn:
        row = conn.execute(
            select(Job.state, Job.attempts, Job.last_error).where(Job.id == job_id)
        ).one()
    return row.state, row.attempts, row.last_error


def test_a_job_runs_once_and_is_done(engine: Engine) -> None:
    handler = Recorder()
    [job_id] = queue(engine)
    worker = Worker(engine, [handler], poll_seconds=0.01, lease_seconds=30)
    assert worker.run_once() == 1
    assert worker.run_once() == 0
    assert [j.payload for j in handler.ran] == [{"n": 0}]
    assert handler.recorded == ["done"]
    assert handler.taken == []  # a first claim takes nothing over
    assert handler.ran[0].interrupted_at is None
    assert state(engine, job_id) == ("done", 1, None)


def test_a_retry_follows_the_schedule_and_then_fails(engine: Engine) -> None:
    handler = Recorder(*[Outcome("retry", error="down")] * 5, delays=(0, 3600))
    [job_id] = queue(engine)
    worker = Worker(engine, [handler], poll_seconds=0.01, lease_seconds=30)
    assert worker.run_once() == 1  # attempt 1, retried at once (delay 0)
    assert worker.run_once() == 1  # attempt 2, next one an hour away
    assert worker.run_once() == 0
    assert state(engine, job_id) == ("pending", 2, "down")
    with engine.begin() as conn:  # the hour has passed
        conn.execute(update(Job).values(due_at=Job.created_at))
    assert worker.run_once() == 1
    assert state(engine, job_id) == ("failed", 3, "gave up after 3 attempts: down")


def test_an_exception_is_a_retry_not_a_dead_worker(engine: Engine) -> None:
    class Boom(Recorder):
        def run(self, job: ClaimedJob) -> Outcome:
            raise RuntimeError("boom")

    [job_id] = queue(engine)
    worker = Worker(engine, [Boom(delays=(3600,))], poll_seconds=0.01, lease_seconds=30)
    assert worker.run_once() == 1
    assert state(engine, job_id) == ("pending", 1, "unexpected error: RuntimeError")


def test_a_dead_workers_claim_is_taken_over_after_its_lease(engine: Engine) -> None:
    [job_id] = queue(engine)
    dead = jobs.claim(engine, kinds=[Recorder.kind], owner="dead", lease=timedelta(0), limit=5)
    assert [j.id for j in dead] == [job_id]
    handler = Recorder()
    worker = Worker(engine, [handler], poll_seconds=0.01, lease_seconds=30)
    assert worker.run_once() == 1  # the lease ran out at once
    assert handler.ran[0].attempts == 2
    # The handler heard, once, that attempt 1 never finished, and when it began.
    [taken] = handler.taken
    assert (taken.id, taken.attempts) == (job_id, 2)
    assert taken.interrupted_at is not None
    # The dead worker's late result is refused: the job is no longer its.
    with engine.begin() as conn:
        assert not jobs.finish(conn, dead[0], owner="dead", state="failed", error="x", due_at=None)
    assert state(engine, job_id) == ("done", 2, None)


def test_each_worker_that_died_is_reported_once(engine: Engine) -> None:
    [job_id] = queue(engine)
    handler = Recorder()
    lapsed = timedelta(0)
    jobs.claim(engine, kinds=[Recorder.kind], owner="first", lease=lapsed, limit=1)
    # The second worker takes the job over, reports the first, and dies too.
    jobs.claim(
        engine,
        kinds=[Recorder.kind],
        owner="second",
        lease=lapsed,
        limit=1,
        on_takeover=handler.taken_over,
    )
    assert Worker(engine, [handler], poll_seconds=0.01, lease_seconds=30).run_once() == 1
    assert [(j.id, j.attempts) for j in handler.taken] == [(job_id, 2), (job_id, 3)]
    assert state(engine, job_id) == ("done", 3, None)


def test_retry_delays_are_jittered_within_ten_percent(engine: Engine) -> None:
    handler = Recorder(delays=(100.0,))
    worker = Worker(engine, [handler], poll_seconds=0.01, lease_seconds=30)
    job = ClaimedJob(1, Recorder.kind, {}, attempts=1)
    waits = []
    for _ in range(200):
        before = utcnow()
        state_, due_at, _error = worker._next(handler, job, Outcome("retry", error="x"))
        after = utcnow()
        assert state_ == "pending"
        assert due_at is not None
        assert before + timedelta(seconds=90) <= due_at <= after + timedelta(seconds=110)
        waits.append((due_at - before).total_seconds())
    assert len({round(w, 3) for w in waits}) > 100  # it varies, draw by draw
    # and spans the band, not a sliver of it (a miss here has odds below 0.75**200)
    assert min(waits) < 95
    assert max(waits) > 105


def test_a_live_claim_is_not_taken(engine: Engine) -> None:
    queue(engine)
    claimed = jobs.claim(
        engine, kinds=[Recorder.kind], owner="a", lease=timedelta(hours=1), limit=5
    )
    assert len(claimed) == 1
    assert (
        jobs.claim(engine, kinds=[Recorder.kind], owner="b", lease=timedelta(hours=1), limit=5)
        == []
    )


def test_workers_claim_disjoint_jobs(engine: Engine) -> None:
    ids = set(queue(engine, 40))
    claims: list[list[ClaimedJob]] = []

    def take(owner: str) -> None:
        mine: list[ClaimedJob] = []
        while batch := jobs.claim(
            engine, kinds=[Recorder.kind], owner=owner, lease=timedelta(hours=1), limit=3
        ):
            mine.extend(batch)
        claims.append(mine)

    threads = [threading.Thread(target=take, args=(f"w{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    taken = [job.id for mine in claims for job in mine]
    assert sorted(taken) == sorted(ids)  # every job claimed exactly once


def test_kinds_without_a_handler_are_left_alone(engine: Engine) -> None:
    [job_id] = queue(engine, kind="other.kind")
    assert Worker(engine, [Recorder()], poll_seconds=0.01, lease_seconds=30).run_once() == 0
    assert state(engine, job_id) == ("pending", 0, None)


def test_a_commit_that_queued_a_job_wakes_the_worker(engine: Engine) -> None:
    Worker(engine, [Recorder()], poll_seconds=0.01, lease_seconds=30)  # watches commits
    jobs.WAKE.clear()
    with engine.begin() as conn:
        conn.execute(select(1))
    assert not jobs.WAKE.is_set()  # a transaction that queued nothing
    queue(engine)
    assert jobs.WAKE.is_set()


class Gate(Recorder):
    """Holds the run of the job with payload {"slow": True} until `release` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.started = threading.Event()
        self.release = threading.Event()

    def run(self, job: ClaimedJob) -> Outcome:
        if job.payload.get("slow"):
            self.started.set()
            # Bounded, so a failing test cannot hang the run on a pool thread.
            self.release.wait(10)
        return super().run(job)


def queue_payloads(engine: Engine, *payloads: dict[str, Any]) -> list[int]:
    with engine.begin() as conn:
        return [enqueue(conn, Recorder.kind, payload) for payload in payloads]


def eventually(check: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll until `check` holds: the deadline is for a broken worker, a working one is fast."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def running_jobs(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).where(Job.state == RUNNING)).scalar_one()


@pytest.fixture
def gated(engine: Engine) -> Iterator[tuple[Gate, Worker]]:
    """A started worker with two slots and a poll far longer than any test: everything it
    does promptly is driven by wakes (a commit that queued a job, a job ending, stop())."""
    handler = Gate()
    worker = Worker(engine, [handler], poll_seconds=60, lease_seconds=30, concurrency=2)
    worker.start()
    yield handler, worker
    handler.release.set()
    worker.stop()
    # Every job's thread is done before the next test: none of them sets WAKE under it.
    worker.pool.shutdown(wait=True)


def test_a_slow_job_does_not_hold_up_the_others(engine: Engine, gated: tuple[Gate, Worker]) -> None:
    handler, _ = gated
    [slow] = queue_payloads(engine, {"slow": True})
    assert handler.started.wait(5)
    quick = queue_payloads(engine, *({"n": i} for i in range(6)))
    # All six pass through the one other slot while the slow job holds its own.
    assert eventually(lambda: all(state(engine, i)[0] == "done" for i in quick))
    assert state(engine, slow)[0] == "running"
    handler.release.set()
    assert eventually(lambda: state(engine, slow)[0] == "done")


def test_stop_returns_at_once_when_idle(gated: tuple[Gate, Worker]) -> None:
    _, worker = gated
    time.sleep(0.05)  # into its wait, with a minute to go
    start = time.monotonic()
    worker.stop()
    assert time.monotonic() - start < 2
    assert worker.thread is not None
    assert not worker.thread.is_alive()


def test_stop_waits_for_a_job_in_flight(engine: Engine, gated: tuple[Gate, Worker]) -> None:
    handler, worker = gated
    [slow] = queue_payloads(engine, {"slow": True})
    assert handler.started.wait(5)
    threading.Timer(0.1, handler.release.set).start()
    start = time.monotonic()
    worker.stop()
    assert time.monotonic() - start < 2
    assert state(engine, slow)[0] == "done"  # it ended, and was recorded, before stop returned


def test_stop_gives_up_on_a_stuck_job_which_still_finishes(
    engine: Engine, gated: tuple[Gate, Worker]
) -> None:
    handler, worker = gated
    [slow] = queue_payloads(engine, {"slow": True})
    assert handler.started.wait(5)
    start = time.monotonic()
    worker.stop(timeout=0.2)
    assert time.monotonic() - start < 2
    assert worker.thread is not None
    assert not worker.thread.is_alive()
    assert state(engine, slow)[0] == "running"
    handler.release.set()
    assert eventually(lambda: state(engine, slow)[0] == "done")


def test_a_worker_never_leases_more_jobs_than_it_runs(engine: Engine) -> None:
    concurrency = 3

    class Counter(Recorder):
        """Counts the jobs running at once, here and (leased) in the database."""

        def __init__(self) -> None:
            super().__init__()
            self.now = self.peak = self.peak_leased = 0

        def run(self, job: ClaimedJob) -> Outcome:
            with self.lock:
                self.now += 1
                self.peak = max(self.peak, self.now)
            leased = running_jobs(engine)
            time.sleep(0.01)  # long enough for the others to start beside it
            with self.lock:
                self.peak_leased = max(self.peak_leased, leased)
                self.now -= 1
            return super().run(job)

    handler = Counter()
    worker = Worker(engine, [handler], poll_seconds=60, lease_seconds=30, concurrency=concurrency)
    ids = queue(engine, 15)
    worker.start()
    try:
        peak_seen = 0

        def all_done() -> bool:
            nonlocal peak_seen
            peak_seen = max(peak_seen, running_jobs(engine))
            return all(state(engine, i)[0] == "done" for i in ids)

        assert eventually(all_done)
    finally:
        worker.stop()
        worker.pool.shutdown(wait=True)
    assert len(handler.ran) == 15
    assert 1 < handler.peak <= concurrency  # it did run jobs side by side
    assert handler.peak_leased <= concurrency
    assert peak_seen <= concurrency


def test_a_named_lease_has_one_holder(engine: Engine) -> None:
    ttl = timedelta(minutes=1)
    with engine.begin() as conn:
        assert acquire_lease(conn, "inbox", holder="a", ttl=ttl)
        assert not acquire_lease(conn, "inbox", holder="b", ttl=ttl)
        assert acquire_lease(conn, "inbox", holder="a", ttl=ttl)  # renewal
        assert acquire_lease(conn, "other", holder="b", ttl=ttl)
        release_lease(conn, "inbox", holder="b")  # not b's to give up
        assert not acquire_lease(conn, "inbox", holder="b", ttl=ttl)
        release_lease(conn, "inbox", holder="a")
        assert acquire_lease(conn, "inbox", holder="b", ttl=ttl)


def test_an_expired_lease_passes_to_the_next_worker(engine: Engine) -> None:
    with engine.begin() as conn:
        assert acquire_lease(conn, "inbox", holder="a", ttl=timedelta(0))
        assert acquire_lease(conn, "inbox", holder="b", ttl=timedelta(minutes=1))
        assert not acquire_lease(conn, "inbox", holder="a", ttl=timedelta(minutes=1))


def test_racing_workers_never_both_hold_a_lease(engine: Engine) -> None:
    won: list[str] = []
    barrier = threading.Barrier(6)

    def race(holder: str) -> None:
        barrier.wait()
        with engine.begin() as conn:
            if acquire_lease(conn, "race", holder=holder, ttl=timedelta(minutes=1)):
                won.append(holder)

    threads = [threading.Thread(target=race, args=(f"h{i}",)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(won) == 1


class Slow(Recorder):
    """Runs for `seconds`, far longer than its worker's lease."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds

    def run(self, job: ClaimedJob) -> Outcome:
        time.sleep(self.seconds)
        return super().run(job)


def test_a_long_job_keeps_its_lease_while_its_worker_lives(engine: Engine) -> None:
    """The worker renews the leases of the jobs it runs (an import can outlast many leases),
    so no other worker takes one over and runs it a second time while the first still runs."""
    handler = Slow(seconds=2.0)
    [job_id] = queue(engine)
    worker = Worker(engine, [handler], poll_seconds=0.02, lease_seconds=0.6)
    worker.start()
    try:
        deadline = time.monotonic() + 5
        while state(engine, job_id)[0] != RUNNING and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(1.2)  # two leases' worth: without renewal the job would be claimable
        thief = jobs.claim(
            engine, kinds=[Recorder.kind], owner="thief", lease=timedelta(minutes=1), limit=1
        )
        assert thief == []
    finally:
        worker.stop(timeout=5)
    assert [job.id for job in handler.ran] == [job_id]
    assert state(engine, job_id)[0] == "done"
