"""Car CSV import (issue 10): 200 rows whose images come from a local server, 50 ms each.

The photos are generated once (tests/catalog/imagefixtures.py, deterministic, JPEG q85-90)
and cached under the system temp folder: mostly 1600x1200 to 4000x3000, landscape and
portrait, and one 6000x4000 in 25. tests/catalog/webserver.py serves them from this process
with 50 ms of latency before each answer. Each measurement runs in a fresh child process
(after a warm-up call into libvips or Pillow), so its peak RSS (VmHWM) is its own:

- **seed loop**: the seed's way, one row after another: download with urllib, Pillow open,
  full decode, LANCZOS to 1024 and 320 wide from the original, JPEG 88 and 84 to files,
  one row into SQLite (committed).
- **thumbnails alone**: `images.thumbnails` (web and mobile, JPEG and WebP) over the same
  bytes already in memory, on `cars_thumbnail_threads` threads: the floor of the import.
- **import**: `importer.run` on a fresh database and media folder, timed until its write
  has committed, i.e. every car serves its JPEG and WebP variants (checked afterwards, files
  included), once per `cars_fetch_per_host` asked for.
- **AVIF**: after the first import, a `Worker` with `wharf.app.job_handlers`, timed until
  every image's renditions have `avif`.

    .venv/bin/python -m bench.run --only catalog-import [--record] [--per-host 4,16]
        [--database-url postgresql://postgres@127.0.0.1:5432/wharf_bench_h2]
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from bench.cert_data import keyring_env
from bench.factories import fresh
from bench.run import ROOT, emit, ensure_pg_database
from bench.thumbnails import seed_thumbnails
from tests.catalog import imagefixtures
from tests.catalog.webserver import serving
from wharf.app import job_handlers
from wharf.catalog import images, importer
from wharf.catalog.models import Car, CarImage
from wharf.catalog.pipeline import spec_for
from wharf.core.config import Settings
from wharf.core.data.db import engine_for
from wharf.core.keys import KeySource
from wharf.core.outbound import Outbound
from wharf.core.storage import LocalStorage
from wharf.core.work import Worker

PHOTOS = Path(tempfile.gettempdir()) / "wharf-bench-catalog-photos-v1"
_SIZES = ((1600, 1200), (2048, 1536), (2400, 1600), (3000, 2000), (2448, 3264), (4000, 3000))
Job = dict[str, Any]


def sizes(count: int) -> list[tuple[int, int]]:
    return [(6000, 4000) if i % 25 == 12 else _SIZES[i % len(_SIZES)] for i in range(count)]


def _make_photo(task: tuple[str, int, int, int]) -> None:
    path, width, height, seed = Path(task[0]), task[1], task[2], task[3]
    partial = path.with_suffix(".part")
    partial.write_bytes(imagefixtures.jpeg(width, height, seed=seed, quality=85 + seed % 6))
    partial.replace(path)


def photo_set(count: int) -> list[Path]:
    """The photos, generated on first use (a few minutes) and kept for later runs."""
    PHOTOS.mkdir(parents=True, exist_ok=True)
    paths = [PHOTOS / f"{i:03d}-{w}x{h}.jpg" for i, (w, h) in enumerate(sizes(count))]
    missing = [
        (str(p), w, h, i + 1)
        for i, (p, (w, h)) in enumerate(zip(paths, sizes(count), strict=True))
        if not p.exists()
    ]
    if missing:
        print(f"generating {len(missing)} photos into {PHOTOS} (once)", file=sys.stderr)
        with ProcessPoolExecutor(os.cpu_count()) as pool:
            list(pool.map(_make_photo, missing))
    return paths


def _status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _since(start: tuple[float, float]) -> dict[str, float]:
    wall, cpu = _clock()
    return {"wall": wall - start[0], "cpu": cpu - start[1]}


def _small_jpeg() -> bytes:
    return imagefixtures.jpeg(640, 480, seed=999)


def child_seed(job: Job) -> dict[str, Any]:
    out = Path(job["out"])
    out.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(out / "seed.db")
    db.execute("CREATE TABLE cars (title TEXT, description TEXT, web TEXT, mobile TEXT)")
    seed_thumbnails(_small_jpeg())  # warm-up
    rss = _status_mib("VmRSS")
    start = _clock()
    for row in job["rows"]:
        with urllib.request.urlopen(row["image"], timeout=30) as response:
            data = response.read()
        web, mobile = seed_thumbnails(data)
        names = (out / f"{row['n']}-web.jpg", out / f"{row['n']}-mobile.jpg")
        names[0].write_bytes(web)
        names[1].write_bytes(mobile)
        db.execute(
            "INSERT INTO cars VALUES (?, ?, ?, ?)",
            (row["title"], row["description"], str(names[0]), str(names[1])),
        )
        db.commit()
    return {**_since(start), "rss_before": rss, "hwm": _status_mib("VmHWM")}


def child_thumbs(job: Job) -> dict[str, Any]:
    settings = Settings(_env_file=None)
    spec, threads = spec_for(settings), settings.cars_thumbnail_threads
    datas = [Path(p).read_bytes() for p in job["paths"]]
    images.thumbnails(_small_jpeg(), spec)  # warm-up
    start = _clock()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda data: images.thumbnails(data, spec), datas))
    return {**_since(start), "threads": threads, "hwm": _status_mib("VmHWM")}


def child_import(job: Job) -> dict[str, Any]:
    settings = Settings(_env_file=None, **job["settings"])
    engine = engine_for(settings)
    outbound, storage = Outbound.from_settings(settings), LocalStorage(settings.media_dir)
    images.thumbnails(_small_jpeg(), spec_for(settings))  # warm-up
    with engine.begin() as conn:
        record = importer.start(
            conn, source="bench.csv", sync=False, user_id=None, background=False
        )
    rss = _status_mib("VmRSS")
    stored: list[float] = []  # when each image's result came, from the start
    start = _clock()
    record = importer.run(
        engine,
        record["id"],
        settings=settings,
        outbound=outbound,
        storage=storage,
        csv=job["csv"].encode(),
        on_image=lambda _source, _result: stored.append(time.perf_counter() - start[0]),
    )
    result: dict[str, Any] = {**_since(start), "rss_before": rss, "hwm": _status_mib("VmHWM")}
    result["first"], result["last"] = min(stored), max(stored)
    result["counts"] = record["counts"]

    def renditions() -> list[dict[str, Any]]:
        with engine.connect() as conn:
            query = select(CarImage.renditions).join(Car, Car.image_sha256 == CarImage.sha256)
            return [dict(r) for r in conn.execute(query).scalars()]

    served = result["served"] = sum(
        set(r) == {"web", "mobile"}
        and all(storage.exists(v[fmt]) for v in r.values() for fmt in ("jpeg", "webp"))
        for r in renditions()
    )
    if job["avif"]:
        handlers = job_handlers(
            settings, engine=engine, keys=KeySource(settings), outbound=outbound, storage=storage
        )
        poll, lease = settings.job_poll_seconds, settings.job_lease_seconds
        worker = Worker(engine, handlers, poll_seconds=poll, lease_seconds=lease)
        start = _clock()
        worker.start()
        while sum(all(v.get("avif") for v in r.values()) for r in renditions()) < served:
            time.sleep(0.1)
        result["avif"] = {**_since(start), "hwm": _status_mib("VmHWM")}
        worker.stop()
    engine.dispose()
    return result


def child_downloads(job: Job) -> dict[str, Any]:
    settings = Settings(_env_file=None, outbound_allow=job["allow"])
    outbound = Outbound.from_settings(settings)

    def fetch(url: str) -> int:
        answer = outbound.request(
            "GET", url, headers={}, max_bytes=settings.cars_max_image_bytes, max_redirects=0
        )
        return len(answer.body)

    start = _clock()
    with ThreadPoolExecutor(job["in_flight"]) as pool:
        got = sum(pool.map(fetch, job["urls"]))
    return {**_since(start), "bytes": got}


CHILDREN = {
    f.__name__.removeprefix("child_"): f
    for f in (child_seed, child_thumbs, child_import, child_downloads)
}


def in_child(kind: str, job: Job) -> dict[str, Any]:
    """Run one measurement in a fresh process; its result (the last line it prints)."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.catalog_import", "--child", kind],
        input=json.dumps(job),
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    if done.returncode != 0:
        raise SystemExit(f"{kind} child failed:\n{done.stderr}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def rows_for(urls: list[str]) -> list[dict[str, Any]]:
    return [
        {"n": n, "title": f"Car {n + 1:03d}", "description": f"Bench car {n + 1}.", "image": url}
        for n, url in enumerate(urls)
    ]


def csv_text(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(("title", "description", "image"))
    writer.writerows((r["title"], r["description"], r["image"]) for r in rows)
    return out.getvalue()


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds before each image")
    parser.add_argument(
        "--per-host", default="4,16", help="cars_fetch_per_host values, one import each"
    )
    parser.add_argument("--avif", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument(
        "--database-url",
        help="default: fresh SQLite files; e.g. postgresql://postgres@127.0.0.1:5432/wharf_bench",
    )
    parser.add_argument("--record", action="store_true", help="append to bench/RESULTS.md")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None, *, command: str | None = None) -> None:
    if argv is None and sys.argv[1:2] == ["--child"]:
        print(json.dumps(CHILDREN[sys.argv[2]](json.loads(sys.stdin.read()))))
        return
    args = parse(argv)
    command = command or " ".join(["python -m bench.catalog_import", *sys.argv[1:]])
    defaults = Settings(_env_file=None)
    photos = photo_set(args.rows)
    tmp = Path(tempfile.mkdtemp(prefix="wharf-bench-catalog-"))
    if args.database_url and args.database_url.startswith("postgres"):
        ensure_pg_database(args.database_url)
    runs: list[Run] = []
    try:
        with serving() as web:
            urls = [
                web.image(f"/photos/{p.name}", p.read_bytes(), delay=args.latency) for p in photos
            ]
            rows = rows_for(urls)
            thumbs = in_child("thumbs", {"paths": [str(p) for p in photos]})
            # The last import takes half the rows: does its peak RSS grow with the rows?
            hosts = [int(v) for v in args.per_host.split(",")]
            for n, per_host in enumerate([*hosts, defaults.cars_fetch_per_host]):
                half = n == len(hosts)
                in_flight = min(per_host, defaults.cars_fetch_concurrency)
                job = {"allow": web.allow, "urls": urls, "in_flight": in_flight}
                fetched = {} if half else in_child("downloads", job)
                url = args.database_url or f"sqlite:///{tmp / f'import-{n}.db'}"
                fresh(url).dispose()
                settings = {
                    "database_url": url,
                    "var_dir": str(tmp / "var"),
                    "media_root": str(tmp / f"media-{n}"),
                    "outbound_allow": web.allow,
                    "cars_fetch_per_host": per_host,
                    "key_encryption_keys": keyring_env(),
                    "log_level": "WARNING",
                }
                csv = csv_text(rows[: len(rows) // 2] if half else rows)
                job = {"settings": settings, "csv": csv, "avif": args.avif and n == 0}
                runs.append(Run(per_host, in_flight, fetched, in_child("import", job)))
                shutil.rmtree(tmp / f"media-{n}", ignore_errors=True)
            seed = in_child("seed", {"rows": rows, "out": str(tmp / "seed")})
            hits = web.total()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    sizes_mb = [p.stat().st_size / 1e6 for p in photos]
    backend = (args.database_url or "sqlite:").split(":", 1)[0]
    lines = [
        f"### {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: `{command}`",
        "",
        f"{backend}; {os.cpu_count()} cores. {args.rows} rows, one image each from one local "
        f"host answering after {args.latency * 1e3:.0f} ms; {sum(sizes_mb):,.0f} MB of JPEG "
        f"({min(sizes_mb):.1f} to {max(sizes_mb):.1f} MB; {sizes(args.rows).count((6000, 4000))} "
        f"of 6000x4000). Fetch concurrency {defaults.cars_fetch_concurrency}, "
        f'{thumbs["threads"]} thumbnail threads. Each row in a fresh process; "cores busy" is '
        f"its CPU time ÷ wall time; peak RSS is its VmHWM. {hits} image requests served.",
        "",
        *report(args, defaults, thumbs, runs, seed, max(sizes_mb) * 1e6 / 2**20),
    ]
    emit(lines, record=args.record)


@dataclass
class Run:
    per_host: int
    in_flight: int
    downloads: dict[str, Any]  # the downloads alone, as many in flight as the import has
    result: dict[str, Any]  # the import's


def report(
    args: argparse.Namespace,
    defaults: Settings,
    thumbs: dict[str, Any],
    runs: list[Run],
    seed: dict[str, Any],
    largest_mib: float,
) -> list[str]:
    def row(name: str, r: dict[str, Any], hwm: str = "") -> str:
        return (
            f"| {name} | {r['wall']:.2f} | {r['cpu']:.2f} | {r['cpu'] / r['wall']:.2f} | {hwm} "
            f"| {seed['wall'] / r['wall']:.2f}x | {r['wall'] / thumbs['wall']:.2f}x |"
        )

    runs, half = runs[:-1], runs[-1].result
    lines = [
        "| what | wall s | CPU s | cores busy | peak RSS MiB | seed ÷ this "
        "| this ÷ thumbnails alone |",
        "|---|---|---|---|---|---|---|",
        row("seed loop (sequential download, Pillow, JPEG only)", seed, f"{seed['hwm']:.0f}"),
        row(f"thumbnails alone (in memory, {thumbs['threads']} threads)", thumbs),
    ]
    for run in runs:
        default = " (default)" if run.per_host == defaults.cars_fetch_per_host else ""
        r = run.result
        lines += [
            row(f"downloads alone (`Outbound`, {run.in_flight} in flight)", run.downloads),
            row(
                f"**import, {run.per_host} per host{default}**, until JPEG + WebP served",
                r,
                f"{r['hwm']:.0f} ({r['rss_before']:.0f} before)",
            ),
        ]
    first = runs[0].result
    if "avif" in first:
        avif = first["avif"]
        lines.append(
            f"| AVIF job after the {runs[0].per_host}-per-host import (`Worker`, until all "
            f"renditions have it) | {avif['wall']:.2f} | {avif['cpu']:.2f} "
            f"| {avif['cpu'] / avif['wall']:.2f} | {avif['hwm']:.0f} | | |"
        )
    speedup, overlap = seed["wall"] / first["wall"], first["wall"] / thumbs["wall"]
    # The cores the thumbnails can use: more threads than cores (the default) use no more.
    cores = min(thumbs["threads"], os.cpu_count() or 1)
    per_core = thumbs["cpu"] / cores
    lines += [
        "",
        f"- seed loop ÷ import ({runs[0].per_host} per host): **{speedup:.2f}x** "
        f"(target >= 5x: {'met' if speedup >= 5 else 'MISSED'})",
        f"- import ÷ thumbnails alone, their measured wall ({thumbs['wall']:.1f} s): "
        f"**{overlap:.2f}x**; ÷ their CPU time over the cores ({thumbs['cpu']:.1f} s ÷ "
        f"{cores} = {per_core:.1f} s): **{first['wall'] / per_core:.2f}x** "
        f"(target <= 1.3x: {'met' if overlap <= 1.3 else 'MISSED'} on the first, "
        f"{'met' if first['wall'] <= 1.3 * per_core else 'MISSED'} on the second)",
        f"- in the {runs[0].per_host}-per-host import, the first image was stored "
        f"{first['first']:.2f} s after the start and the last at {first['last']:.2f} s; "
        f"the write transaction and the rest took {first['wall'] - first['last']:.2f} s",
        "- cars serving JPEG + WebP after each import (files checked): "
        + ", ".join(f"{r.result['served']} of {args.rows}" for r in runs),
    ]
    if "avif" in first:
        avif = first["avif"]
        lines.append(
            f"- AVIF renditions all done **{avif['wall']:.1f} s** after the import, "
            f"{first['wall'] + avif['wall']:.1f} s from its start"
        )
    grown = first["hwm"] - half["hwm"]
    bound = defaults.cars_fetch_concurrency * largest_mib
    lines.append(
        f"- peak RSS of the import: **{first['hwm']:.0f} MiB** for {args.rows} rows, "
        f"{half['hwm']:.0f} MiB for the first {args.rows // 2} (**{grown:+.0f} MiB** for "
        f"{args.rows - args.rows // 2} more rows), {first['rss_before']:.0f} MiB before it; "
        f"the seed loop's {seed['hwm']:.0f} MiB. By design the import holds at most "
        f"`cars_fetch_concurrency` ({defaults.cars_fetch_concurrency}) downloaded bodies "
        f"(the largest here {largest_mib:.1f} MiB, so {bound:.0f} MiB at worst; the cap "
        f"`cars_max_image_bytes` {defaults.cars_max_image_bytes / 2**20:.0f} MiB) and one "
        "web-sized decode per thumbnail thread, whatever the row count"
    )
    return lines


if __name__ == "__main__":
    main()
