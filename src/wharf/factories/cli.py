"""`wharf factories load FILE...`: the seed's files into the database, never twice."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from wharf.core.config import Settings
from wharf.core.data.db import engine_for
from wharf.core.errors import WharfError
from wharf.factories import imports

factories = typer.Typer(help="Factories and their readings (seed 001).", no_args_is_help=True)
KINDS = (("factories", "factories"), ("readings", "readings"), ("sprocket_types", "sprocket types"))


@factories.command("load")
def load_command(
    paths: Annotated[list[Path], typer.Argument(help="Seed files: factories or sprockets.")],
) -> None:
    """Load factory and sprocket-type files, told apart by their top-level key. What is
    already stored is counted, not added again; one bad file loads nothing at all."""
    console = Console(stderr=True)
    parsed: list[imports.Parsed] = []
    for path in paths:
        try:
            parsed.append(imports.parse(path.read_bytes()))
        except OSError as exc:
            console.print(
                f"[red]{path}: cannot be read: {exc.strerror or exc}[/red]", soft_wrap=True
            )
            raise typer.Exit(1) from exc
        except WharfError as exc:
            console.print(f"[red]{path}: {exc.detail}[/red]", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from exc
    engine = engine_for(Settings())
    try:
        with engine.connect() as conn:
            conn.execution_options(wharf_write=True)  # SQLite: BEGIN IMMEDIATE
            with conn.begin():
                report = imports.load(conn, parsed)
    except WharfError as exc:
        console.print(f"[red]{exc.detail}[/red]", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from exc
    Console().print(summary(report))


def summary(report: dict[str, dict[str, int]]) -> Table:
    table = Table(title="Loaded")
    table.add_column("kind")
    for name in ("created", "unchanged", "duplicates"):
        table.add_column(name, justify="right")
    for key, label in KINDS:
        counts = report[key]
        table.add_row(label, *(f"{counts[n]:,}" for n in ("created", "unchanged", "duplicates")))
    return table
