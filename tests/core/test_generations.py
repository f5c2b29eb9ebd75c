"""The generation reader behind the cache: every commit, from anywhere, is seen by the next
read; on SQLite an unchanged database is not read again (the WAL-index watch)."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from wharf.core.data import generations
from wharf.core.data.db import create_db_engine
from wharf.core.data.generations import GenerationReader, WalWatch

BUMP = "UPDATE cache_generations SET n = n + 1 WHERE name = 'crm'"


@pytest.fixture
def db(database_url: str) -> Iterator[Engine]:
    engine = create_db_engine(database_url)
    yield engine
    engine.dispose()


def bump_elsewhere(database_url: str) -> None:
    """A commit from another process, as another worker or the CLI would make it."""
    code = (
        "import sys; from sqlalchemy import text; from wharf.core.data.db import create_db_engine\n"
        "engine = create_db_engine(sys.argv[1])\n"
        f"with engine.begin() as conn: conn.execute(text({BUMP!r}))\n"
    )
    subprocess.run([sys.executable, "-c", code, database_url], check=True, timeout=60)


def test_a_commit_from_another_process_is_seen_by_the_next_read(
    db: Engine, database_url: str
) -> None:
    reader = GenerationReader(db)
    before = [reader.read()["crm"] for _ in range(3)]  # the watch is set up by now
    assert len(set(before)) == 1
    bump_elsewhere(database_url)
    assert reader.read()["crm"] == before[0] + 1
    bump_elsewhere(database_url)
    assert reader.read()["crm"] == before[0] + 2
    reader.close()


def test_a_commit_from_this_process_is_seen_by_the_next_read(db: Engine) -> None:
    reader = GenerationReader(db)
    start = [reader.read()["crm"] for _ in range(3)][-1]
    for n in range(1, 20):
        with db.begin() as conn:
            conn.execute(text(BUMP))
        assert reader.read()["crm"] == start + n
    reader.close()


def sqlite_only(database_url: str) -> None:
    if not database_url.startswith("sqlite"):
        pytest.skip("the WAL-index watch is SQLite's")


def test_an_unchanged_database_is_not_read_again(db: Engine, database_url: str) -> None:
    sqlite_only(database_url)
    reader = GenerationReader(db)
    first = [reader.read() for _ in range(2)][-1]
    statements: list[str] = []
    reader.conn.set_trace_callback(statements.append)
    assert all(reader.read() is first for _ in range(100))
    assert statements == []
    with db.begin() as conn:
        conn.execute(text(BUMP))
    assert reader.read()["crm"] == first["crm"] + 1
    assert len(statements) == 1


def test_commits_after_the_wal_restarts_are_seen(db: Engine, database_url: str) -> None:
    # A checkpoint empties the WAL and the next writer starts it again from the top: the
    # header changes all the same (new salts, a new frame count, iChange goes on counting).
    sqlite_only(database_url)
    reader = GenerationReader(db)
    start = [reader.read()["crm"] for _ in range(3)][-1]
    for n in range(1, 6):
        with db.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        bump_elsewhere(database_url)
        assert reader.read()["crm"] == start + n


def test_a_header_being_written_reads_the_table() -> None:
    # The two copies differ while a writer is between them: no mark, so no shortcut.
    torn = bytearray(WalWatch.HEADER)
    torn[0] = 1
    watch = WalWatch(torn)  # type: ignore[arg-type]  # any buffer reads like the map
    assert watch.mark() is None
    assert WalWatch(bytearray(WalWatch.HEADER)).mark() == bytes(WalWatch.HEADER)  # type: ignore[arg-type]


def test_no_watch_without_a_wal_file() -> None:
    assert WalWatch.open("/nonexistent/wharf.db") is None


def test_no_watch_where_sqlite_keeps_the_index_in_private_memory(tmp_path: Path) -> None:
    # With exclusive locking the WAL index lives in heap memory; a leftover -shm file must not
    # be taken for it (it would never change, and the cache would never see a commit).
    path = tmp_path / "x.db"
    with closing(sqlite3.connect(path)) as shared:
        shared.execute("PRAGMA journal_mode=WAL")
        shared.execute("CREATE TABLE t (n)")
        assert WalWatch.for_connection(shared) is not None
    with closing(sqlite3.connect(path)) as private:
        private.execute("PRAGMA locking_mode=EXCLUSIVE")
        private.execute("PRAGMA journal_mode=WAL")
        assert WalWatch.for_connection(private) is None
    with closing(sqlite3.connect(":memory:")) as memory:
        assert WalWatch.for_connection(memory) is None


def test_concurrent_requests_share_reads_and_each_sees_every_earlier_commit(
    db: Engine,
) -> None:
    """`current`, as the cache's hit path calls it from the event loop: requests arriving
    while a read runs share the next one (fewer reads than requests on PostgreSQL), and every
    answer holds every commit that returned before its request asked."""
    reader = GenerationReader(db)
    reads = 0
    plain_read = reader.read

    def counted() -> dict[str, int]:
        nonlocal reads
        reads += 1
        return plain_read()

    reader.read = counted  # type: ignore[method-assign]

    async def request(committed: int) -> None:
        assert (await reader.current())["crm"] >= committed

    async def main() -> None:
        start = (await reader.current())["crm"]
        for n in range(1, 11):
            with db.begin() as conn:  # a commit returns, then 20 requests arrive at once
                conn.execute(text(BUMP))
            await asyncio.gather(*(request(start + n) for _ in range(20)))

    asyncio.run(main())
    reader.close()
    if db.dialect.name == "postgresql":
        assert reads <= 1 + 10 * 2  # shared: the 20 of a round need one read, at most two
    else:
        assert reads == 1 + 10 * 20  # SQLite reads in place (mostly from memory)


def test_a_stuck_shared_read_times_out_and_the_next_read_is_fresh(
    db: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A shared read stuck on a stalled connection bounds its waiters (they then look up on
    their own), and once it returns the reader serves fresh reads again."""
    if db.dialect.name != "postgresql":
        pytest.skip("only PostgreSQL's reads run on the reader's thread")
    monkeypatch.setattr(generations, "SHARED_READ_TIMEOUT", 0.2)
    reader = GenerationReader(db)
    release = threading.Event()
    plain_read = reader.read

    def stuck() -> dict[str, int]:
        release.wait(5)
        return plain_read()

    async def main() -> None:
        reader.read = stuck  # type: ignore[method-assign]
        with pytest.raises(TimeoutError):
            await reader.current()
        reader.read = plain_read  # type: ignore[method-assign]
        release.set()
        with db.begin() as conn:
            before = conn.execute(text("SELECT n FROM cache_generations WHERE name = 'crm'"))
            committed = int(before.scalar_one()) + 1
            conn.execute(text(BUMP))
        assert (await reader.current())["crm"] == committed

    asyncio.run(main())
    reader.close()
