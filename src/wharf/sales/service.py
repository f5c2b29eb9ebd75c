"""Sales queries, and the one transaction that records an ingested file."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import orjson
from sqlalchemy import Connection, Date, bindparam, delete, func, insert, select, text, update

from wharf.core.data import crud, listing
from wharf.core.data.db import utcnow
from wharf.core.data.pagination import Page
from wharf.core.errors import InvalidInput, NotFound
from wharf.sales.errors import DayTaken
from wharf.sales.lines import Counted
from wharf.sales.models import SalesDaily, SalesFile

MAX_DAYS = 3660
FILE_COLUMNS = tuple(
    getattr(SalesFile, name)
    for name in (
        "id", "day", "name", "sha256", "bytes", "lines", "transactions", "units", "products",
        "bad_lines", "bad_line_sample", "engine", "seconds", "ingested_at", "replaced_at",
    )
)  # fmt: skip
FILES = crud.Resource(
    SalesFile,
    "Sales file",
    "/api/v1/sales/files",
    FILE_COLUMNS,
    ordering={"id": SalesFile.id, "day": SalesFile.day, "ingested_at": SalesFile.ingested_at},
)
_SQLITE_COUNTS = text(
    "INSERT INTO sales_daily (product_id, day, units) "
    "SELECT CAST(key AS INTEGER), :day, value FROM json_each(:counts)"
)


@dataclass(frozen=True)
class Recorded:
    file: dict[str, Any]
    created: bool  # False: this very file was already ingested for the day


# The ledger


def current_file(conn: Connection, day: date) -> dict[str, Any] | None:
    row = conn.execute(
        select(*FILE_COLUMNS).where(SalesFile.day == day, SalesFile.replaced_at.is_(None))
    ).first()
    return None if row is None else dict(row._mapping)


def file_with_sha(conn: Connection, sha256: str) -> dict[str, Any] | None:
    """The current file with these bytes, whichever day it counts for."""
    row = conn.execute(
        select(*FILE_COLUMNS).where(SalesFile.sha256 == sha256, SalesFile.replaced_at.is_(None))
    ).first()
    return None if row is None else dict(row._mapping)


def check_new(conn: Connection, *, day: date, sha256: str, replace: bool) -> dict[str, Any] | None:
    """The ledger row when this file is already ingested for `day` (nothing to do); None when
    it may go ahead. Refuses a file already counted for another day, and a second file for a
    day unless `replace`."""
    same = file_with_sha(conn, sha256)
    if same is not None:
        if same["day"] == day:
            return same
        raise DayTaken(
            f"This file (sha256 {sha256[:12]}…) is already ingested for {same['day']}; "
            f"counting it for {day} too would count its sales twice.",
            extra={"file_id": same["id"], "day": same["day"].isoformat()},
        )
    current = current_file(conn, day)
    if current is not None and not replace:
        raise DayTaken(
            f"{day} already has a file ({current['name']}, sha256 {current['sha256'][:12]}…, "
            "ingested " + current["ingested_at"].isoformat(timespec="seconds") + "). Send "
            "replace=true (or --replace) to replace that day's counts with this file's.",
            extra={"file_id": current["id"], "day": day.isoformat()},
        )
    return None


def record(
    conn: Connection,
    *,
    day: date,
    name: str,
    sha256: str,
    size: int,
    counted: Counted,
    seconds: float,
    replace: bool,
) -> Recorded:
    """Replace `day`'s counts with `counted` and add its ledger row, in the caller's one
    transaction (on SQLite a write transaction from its start: BEGIN IMMEDIATE)."""
    if conn.dialect.name == "postgresql":
        # Two ingests of one day serialize here; the second then sees the first's ledger row.
        conn.execute(select(func.pg_advisory_xact_lock(0x5A1E5, _day_key(day))))
    existing = check_new(conn, day=day, sha256=sha256, replace=replace)
    if existing is not None:
        return Recorded(existing, created=False)
    now = utcnow()
    conn.execute(
        update(SalesFile)
        .where(SalesFile.day == day, SalesFile.replaced_at.is_(None))
        .values(replaced_at=now)
    )
    conn.execute(delete(SalesDaily).where(SalesDaily.day == day))
    _insert_counts(conn, day, counted.counts)
    file_id = conn.execute(
        insert(SalesFile)
        .values(
            day=day,
            name=name[:255],
            sha256=sha256,
            bytes=size,
            lines=counted.lines,
            transactions=counted.transactions,
            units=counted.units,
            products=len(counted.counts),
            bad_lines=counted.bad_lines,
            bad_line_sample=[{"line": b.line, "reason": b.reason} for b in counted.sample],
            engine=counted.engine,
            seconds=round(seconds, 3),
            ingested_at=now,
        )
        .returning(SalesFile.id)
    ).scalar_one()
    return Recorded(get_file(conn, file_id=file_id), created=True)


def _insert_counts(conn: Connection, day: date, counts: dict[int, int]) -> None:
    """A day's counts, in bulk, in the caller's transaction."""
    if conn.dialect.name == "postgresql":
        # COPY: row-at-a-time INSERTs ran at ~500 rows/s here (150,000 took minutes).
        raw = conn.connection.driver_connection
        cursor = raw.cursor()  # type: ignore[union-attr]
        with cursor, cursor.copy("COPY sales_daily (product_id, day, units) FROM STDIN") as copy:
            for product, units in counts.items():
                copy.write_row((product, day, units))
        return
    # SQLite: one statement over a JSON object of product -> units. An executemany through
    # SQLAlchemy spent ~1 s building parameters for 50,000 rows; this takes a fifth of that.
    conn.execute(
        _SQLITE_COUNTS,
        {
            "day": day.isoformat(),
            "counts": orjson.dumps(counts, option=orjson.OPT_NON_STR_KEYS).decode(),
        },
    )


def _day_key(day: date) -> int:
    return day.toordinal()


def get_file(conn: Connection, *, file_id: int) -> dict[str, Any]:
    row = conn.execute(select(*FILE_COLUMNS).where(SalesFile.id == file_id)).first()
    if row is None:
        raise NotFound(f"There is no sales file {file_id}.")
    return dict(row._mapping)


def list_files(
    conn: Connection,
    *,
    day: date | None,
    current: bool | None,
    ordering: str | None,
    page: Page,
) -> tuple[list[dict[str, Any]], int]:
    """The ledger; a day's current file is the one not replaced (`replaced_at IS NULL`)."""
    equals: dict[str, Any] = {} if day is None else {"day": day}
    null = None if current is None else {"replaced_at": current}
    return listing.page(
        conn, FILES, equals=equals, search=None, ordering=ordering, page=page, null=null
    )


def ingested_days(conn: Connection, *, page: Page) -> tuple[list[dict[str, Any]], int]:
    """The days with counts, newest first, each with its current file and any it replaced."""
    total = conn.execute(select(func.count(func.distinct(SalesFile.day)))).scalar_one()
    days = (
        conn.execute(
            select(SalesFile.day)
            .group_by(SalesFile.day)
            .order_by(SalesFile.day.desc())
            .limit(page.limit)
            .offset(page.offset)
        )
        .scalars()
        .all()
    )
    if not days:
        return [], total
    files: dict[date, list[dict[str, Any]]] = {day: [] for day in days}
    for row in conn.execute(
        select(*FILE_COLUMNS).where(SalesFile.day.in_(days)).order_by(SalesFile.id.desc())
    ):
        files[row.day].append(dict(row._mapping))
    items = []
    for day in days:
        current = next((f for f in files[day] if f["replaced_at"] is None), None)
        items.append(
            {
                "date": day,
                "units": current["units"] if current else 0,
                "transactions": current["transactions"] if current else 0,
                "products": current["products"] if current else 0,
                "files": files[day],
            }
        )
    return items, total


# The questions


# The questions' statements, built once: building one costs more than running it (these are
# primary-key and partial-index lookups).
_LATEST = select(func.max(SalesFile.day)).where(SalesFile.replaced_at.is_(None))
_PRODUCT_DAYS = select(SalesDaily.day, SalesDaily.units).where(
    SalesDaily.product_id == bindparam("product_id"),
    SalesDaily.day.between(bindparam("start", type_=Date), bindparam("end", type_=Date)),
)
_ANY_FILE = (
    select(SalesFile.id)
    .where(
        SalesFile.day.between(bindparam("start", type_=Date), bindparam("end", type_=Date)),
        SalesFile.replaced_at.is_(None),
    )
    .limit(1)
)
_PRODUCT_DAY = select(SalesDaily.units).where(
    SalesDaily.product_id == bindparam("product_id"),
    SalesDaily.day == bindparam("day", type_=Date),
)


def latest_day(conn: Connection) -> date | None:
    day: date | None = conn.execute(_LATEST).scalar()
    return day


def window(
    conn: Connection, *, days: int | None, start: date | None, end: date | None
) -> tuple[date, date] | None:
    """The inclusive window a query covers: `start`..`end`, or the `days` days ending at
    `end` (by default the latest day ingested). None when nothing is ingested and no `end`
    was given."""
    if start is not None and days is not None and end is not None:
        raise InvalidInput(
            "Give the window as days (ending at to, or starting at from) or as from and to, "
            "not all three.",
            loc=["query", "days"],
        )
    if start is not None and days is not None:
        end = start + timedelta(days=days - 1)
    if end is None:
        end = latest_day(conn)
        if end is None:
            return None
    if start is None:
        start = end - timedelta(days=(days or 7) - 1)
    if start > end:
        raise InvalidInput(f"from ({start}) is after to ({end}).", loc=["query", "from"])
    if (end - start).days + 1 > MAX_DAYS:
        raise InvalidInput(
            f"The window spans {(end - start).days + 1} days; at most {MAX_DAYS} are allowed.",
            loc=["query", "from"],
        )
    return start, end


def product_sales(
    conn: Connection, *, product_id: int, start: date, end: date
) -> list[dict[str, Any]]:
    """Units per day of one product over start..end, missing days filled with 0."""
    params = {"product_id": product_id, "start": start, "end": end}
    found = dict(conn.execute(_PRODUCT_DAYS, params).all())
    length = (end - start).days + 1
    return [
        {"date": day, "units": int(found.get(day, 0))}
        for day in (start + timedelta(days=n) for n in range(length))
    ]


def has_data(conn: Connection, *, start: date, end: date) -> bool:
    return conn.execute(_ANY_FILE, {"start": start, "end": end}).first() is not None


def product_day(conn: Connection, *, product_id: int, day: date) -> int:
    units = conn.execute(_PRODUCT_DAY, {"product_id": product_id, "day": day}).scalar()
    return int(units or 0)


def top_products(conn: Connection, *, start: date, end: date, limit: int) -> list[dict[str, Any]]:
    """The best sellers over start..end; ties go by product id."""
    units = func.sum(SalesDaily.units).label("units")
    rows = conn.execute(
        select(SalesDaily.product_id, units)
        .where(SalesDaily.day.between(start, end))
        .group_by(SalesDaily.product_id)
        .order_by(units.desc(), SalesDaily.product_id)
        .limit(limit)
    )
    return [{"product_id": r.product_id, "units": int(r.units)} for r in rows]


NO_DATA = "No sales have been ingested yet: the counts are zeros."
NO_DATA_IN_WINDOW = "No sales file covers this window: the counts are zeros."


def product_window(
    conn: Connection, *, product_id: int, days: int | None, start: date | None, end: date | None
) -> dict[str, Any]:
    """The seed's question, for the window `window` resolves."""
    span = window(conn, days=days, start=start, end=end)
    if span is None:
        return {
            "product_id": product_id, "from": None, "to": None, "days": days or 7, "total": 0,
            "by_day": [], "note": NO_DATA,
        }  # fmt: skip
    by_day = product_sales(conn, product_id=product_id, start=span[0], end=span[1])
    answer: dict[str, Any] = {
        "product_id": product_id,
        "from": span[0],
        "to": span[1],
        "days": len(by_day),
        "total": sum(d["units"] for d in by_day),
        "by_day": by_day,
    }
    # A window that ends at the latest day ingested holds that day's file by construction.
    ends_at_latest = end is None and (start is None or days is None)
    if not ends_at_latest and not has_data(conn, start=span[0], end=span[1]):
        answer["note"] = NO_DATA_IN_WINDOW
    return answer


def top_window(
    conn: Connection, *, days: int | None, start: date | None, end: date | None, limit: int
) -> dict[str, Any]:
    span = window(conn, days=days, start=start, end=end)
    if span is None:
        return {"from": None, "to": None, "days": days or 7, "items": [], "note": NO_DATA}
    answer: dict[str, Any] = {
        "from": span[0],
        "to": span[1],
        "days": (span[1] - span[0]).days + 1,
        "items": top_products(conn, start=span[0], end=span[1], limit=limit),
    }
    if not answer["items"] and not has_data(conn, start=span[0], end=span[1]):
        answer["note"] = NO_DATA_IN_WINDOW
    return answer
