"""The background-work mechanism: leased jobs and named leases, on both databases."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import timedelta

import pytest
from sqlalchemy import Connection, Engine, select, update

from wharf.core.db import create_db_engine
from wharf.core.work import ClaimedJob, Outcome, Worker, acquire_lease, enqueue, jobs, release_lease
from wharf.core.work.models import Job


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
        self.lock = threading.Lock()

    def run(self, job: ClaimedJob) -> Outcome:
        with self.lock:
            self.ran.append(job)
            return self.outcomes.pop(0) if self.outcomes else Outcome("done")

    def record(self, conn: Connection, job: ClaimedJob, outcome: Outcome, state: str) -> None:
        with self.lock:
            self.recorded.append(state)


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
    # The dead worker's late result is refused: the job is no longer its.
    with engine.begin() as conn:
        assert not jobs.finish(conn, dead[0], owner="dead", state="failed", error="x", due_at=None)
    assert state(engine, job_id) == ("done", 2, None)


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
