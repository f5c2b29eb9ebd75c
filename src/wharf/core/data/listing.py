"""Collection queries: equality, range and null-test filters, search and ordering over a
`Resource`, one page at a time with the total.

Building a SQLAlchemy statement costs more than running these indexed queries, so statements
are built once per query *shape* (which filters, searching or not, which ordering) with bound
parameters for the values, and kept in a bounded LRU: user-chosen orderings cannot grow it.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from sqlalchemy import BindParameter, Connection, Select, bindparam, func, or_, select

from wharf.core.data.crud import Resource
from wharf.core.data.pagination import Page, order_by


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
) -> tuple[Select[Any], Select[Any]]:
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
    return count, rows


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
    count, rows = _statements(res, names, ranged, bool(search), ordering, nulls)
    params: dict[str, Any] = {f"eq_{name}": equals[name] for name in names}
    for name in ranged:
        params[f"lo_{name}"], params[f"hi_{name}"] = (ranges or {})[name]
    if search:
        params["search"] = like_pattern(search)
    total = conn.execute(count, params).scalar_one()
    if total == 0 or page.offset >= total:
        return [], total
    result = conn.execute(rows, {**params, "limit": page.limit, "offset": page.offset})
    keys = tuple(result.keys())
    return [dict(zip(keys, row, strict=True)) for row in result.all()], total
