"""The `wharf` command: serve, migrate, demo data, users and tokens."""

from __future__ import annotations

import os
import secrets
from contextlib import nullcontext
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Final

import typer
import uvicorn
from sqlalchemy import Connection, select

from wharf.accounts import service as accounts
from wharf.accounts.cli import tokens, users
from wharf.accounts.models import User
from wharf.catalog import demo as catalog_demo
from wharf.catalog.cli import cars
from wharf.certificates import demo as certificates_demo
from wharf.cli_keys import keys, webhooks
from wharf.core.config import Settings
from wharf.core.data.db import engine_for, writing
from wharf.core.data.migrate import check_schema, upgrade
from wharf.core.errors import WharfError
from wharf.core.http.exposition import multiprocess_metrics
from wharf.core.keys import Keyring
from wharf.core.logging import server_log_config
from wharf.core.protect.idempotency import purge_expired
from wharf.crm import demo as crm_demo
from wharf.factories import demo as factories_demo
from wharf.factories.cli import factories
from wharf.sales import demo as sales_demo
from wharf.sales.cli import sales

app = typer.Typer(help="Wharf: five business data APIs from one core.", no_args_is_help=True)
app.add_typer(users, name="users")
app.add_typer(tokens, name="tokens")
idempotency = typer.Typer(help="Idempotency keys of POST requests.", no_args_is_help=True)
app.add_typer(idempotency, name="idempotency")
app.add_typer(keys, name="keys")
app.add_typer(webhooks, name="webhooks")
app.add_typer(sales, name="sales")
app.add_typer(factories, name="factories")
app.add_typer(cars, name="cars")

DEMO_ADMIN = "admin@wharf.local"
# Measured (bench/RESULTS.md): under saturation uvloop left about 1% of requests waiting 1-2 s
# while the stdlib loop served the same throughput with a p99 near the median; httptools
# parses HTTP/1.1 in C. The benchmark serves with these same options.
SERVER_LOOP: Final = "asyncio"
SERVER_HTTP: Final = "httptools"


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
) -> None:
    """Serve the API (Swagger UI at /docs)."""
    settings = Settings()
    try:
        check_schema(engine_for(settings))
        Keyring.load(settings)  # refuse to start without a key-encryption key
    except WharfError as exc:
        typer.secho(exc.detail, fg="red", err=True)
        raise typer.Exit(1) from exc
    # Several workers share their metrics through files, so /metrics on any one reports all.
    metrics = (
        multiprocess_metrics(settings.var_dir / "prometheus") if workers > 1 else nullcontext()
    )
    with metrics:
        uvicorn.run(
            "wharf.app:app_from_env",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            loop=SERVER_LOOP,
            http=SERVER_HTTP,
            access_log=False,  # Wharf logs each request itself, as JSON
            log_config=server_log_config(settings.log_level),
            proxy_headers=False,
        )


@app.command()
def migrate() -> None:
    """Bring the database schema up to date."""
    upgrade(engine_for(Settings()))
    typer.echo("Database is up to date.")


@idempotency.command("purge")
def purge_idempotency_keys() -> None:
    """Delete expired idempotency keys (each new key also deletes a few as it goes)."""
    deleted = purge_expired(engine_for(Settings()))
    typer.echo(f"Deleted {deleted} expired idempotency keys.")


@app.command()
def demo() -> None:
    """Load the demo data once, make sure an admin exists, and print how to log in."""
    settings = Settings()
    engine = engine_for(settings)
    password_file = settings.var_dir / "demo-admin-password"
    with writing(engine) as conn:
        loaded = crm_demo.load(conn)
        admin = _ensure_admin(conn, password_file)
        certificates_demo.load(conn, keyring=Keyring.load(settings), owner=admin)
        plants = factories_demo.load(conn)
        token = accounts.issue_token(
            conn,
            user_id=admin,
            name="make run",
            scopes=frozenset({"read", "write", "admin"}),
            lifetime=timedelta(days=1),
        )
    inbox = settings.sales_inbox or settings.var_dir / "sales" / "inbox"
    days = sales_demo.load(engine, inbox)
    catalog = catalog_demo.load(engine, settings, settings.var_dir / "demo" / "cars")
    typer.echo("Demo data loaded." if loaded else "Demo data already present; kept as it is.")
    typer.echo(f"Sales: {days} new daily files ingested from {inbox} (see {inbox / 'done'}).")
    made = plants.report["factories"]["created"] + (1 if plants.demo_readings else 0)
    typer.echo(
        f"Factories: {made} new, {plants.demo_readings:,} demo readings "
        f"({factories_demo.DEMO_NAME})."
    )
    counts = catalog["counts"]
    typer.echo(
        f"Cars: {counts.get('created', 0)} new, {counts.get('images_fetched', 0)} images "
        f"thumbnailed, {counts.get('images_failed', 0) + counts.get('skipped', 0)} rows with "
        f"problems (GET /api/v1/cars/imports/{catalog['id']})."
    )
    password = password_file.read_text().strip() if password_file.exists() else "(see below)"
    # A demo account on the user's own machine: its password is shown here, on the terminal
    # of whoever ran `make run`, and kept in a file readable by them only; never logged.
    typer.echo(
        f"\nDashboard: open http://127.0.0.1:8000/ and log in as {DEMO_ADMIN}, password "
        f"{password}\n(kept in {password_file})."
    )
    typer.echo(
        f"\nAPI: log in at http://127.0.0.1:8000/docs (Authorize) with the same email and\n"
        f"password, or use this bearer token (valid for 24 hours):\n\n"
        f"  export TOKEN={token}\n"
        '  curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8000/api/v1/companies/1/customers\n'
        '  curl -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:8000/api/v1/sales/products/1?days=7"\n'
        '  curl -H "Authorization: Bearer $TOKEN" '
        f'"http://127.0.0.1:8000/api/v1/factories/{plants.demo_factory_id}/chart-data?bucket=1d"\n'
        '  curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8000/api/v1/cars/web\n'
    )


def _ensure_admin(conn: Connection, password_file: Path) -> int:
    found = conn.execute(select(User.id).where(User.email == DEMO_ADMIN)).scalar()
    if found is not None:
        return int(found)
    password = secrets.token_urlsafe(12)
    row = accounts.create_user(
        conn, email=DEMO_ADMIN, name="Demo admin", password=password, role="admin"
    )
    password_file.parent.mkdir(parents=True, exist_ok=True)
    # Readable by the owner only; the password is never logged (`demo` shows it once more).
    fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(password + "\n")
    return int(row["id"])
