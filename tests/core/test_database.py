"""The database layer against a real server: a dropped connection is a 503, then recovery."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, text
from starlette.testclient import TestClient

from wharf.core.db import create_db_engine


def test_dropped_connections_answer_503_then_recover(
    client: TestClient, engine: Engine, database_url: str
) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("only a database server can drop its clients")
    assert client.get("/api/v1/companies").status_code == 200  # the pool now holds a connection

    killer = create_db_engine(database_url)
    with killer.begin() as conn:
        killed = conn.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ).scalar_one()
    killer.dispose()
    assert killed >= 1

    failed = client.get("/api/v1/companies")
    assert failed.status_code == 503
    assert failed.headers["content-type"] == "application/problem+json"
    assert failed.headers["retry-after"] == "1"
    assert "retry" in failed.json()["detail"]
    # SQLAlchemy replaced the pool on the disconnect: the very next request succeeds.
    assert client.get("/api/v1/companies").status_code == 200
