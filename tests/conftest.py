"""Fixtures: every test gets a clean, migrated database, on SQLite and (when configured) on
PostgreSQL, and talks to the real ASGI app."""

from __future__ import annotations

import base64
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from fastapi import FastAPI
from sqlalchemy import Engine, create_engine, make_url, text
from sqlalchemy.exc import OperationalError
from starlette.testclient import TestClient

from wharf.accounts import service as accounts
from wharf.app import create_app
from wharf.core.config import Settings
from wharf.core.data.db import create_db_engine
from wharf.core.data.generations import TABLE as GENERATIONS
from wharf.core.data.migrate import upgrade
from wharf.core.security import ROLE_SCOPES
from wharf.models import Base

PG_URL = os.environ.get("WHARF_TEST_DATABASE_URL")
# One key-encryption key for the run (a fresh one each run; tests that rotate make their own).
TEST_KEYS = f"ktest:{base64.b64encode(secrets.token_bytes(32)).decode()}"
# Every app a test builds, and every server it starts, needs a key to start at all; tests of
# what happens without one remove it.
os.environ.setdefault("WHARF_KEY_ENCRYPTION_KEYS", TEST_KEYS)
# Set by .ci/run: a configured but unreachable service fails the run instead of skipping.
REQUIRE_SERVICES = os.environ.get("WHARF_TEST_REQUIRE_SERVICES") == "1"

UserFactory = Callable[..., tuple[int, str]]


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Migrate once; each test copies the file, which is much faster than migrating again."""
    path = tmp_path_factory.mktemp("template") / "wharf.db"
    engine = create_db_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()
    return path


def _worker_database(url: str) -> str:
    """The database of this pytest-xdist worker: `<name>_gw0`, `<name>_gw1`, ... beside the
    configured one, created when missing, so workers never truncate each other's tables.
    Without xdist, the configured database itself."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not worker:
        return url
    base = make_url(url)
    name = f"{base.database}_{worker}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            found = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name})
            if found.first() is None:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    return base.set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def pg_url() -> str:
    if not PG_URL:
        pytest.skip("PostgreSQL suite skipped: WHARF_TEST_DATABASE_URL is not set")
    try:
        url = _worker_database(PG_URL)
        engine = create_db_engine(url)
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    except OperationalError as exc:
        message = f"PostgreSQL at {PG_URL} is unreachable: {exc}"
        if REQUIRE_SERVICES:
            pytest.fail(message)
        pytest.skip(message)
    upgrade(engine)
    engine.dispose()
    return url


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The real Redis of WHARF_TEST_REDIS_URL: skipped without it, a failure in CI."""
    url = os.environ.get("WHARF_TEST_REDIS_URL")
    if not url:
        pytest.skip("Redis suite skipped: WHARF_TEST_REDIS_URL is not set")
    import redis

    try:
        redis.Redis.from_url(url, socket_timeout=2).ping()
    except redis.RedisError as exc:
        message = f"Redis at {url} is unreachable: {exc}"
        if REQUIRE_SERVICES:
            pytest.fail(message)
        pytest.skip(message)
    return url


def _truncate_pg(url: str) -> None:
    engine = create_db_engine(url)
    # The generation counters are kept: the cache needs their rows, and their values only grow.
    tables = ", ".join(t.name for t in Base.metadata.sorted_tables if t.name != GENERATIONS)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        db = tmp_path / "wharf.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), db)
        return f"sqlite:///{db}"
    url: str = request.getfixturevalue("pg_url")
    _truncate_pg(url)
    return url


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    # Limits far above what any test sends; tests/core/test_ratelimit.py sets its own.
    return Settings(
        _env_file=None,
        database_url=database_url,
        var_dir=tmp_path / "var",
        rate_limit_api="1000000/minute",
        rate_limit_login="1000000/minute",
        rate_limit_login_address="1000000/minute",
        key_encryption_keys=TEST_KEYS,
        # Tests that deliver webhooks run a worker of their own, or a real `wharf serve`.
        jobs_in_server=False,
    )


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    return create_app(settings)


@pytest.fixture
def engine(app: FastAPI) -> Engine:
    engine: Engine = app.state.engine
    return engine


@pytest.fixture
def make_user(engine: Engine) -> UserFactory:
    """Create a user straight through the service and return (id, bearer token)."""
    counter = iter(range(1, 1_000_000))

    def make(
        *, role: str = "user", scopes: frozenset[str] | None = None, email: str | None = None
    ) -> tuple[int, str]:
        n = next(counter)
        with engine.begin() as conn:
            row = accounts.create_user(
                conn,
                email=email or f"{role}{n}@example.com",
                name=f"{role.title()} {n}",
                password="correct horse battery",
                role=role,
            )
            token = accounts.issue_token(
                conn,
                user_id=row["id"],
                name="test",
                scopes=scopes or ROLE_SCOPES[role],
                lifetime=timedelta(hours=1),
            )
        return row["id"], token

    return make


@pytest.fixture
def anon(app: FastAPI) -> Iterator[TestClient]:
    """A client with no credentials; runs the app's lifespan (the schema check)."""
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def client(anon: TestClient, make_user: UserFactory) -> TestClient:
    """An admin client: every scope."""
    _, token = make_user(role="admin")
    anon.headers["Authorization"] = f"Bearer {token}"
    return anon


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


L = TypeVar("L")


def front_layer(app: FastAPI, kind: type[L]) -> L:
    """The layer of `kind` in front of routing, found by type: tests stay right when a layer is
    added or moved."""
    layer: object = app.front  # type: ignore[attr-defined]
    while not isinstance(layer, kind):
        layer = layer.app  # type: ignore[attr-defined]
    return layer


# Shared by the domains' tests.


@pytest.fixture
def read_only(make_user: UserFactory) -> dict[str, str]:
    """Authorization headers of a token that carries only the `read` scope."""
    _, token = make_user(scopes=frozenset({"read"}))
    return auth(token)


def if_match(version: int) -> dict[str, str]:
    return {"If-Match": f'"{version}"'}


def ids(page: dict[str, Any]) -> list[int]:
    return [item["id"] for item in page["items"]]
