"""The cars for the web, uncached and cached, against the raw ASGI app in the same run.

Same setup as the customers list in bench/run.py (its helpers, imported): the server pinned
to core 0, wrk to core 1, 64 connections. 200 cars, each with an image, are imported the
CLI's way (a CSV beside its images: small generated JPEGs, since the list never reads the
pixels), and their AVIF job is run, so every car lists JPEG, WebP and AVIF URLs for both
variants. The request is `GET /api/v1/cars/web`: the first page of 50 with the total, as a
reader.

    .venv/bin/python -m bench.run --only catalog-reads [--record] [--database-url ...]
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
import tempfile
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine

from bench.cert_data import account, keyring_env
from bench.run import (
    Result,
    emit,
    ensure_pg_database,
    measure,
    measure_raw,
    results_table,
    serve,
    server_name,
    wait_ready,
)
from tests.catalog.imagefixtures import jpeg
from wharf.app import job_handlers
from wharf.catalog import importer
from wharf.core.config import Settings
from wharf.core.data.db import create_db_engine
from wharf.core.data.migrate import upgrade
from wharf.core.keys import KeySource
from wharf.core.outbound import Outbound
from wharf.core.storage import LocalStorage
from wharf.core.work import Worker

CARS, PATH = 200, "/api/v1/cars/web"


def load_cars(engine: Engine, settings: Settings, folder: Path) -> dict[str, int]:
    """Import CARS cars with small images from `folder`, then their AVIF renditions."""
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "cars.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(("title", "description", "image"))
        for n in range(1, CARS + 1):
            (folder / f"{n}.jpg").write_bytes(jpeg(400, 300, seed=n))
            writer.writerow((f"Car {n:03d}", f"A bench car, number {n}.", f"{n}.jpg"))
    with engine.begin() as conn:
        record = importer.start(conn, source="bench", sync=False, user_id=None, background=False)
    outbound, storage = Outbound.from_settings(settings), LocalStorage(settings.media_dir)
    record = importer.run(
        engine,
        record["id"],
        settings=settings,
        outbound=outbound,
        storage=storage,
        csv=(folder / "cars.csv").read_bytes(),
        base_dir=folder,
    )
    handlers = job_handlers(
        settings, engine=engine, keys=KeySource(settings), outbound=outbound, storage=storage
    )
    worker = Worker(engine, handlers, poll_seconds=0.01, lease_seconds=60)
    while worker.run_once():  # the AVIF job the import queued
        pass
    worker.pool.shutdown()
    return dict(record["counts"])


def server_env(url: str, keys: str, tmp: Path) -> dict[str, str]:
    """A served Wharf's environment: its database and keys, files under `tmp`, quiet logs,
    and a rate limit that stays on (its cost is part of every figure) with room for wrk."""
    return {
        "WHARF_DATABASE_URL": url,
        "WHARF_KEY_ENCRYPTION_KEYS": keys,
        "WHARF_VAR_DIR": str(tmp / "var"),
        "WHARF_MEDIA_ROOT": str(tmp / "media"),
        "WHARF_LOG_LEVEL": "WARNING",
        "WHARF_RATE_LIMIT_API": "100000000/minute",
    }


def server_settings(url: str, keys: str, tmp: Path) -> Settings:
    """`server_env` as settings, for the loading done in this process."""
    return Settings(
        _env_file=None,
        database_url=url,
        key_encryption_keys=keys,
        var_dir=tmp / "var",
        media_root=tmp / "media",
    )


def main(argv: list[str] | None = None, *, command: str | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument(
        "--database-url",
        help="default: a fresh SQLite file; e.g. postgresql://postgres@127.0.0.1:5432/wharf_bench",
    )
    parser.add_argument("--record", action="store_true", help="append to bench/RESULTS.md")
    args = parser.parse_args(argv)
    command = command or " ".join(["python -m bench.catalog_reads", *sys.argv[1:]])
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed: apt-get install wrk")

    tmp = Path(tempfile.mkdtemp(prefix="wharf-bench-cars-"))
    url = args.database_url or f"sqlite:///{tmp / 'bench.db'}"
    if url.startswith("postgres"):
        ensure_pg_database(url)
        from bench.factories import fresh

        fresh(url).dispose()  # the import matches cars by title: start from none
    keys = keyring_env()
    env = server_env(url, keys, tmp)
    settings = server_settings(url, keys, tmp)
    engine = create_db_engine(url)
    upgrade(engine)
    counts = load_cars(engine, settings, tmp / "source")
    with engine.begin() as conn:
        reader = account(conn, "bench-cars", role="user", scopes={"read"})
    engine.dispose()
    if counts["created"] != CARS or counts["images_fetched"] != CARS:
        raise SystemExit(f"unexpected import: {counts}")
    auth = [f"Authorization: Bearer {reader.token}"]

    uncached = serve("wharf.app:app_from_env", {**env, "WHARF_CACHE": "off"})
    wait_ready(f"http://127.0.0.1:{uncached[1]}/healthz", uncached[0])
    request = urllib.request.Request(
        f"http://127.0.0.1:{uncached[1]}{PATH}", headers={"Authorization": f"Bearer {reader.token}"}
    )
    with urllib.request.urlopen(request) as resp:
        body = resp.read()
    page = json.loads(body)
    images = [c["images"] for c in page["items"]]
    if (
        len(images) != 50
        or page["total"] != CARS
        or not all(i and i["web"]["avif"] for i in images)
    ):
        raise SystemExit(f"unexpected page: {len(page['items'])} items of {page['total']}")
    (tmp / "body.json").write_bytes(body)
    results = [measure("wharf: cars for the web, uncached", uncached, PATH, auth, args)]
    results.append(
        measure(
            "wharf: cars for the web, cached in memory",
            serve("wharf.app:app_from_env", {**env, "WHARF_CACHE": "on"}),
            PATH,
            auth,
            args,
        )
    )
    raw = measure_raw(tmp / "body.json", args)
    results.append(raw)
    report(results, raw, args, url, command, len(body))
    shutil.rmtree(tmp, ignore_errors=True)


def report(
    results: list[Result],
    raw: Result,
    args: argparse.Namespace,
    url: str,
    command: str,
    body_bytes: int,
) -> None:
    backend = url.split(":", 1)[0]
    lines = [
        f"### {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: `{command}`",
        "",
        f"{backend}; server on core 0 (1 worker, {server_name()}, "
        "idle job worker on, as by default), wrk on core 1, "
        f"{args.connections} connections, {args.seconds} s after a 2 s warm-up. "
        f"`GET {PATH}` as a reader: a page of 50 of the {CARS} cars with total, each with its "
        f"image's web and mobile JPEG, WebP and AVIF URLs, {body_bytes:,} bytes.",
        "",
        *results_table(results, raw),
        "",
        *[
            f"- {r.name}: req/s **{r.rps / raw.rps:.1%}** of the raw app's, "
            f"p99 **{r.p99_ms / raw.p99_ms:.1f}x** its p99"
            for r in results
            if r is not raw
        ],
    ]
    emit(lines, record=args.record)


if __name__ == "__main__":
    main()
