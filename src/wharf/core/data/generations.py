"""Data generations: a counter per group of tables, bumped by database triggers.

The response cache keys every entry by the generation of the data it was built from. The
triggers bump the counter inside the very transaction that changes the data, so once a write
has committed, every reader sees the new generation and can no longer reach an entry built
before it: correct by construction, on any worker and whatever writes (API, CLI, raw SQL),
and independent of whether the cache backend (Redis) is reachable.
"""

from __future__ import annotations

import asyncio
import contextlib
import mmap
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from sqlalchemy import BigInteger, Engine, String
from sqlalchemy.orm import Mapped, mapped_column

from wharf.core.data.db import Base

TABLE = "cache_generations"


class Generation(Base):
    __tablename__ = TABLE

    name: Mapped[str] = mapped_column(String(50), primary_key=True)
    n: Mapped[int] = mapped_column(BigInteger, default=0)


_PG_FUNCTION = f"""
CREATE OR REPLACE FUNCTION wharf_bump_generation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE {TABLE} SET n = n + 1 WHERE name = TG_ARGV[0];
    RETURN NULL;
END
$$
"""


def _identifier(name: str) -> str:
    # DDL cannot bind parameters; these names come from migrations, and are checked anyway.
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
        raise ValueError(f"not a plain SQL identifier: {name!r}")
    return name


def create_trigger_sql(dialect: str, table: str, group: str) -> list[str]:
    """DDL that bumps `group`'s generation whenever `table` changes (for migrations)."""
    table, group = _identifier(table), _identifier(group)
    if dialect == "postgresql":
        # One bump per statement, TRUNCATE included; the row lock it takes is held to commit,
        # so writers of one group serialize on it (the price of a never-stale cache).
        return [
            _PG_FUNCTION,
            f"CREATE TRIGGER trg_{table}_generation AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE "
            f"ON {table} FOR EACH STATEMENT EXECUTE FUNCTION wharf_bump_generation('{group}')",
        ]
    # SQLite has row triggers only.
    return [
        f"CREATE TRIGGER trg_{table}_generation_{event.lower()} AFTER {event} ON {table} "
        f"BEGIN UPDATE {TABLE} SET n = n + 1 WHERE name = '{group}'; END"
        for event in ("INSERT", "UPDATE", "DELETE")
    ]


def drop_trigger_sql(dialect: str, table: str) -> list[str]:
    table = _identifier(table)
    if dialect == "postgresql":
        return [f"DROP TRIGGER IF EXISTS trg_{table}_generation ON {table}"]
    return [
        f"DROP TRIGGER IF EXISTS trg_{table}_generation_{event}"
        for event in ("insert", "update", "delete")
    ]


_READ = f"SELECT name, n FROM {TABLE}"
SHARED_READ_TIMEOUT = 5.0  # seconds


class GenerationReader:
    """Reads every group's generation for the cache's hit path, on a connection of its own.

    A pool checkout and return cost several times this one-row read, so the reader keeps one
    autocommit DBAPI connection for itself (opened lazily, in the process that uses it; on
    PostgreSQL on the reader's own thread) and replaces it after any error.

    On SQLite the table is read again only after a commit: see `WalWatch`. On PostgreSQL the
    event loop asks through `current`, which shares one round trip among concurrent requests.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.conn: Any = None  # a DBAPI connection (sqlite3 or psycopg)
        self.watch: WalWatch | None = None
        self.last: dict[str, int] | None = None
        # `current` on PostgreSQL: the read the next arrivals will share, whether one runs,
        # and the loop they belong to.
        self._next: asyncio.Future[dict[str, int]] | None = None
        self._running = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._thread: ThreadPoolExecutor | None = None

    async def current(self) -> dict[str, int]:
        """`read`, for the event loop. On SQLite that is `read` itself (mostly one memory read).

        On PostgreSQL it is a round trip, which on the loop would stall every other request
        for its whole length. So it runs on a thread of the reader's own while the loop serves
        on, and it is shared: requests that arrive while a read is under way wait for the next
        one, which all of them share. No request takes a read that began before it arrived, so
        each sees every commit that had returned by then, exactly as with `read`.
        """
        if self.engine.dialect.name != "postgresql":
            return self.read()
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # a new event loop (a test client's, say): start afresh
            self._loop, self._next, self._running = loop, None, False
        if self._next is None:
            self._next = loop.create_future()
        upcoming = self._next
        if not self._running:
            self._running = True
            self._task = loop.create_task(self._share(loop))
        # Shielded: a request that goes away must not cancel the read the others wait for.
        return await asyncio.shield(upcoming)

    async def _share(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._thread is None:
            self._thread = ThreadPoolExecutor(1, thread_name_prefix="wharf-generations")
        try:
            while self._next is not None and self._loop is loop:
                batch, self._next = self._next, None
                try:
                    # Bounded, once per shared read rather than per waiter: a read stuck on a
                    # stalled connection must not hold every request with it. Its waiters get
                    # TimeoutError and look up on their own; the reads queued behind it on the
                    # reader's thread time out alike until it returns.
                    read = loop.run_in_executor(self._thread, self.read)
                    batch.set_result(await asyncio.wait_for(read, SHARED_READ_TIMEOUT))
                except Exception as exc:
                    batch.set_exception(exc)
                    batch.exception()  # marked as seen: its waiters may all have gone
        finally:
            if self._loop is loop:
                self._running = False

    def read(self) -> dict[str, int]:
        """Every group's generation. The dict may be shared between calls: do not change it."""
        watch = self.watch
        mark = watch.mark() if watch is not None else None
        if watch is not None and mark is not None and mark == watch.seen and self.last:
            return self.last
        conn = self.conn or self._connect()
        try:
            cursor = conn.cursor()
            cursor.execute(_READ)
            rows = cursor.fetchall()
            cursor.close()
        except Exception:
            self.close()
            raise
        generations = {str(name): int(n) for name, n in rows}
        if watch is not None:
            # The mark from before the read: a commit racing it makes the next call read again.
            watch.seen, self.last = mark, generations
        elif self.engine.dialect.name == "sqlite":
            self.watch = WalWatch.for_connection(conn)
        return generations

    def _connect(self) -> Any:
        fairy = self.engine.raw_connection()
        conn = fairy.dbapi_connection
        if self.engine.dialect.name == "postgresql":
            # Each read must see the latest commit and hold no transaction open.
            conn.autocommit = True  # type: ignore[union-attr]
        fairy.detach()  # ours for good: the pool opens another in its place
        self.conn = conn
        return conn

    def close(self) -> None:
        self.last = None
        if self.watch is not None:
            self.watch.close()  # before the connection, whose open keeps the file whole
            self.watch = None
        if self.conn is not None:
            with contextlib.suppress(Exception):
                self.conn.close()
            self.conn = None


class WalWatch:
    """Tells, with one memory read, whether any connection has committed to a SQLite database
    in WAL mode since the last look, from this process or any other.

    SQLite keeps a header in the first 96 bytes of the `-shm` file, two copies of 48 bytes,
    that every writer rewrites on every commit (its `iChange` counter goes up by one) before
    the commit returns, and that every reader consults to see commits at all; the layout is
    part of SQLite's documented file format (https://www.sqlite.org/walformat.html, 2.1). A
    commit visible to a reader has therefore changed these bytes. Asking SQLite itself
    (`PRAGMA data_version`) takes file locks, which cost more than the rest of a cache hit.

    The copies are written second-first and read first-first, as SQLite does: when they
    differ a commit is under way, and the caller reads the table (`mark` answers None).
    """

    HEADER = 96

    def __init__(self, shm: mmap.mmap) -> None:
        self.shm = shm
        self.seen: bytes | None = None

    @classmethod
    def for_connection(cls, conn: Any) -> WalWatch | None:
        """A watch on the database of a sqlite3 connection, if it keeps its WAL index in the
        `-shm` file: WAL mode with normal locking (exclusive locking keeps it in private
        memory, and a leftover file would then never change)."""
        mode = str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower()
        locking = str(conn.execute("PRAGMA locking_mode").fetchone()[0]).lower()
        files = {name: file for _, name, file in conn.execute("PRAGMA database_list")}
        if mode != "wal" or locking != "normal" or not files.get("main"):
            return None
        return cls.open(files["main"])  # the absolute path SQLite opened

    @classmethod
    def open(cls, database: str) -> WalWatch | None:
        """A watch on `database`, or None where there is nothing to map (no WAL, in memory)."""
        try:
            with Path(database + "-shm").open("rb") as file:  # the map keeps a descriptor
                return cls(mmap.mmap(file.fileno(), cls.HEADER, access=mmap.ACCESS_READ))
        except (OSError, ValueError):  # missing, too short or not mappable: read every time
            return None

    def mark(self) -> bytes | None:
        header = self.shm[: self.HEADER]
        return header if header[:48] == header[48:] else None

    def close(self) -> None:
        self.shm.close()
