"""The database layer against a real server: a dropped connection is at worst one 503."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from starlette.testclient import TestClient

from tests.conftest import UserFactory
from wharf.app import create_app
from wharf.core.config import Settings
from wharf.core.data.db import create_db_engine, plain_rows


def _drop_every_connection(database_url: str) -> int:
    killer = create_db_engine(database_url)
    with killer.begin() as conn:
        killed = conn.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ).scalar_one()
    killer.dispose()
    return int(killed)


@pytest.mark.parametrize("cache", ["off", "on"])
def test_dropped_connections_cost_at_most_one_503(
    database_url: str, tmp_path: Path, make_user: UserFactory, cache: str
) -> None:
    if not database_url.startswith("postgres"):
        pytest.skip("only a database server can drop its clients")
    settings = Settings(_env_file=None, database_url=database_url, var_dir=tmp_path)
    _, token = make_user(role="admin")
    with TestClient(create_app(settings.model_copy(update={"cache": cache}))) as client:
        client.headers["Authorization"] = f"Bearer {token}"
        # Pooled connections: the second request opens one in the place that the generation
        # reader's own connection left empty in the pool when it was detached from it.
        for _ in range(2):
            assert client.get("/api/v1/companies").status_code == 200
        assert _drop_every_connection(database_url) >= 1

        first = client.get("/api/v1/companies")
        if cache == "off":
            # The request that meets the dead connection is told to retry ...
            assert first.status_code == 503
            assert first.headers["content-type"] == "application/problem+json"
            assert first.headers["retry-after"] == "1"
            assert "retry" in first.json()["detail"]
        else:
            # ... unless the cache layer met it first and discarded it, so the app had a
            # fresh one.
            assert first.status_code in (200, 503), first.text
        # SQLAlchemy replaced the pool on the disconnect: the next request succeeds.
        assert client.get("/api/v1/companies").status_code == 200


def test_plain_rows_are_the_drivers_tuples_in_order_and_the_result_is_closed(
    engine: Engine,
) -> None:
    statement = text(
        "SELECT n, n * 2, 'x' || CAST(n AS TEXT) FROM (SELECT 3 AS n UNION ALL SELECT 1 "
        "UNION ALL SELECT 2) AS t WHERE n >= :low ORDER BY n"
    )
    with engine.connect() as conn:
        rows = plain_rows(conn, statement, {"low": 2})
        assert rows == [(2, 4, "x2"), (3, 6, "x3")]
        assert all(type(row) is tuple and type(row[0]) is int for row in rows)
        assert plain_rows(conn, statement, {"low": 9}) == []
        # The connection is free for the next statement: nothing was left open on it.
        assert conn.execute(text("SELECT 1")).scalar_one() == 1
