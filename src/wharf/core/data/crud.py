"""Versioned rows: the insert, fetch, update and delete every domain's resources share.

Every write is one statement guarded by `version = :expected`, so two writers can never both
win, on SQLite or PostgreSQL, and a loser learns the current version instead of a 500.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Connection,
    SQLColumnExpression,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import InstrumentedAttribute

from wharf.core.data.db import Base, utcnow
from wharf.core.errors import Conflict, NotFound
from wharf.core.http.concurrency import Precondition


@dataclass(frozen=True, eq=False)  # hashed by identity: resources are module-level singletons
class Resource:
    """A table exposed over HTTP: its label for messages, its columns, its path, and what its
    collection can be ordered by and searched over."""

    model: type[Base]
    label: str
    path: str
    columns: Sequence[InstrumentedAttribute[Any]]
    ordering: Mapping[str, SQLColumnExpression[Any]] = field(default_factory=dict)
    search: Sequence[SQLColumnExpression[str]] = ()

    @property
    def id(self) -> ColumnElement[int]:
        return cast(ColumnElement[int], self.model.__table__.c.id)

    @property
    def version(self) -> ColumnElement[int]:
        return cast(ColumnElement[int], self.model.__table__.c.version)

    def render(self, base: str, row: dict[str, Any]) -> dict[str, Any]:
        """A row as the API shows it: the same dict, given its absolute `url`."""
        row["url"] = f"{base}{self.path}/{row['id']}"
        return row


def name_free(conn: Connection, res: Resource, name: str, *, other_than: int | None = None) -> None:
    """409 when another row of `res` has this unique `name`: said plainly, before the
    unique index would refuse it."""
    query = select(res.id).where(res.model.__table__.c.name == name)
    if other_than is not None:
        query = query.where(res.id != other_than)
    if conn.execute(query).first() is not None:
        raise Conflict(f"A {res.label.lower()} named {name!r} already exists.")


def _integrity(res: Resource, exc: IntegrityError) -> Conflict:
    # Reached only when a concurrent write slipped past the service's own checks.
    return Conflict(f"The {res.label.lower()} conflicts with data changed concurrently: {exc.orig}")


def fetch(conn: Connection, res: Resource, item_id: int) -> dict[str, Any]:
    row = conn.execute(select(*res.columns).where(res.id == item_id)).mappings().first()
    if row is None:
        raise NotFound(f"No {res.label.lower()} {item_id}.")
    return dict(row)


def exists(conn: Connection, res: Resource, item_id: int) -> bool:
    return conn.execute(select(res.id).where(res.id == item_id)).first() is not None


def create(conn: Connection, res: Resource, values: dict[str, Any]) -> dict[str, Any]:
    now = utcnow()
    try:
        row = (
            conn.execute(
                insert(res.model)
                .values(**values, version=1, created_at=now, updated_at=now)
                .returning(*res.columns)
            )
            .mappings()
            .one()
        )
    except IntegrityError as exc:
        raise _integrity(res, exc) from exc
    return dict(row)


def create_many(
    conn: Connection, res: Resource, rows: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """`create` for many rows (each with the same columns), in the order given. One statement
    batched by the driver, not a round trip a row: an import of 200 cars on PostgreSQL."""
    if not rows:
        return []
    now = utcnow()
    params = [{**values, "version": 1, "created_at": now, "updated_at": now} for values in rows]
    statement = insert(res.model).returning(*res.columns, sort_by_parameter_order=True)
    try:
        return [dict(row) for row in conn.execute(statement, params).mappings()]
    except IntegrityError as exc:
        raise _integrity(res, exc) from exc


def create_unique(
    conn: Connection,
    res: Resource,
    values: dict[str, Any],
    *,
    key: Sequence[str],
    refuse: Callable[[], None],
) -> dict[str, Any]:
    """`create` for a row whose `key` columns are unique: `refuse` raises the 409 that names
    the row already holding them, before the insert and again when a writer that committed
    after that check took them. The insert skips on the key (ON CONFLICT DO NOTHING) rather
    than failing: a failed statement aborts a PostgreSQL transaction, and the lookup that
    names the holder could then not run. (SQLite's writers take turns, so there only the
    first check ever finds it.)"""
    refuse()
    now = utcnow()
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    statement = (
        dialect.insert(res.model)
        .values(**values, version=1, created_at=now, updated_at=now)
        .on_conflict_do_nothing(index_elements=list(key))
        .returning(*res.columns)
    )
    try:
        row = conn.execute(statement).mappings().first()
    except IntegrityError as exc:  # another constraint than the key
        raise _integrity(res, exc) from exc
    if row is None:
        refuse()
        # The holder was deleted again before the second look: still taken when we tried.
        raise Conflict(f"The {res.label.lower()} conflicts with data changed concurrently.")
    return dict(row)


def change(
    conn: Connection,
    res: Resource,
    item_id: int,
    values: dict[str, Any],
    expected: Precondition,
) -> dict[str, Any]:
    """Apply `values` only if the row is still at the expected version; bump the version."""
    if not values:  # an empty PATCH changes nothing, so it must not bump the version either
        current = fetch(conn, res, item_id)
        if current["version"] != expected.version:
            raise expected.stale(current["version"], f"{res.label} {item_id}")
        return current
    try:
        row = (
            conn.execute(
                update(res.model)
                .where(res.id == item_id, res.version == expected.version)
                .values(**values, version=res.version + 1, updated_at=utcnow())
                .returning(*res.columns)
            )
            .mappings()
            .first()
        )
    except IntegrityError as exc:
        raise _integrity(res, exc) from exc
    if row is None:
        current = fetch(conn, res, item_id)  # NotFound if it is gone
        raise expected.stale(current["version"], f"{res.label} {item_id}")
    return dict(row)


def remove(conn: Connection, res: Resource, item_id: int, expected: Precondition | None) -> None:
    where = [res.id == item_id]
    if expected is not None:
        where.append(res.version == expected.version)
    try:
        deleted = conn.execute(delete(res.model).where(*where)).rowcount
    except IntegrityError as exc:
        raise _integrity(res, exc) from exc
    if deleted == 0:
        current = fetch(conn, res, item_id)
        if expected is not None:
            raise expected.stale(current["version"], f"{res.label} {item_id}")
