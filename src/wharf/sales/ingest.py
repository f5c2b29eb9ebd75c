"""Ingest one sales file: check it, count it with an engine, record it in one transaction.

What makes it safe to repeat and to interrupt: the file's sha256 is its identity, so the
same bytes again change nothing; and a day's counts and its ledger row change together in
one transaction (`service.record`), so a process killed at any moment leaves the day as it
was before, or as this file makes it, never a mix.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

from sqlalchemy import Engine

from wharf.core.config import Settings
from wharf.sales import files, service
from wharf.sales.errors import FileRefused
from wharf.sales.files import Inspected
from wharf.sales.lines import Counted
from wharf.sales.lines import Engine as Counter
from wharf.sales.service import Recorded

log = logging.getLogger("wharf.sales")
Progress = Callable[[int, int], None]  # (bytes read, lines read)


def counter_for(settings: Settings, name: str | None = None) -> Counter:
    """The engine `name` (default: the setting); Spark only when its extra is installed."""
    chosen = name or settings.sales_engine
    if chosen == "spark":
        from wharf.sales.spark import SparkEngine  # the optional `spark` extra

        return SparkEngine(master=settings.spark_master)
    if chosen != "duckdb":
        raise FileRefused(f"There is no sales engine {chosen!r}: choose duckdb or spark.")
    from wharf.sales.duck import DuckDBEngine

    return DuckDBEngine()


def is_remote(path: str | Path) -> bool:
    return "://" in str(path)


def ingest(
    db: Engine,
    path: str | Path,
    *,
    counter: Counter,
    day: date | None = None,
    name: str | None = None,
    replace: bool = False,
    max_bad_ratio: float = 0.01,
    progress: Progress | None = None,
) -> Recorded:
    """Ingest the file at `path` (a local path; with Spark, any URI Spark reads) for `day`,
    by default the day its name gives."""
    name = name or Path(str(path)).name
    day = day or files.day_from_name(name)
    started = time.perf_counter()
    remote = is_remote(path)
    with ThreadPoolExecutor(max_workers=1) as pool:
        # The pre-pass (CPython, one core) and DuckDB's typed pass (native, the other cores)
        # side by side: the typed pass needs nothing from the pre-pass but its verdict, taken
        # once both are done. Joined before going on, so no work outlives this call.
        guess, gzipped, id_key = None, False, "id"
        if not remote:
            gzipped, id_key = files.peek(Path(path))
            guess = pool.submit(counter.typed_tally, str(path), gzipped=gzipped, id_key=id_key)
        inspected = _inspect(path, counter, progress)
        tally = guess.result() if guess is not None else None
    with db.connect() as conn:
        # Before the engine's work: the same file again, or a day taken, is answered at once.
        existing = service.check_new(conn, day=day, sha256=inspected.sha256, replace=replace)
    if existing is not None:
        return Recorded(existing, created=False)
    rows = inspected.plain_rows
    # The typed pass guessed the compression and the id's key from the head: used only
    # when the pre-pass's verdicts agree.
    guessed_right = (gzipped, id_key) == (inspected.gzipped, inspected.id_key)
    if rows is not None and tally is not None and guessed_right:
        counted = Counted.tally(lines=rows, good=rows, counts=tally, sample=[])
        counted.engine = counter.name
    else:
        counted = counter.count(
            str(path),
            gzipped=inspected.gzipped,
            id_key=inspected.id_key,
            # A typed pass that ran and could not vouch for the file is not run again.
            plain_rows=None if guess is not None and tally is None else rows,
        )
    refuse_if_bad(counted, max_bad_ratio)
    with db.connect() as conn:
        conn.execution_options(wharf_write=True)
        with conn.begin():
            recorded = service.record(
                conn,
                day=day,
                name=name,
                sha256=inspected.sha256,
                size=inspected.bytes,
                counted=counted,
                seconds=time.perf_counter() - started,
                replace=replace,
            )
    if recorded.created:
        log.info(
            "sales file ingested",
            extra={"day": day.isoformat(), "file_id": recorded.file["id"], "lines": counted.lines},
        )
    return recorded


def _inspect(path: str | Path, counter: Counter, progress: Progress | None) -> Inspected:
    if not is_remote(path):
        local = Path(path)
        if not local.is_file():
            raise FileRefused(f"{local} is not a file.")
        return files.inspect(local, progress=progress)
    inspected = counter.identify(str(path))
    if inspected is None:
        raise FileRefused(f"{counter.name} reads local files only; use --engine spark for {path}.")
    return inspected


def refuse_if_bad(counted: Counted, max_bad_ratio: float) -> None:
    if counted.transactions == 0 and counted.bad_lines == 0:
        raise FileRefused("The file holds no transactions: every line is empty.")
    if counted.bad_lines > max_bad_ratio * counted.lines:
        first = ", ".join(f"{b.line} ({b.reason})" for b in counted.sample[:5])
        raise FileRefused(
            f"{counted.bad_lines} of {counted.lines} lines are bad "
            f"({counted.bad_lines / counted.lines:.1%}), more than the {max_bad_ratio:.1%} "
            f"allowed (max bad ratio); nothing was ingested. First bad lines: {first}.",
            extra={
                "bad_lines": counted.bad_lines,
                "lines": counted.lines,
                "bad_line_sample": [{"line": b.line, "reason": b.reason} for b in counted.sample],
            },
        )
