"""Collection queries: equality, range and null-test filters, search and ordering over a
`Resource`, one page at a time with the total.

Building a SQLAlchemy statement costs more than running these indexed queries, so statements
are built once per query *shape* (which filters, searching or not, which ordering) with bound
parameters for the values, and kept in a bounded LRU: user-chosen orderings cannot grow it.

On a database server a page and its total come from one statement (`count(*) OVER ()`
beside each row): one round trip, not two, which made a list query about 30% cheaper on
PostgreSQL (bench/RESULTS.md). Only a page past the end, which has no row to carry the total,
asks for the count on its own. SQLite runs in process, where a second statement costs no round
trip and the window's extra work made it slower, so there the count stays a statement of its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from sqlalchemy import BindParameter, Connection, Select, bindparam, func, or_, select

from wharf.core.data.crud import Resource
from wharf.core.data.pagination import Page, order_by

_TOTAL = "wharf_total"  # the window count's label: no column of ours is called that


def like_pattern(text: str) -> str:
    """A LIKE pattern that matches `text` literally anywhere (`%` and `_` escaped)."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


@lru_cache(maxsize=512)
def _statements(
    res: Resource,
    names: tuple[str, ...],
    ranged: tuple[str, ...],
    searching: bool,
    ordering: str | None,
    nulls: tuple[tuple[str, bool], ...] = (),
) -> tuple[Select[Any], Select[Any], Select[Any]]:
    """The shape's count, its page, and its page with the total as a last column."""
    table_columns = res.model.__table__.c
    where = [table_columns[name] == bindparam(f"eq_{name}") for name in names]
    # A null test is part of the shape, not a parameter: `IS NULL` takes no bound value.
    where += [
        table_columns[n].is_(None) if null else table_columns[n].is_not(None) for n, null in nulls
    ]
    for name in ranged:
        column = table_columns[name]
        # Typed, so a datetime bound is stored-format on SQLite as the column's values are.
        low = bindparam(f"lo_{name}", type_=column.type)
        high = bindparam(f"hi_{name}", type_=column.type)
        where.append(column.between(low, high))
    if searching:
        pattern: BindParameter[str] = bindparam("search")
        where.append(or_(*(col.ilike(pattern, escape="\\") for col in res.search)))
    order = order_by(ordering, res.ordering, tiebreak=res.id)
    count = select(func.count()).select_from(res.model).where(*where)
    rows = (
        select(*res.columns)
        .where(*where)
        .order_by(*order)
        .limit(bindparam("limit"))
        .offset(bindparam("offset"))
    )
    return count, rows, rows.add_columns(func.count().over().label(_TOTAL))


def page(
    conn: Connection,
    res: Resource,
    *,
    equals: Mapping[str, Any],
    search: str | None,
    ordering: str | None,
    page: Page,
    ranges: Mapping[str, tuple[Any, Any]] | None = None,
    null: Mapping[str, bool] | None = None,
) -> tuple[list[dict[str, Any]], int]:
    """One page of the rows whose columns equal `equals`, fall within `ranges` (inclusive
    low and high, by column), are NULL or not as `null` says (column: is null) and match
    `search`, and their total."""
    names = tuple(sorted(equals))
    ranged = tuple(sorted(ranges or {}))
    nulls = tuple(sorted((null or {}).items()))
    count, rows, counted_rows = _statements(res, names, ranged, bool(search), ordering, nulls)
    params: dict[str, Any] = {f"eq_{name}": equals[name] for name in names}
    for name in ranged:
        params[f"lo_{name}"], params[f"hi_{name}"] = (ranges or {})[name]
    if search:
        params["search"] = like_pattern(search)
    window = {**params, "limit": page.limit, "offset": page.offset}
    if conn.dialect.name == "sqlite":
        total: int = conn.execute(count, params).scalar_one()
        if total == 0 or page.offset >= total:
            return [], total
        result = conn.execute(rows, window)
        keys = tuple(result.keys())
        return [dict(zip(keys, row, strict=True)) for row in result.all()], total
    result = conn.execute(counted_rows, window)
    keys = tuple(result.keys())[:-1]  # the last column is the total
    found = result.all()
    if not found:  # no rows, or a page past the end: only a count can say how many there are
        total = 0 if page.offset == 0 else conn.execute(count, params).scalar_one()
        return [], total
    return [dict(zip(keys, row[:-1], strict=True)) for row in found], found[0][-1]
