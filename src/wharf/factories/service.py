"""Rules and queries for factories and their readings."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import BindParameter, Connection, bindparam, func, select

from wharf.core.data import crud, listing
from wharf.core.data.pagination import Page
from wharf.core.errors import Conflict, InvalidInput, NotFound
from wharf.core.http.concurrency import Precondition
from wharf.factories import chart, readings
from wharf.factories.models import DailyRollup, Factory, Reading

FACTORIES = crud.Resource(
    Factory,
    "Factory",
    "/api/v1/factories",
    (Factory.id, Factory.name, Factory.version, Factory.created_at, Factory.updated_at),
    ordering={"id": Factory.id, "name": Factory.name, "created_at": Factory.created_at},
    search=(Factory.name,),
)
Rows = tuple[list[dict[str, Any]], int]
CONFLICTS_NAMED = 20


def _summary_statement() -> Any:
    # Totals from the daily rollups (a year is 365 rows), first and last times from two seeks
    # on the readings' primary key: nothing here reads the readings one by one.
    ids: BindParameter[int] = bindparam("ids", expanding=True)
    totals = (
        select(
            DailyRollup.factory_id,
            func.sum(DailyRollup.readings).label("readings"),
            func.sum(DailyRollup.actual).label("actual"),
            func.sum(DailyRollup.goal).label("goal"),
        )
        .where(DailyRollup.factory_id.in_(ids))
        .group_by(DailyRollup.factory_id)
        .subquery()
    )
    first = select(func.min(Reading.time)).where(Reading.factory_id == Factory.id)
    last = select(func.max(Reading.time)).where(Reading.factory_id == Factory.id)
    return (
        select(
            Factory.id,
            first.scalar_subquery().label("first_time"),
            last.scalar_subquery().label("last_time"),
            totals.c.readings,
            totals.c.actual,
            totals.c.goal,
        )
        .outerjoin(totals, totals.c.factory_id == Factory.id)
        .where(Factory.id.in_(ids))
    )


_SUMMARY = _summary_statement()


def _empty_summary() -> dict[str, Any]:
    return {
        "readings": 0,
        "first_time": None,
        "last_time": None,
        "actual_total": 0,
        "goal_total": 0,
        "attainment": None,
    }


def _with_summaries(conn: Connection, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if not rows:
        return rows
    found = {r.id: r for r in conn.execute(_SUMMARY, {"ids": [row["id"] for row in rows]})}
    for row in rows:
        row.update(_empty_summary())
        summary = found.get(row["id"])
        if summary is None or summary.readings is None:
            continue
        actual, goal = int(summary.actual), int(summary.goal)
        row.update(
            readings=int(summary.readings),
            first_time=summary.first_time,
            last_time=summary.last_time,
            actual_total=actual,
            goal_total=goal,
            attainment=actual / goal if goal else None,
        )
    return rows


def list_factories(
    conn: Connection, *, search: str | None, ordering: str | None, page: Page
) -> Rows:
    rows, total = listing.page(
        conn, FACTORIES, equals={}, search=search, ordering=ordering, page=page
    )
    return _with_summaries(conn, rows), total


def get_factory(conn: Connection, *, factory_id: int) -> dict[str, Any]:
    return _with_summaries(conn, [crud.fetch(conn, FACTORIES, factory_id)])[0]


def factory_detail(conn: Connection, *, factory_id: int) -> dict[str, Any]:
    """The factory, its summary and its chart data under chart-data's defaults."""
    row = get_factory(conn, factory_id=factory_id)
    extent = (row["first_time"], row["last_time"])
    row["chart_data"] = chart.chart(
        conn,
        factory_id,
        window=chart.window(None, None, extent),
        bucket=None,
        max_points=chart.DEFAULT_POINTS,
    )
    return row


def chart_data(
    conn: Connection,
    *,
    factory_id: int,
    start: int | None,
    end: int | None,
    bucket: str | None,
    max_points: int,
) -> dict[str, Any]:
    extent: tuple[int | None, int | None] = (None, None)
    if start is None or end is None:
        extent = readings.extent(conn, factory_id)
    found = chart.chart(
        conn,
        factory_id,
        window=chart.window(start, end, extent),
        bucket=bucket,
        max_points=max_points,
    )
    # Readings belong to a factory that exists: only an empty answer needs the check.
    if found["points"] == 0 and not crud.exists(conn, FACTORIES, factory_id):
        raise NotFound(f"No factory {factory_id}.")
    return found


def find_by_name(conn: Connection, name: str) -> int | None:
    found = conn.execute(select(Factory.id).where(Factory.name == name)).scalar()
    return None if found is None else int(found)


def create_factory(conn: Connection, *, name: str) -> dict[str, Any]:
    row = crud.create_unique(
        conn,
        FACTORIES,
        {"name": name},
        key=("name",),
        refuse=lambda: crud.name_free(conn, FACTORIES, name),
    )
    row.update(_empty_summary())
    return row


def change_factory(
    conn: Connection, *, factory_id: int, values: dict[str, Any], expected: Precondition
) -> dict[str, Any]:
    if "name" in values:
        current = crud.fetch(conn, FACTORIES, factory_id)
        if current["version"] != expected.version:
            raise expected.stale(current["version"], f"Factory {factory_id}")
        crud.name_free(conn, FACTORIES, values["name"], other_than=factory_id)
    row = crud.change(conn, FACTORIES, factory_id, values, expected)
    return _with_summaries(conn, [row])[0]


def delete_factory(conn: Connection, *, factory_id: int, expected: Precondition | None) -> None:
    """Deletes the factory's readings and rollups with it (ON DELETE CASCADE)."""
    crud.remove(conn, FACTORIES, factory_id, expected)


def lock_named(conn: Connection, names: list[str]) -> None:
    """Hold the rows of the factories with these names (those that exist), in id order, so
    that writers taking several factories take them in one order."""
    if names:
        query = select(Factory.id).where(Factory.name.in_(names)).order_by(Factory.id)
        conn.execute(query.with_for_update()).all()


def lock(conn: Connection, factory_id: int) -> None:
    """Hold the factory's row to the end of the transaction (404 if there is none), so two
    writers of one factory's readings take turns: the second then sees the first's times
    instead of failing on the primary key. (SQLite writers already take turns: BEGIN
    IMMEDIATE.)"""
    query = select(Factory.id).where(Factory.id == factory_id).with_for_update()
    if conn.execute(query).first() is None:
        raise NotFound(f"No factory {factory_id}.")


def _repeated(times: Iterable[int]) -> tuple[int, int] | None:
    """The first index whose time an earlier one already had, and that earlier index."""
    seen: dict[int, int] = {}
    for index, time in enumerate(times):
        if time in seen:
            return index, seen[time]
        seen[time] = index
    return None


def taken_times(times: Sequence[int]) -> str:
    shown = ", ".join(str(t) for t in times[:CONFLICTS_NAMED])
    more = f" and {len(times) - CONFLICTS_NAMED:,} more" if len(times) > CONFLICTS_NAMED else ""
    return f"{shown}{more}"


def append_readings(
    conn: Connection, *, factory_id: int, rows: Sequence[readings.Row]
) -> dict[str, Any]:
    """Add readings at times new to the factory; any time already there refuses them all."""
    repeated = _repeated(t for t, _, _ in rows)
    if repeated is not None:
        index, earlier = repeated
        raise InvalidInput(
            f"Item {index} repeats the time {rows[index][0]} of item {earlier}: a factory has "
            "one reading per time.",
            loc=["body", index, "time"],
        )
    lock(conn, factory_id)
    taken = [t for t, _, _ in readings.existing(conn, factory_id, [t for t, _, _ in rows])]
    if taken:
        raise Conflict(
            f"Factory {factory_id} already has readings at {taken_times(taken)}; nothing was "
            "appended. Send only new times.",
            extra={"times": taken[:1000]},
        )
    readings.store(conn, factory_id, rows)
    return {"appended": len(rows), "factory": get_factory(conn, factory_id=factory_id)}
