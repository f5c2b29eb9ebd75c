"""`wharf users ...` and `wharf tokens ...`: account administration from the shell."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import typer
from sqlalchemy import Engine, select

from wharf.accounts import service
from wharf.accounts.models import User
from wharf.core.config import Settings
from wharf.core.data.db import engine_for
from wharf.core.errors import WharfError
from wharf.core.security import ROLE_SCOPES

users = typer.Typer(help="Manage users.", no_args_is_help=True)
tokens = typer.Typer(help="Mint API tokens.", no_args_is_help=True)


def _engine() -> Engine:
    return engine_for(Settings())


@users.command("create")
def create_user(
    email: Annotated[str, typer.Option(help="Login email, unique.")],
    name: Annotated[str, typer.Option(help="Display name.")],
    password: Annotated[str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True)],
    admin: Annotated[bool, typer.Option("--admin", help="Give the admin role.")] = False,
) -> None:
    """Create a user; the password is asked for when not given."""
    if len(password) < 8:
        raise typer.BadParameter("must be at least 8 characters", param_hint="--password")
    try:
        with _engine().begin() as conn:
            row = service.create_user(
                conn,
                email=email.strip().lower(),
                name=name,
                password=password,
                role="admin" if admin else "user",
            )
    except WharfError as exc:
        typer.secho(exc.detail, fg="red", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"Created user {row['id']} <{row['email']}> with role {row['role']}.")


@tokens.command("create")
def create_token(
    email: Annotated[str, typer.Option(help="Whose token.")],
    name: Annotated[str, typer.Option(help="What the token is for.")] = "cli",
    scopes: Annotated[
        str, typer.Option(help="Space-separated; default: all the role allows.")
    ] = "",
    days: Annotated[int, typer.Option(min=1, max=3650)] = 30,
) -> None:
    """Mint an API token and print its secret (shown once)."""
    with _engine().begin() as conn:
        row = conn.execute(select(User.id, User.role).where(User.email == email.lower())).first()
        if row is None:
            typer.secho(f"No user with email {email}.", fg="red", err=True)
            raise typer.Exit(1)
        allowed = ROLE_SCOPES[row.role]
        wanted = frozenset(scopes.split()) or allowed
        if not wanted <= allowed:
            typer.secho(f"A {row.role} may hold only: {' '.join(sorted(allowed))}.", err=True)
            raise typer.Exit(1)
        secret = service.issue_token(
            conn, user_id=row.id, name=name, scopes=wanted, lifetime=timedelta(days=days)
        )
    typer.echo(secret)
