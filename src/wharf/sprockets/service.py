"""Rules and queries for sprocket types: a type is its four dimensions, so no two share them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.dialects import postgresql, sqlite

from wharf.core.data import crud, listing
from wharf.core.data.db import utcnow
from wharf.core.data.pagination import Page
from wharf.core.errors import Conflict
from wharf.core.http.concurrency import Precondition
from wharf.sprockets.models import DIMENSIONS, SprocketType

SPROCKETS = crud.Resource(
    SprocketType,
    "Sprocket type",
    "/api/v1/sprockets",
    (
        SprocketType.id,
        SprocketType.teeth,
        SprocketType.pitch_diameter,
        SprocketType.outside_diameter,
        SprocketType.pitch,
        SprocketType.version,
        SprocketType.created_at,
        SprocketType.updated_at,
    ),
    ordering={
        "id": SprocketType.id,
        "teeth": SprocketType.teeth,
        "pitch_diameter": SprocketType.pitch_diameter,
        "outside_diameter": SprocketType.outside_diameter,
        "pitch": SprocketType.pitch,
        "created_at": SprocketType.created_at,
        "updated_at": SprocketType.updated_at,
    },
)

Rows = tuple[list[dict[str, Any]], int]
Dimensions = tuple[int, int, int, int]


def list_sprockets(
    conn: Connection,
    *,
    equals: Mapping[str, int],
    ranges: Mapping[str, tuple[int, int]],
    ordering: str | None,
    page: Page,
) -> Rows:
    return listing.page(
        conn, SPROCKETS, equals=equals, ranges=ranges, search=None, ordering=ordering, page=page
    )


def get_sprocket(conn: Connection, *, sprocket_id: int) -> dict[str, Any]:
    return crud.fetch(conn, SPROCKETS, sprocket_id)


def _dimensions(values: Mapping[str, Any]) -> Dimensions:
    teeth, pitch_diameter, outside_diameter, pitch = (int(values[d]) for d in DIMENSIONS)
    return teeth, pitch_diameter, outside_diameter, pitch


def _unique(conn: Connection, dims: Dimensions, *, other_than: int | None = None) -> None:
    """409 naming the type that already has these dimensions, if one does (the unique key
    alone would only say that some row does)."""
    query = select(SprocketType.id).where(
        *(
            getattr(SprocketType, name) == value
            for name, value in zip(DIMENSIONS, dims, strict=True)
        )
    )
    if other_than is not None:
        query = query.where(SprocketType.id != other_than)
    existing = conn.execute(query).scalar()
    if existing is not None:
        described = ", ".join(
            f"{name} {value}" for name, value in zip(DIMENSIONS, dims, strict=True)
        )
        raise Conflict(
            f"Sprocket type {existing} already has these dimensions ({described}): "
            f"{SPROCKETS.path}/{existing}. Use it, or change it instead.",
            extra={"existing_id": existing},
        )


def create_sprocket(conn: Connection, *, values: dict[str, Any]) -> dict[str, Any]:
    dims = _dimensions(values)
    return crud.create_unique(
        conn, SPROCKETS, values, key=DIMENSIONS, refuse=lambda: _unique(conn, dims)
    )


def change_sprocket(
    conn: Connection, *, sprocket_id: int, values: dict[str, Any], expected: Precondition
) -> dict[str, Any]:
    """A PUT's or a PATCH's values. A missing type is 404 and a stale version 412/409 before
    the dimensions are checked against the others (RFC 9110 13.2.1), as in the CRM."""
    if values:
        current = crud.fetch(conn, SPROCKETS, sprocket_id)
        if current["version"] != expected.version:
            raise expected.stale(current["version"], f"{SPROCKETS.label} {sprocket_id}")
        _unique(conn, _dimensions({**current, **values}), other_than=sprocket_id)
    return crud.change(conn, SPROCKETS, sprocket_id, values, expected)


def delete_sprocket(conn: Connection, *, sprocket_id: int, expected: Precondition | None) -> None:
    crud.remove(conn, SPROCKETS, sprocket_id, expected)


def load_types(conn: Connection, rows: list[dict[str, int]]) -> dict[str, int]:
    """Write the loader's sprocket types, already validated, in the caller's transaction.

    A row equal to a stored type is `unchanged`, a row repeating an earlier one of the same
    batch a `duplicate`. The insert skips what exists (ON CONFLICT DO NOTHING on the unique
    key, not a read first), so a loader racing another still counts each type once, and
    RETURNING counts what was created: psycopg's rowcount would include skipped rows.
    """
    batch = list(dict.fromkeys(_dimensions(row) for row in rows))
    created = 0
    if batch:
        now = utcnow()
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        statement = (
            dialect.insert(SprocketType)
            .on_conflict_do_nothing(index_elements=list(DIMENSIONS))
            .returning(SprocketType.id)
        )
        params = [
            {
                **dict(zip(DIMENSIONS, dims, strict=True)),
                "version": 1,
                "created_at": now,
                "updated_at": now,
            }
            for dims in batch
        ]
        created = len(conn.execute(statement, params).all())
    return {
        "created": created,
        "unchanged": len(batch) - created,
        "duplicates": len(rows) - len(batch),
    }
