"""`load_types`, the factories loader's writer of sprocket types: the seed's three identical
rows become one type, a second load adds nothing, and it writes in the caller's transaction."""

from __future__ import annotations

from sqlalchemy import Engine, func, select
from starlette.testclient import TestClient

from wharf.sprockets.models import SprocketType
from wharf.sprockets.service import load_types

# The seed's seed_sprocket_types.json: three identical rows.
SEED_ROWS = [{"teeth": 5, "pitch_diameter": 5, "outside_diameter": 6, "pitch": 1}] * 3


def count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(SprocketType)).scalar_one())


def test_the_seed_twice(engine: Engine) -> None:
    with engine.begin() as conn:
        first = load_types(conn, list(SEED_ROWS))
    with engine.begin() as conn:
        second = load_types(conn, list(SEED_ROWS))

    assert first == {"created": 1, "unchanged": 0, "duplicates": 2}
    assert second == {"created": 0, "unchanged": 1, "duplicates": 2}
    assert count(engine) == 1


def test_a_mixed_batch(engine: Engine) -> None:
    a = {"teeth": 1, "pitch_diameter": 2, "outside_diameter": 3, "pitch": 4}
    b = {"teeth": 1, "pitch_diameter": 2, "outside_diameter": 3, "pitch": 5}
    c = {"teeth": 9, "pitch_diameter": 2, "outside_diameter": 3, "pitch": 4}
    with engine.begin() as conn:
        load_types(conn, [a])

    with engine.begin() as conn:
        report = load_types(conn, [b, a, c, b, a, b])

    assert report == {"created": 2, "unchanged": 1, "duplicates": 3}
    with engine.connect() as conn:
        stored = conn.execute(
            select(SprocketType.teeth, SprocketType.pitch, SprocketType.version).order_by(
                SprocketType.id
            )
        ).all()
    assert [tuple(r) for r in stored] == [(1, 4, 1), (1, 5, 1), (9, 4, 1)]


def test_an_empty_batch(engine: Engine) -> None:
    with engine.begin() as conn:
        assert load_types(conn, []) == {"created": 0, "unchanged": 0, "duplicates": 0}


def test_it_writes_in_the_callers_transaction(engine: Engine) -> None:
    with engine.connect() as conn, conn.begin() as transaction:
        assert load_types(conn, list(SEED_ROWS))["created"] == 1
        transaction.rollback()

    assert count(engine) == 0


def test_loaded_types_are_served_and_guarded(engine: Engine, client: TestClient) -> None:
    with engine.begin() as conn:
        load_types(conn, list(SEED_ROWS))

    page = client.get("/api/v1/sprockets").json()
    assert page["total"] == 1
    assert page["items"][0]["version"] == 1
    duplicate = client.post("/api/v1/sprockets", json=SEED_ROWS[0])
    assert duplicate.status_code == 409
    assert duplicate.json()["existing_id"] == page["items"][0]["id"]
