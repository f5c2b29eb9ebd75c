"""Writing readings in bulk, with their hourly and daily rollups in the same transaction.

This module is the only writer of `factory_readings`. The `factories` cache generation is
bumped by triggers on the factories and rollup tables, and on PostgreSQL on the readings too
(one bump per statement). SQLite has no trigger there (a row trigger would cost an UPDATE per
reading): its readings are append-only (an UPDATE is refused), and a write of readings that
left the rollups alone would leave stale answers in the cache: `store` always writes both.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import cache

import orjson
from sqlalchemy import Connection, TextClause, text

from wharf.core.data.db import utcnow
from wharf.factories.models import DAY, HOUR

MAX_TIME = 253_402_300_799  # 9999-12-31T23:59:59Z, the last second ISO 8601 can name
# Per reading: the sums of a day (86,400 readings at most) and of any realistic history stay
# far inside BIGINT, so no rollup can overflow on either database.
MAX_PRODUCTION = 2**31 - 1
MAX_BATCH = 10_000

Row = tuple[int, int, int]  # time, actual, goal

# A batch's sums per hour and per day are added in Python (10,000 readings: ~3 ms) and sent
# as a handful of rows: grouping 10,000-element arrays in SQL cost PostgreSQL 60 ms a batch.
_DELTAS = {
    "sqlite": (
        "SELECT value ->> 0 AS start, value ->> 1 AS n, value ->> 2 AS actual, "
        "value ->> 3 AS goal FROM json_each(:sums)"
    ),
    "postgresql": (
        "SELECT * FROM unnest(CAST(:starts AS BIGINT[]), CAST(:counts AS BIGINT[]), "
        "CAST(:actuals AS BIGINT[]), CAST(:goals AS BIGINT[])) AS d(start, n, actual, goal)"
    ),
}

# SQL assembled from this module's constants only (tables, sources); values are bound.


@cache
def _upsert(dialect: str, table: str) -> TextClause:
    # `WHERE true`: SQLite needs it to parse ON CONFLICT after an INSERT ... SELECT.
    return text(
        f"INSERT INTO {table} (factory_id, start, readings, actual, goal) "  # noqa: S608
        f"SELECT :factory_id, start, n, actual, goal FROM ({_DELTAS[dialect]}) AS d "
        "WHERE true ON CONFLICT (factory_id, start) DO UPDATE SET "
        f"readings = {table}.readings + excluded.readings, "
        f"actual = {table}.actual + excluded.actual, "
        f"goal = {table}.goal + excluded.goal"
    )


_SQLITE_INSERT = text(
    # The batch travels as one JSON array of [time, actual, goal]: one bound parameter, parsed
    # by SQLite itself (the sales ingest measured this at a fifth of an executemany's cost).
    "INSERT INTO factory_readings (factory_id, time, actual, goal) "
    "SELECT :factory_id, value ->> 0, value ->> 1, value ->> 2 FROM json_each(:rows)"
)
_BUMP = text("UPDATE factories SET version = version + 1, updated_at = :now WHERE id = :factory_id")
Sums = dict[int, list[int]]  # start -> [readings, actual, goal]


def _sums(rows: Iterable[tuple[int, int, int, int]], width: int) -> Sums:
    """(time, count, actual, goal) rows summed per `width`-second period."""
    sums: Sums = {}
    for time, n, actual, goal in rows:
        start = time - time % width
        found = sums.get(start)
        if found is None:
            sums[start] = [n, actual, goal]
        else:
            found[0] += n
            found[1] += actual
            found[2] += goal
    return sums


def _delta_params(dialect: str, factory_id: int, sums: Sums) -> dict[str, object]:
    if dialect == "postgresql":
        starts = list(sums)
        counts, actuals, goals = ([s[i] for s in sums.values()] for i in range(3))
        return {
            "factory_id": factory_id,
            "starts": starts,
            "counts": counts,
            "actuals": actuals,
            "goals": goals,
        }
    flat = [[start, *values] for start, values in sums.items()]
    return {"factory_id": factory_id, "sums": orjson.dumps(flat).decode()}


def store(conn: Connection, factory_id: int, rows: Sequence[Row], *, bump: bool = True) -> None:
    """Insert `rows` (times new to the factory, checked by the caller) and add them to the
    rollups, in the caller's transaction. `bump` raises the factory's version: its
    representation shows its readings, so its ETag must change with them."""
    if not rows:
        return
    dialect = conn.dialect.name
    if dialect == "postgresql":
        _copy(conn, factory_id, rows)
    else:
        conn.execute(
            _SQLITE_INSERT, {"factory_id": factory_id, "rows": orjson.dumps(rows).decode()}
        )
    hourly = _sums(((t, 1, a, g) for t, a, g in rows), HOUR)
    daily = _sums(((start, n, a, g) for start, (n, a, g) in hourly.items()), DAY)
    for table, sums in (("factory_rollups_hourly", hourly), ("factory_rollups_daily", daily)):
        conn.execute(_upsert(dialect, table), _delta_params(dialect, factory_id, sums))
    if bump:
        conn.execute(_BUMP, {"now": utcnow(), "factory_id": factory_id})


def _copy(conn: Connection, factory_id: int, rows: Sequence[Row]) -> None:
    # COPY: for the same 10,000 rows (a full batch) into a table keyed the same way, text
    # COPY took 15 ms, one INSERT ... SELECT FROM unnest() of three arrays 46 ms, and
    # psycopg's executemany (pipelined) 149 ms. Into factory_readings itself PostgreSQL also
    # checks the foreign key once per row, whichever way the rows come: ~55 ms more a batch.
    raw = conn.connection.driver_connection
    cursor = raw.cursor()  # type: ignore[union-attr]
    statement = "COPY factory_readings (factory_id, time, actual, goal) FROM STDIN"
    with cursor, cursor.copy(statement) as copy:
        for time, actual, goal in rows:
            copy.write_row((factory_id, time, actual, goal))


_SQLITE_EXISTING = text(
    # CROSS JOIN fixes the order: each time of the batch probes the primary key, instead of
    # the factory's readings being scanned against an unindexed json_each.
    "SELECT r.time, r.actual, r.goal FROM json_each(:times) AS j "
    "CROSS JOIN factory_readings AS r "
    "WHERE r.factory_id = :factory_id AND r.time = j.value ORDER BY r.time"
)
_PG_EXISTING = text(
    "SELECT time, actual, goal FROM factory_readings "
    "WHERE factory_id = :factory_id AND time = ANY(CAST(:times AS BIGINT[])) ORDER BY time"
)
_EXTENT = text(
    "SELECT (SELECT min(time) FROM factory_readings WHERE factory_id = :factory_id), "
    "(SELECT max(time) FROM factory_readings WHERE factory_id = :factory_id)"
)


def extent(conn: Connection, factory_id: int) -> tuple[int | None, int | None]:
    """The first and last time of the factory's readings (two primary-key seeks)."""
    first, last = conn.execute(_EXTENT, {"factory_id": factory_id}).one()
    return first, last


def existing(conn: Connection, factory_id: int, times: Sequence[int]) -> list[Row]:
    """The stored readings at any of `times`, by time."""
    if not times:
        return []
    first, last = extent(conn, factory_id)
    # The usual append lies wholly after the last reading: two seeks say so, no probe needed.
    if first is None or last is None or min(times) > last or max(times) < first:
        return []
    if conn.dialect.name == "postgresql":
        found = conn.execute(_PG_EXISTING, {"factory_id": factory_id, "times": list(times)})
    else:
        found = conn.execute(
            _SQLITE_EXISTING, {"factory_id": factory_id, "times": orjson.dumps(times).decode()}
        )
    return [(int(t), int(a), int(g)) for t, a, g in found]


# ORDER BY: written in time order, a factory's rollups lie on the pages in the order the
# chart reads them. PostgreSQL's hash aggregate scattered them: the last 30 days' 720 hourly
# rows sat on 73 of the table's 74 pages, read by a bitmap scan and sorted again.
_REBUILD = (
    text("DELETE FROM factory_rollups_hourly WHERE factory_id = :factory_id"),
    text("DELETE FROM factory_rollups_daily WHERE factory_id = :factory_id"),
    text(
        "INSERT INTO factory_rollups_hourly (factory_id, start, readings, actual, goal) "  # noqa: S608
        f"SELECT factory_id, time - time % {HOUR}, count(*), sum(actual), sum(goal) "
        "FROM factory_readings WHERE factory_id = :factory_id "
        f"GROUP BY factory_id, time - time % {HOUR} ORDER BY 2"
    ),
    text(
        "INSERT INTO factory_rollups_daily (factory_id, start, readings, actual, goal) "  # noqa: S608
        f"SELECT factory_id, start - start % {DAY}, sum(readings), sum(actual), sum(goal) "
        "FROM factory_rollups_hourly WHERE factory_id = :factory_id "
        f"GROUP BY factory_id, start - start % {DAY} ORDER BY 2"
    ),
)


def rebuild_rollups(conn: Connection, factory_id: int) -> None:
    """Recompute a factory's rollups from its readings, for a bulk load that wrote readings
    straight in SQL (the demo); the caller's transaction keeps them consistent."""
    for statement in _REBUILD:
        conn.execute(statement, {"factory_id": factory_id})
