"""Chart data: a factory's readings over a window, raw or summed into buckets, in SQL.

The window is half-open, `[from, to)`, in Unix seconds. A bucket's `time` is its start,
aligned to UTC: minutes, hours and days on multiples of their length since the epoch, weeks
on Mondays 00:00 UTC. A bucket that the window cuts (an unaligned `from` or `to`) keeps its
aligned start but sums only the readings inside the window, as InfluxDB and TimescaleDB's
`time_bucket` over a WHERE range do: the answer is always the plain sum, per bucket, of the
readings in the window.

Each bucket is answered from the coarsest source that divides it (daily rollups for 1d and
1w, hourly ones for 1h and 6h, raw readings for the minute buckets), and the window's edges
that such a source does not cover whole come from the next finer one: a year at 1d reads
about 365 daily rows, a few dozen hourly ones and at most two hours of raw readings.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal, cast

from sqlalchemy import Connection, TextClause, text

from wharf.core.data.db import plain_rows
from wharf.core.errors import InvalidInput
from wharf.factories.models import DAY, HOUR

Bucket = Literal["1m", "5m", "15m", "1h", "6h", "1d", "1w"]
WEEK = 7 * DAY
BUCKETS: dict[str, int] = {
    "1m": 60,
    "5m": 300,
    "15m": 900,
    "1h": HOUR,
    "6h": 6 * HOUR,
    "1d": DAY,
    "1w": WEEK,
}
# 1970-01-01 was a Thursday: shifting by three days puts the week's start on Monday.
WEEK_SHIFT = 3 * DAY
MAX_POINTS = 10_000
DEFAULT_POINTS = 1_000

# Sources, coarsest first: (seconds each row covers, table, its time column, its count).
_SOURCES = (
    (DAY, "factory_rollups_daily", "start", "sum(readings)"),
    (HOUR, "factory_rollups_hourly", "start", "sum(readings)"),
    (1, "factory_readings", "time", "count(*)"),
)
Segment = tuple[int, int, int]  # source width, low (inclusive), high (exclusive)


def bucket_start(seconds: int, time: int) -> int:
    """The start of the bucket holding `time` (the same arithmetic as the SQL)."""
    if seconds == WEEK:
        return time - (time + WEEK_SHIFT) % WEEK
    return time - time % seconds


def segments(low: int, high: int, widths: tuple[int, ...]) -> list[Segment]:
    """Split `[low, high)` into pieces each answered by one source: the stretch aligned to
    the coarsest width, then the edges by the finer ones; the last width must be 1."""
    if low >= high:
        return []
    width, finer = widths[0], widths[1:]
    if not finer:
        return [(width, low, high)]
    start = -(-low // width) * width
    end = high // width * width
    if start >= end:
        return segments(low, high, finer)
    return [*segments(low, start, finer), (width, start, end), *segments(end, high, finer)]


def _widths(bucket: int) -> tuple[int, ...]:
    return tuple(width for width, *_ in _SOURCES if bucket % width == 0)


def _expression(column: str, bucket: int) -> str:
    if bucket == WEEK:
        return f"{column} - ({column} + {WEEK_SHIFT}) % {WEEK}"
    return f"{column} - {column} % {bucket}"


def _source(width: int) -> tuple[str, str, str]:
    _, table, column, count = next(s for s in _SOURCES if s[0] == width)
    return table, column, count


# The SQL below is assembled from this module's constants only (tables, columns, bucket
# widths); every value a request brings is a bound parameter.


@lru_cache(maxsize=256)
def _bucketed(bucket: int, shape: tuple[int, ...], disjoint: bool) -> TextClause:
    """One statement per bucket and sequence of sources; the bounds are parameters. When no
    bucket spans two pieces (`disjoint`), each piece's rows are final and are only ordered."""
    parts = []
    for n, width in enumerate(shape):
        table, column, _ = _source(width)
        where = f"WHERE factory_id = :factory_id AND {column} >= :lo{n} AND {column} < :hi{n}"
        if width == bucket:  # a rollup row is one bucket already: no grouping to do
            parts.append(f"SELECT {column} AS b, actual AS a, goal AS g FROM {table} {where}")  # noqa: S608
            continue
        expression = _expression(column, bucket)
        # CAST: PostgreSQL sums BIGINT into NUMERIC; both databases then answer plain ints.
        parts.append(
            f"SELECT {expression} AS b, CAST(sum(actual) AS BIGINT) AS a, "  # noqa: S608
            f"CAST(sum(goal) AS BIGINT) AS g FROM {table} {where} GROUP BY {expression}"
        )
    union = " UNION ALL ".join(parts)
    if disjoint:
        return text(f"SELECT b, a, g FROM ({union}) AS pieces ORDER BY b")  # noqa: S608
    return text(
        "SELECT b, CAST(sum(a) AS BIGINT), CAST(sum(g) AS BIGINT) "  # noqa: S608
        f"FROM ({union}) AS pieces GROUP BY b ORDER BY b"
    )


def _aligned(bucket: int, time: int) -> bool:
    return bucket_start(bucket, time) == time


@lru_cache(maxsize=64)
def _counted(shape: tuple[int, ...]) -> TextClause:
    parts = []
    for n, width in enumerate(shape):
        table, column, count = _source(width)
        parts.append(
            f"SELECT {count} AS n FROM {table} WHERE factory_id = :factory_id "  # noqa: S608
            f"AND {column} >= :lo{n} AND {column} < :hi{n}"
        )
    union = " UNION ALL ".join(parts)
    return text(f"SELECT CAST(coalesce(sum(n), 0) AS BIGINT) FROM ({union}) AS pieces")  # noqa: S608


_RAW = text(
    "SELECT time, actual, goal FROM factory_readings "
    "WHERE factory_id = :factory_id AND time >= :lo AND time < :hi ORDER BY time"
)
_WITHIN = text(
    "SELECT (SELECT min(time) FROM factory_readings "
    "WHERE factory_id = :factory_id AND time >= :lo AND time < :hi), "
    "(SELECT max(time) FROM factory_readings "
    "WHERE factory_id = :factory_id AND time >= :lo AND time < :hi)"
)


def _bounds(factory_id: int, pieces: list[Segment]) -> dict[str, int]:
    params = {"factory_id": factory_id}
    for n, (_, low, high) in enumerate(pieces):
        params[f"lo{n}"], params[f"hi{n}"] = low, high
    return params


def count(conn: Connection, factory_id: int, low: int, high: int) -> int:
    """How many readings lie in `[low, high)`, mostly from the rollups' counts."""
    pieces = segments(low, high, (DAY, HOUR, 1))
    if not pieces:
        return 0
    statement = _counted(tuple(w for w, _, _ in pieces))
    return int(conn.execute(statement, _bounds(factory_id, pieces)).scalar_one())


def bucketed(
    conn: Connection, factory_id: int, bucket: int, low: int, high: int
) -> list[tuple[int, int, int]]:
    """(bucket start, actual, goal) for every bucket with readings in `[low, high)`."""
    pieces = segments(low, high, _widths(bucket))
    if not pieces:
        return []
    # Pieces meet only at bucket starts (say, hourly rollups with raw edges, for 1h): then
    # no bucket gathers rows from two pieces.
    disjoint = all(_aligned(bucket, high) for _, _, high in pieces[:-1])
    statement = _bucketed(bucket, tuple(w for w, _, _ in pieces), disjoint)
    # Both drivers give plain ints here (the sums are CAST to BIGINT).
    found = plain_rows(conn, statement, _bounds(factory_id, pieces))
    return cast(list[tuple[int, int, int]], found)


def raw(conn: Connection, factory_id: int, low: int, high: int) -> list[tuple[int, int, int]]:
    params = {"factory_id": factory_id, "lo": low, "hi": high}
    return cast(list[tuple[int, int, int]], plain_rows(conn, _RAW, params))


def span(bucket: int, first: int, last: int) -> int:
    """How many buckets `first`..`last` touches: the most points they can give."""
    return (bucket_start(bucket, last) - bucket_start(bucket, first)) // bucket + 1


@dataclass(frozen=True)
class Window:
    low: int | None  # None: the factory has no readings and the window was not given
    high: int | None


def chart(
    conn: Connection,
    factory_id: int,
    *,
    window: Window,
    bucket: str | None,
    max_points: int,
) -> dict[str, Any]:
    """The chart-data answer. Without `bucket`: the raw readings when at most `max_points`,
    else the smallest bucket whose span over the window's readings fits, else `1w`."""
    low, high = window.low, window.high
    rows: list[tuple[int, int, int]] = []
    chosen = bucket
    if low is not None and high is not None and low < high:
        if bucket is None and count(conn, factory_id, low, high) <= max_points:
            rows = raw(conn, factory_id, low, high)
        elif bucket is not None and span(BUCKETS[bucket], low, high - 1) <= max_points:
            # The window itself fits: no need to find where its readings begin and end.
            rows = bucketed(conn, factory_id, BUCKETS[bucket], low, high)
        else:
            first, last = conn.execute(
                _WITHIN, {"factory_id": factory_id, "lo": low, "hi": high}
            ).one()
            if first is not None:
                chosen = bucket or _fitting(int(first), int(last), max_points)
                seconds = BUCKETS[chosen]
                needed = span(seconds, int(first), int(last))
                if bucket is not None and needed > max_points:
                    raise InvalidInput(
                        f"bucket={bucket} over this window gives up to {needed:,} points, more "
                        f"than max_points ({max_points:,}): choose a coarser bucket or a "
                        f"shorter window, or raise max_points (at most {MAX_POINTS:,}).",
                        loc=["query", "bucket"],
                    )
                rows = bucketed(conn, factory_id, seconds, low, high)
    times, actual, goal = (
        (list(column) for column in zip(*rows, strict=True)) if rows else ([], [], [])
    )
    return {
        "sprocket_production_actual": actual,
        "sprocket_production_goal": goal,
        "time": times,
        "from": low,
        "to": high,
        "bucket": chosen,
        "points": len(rows),
    }


def _fitting(first: int, last: int, max_points: int) -> str:
    for name, seconds in BUCKETS.items():
        if span(seconds, first, last) <= max_points:
            return name
    return "1w"  # the coarsest there is, even when the readings span more weeks than that


def window(start: int | None, end: int | None, extent: tuple[int | None, int | None]) -> Window:
    """The half-open window asked for, defaults filled from the readings' extent: `from` is
    the first reading, `to` one second past the last."""
    if start is not None and end is not None and start >= end:
        raise InvalidInput(f"from ({start}) must come before to ({end}).", loc=["query", "from"])
    first, last = extent
    low = start if start is not None else first
    high = end if end is not None else (None if last is None else last + 1)
    if low is not None and high is not None and high < low:
        # One end given, the other defaulted past it: an empty window at the given end.
        if start is None:
            low = high
        else:
            high = low
    return Window(low, high)
