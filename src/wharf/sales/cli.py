"""`wharf sales ingest PATH...` and `wharf sales watch DIR`."""

from __future__ import annotations

import sys
import time
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from wharf.core.config import Settings
from wharf.core.data.db import engine_for
from wharf.core.errors import WharfError
from wharf.sales import inbox
from wharf.sales.ingest import counter_for, ingest, is_remote
from wharf.sales.service import Recorded

sales = typer.Typer(help="Daily sales files (seed 004).", no_args_is_help=True)
EngineName = Literal["duckdb", "spark"]


def _day(value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%d").date()
    except ValueError as exc:
        raise typer.BadParameter("must be a date, YYYY-MM-DD", param_hint="--date") from exc


SALES_SUFFIXES = (".json", ".jsonl", ".ndjson", ".json.gz", ".jsonl.gz", ".ndjson.gz")


def expand(paths: list[str]) -> list[str]:
    """Files as given, and the JSON-lines files directly inside each directory, by name."""
    found: list[str] = []
    for raw in paths:
        path = Path(raw)
        if not is_remote(raw) and path.is_dir():
            found += [
                str(p)
                for p in sorted(path.iterdir())
                if inbox.is_candidate(p) and p.name.endswith(SALES_SUFFIXES)
            ]
        else:
            found.append(raw)
    return found


@sales.command("ingest")
def ingest_command(
    paths: Annotated[list[str], typer.Argument(help="Files or directories (with Spark: URIs).")],
    day: Annotated[
        str | None, typer.Option("--date", help="The day, YYYY-MM-DD, instead of the name's.")
    ] = None,
    replace: Annotated[
        bool, typer.Option("--replace", help="Replace a day that already has another file.")
    ] = False,
    engine: Annotated[
        EngineName | None, typer.Option(help="duckdb (embedded) or spark; WHARF_SALES_ENGINE.")
    ] = None,
    max_bad_ratio: Annotated[
        float | None, typer.Option(min=0, max=1, help="Refuse a file with more bad lines.")
    ] = None,
) -> None:
    """Ingest daily sales files; the day comes from names like 20261130_transactions.json."""
    settings = Settings()
    db = engine_for(settings)
    counter = counter_for(settings, engine)
    ratio = settings.sales_max_bad_ratio if max_bad_ratio is None else max_bad_ratio
    # Wide enough for the summary when the output is a log rather than a terminal.
    console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)
    files = expand(paths)
    if not files:
        console.print("[red]No sales files found.[/red]")
        raise typer.Exit(1)
    if day is not None and len(files) > 1:
        console.print("[red]--date gives the day of one file; name several files by day.[/red]")
        raise typer.Exit(2)
    results: list[tuple[str, Recorded | str, float]] = []
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TextColumn("{task.fields[lines]:,} lines"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        for path in files:
            local = Path(path)
            size = local.stat().st_size if not is_remote(path) and local.is_file() else None
            task = progress.add_task(Path(path).name, total=size, lines=0)
            started = time.perf_counter()

            def advance(done: int, lines: int, task: TaskID = task) -> None:
                progress.update(task, completed=done, lines=lines)

            try:
                recorded: Recorded | str = ingest(
                    db,
                    path,
                    counter=counter,
                    day=_day(day),
                    replace=replace,
                    max_bad_ratio=ratio,
                    progress=advance,
                )
            except WharfError as exc:
                recorded = exc.detail
            results.append((path, recorded, time.perf_counter() - started))
    console.print(summary(results))
    if any(isinstance(r, str) for _, r, _ in results):
        raise typer.Exit(1)


def summary(results: list[tuple[str, Recorded | str, float]]) -> Table:
    table = Table(title="Sales files")
    for name in ("file", "day", "lines", "transactions", "units", "products", "bad"):
        table.add_column(name, justify="left" if name == "file" else "right")
    table.add_column("engine")
    table.add_column("seconds", justify="right")
    table.add_column("result")
    for path, result, seconds in results:
        name = Path(path).name
        if isinstance(result, str):
            table.add_row(name, *[""] * 7, f"{seconds:.2f}", f"[red]{result}[/red]")
            continue
        f = result.file
        table.add_row(
            name,
            str(f["day"]),
            f"{f['lines']:,}",
            f"{f['transactions']:,}",
            f"{f['units']:,}",
            f"{f['products']:,}",
            f"{f['bad_lines']:,}",
            f["engine"],
            f"{seconds:.2f}",
            "ingested" if result.created else "[yellow]already ingested[/yellow]",
        )
    return table


@sales.command("watch")
def watch_command(
    directory: Annotated[Path, typer.Argument(help="The inbox directory.")],
    engine: Annotated[EngineName | None, typer.Option(help="duckdb or spark.")] = None,
) -> None:
    """Ingest each file that appears in DIRECTORY, moving it to done/ or failed/ with a
    .report.json beside it. Ctrl-C stops."""
    settings = Settings()
    box = inbox.Inbox(
        directory,
        db=engine_for(settings),
        counter=counter_for(settings, engine),
        max_bad_ratio=settings.sales_max_bad_ratio,
    )
    typer.echo(f"Watching {directory} for sales files (Ctrl-C stops).")
    try:
        box.run()
    except KeyboardInterrupt:
        typer.echo("Stopped.")
