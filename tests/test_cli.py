"""The `wharf` command line: migrate, demo, users, tokens and serve's schema check."""

from __future__ import annotations

import re
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from starlette.testclient import TestClient
from typer.testing import CliRunner, Result

from wharf.accounts.models import User
from wharf.app import create_app
from wharf.cli import app
from wharf.core.config import Settings
from wharf.core.data.db import create_db_engine
from wharf.crm.models import Company, Customer

runner = CliRunner()
PASSWORD = "correct horse battery"


@pytest.fixture
def db_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh, unmigrated SQLite file; the working directory is the test's, so var/ lands there."""
    url = f"sqlite:///{tmp_path / 'wharf.db'}"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WHARF_DATABASE_URL", url)
    monkeypatch.delenv("WHARF_VAR_DIR", raising=False)
    return url


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = create_db_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def migrated(db_url: str) -> str:
    ok(invoke("migrate"))
    return db_url


@pytest.fixture
def api(migrated: str, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(_env_file=None, database_url=migrated, var_dir=tmp_path / "var")
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


def invoke(*args: str) -> Result:
    return runner.invoke(app, list(args))


def create_user(email: str, *extra: str, password: str = PASSWORD) -> Result:
    name = email.split("@")[0].title()
    return invoke(
        "users", "create", "--email", email, "--name", name, "--password", password, *extra
    )


def ok(result: Result) -> Result:
    assert result.exit_code == 0, (result.exit_code, result.output, result.exception)
    return result


def authenticates(api: TestClient, token: str) -> bool:
    resp = api.get("/api/v1/companies", headers={"Authorization": f"Bearer {token}"})
    return resp.status_code == 200


def counts(engine: Engine) -> tuple[int, int]:
    with engine.connect() as conn:
        companies = conn.execute(select(func.count()).select_from(Company)).scalar_one()
        customers = conn.execute(select(func.count()).select_from(Customer)).scalar_one()
    return companies, customers


def user_role(engine: Engine, email: str) -> str | None:
    with engine.connect() as conn:
        return conn.execute(select(User.role).where(User.email == email)).scalar()


# migrate


def test_migrate_creates_the_schema_and_can_run_again(db_url: str, engine: Engine) -> None:
    first = ok(invoke("migrate"))
    assert "up to date" in first.output
    assert counts(engine) == (0, 0)  # the tables exist
    ok(invoke("migrate"))
    assert counts(engine) == (0, 0)


# demo


def test_demo_loads_once_and_prints_a_working_token(
    api: TestClient, engine: Engine, tmp_path: Path
) -> None:
    first = ok(invoke("demo"))
    assert "Demo data loaded." in first.output
    assert counts(engine) == (5, 1000)
    found = re.search(r"export TOKEN=(\S+)", first.output)
    assert found, first.output
    token = found.group(1)
    resp = api.get("/api/v1/companies", headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["total"] == 5

    password_file = tmp_path / "var" / "demo-admin-password"
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
    password = password_file.read_text().strip()
    # Issue 11: `make run` prints the demo admin's login for the dashboard.
    assert f"log in as admin@wharf.local, password {password}" in first.output
    login = api.post(
        "/api/v1/auth/token", data={"username": "admin@wharf.local", "password": password}
    )
    assert login.status_code == 200, login.text

    second = ok(invoke("demo"))
    assert "already present" in second.output
    assert counts(engine) == (5, 1000)
    again = re.search(r"export TOKEN=(\S+)", second.output)
    assert again
    assert authenticates(api, again.group(1))
    assert authenticates(api, token)  # the first run's token still works
    # The admin was not recreated, so the password on file is still the one that logs in.
    assert password_file.read_text().strip() == password
    with engine.connect() as conn:
        admins = conn.execute(
            select(func.count()).select_from(User).where(User.email == "admin@wharf.local")
        ).scalar_one()
    assert admins == 1


# users


def test_users_create(migrated: str, engine: Engine) -> None:
    result = ok(create_user("ann@example.com"))
    assert "ann@example.com" in result.output
    assert user_role(engine, "ann@example.com") == "user"

    ok(create_user("Root@Example.com", "--admin"))
    assert user_role(engine, "root@example.com") == "admin"  # emails are stored lower-case


def test_users_create_refuses_a_duplicate_email(migrated: str, engine: Engine) -> None:
    ok(create_user("ann@example.com"))
    dup = create_user("ann@example.com")
    assert dup.exit_code != 0
    assert "already exists" in dup.output
    assert "Traceback" not in dup.output
    upper = create_user("ANN@example.com")
    assert upper.exit_code != 0
    assert "already exists" in upper.output
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(User)).scalar_one() == 1


def test_users_create_rejects_a_short_password(migrated: str, engine: Engine) -> None:
    result = create_user("bob@example.com", password="short")
    assert result.exit_code != 0
    assert "at least 8 characters" in result.output
    assert user_role(engine, "bob@example.com") is None


# tokens


def test_tokens_create_prints_a_token_that_authenticates(api: TestClient) -> None:
    ok(create_user("cy@example.com"))
    result = ok(invoke("tokens", "create", "--email", "cy@example.com"))
    token = result.output.strip().splitlines()[-1]
    assert token.startswith("wharf_")
    assert authenticates(api, token)
    assert not authenticates(api, token + "x")


def test_tokens_create_for_an_unknown_email_fails(migrated: str) -> None:
    result = invoke("tokens", "create", "--email", "nobody@example.com")
    assert result.exit_code != 0
    assert "No user with email nobody@example.com" in result.output


def test_tokens_create_refuses_scopes_beyond_the_role(migrated: str) -> None:
    ok(create_user("di@example.com"))
    result = invoke("tokens", "create", "--email", "di@example.com", "--scopes", "read admin")
    assert result.exit_code != 0
    assert "may hold only" in result.output


# serve


def test_serve_refuses_an_unmigrated_database(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[object] = []
    monkeypatch.setattr("wharf.cli.uvicorn.run", lambda *a, **kw: started.append((a, kw)))
    result = invoke("serve", "--port", "1")
    assert result.exit_code != 0
    assert "wharf migrate" in result.output
    assert not started, "uvicorn was started on an unmigrated database"


def test_serve_starts_uvicorn_on_a_migrated_database(
    migrated: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[dict[str, object]] = []
    monkeypatch.setattr("wharf.cli.uvicorn.run", lambda *a, **kw: started.append(kw))
    ok(invoke("serve", "--port", "8123", "--workers", "2"))
    assert len(started) == 1
    assert started[0]["port"] == 8123
    assert started[0]["workers"] == 2
    assert started[0]["host"] == "127.0.0.1"


# python -m wharf


def test_python_dash_m_wharf_help(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "wharf", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    for command in ("serve", "migrate", "demo", "users", "tokens"):
        assert command in result.stdout
