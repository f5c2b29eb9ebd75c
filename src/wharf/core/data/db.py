"""Engine, metadata and the request-scoped connection.

Services work on a SQLAlchemy Core `Connection`, not ORM sessions: the hot read paths select
columns and serialize rows straight to JSON, which the architecture notes measured as the
difference between ~300 and ~2,000 requests per second.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, cast

from fastapi import Depends, Request
from sqlalchemy import Connection, Engine, Executable, MetaData, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import DeclarativeBase

from wharf.core.config import Settings

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def utcnow() -> datetime:
    return datetime.now(UTC)


def sqlalchemy_url(url: str) -> str:
    """Map the user's plain URL onto the driver Wharf ships with (psycopg 3 for PostgreSQL)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


# Dependencies here are `async def` and the database is used synchronously on the event loop, so
# a pool checkout must never wait: a waiting checkout would block the loop that the holders need
# to finish. Overflow is therefore unbounded; what really bounds open connections per worker is
# the threadpool (40 threads) that the few awaiting endpoints (password hashing) use.
_POOL = {"max_overflow": -1, "pool_timeout": 5}


def plain_rows(
    conn: Connection, statement: Executable, params: Mapping[str, Any]
) -> list[tuple[Any, ...]]:
    """Every row of `statement` as the driver returns it: plain tuples, no type processing.

    For hot statements that return many rows of plain ints or text. SQLAlchemy builds a `Row`
    for each row it hands out (about 0.35 us each here); at chart-data's 720 rows that was a
    fifth of the request (bench/RESULTS.md, 2026-12-03). The statement is still compiled,
    cached and logged by SQLAlchemy: only the rows skip it, through the DBAPI cursor that
    `CursorResult.cursor` exposes (SQLAlchemy's own large-result-set example does the same).
    """
    result = conn.execute(statement, params)
    try:
        return cast(list[tuple[Any, ...]], result.cursor.fetchall())
    finally:
        result.close()


def engine_for(settings: Settings) -> Engine:
    return create_db_engine(settings.database_url, pool_size=settings.database_pool_size)


def create_db_engine(url: str, *, pool_size: int = 10) -> Engine:
    sa_url = make_url(sqlalchemy_url(url))
    if sa_url.get_backend_name() != "sqlite":
        return create_engine(
            sa_url,
            pool_size=pool_size,
            # No pre-ping: it is a round trip on every request. A connection the server
            # dropped fails its request with 503 (see core.handlers) and SQLAlchemy then
            # replaces the whole pool, so the next request reconnects.
            pool_recycle=3600,
            **_POOL,
            connect_args={"options": "-c timezone=UTC"},
        )
    if sa_url.database:
        Path(sa_url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        sa_url,
        pool_size=pool_size,
        **_POOL,
        # Writers queue for the lock instead of failing at once under concurrent requests.
        connect_args={"timeout": 15, "check_same_thread": False},
    )
    event.listen(engine, "connect", _sqlite_on_connect)
    event.listen(engine, "begin", _sqlite_on_begin)
    return engine


def _sqlite_on_connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
    # pysqlite's own transaction handling issues BEGIN lazily and never IMMEDIATE; take it over
    # (SQLAlchemy's documented recipe) so writes can lock up front and never hit a stale snapshot.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=FULL")
    cur.close()


def _sqlite_on_begin(conn: Connection) -> None:
    write = conn.get_execution_options().get("wharf_write", False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


@contextmanager
def writing(engine: Engine) -> Iterator[Connection]:
    """A transaction that writes, for commands and jobs. On SQLite it begins IMMEDIATE, so it
    waits its turn behind another writer (a job worker in a running server, say) where a
    read that turns into a write would fail at once with "database is locked"."""
    with engine.connect() as conn:
        conn.execution_options(wharf_write=True)
        with conn.begin():
            yield conn


async def get_db(request: Request) -> AsyncIterator[Connection]:
    """One connection and one transaction per request, committed when the endpoint returns.

    Deliberately synchronous inside `async def`: a threadpool hop per request costs more than
    the indexed queries themselves; throughput scales with `--workers`.

    A read on PostgreSQL runs in autocommit: under its READ COMMITTED every statement takes
    its own snapshot inside a transaction too, so BEGIN and COMMIT would buy a read nothing
    and cost it two of its four round trips. GET handlers only read; what they read is the
    same either way.
    """
    engine: Engine = request.app.state.engine
    with engine.connect() as conn:
        if request.method not in SAFE_METHODS:
            conn.execution_options(wharf_write=True)
        elif not is_sqlite(engine):
            conn.execution_options(isolation_level="AUTOCOMMIT")
        with conn.begin():
            yield conn


# scope="function": commit runs before the response is sent, so a failed commit is reported.
Db = Annotated[Connection, Depends(get_db, scope="function")]
