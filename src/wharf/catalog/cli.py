"""`wharf cars import SOURCE` and `wharf cars thumbnails --rebuild`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from wharf.catalog import importer
from wharf.catalog.pipeline import Result
from wharf.catalog.thumbnails import rebuild
from wharf.core.config import Settings
from wharf.core.data.db import engine_for, writing
from wharf.core.outbound import Outbound
from wharf.core.storage import LocalStorage

cars = typer.Typer(help="The car catalog (seed 002).", no_args_is_help=True)


@cars.command("import")
def import_command(
    source: Annotated[str, typer.Argument(help="A CSV file, or an http(s) URL of one.")],
    sync: Annotated[bool, typer.Option(help="Delete the cars the CSV no longer lists.")] = False,
) -> None:
    """Import cars from a CSV (title, description, image). Cars are matched by title and
    updated in place; in a local file, `image` may be a path relative to the CSV."""
    settings = Settings()
    engine = engine_for(settings)
    outbound = Outbound.from_settings(settings)
    err = Console(stderr=True)
    csv: bytes | None = None
    base_dir: Path | None = None
    if "://" not in source:
        path = Path(source)
        try:
            size = path.stat().st_size
            if size > settings.cars_max_csv_bytes:
                limit = settings.cars_max_csv_bytes
                _fail(
                    err,
                    f"{path}: {size:,} bytes; the limit is {limit:,} (WHARF_CARS_MAX_CSV_BYTES).",
                )
            csv = path.read_bytes()
        except OSError as exc:
            _fail(err, f"{path}: cannot be read: {exc.strerror or exc}")
        source, base_dir = str(path.resolve()), path.resolve().parent
    with writing(engine) as conn:
        record = importer.start(conn, source=source, sync=sync, user_id=None, background=False)
    with Progress(*_bar(), console=err) as progress:
        rows = progress.add_task("rows", total=None)
        fetched = progress.add_task("images", total=None)

        def parsed(count: int, images: int) -> None:
            progress.update(rows, total=count, completed=count)
            progress.update(fetched, total=images)

        def image(_source: str, _result: Result) -> None:
            progress.advance(fetched)

        record = importer.run(
            engine,
            record["id"],
            settings=settings,
            outbound=outbound,
            storage=LocalStorage(settings.media_dir),
            csv=csv,
            base_dir=base_dir,
            on_parsed=parsed,
            on_image=image,
        )
    if record["status"] == importer.FAILED:
        _fail(err, record["error"])
    out = Console()
    out.print(summary(record["counts"]))
    problems = problem_table(record["report"])
    if problems.row_count:
        out.print(problems)
    out.print(f"Import {record['id']} done: GET /api/v1/cars/imports/{record['id']}")


def _fail(err: Console, message: str) -> NoReturn:
    # Not markup: a message may name a host such as [fe80::1], which rich would take for a tag.
    err.print(message, style="red", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(1)


def summary(counts: dict[str, int]) -> Table:
    table = Table(title="Imported")
    for name in importer.COUNTS:
        table.add_column(name.replace("_", " "), justify="right")
    table.add_row(*(f"{counts.get(name, 0):,}" for name in importer.COUNTS))
    return table


def problem_table(report: list[dict[str, Any]]) -> Table:
    table = Table(title="Rows with problems")
    for name in ("row", "action", "column", "reason"):
        table.add_column(name)
    for entry in report:
        for problem in entry.get("problems", ()):
            table.add_row(
                str(entry["row"]),
                entry["action"],
                problem["column"] or "",
                Text(problem["reason"]),  # plain text: reasons quote URLs, [::1] among them
            )
    return table


@cars.command("thumbnails")
def thumbnails_command(
    rebuild_all: Annotated[
        bool, typer.Option("--rebuild", help="Make every variant again from the originals.")
    ] = False,
) -> None:
    """Regenerate thumbnails (after a change of widths or qualities)."""
    if not rebuild_all:
        typer.echo("Nothing to do: pass --rebuild to regenerate every variant.")
        return
    settings = Settings()
    err = Console(stderr=True)
    with Progress(*_bar(), console=err) as progress:
        task = progress.add_task("images", total=None)
        done = rebuild(
            engine_for(settings),
            settings=settings,
            storage=LocalStorage(settings.media_dir),
            on_total=lambda n: progress.update(task, total=n),
            on_done=lambda: progress.advance(task),
        )
    typer.echo(
        f"Rebuilt {done.rebuilt} images ({done.failed} failed); {done.removed} old files removed."
    )


def _bar() -> tuple[Any, ...]:
    return (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
