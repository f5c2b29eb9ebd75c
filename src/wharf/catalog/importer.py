"""CSV imports: a CSV and its images in, cars updated in place by title, one report out.

An import happens in three steps, and only the last one writes cars:
1. The CSV is read (from the upload kept in the import's record, a URL through the outbound
   client, or the CLI's file) and parsed; a file that is not a usable CSV fails the import
   with nothing changed.
2. The images that need it are fetched and thumbnailed (`pipeline`), holding no transaction.
   A row whose image URL is unchanged and already processed costs nothing.
3. One transaction writes the new images' rows, every car, the deletions of `sync`, and the
   report. If it fails, no car has changed; files already stored are content-hashed, so the
   retry finds them and writes nothing twice.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, delete, func, insert, select, update

from wharf.catalog import csvfile, service
from wharf.catalog.models import DONE, FAILED, RUNNING, Car, CarImport
from wharf.catalog.pipeline import MAX_REDIRECTS, Failure, Pipeline, Result, Stored, redirected
from wharf.core.config import Settings
from wharf.core.data import crud
from wharf.core.data.db import utcnow
from wharf.core.errors import NotFound
from wharf.core.outbound import Outbound, OutboundFailed, OutboundRefused
from wharf.core.storage import Storage
from wharf.core.work import enqueue

__all__ = ["DONE", "FAILED", "RUNNING", "ImportFailed", "finish", "get_import", "run", "start"]
IMPORT_JOB = "catalog.import"
COUNTS = (
    "rows",
    "created",
    "updated",
    "unchanged",
    "deleted",
    "skipped",
    "superseded",
    "images_fetched",
    "images_reused",
    "images_kept",
    "images_failed",
)
_CAR_STATE = (
    Car.id,
    Car.title,
    Car.description,
    Car.image_url,
    Car.image_sha256,
    Car.image_error,
    Car.image_pending,
)
# Advisory-lock key for the writing step on PostgreSQL (SQLite's BEGIN IMMEDIATE already
# takes its one writer at a time): two imports never interleave their upserts by title.
_LOCK = 0xCA7A10


class ImportFailed(Exception):
    """The CSV could not be had or read: the import fails as a whole, nothing changes."""


def start(
    conn: Connection,
    *,
    source: str,
    sync: bool,
    user_id: int | None,
    body: bytes | None = None,
    background: bool = True,
) -> dict[str, Any]:
    """Create an import record (status `running`); queue its job unless the caller runs it."""
    now = utcnow()
    import_id = conn.execute(
        insert(CarImport)
        .values(
            status=RUNNING,
            source=source,
            sync=sync,
            user_id=user_id,
            body=body,
            counts={},
            report=[],
            created_at=now,
            updated_at=now,
        )
        .returning(CarImport.id)
    ).scalar_one()
    if background:
        enqueue(conn, IMPORT_JOB, {"import_id": import_id})
    return get_import(conn, import_id=import_id)


_RECORD = (
    CarImport.id,
    CarImport.status,
    CarImport.source,
    CarImport.sync,
    CarImport.user_id,
    CarImport.counts,
    CarImport.error,
    CarImport.created_at,
    CarImport.updated_at,
    CarImport.finished_at,
)


def get_import(conn: Connection, *, import_id: int) -> dict[str, Any]:
    row = (
        conn.execute(select(*_RECORD, CarImport.report).where(CarImport.id == import_id))
        .mappings()
        .first()
    )
    if row is None:
        raise NotFound(f"No car import {import_id}.")
    return dict(row)


def list_imports(conn: Connection, *, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
    total = conn.execute(select(func.count()).select_from(CarImport)).scalar_one()
    rows = conn.execute(
        select(*_RECORD).order_by(CarImport.id.desc()).limit(limit).offset(offset)
    ).mappings()
    return [dict(r) for r in rows], int(total)


def fail_import(engine: Engine, import_id: int, error: str) -> None:
    with engine.connect() as conn:
        conn.execution_options(wharf_write=True)
        with conn.begin():
            finish(conn, import_id, status=FAILED, error=error)


def finish(
    conn: Connection,
    import_id: int,
    *,
    status: str,
    error: str | None = None,
    counts: dict[str, int] | None = None,
    report: list[dict[str, Any]] | None = None,
) -> None:
    now = utcnow()
    values: dict[str, Any] = {
        "status": status,
        "error": error,
        "body": None,
        "updated_at": now,
        "finished_at": now,
    }
    if counts is not None:
        values["counts"] = counts
    if report is not None:
        values["report"] = report
    conn.execute(
        update(CarImport)
        .where(CarImport.id == import_id, CarImport.status == RUNNING)
        .values(**values)
    )


def fetch_csv(outbound: Outbound, url: str, *, max_bytes: int) -> bytes:
    try:
        response = outbound.request(
            "GET",
            url,
            headers={"accept": "text/csv, text/plain;q=0.9, */*;q=0.1"},
            max_bytes=max_bytes,
            max_redirects=MAX_REDIRECTS,
        )
    except OutboundRefused as exc:
        raise ImportFailed(f"The CSV URL was refused: {exc.detail}") from None
    except OutboundFailed as exc:
        reason = exc.reason
        if "larger than" in reason:
            reason += " (WHARF_CARS_MAX_CSV_BYTES)"
        raise ImportFailed(f"The CSV could not be fetched: {reason}.") from None
    if 300 <= response.status < 400:
        raise ImportFailed(redirected("The CSV URL", response.status, response.headers) + ".")
    if response.status != 200:
        raise ImportFailed(f"The CSV URL answered HTTP {response.status}, not 200.")
    return response.body


def run(
    engine: Engine,
    import_id: int,
    *,
    settings: Settings,
    outbound: Outbound,
    storage: Storage,
    csv: bytes | None = None,
    base_dir: Path | None = None,
    on_parsed: Callable[[int, int], None] | None = None,
    on_image: Callable[[str, Result], None] | None = None,
) -> dict[str, Any]:
    """Run import `import_id` to its end and return its record.

    `csv` and `base_dir` come from the CLI (a file, and the folder its image paths are
    relative to); otherwise the upload kept in the record, or its URL, is read. `on_parsed`
    (rows, images to fetch) and `on_image` report progress. A CSV that cannot be had or read
    fails the import; an error while writing is raised, for the job to retry.
    """
    with engine.connect() as conn:
        record = get_import(conn, import_id=import_id)
        body = conn.execute(select(CarImport.body).where(CarImport.id == import_id)).scalar()
    if record["status"] != RUNNING:
        return record
    try:
        if csv is None:
            csv = body if body is not None else _fetch(outbound, record["source"], settings)
        parsed = csvfile.parse(csv)
    except ImportFailed as exc:
        fail_import(engine, import_id, str(exc))
        return _record(engine, import_id)
    except csvfile.CsvRefused as exc:
        fail_import(engine, import_id, exc.detail)
        return _record(engine, import_id)
    with engine.connect() as conn:
        existing = _existing(conn, [row.title for row in parsed.rows])
    wanted = _to_fetch(parsed, existing)
    if on_parsed is not None:
        on_parsed(len(parsed.rows), len(wanted))

    def known(sha: str) -> dict[str, Any] | None:
        with engine.connect() as conn:
            return service.known_images(conn, [sha]).get(sha)

    results = Pipeline(
        settings,
        outbound=outbound,
        storage=storage,
        known=known,
        base_dir=base_dir,
        on_result=on_image,
    ).run(wanted)
    with engine.connect() as conn:
        conn.execution_options(wharf_write=True)  # SQLite: BEGIN IMMEDIATE
        with conn.begin():
            if conn.dialect.name == "postgresql":
                conn.execute(select(func.pg_advisory_xact_lock(_LOCK)))
            _write(conn, import_id, parsed, results, sync=record["sync"])
    return _record(engine, import_id)


def _record(engine: Engine, import_id: int) -> dict[str, Any]:
    with engine.connect() as conn:
        return get_import(conn, import_id=import_id)


def _fetch(outbound: Outbound, url: str, settings: Settings) -> bytes:
    return fetch_csv(outbound, url, max_bytes=settings.cars_max_csv_bytes)


def _existing(conn: Connection, titles: list[str] | None) -> dict[str, dict[str, Any]]:
    """The cars these titles name (all cars, for `titles` None), by title."""
    query = select(*_CAR_STATE)
    if titles is not None:
        found: dict[str, dict[str, Any]] = {}
        for i in range(0, len(titles), 500):  # SQLite's bound-parameter limit, with room
            chunk = query.where(Car.title.in_(titles[i : i + 500]))
            found.update({r.title: dict(r._mapping) for r in conn.execute(chunk)})
        return found
    return {r.title: dict(r._mapping) for r in conn.execute(query)}


def _reusable(row: csvfile.CsvRow, car: dict[str, Any] | None) -> bool:
    """The car already shows this very source's image: nothing to download."""
    return (
        car is not None
        and row.image is not None
        and car["image_url"] == row.image
        and car["image_sha256"] is not None
    )


def _to_fetch(parsed: csvfile.ParsedCsv, existing: dict[str, dict[str, Any]]) -> list[str]:
    wanted = (
        row.image
        for row in parsed.rows
        if row.image is not None and not _reusable(row, existing.get(row.title))
    )
    return list(dict.fromkeys(wanted))


def _write(
    conn: Connection,
    import_id: int,
    parsed: csvfile.ParsedCsv,
    results: dict[str, Result],
    *,
    sync: bool,
) -> None:
    counts = dict.fromkeys(COUNTS, 0)
    counts["rows"] = len(parsed.rows) + len({p.row for p in parsed.problems})
    report: list[dict[str, Any]] = []
    # Read again inside the write: another import or a request may have changed a car
    # since the plan was made, and the counts must say what this transaction did.
    existing = _existing(conn, None if sync else [row.title for row in parsed.rows])
    new_images = {r.sha256: r for r in results.values() if isinstance(r, Stored)}
    service.save_images(conn, [image.row() for image in new_images.values()])
    released: list[str] = []
    # New cars are inserted together after the loop (one batched statement, not a round trip
    # each); their entries get their ids then.
    to_create: list[tuple[dict[str, Any], dict[str, Any]]] = []
    pending: list[tuple[dict[str, Any], str | None]] = []  # images fetched by a job of their own
    for row in parsed.rows:
        car = existing.get(row.title)
        values, image_note, problem = _image_of(row, car, results)
        if image_note != "none":
            counts[f"images_{image_note}"] += 1
        values["description"] = row.description
        entry: dict[str, Any] = {"row": row.row, "title": row.title, "image": image_note}
        if problem is not None:
            entry["problems"] = [{"column": "image", "reason": problem}]
        if car is None:
            to_create.append((entry, {"title": row.title, **values}))
            entry["action"] = "created"
        elif any(car[k] != v for k, v in values.items()):
            conn.execute(
                update(Car)
                .where(Car.id == car["id"])
                .values(**values, version=Car.version + 1, updated_at=utcnow())
            )
            if car["image_sha256"] and car["image_sha256"] != values["image_sha256"]:
                released.append(car["image_sha256"])
            entry.update(action="updated", car_id=car["id"])
        else:
            entry.update(action="unchanged", car_id=car["id"])
        counts[entry["action"]] += 1
        report.append(entry)
        if values["image_pending"]:
            pending.append((entry, row.image))
    created = crud.create_many(conn, service.CARS, [values for _, values in to_create])
    for (entry, _), new_car in zip(to_create, created, strict=True):
        entry["car_id"] = new_car["id"]
    for entry, image_url in pending:
        enqueue(conn, service.IMAGE_JOB, {"car_id": entry["car_id"], "image_url": image_url})
    for earlier, later in parsed.superseded:
        counts["superseded"] += 1
        report.append({"row": earlier, "action": "superseded", "by_row": later})
    for row_number, problems in _grouped(parsed.problems).items():
        counts["skipped"] += 1
        report.append({"row": row_number, "action": "skipped", "problems": problems})
    if sync:
        keep = {row.title for row in parsed.rows}
        gone = [car for title, car in existing.items() if title not in keep]
        for i in range(0, len(gone), 500):
            conn.execute(delete(Car).where(Car.id.in_([c["id"] for c in gone[i : i + 500]])))
        for car in sorted(gone, key=lambda c: c["id"]):
            counts["deleted"] += 1
            report.append(
                {"row": None, "title": car["title"], "action": "deleted", "car_id": car["id"]}
            )
            if car["image_sha256"]:
                released.append(car["image_sha256"])
    service.release_images(conn, released)
    made = sorted(sha for sha, image in new_images.items() if image.new)
    if made:
        enqueue(conn, service.AVIF_JOB, {"shas": made})
    report.sort(key=lambda e: (e["row"] is None, e["row"] or 0))
    finish(conn, import_id, status=DONE, counts=counts, report=report)


def _image_of(
    row: csvfile.CsvRow, car: dict[str, Any] | None, results: dict[str, Result]
) -> tuple[dict[str, Any], str, str | None]:
    """The car's image columns after this row, how the image was had, and its problem."""
    none = {"image_url": row.image, "image_sha256": None, "image_error": None}
    if row.image is None:
        return {**none, "image_pending": False}, "none", None
    if car is not None and _reusable(row, car):
        kept = {**none, "image_sha256": car["image_sha256"], "image_pending": False}
        return kept, "kept", None
    result = results.get(row.image)
    if result is None:  # the car changed after the plan: fetch it on its own
        return {**none, "image_pending": True}, "none", None
    if isinstance(result, Failure):
        return (
            {**none, "image_error": result.reason, "image_pending": False},
            "failed",
            (result.reason),
        )
    image = {**none, "image_sha256": result.sha256, "image_pending": False}
    return image, "fetched" if result.new else "reused", None


def _grouped(problems: tuple[csvfile.RowProblem, ...]) -> dict[int, list[dict[str, Any]]]:
    grouped: dict[int, list[dict[str, Any]]] = {}
    for problem in problems:
        grouped.setdefault(problem.row, []).append(
            {"column": problem.column, "reason": problem.reason}
        )
    return grouped
