"""Sales ingest, end to end: a JSON-lines file to committed counts, beside what bounds it.

In one run, on one generated file (read from the page cache every time): Wharf's ingest in
this process (the headline, split into its phases) and as `wharf sales ingest` (Python's
start included; its peak RSS); DuckDB's bare queries; a plain PySpark `local[2]` job, as a
process (JVM start included) and inside a running session; and the cost of only reading,
hashing and splitting the bytes into lines. Used by bench/sales.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any
from unittest import mock

import duckdb
from sqlalchemy import Engine, text

from wharf.core.data.db import create_db_engine
from wharf.core.data.migrate import upgrade
from wharf.sales import duck as duck_module
from wharf.sales import files, lines, service
from wharf.sales.duck import _FAST, _PLAIN, ROW, SUSPECT, DuckDBEngine
from wharf.sales.files import Inspected
from wharf.sales.ingest import ingest
from wharf.sales.lines import Counted

DAY = date(2026, 11, 30)
PLAIN = "DuckDB: Wharf's typed pass for plain files (_PLAIN) alone: the bare query"
FAST = "DuckDB: Wharf's fast-pass query (_FAST) alone"
STRICT = "DuckDB: Wharf's strictness scan (_STRICT) alone"
CHUNK = 1024 * 1024
# Deterministic "random" data in DuckDB's own SQL: a seeded hash of the line number picks
# the customer, how many products (1-5) and which (1..products). One object per line.
_GENERATE = """
COPY (
    SELECT (hash(i, {seed}) % 1000000 + 1)::BIGINT AS id,
        list_transform(range((hash(i, {seed} + 1) % 5 + 1)::BIGINT),
            lambda k: (hash(i, k, {seed} + 2) % {products} + 1)::BIGINT) AS products
    FROM range({lines}) t(i) ORDER BY i
) TO '{out}' (FORMAT JSON)
"""
_TYPED = """
SELECT p, count(*) FROM (
    SELECT unnest(products) AS p FROM read_json($path, format = 'newline_delimited',
        columns = {'id': 'BIGINT', 'products': 'BIGINT[]'})
) GROUP BY p
"""
_LINE_COUNT = """
SELECT count(*) FROM read_csv($path, columns = {'line': 'VARCHAR'}, header = false,
    delim = '\x01', quote = '', escape = '', auto_detect = false)
"""


@dataclass
class Figures:
    """Seconds of each measured thing (every repeat), and what the report needs besides."""

    seconds: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    # name -> phase -> [(wall, cpu)] per run
    phases: dict[str, dict[str, list[tuple[float, float]]]] = field(default_factory=dict)
    rss_mb: dict[str, float] = field(default_factory=dict)
    units: dict[str, tuple[int, int]] = field(default_factory=dict)  # (units, products)

    def median(self, name: str) -> float:
        return statistics.median(self.seconds[name])


def generate(cache: Path, *, lines_: int, products: int, seed: int) -> Path:
    """The file for these parameters, written once into `cache` and reused after."""
    out = cache / f"sales-{lines_}x{products}-seed{seed}-duckdb{duckdb.__version__}.json"
    if out.exists():
        return out
    cache.mkdir(parents=True, exist_ok=True)
    part = out.with_suffix(".part")
    started = time.perf_counter()
    with duckdb.connect() as db:
        db.execute("SET enable_progress_bar = false")
        db.execute(_GENERATE.format(seed=seed, products=products, lines=lines_, out=str(part)))
    first = json.loads(part.open().readline())
    if sorted(first) != ["id", "products"] or not isinstance(first["products"], list):
        raise SystemExit(f"the generated file has an unexpected shape: {first}")
    part.rename(out)
    print(f"generated {out} in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return out


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


# Wharf


class Phases:
    """Wall and CPU time (this process, all its threads: DuckDB's too) spent in each phase
    of `ingest`, by wrapping what it calls. CPU time moves less on a busy machine."""

    def __init__(self) -> None:
        self.spent: dict[str, float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        started, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.spent[name] += time.perf_counter() - started
            self.cpu[name] += time.process_time() - cpu

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed_call(*args: Any, **kwargs: Any) -> Any:
            with self.phase(name):
                return fn(*args, **kwargs)

        return timed_call


class TimedCounter:
    name = "duckdb"

    def __init__(self, inner: DuckDBEngine, phases: Phases) -> None:
        self.inner, self.phases = inner, phases

    def count(
        self, path: str, *, gzipped: bool, id_key: str, plain_rows: int | None = None
    ) -> Counted:
        with self.phases.phase("DuckDB count"):
            return self.inner.count(path, gzipped=gzipped, id_key=id_key, plain_rows=plain_rows)

    def identify(self, path: str) -> Inspected | None:
        return self.inner.identify(path)

    def typed_tally(self, path: str, *, gzipped: bool, id_key: str) -> dict[int, int] | None:
        # Runs on a thread beside `inspect`: its wall time overlaps inspect's (CPU time is
        # the whole process's, so it is not split between the two).
        with self.phases.phase("DuckDB typed pass, beside inspect (overlaps it)"):
            return self.inner.typed_tally(path, gzipped=gzipped, id_key=id_key)


class Databases:
    """A database with no sales for each run: a copy of a migrated SQLite file, or the
    PostgreSQL database with its sales tables emptied."""

    def __init__(self, url: str, tmp: Path) -> None:
        self.url, self.tmp, self.runs = url, tmp, 0
        if url.startswith("sqlite"):
            self.template = tmp / "template.db"
            engine = create_db_engine(f"sqlite:///{self.template}")
            upgrade(engine)
            engine.dispose()
        else:
            engine = create_db_engine(url)
            upgrade(engine)
            engine.dispose()

    def fresh(self) -> str:
        self.runs += 1
        if self.url.startswith("sqlite"):
            path = self.tmp / f"ingest-{self.runs}.db"
            shutil.copyfile(self.template, path)
            return f"sqlite:///{path}"
        clear_sales(self.url)
        return self.url


def clear_sales(url: str) -> None:
    engine = create_db_engine(url)
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE sales_daily, sales_files"))
    engine.dispose()


def wharf_in_process(db: Engine, path: Path, phases: Phases) -> dict[str, Any]:
    with (
        mock.patch.object(files, "inspect", phases.wrap("inspect (sha256, UTF-8)", files.inspect)),
        mock.patch.object(service, "record", phases.wrap("record (SQL)", service.record)),
    ):
        recorded = ingest(db, path, counter=TimedCounter(DuckDBEngine(), phases), day=DAY)
    if not recorded.created:
        raise SystemExit("the ingest found the file already ingested: the database is not fresh")
    return recorded.file


# Runs argv and prints its wall seconds, peak RSS (KiB) and exit code. A process of its own:
# a child's ru_maxrss starts from the RSS of the process that forked it (Linux keeps the
# high-water mark across exec), so reading it here would report this benchmark's own memory.
_RUSAGE = """
import json, os, subprocess, sys, time
started = time.perf_counter()
child = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)
_, status, usage = os.wait4(child.pid, 0)
seconds = time.perf_counter() - started
print(json.dumps([seconds, usage.ru_maxrss, os.waitstatus_to_exitcode(status)]))
"""


def wharf_cli(url: str, path: Path, tmp: Path) -> tuple[float, float]:
    """`wharf sales ingest` as a process: wall seconds and peak RSS in MB."""
    wharf = Path(sys.executable).with_name("wharf")
    env = {**os.environ, "WHARF_DATABASE_URL": url, "WHARF_LOG_LEVEL": "WARNING"}
    env["WHARF_VAR_DIR"] = str(tmp / "var")
    log = tmp / "cli.log"
    cli = [str(wharf), "sales", "ingest", str(path), "--date", DAY.isoformat()]
    with log.open("wb") as err:
        out = subprocess.run(
            [sys.executable, "-c", _RUSAGE, *cli],
            env=env,
            stdout=subprocess.PIPE,
            stderr=err,
            check=True,
        )
    seconds, rss_kib, code = json.loads(out.stdout)
    if code != 0:
        raise SystemExit(f"wharf sales ingest failed:\n{log.read_text()[-2000:]}")
    return seconds, rss_kib / 1024


def measure_wharf(fig: Figures, url: str, label: str, path: Path, tmp: Path, repeat: int) -> None:
    databases = Databases(url, tmp)
    name = f"Wharf ingest into {label}, in-process"
    fig.phases[name] = defaultdict(list)
    for _ in range(repeat):
        db = create_db_engine(databases.fresh())
        phases = Phases()
        with phases.phase("total"):
            report = wharf_in_process(db, path, phases)
        db.dispose()
        fig.seconds[name].append(phases.spent["total"])
        named = [k for k in phases.spent if k != "total"]
        for phase in named:
            fig.phases[name][phase].append((phases.spent[phase], phases.cpu[phase]))
        fig.phases[name]["the rest (ledger, commit)"].append(
            (
                phases.spent["total"] - sum(phases.spent[k] for k in named),
                phases.cpu["total"] - sum(phases.cpu[k] for k in named),
            )
        )
        fig.phases[name]["total"].append((phases.spent["total"], phases.cpu["total"]))
        fig.units[f"Wharf into {label}"] = (report["units"], report["products"])
    cli = f"`wharf sales ingest` into {label}, a process"
    seconds, rss = wharf_cli(databases.fresh(), path, tmp)
    fig.seconds[cli].append(seconds)
    fig.rss_mb[cli] = rss


# DuckDB alone, Spark, and reading the bytes


def duck(query: str, params: dict[str, str]) -> Callable[[], object]:
    engine = DuckDBEngine()

    def run() -> object:
        with engine._connect() as db:  # the engine's own settings, as Wharf's passes use
            return db.execute(query, params).fetchall()

    return run


def measure_duckdb(fig: Figures, path: Path, repeat: int) -> None:
    fast = _FAST.format(key="id", row=ROW, suspect=SUSPECT, max_line=lines.MAX_LINE_BYTES)
    params = {"path": str(path), "compression": "none"}
    typed = duck(_TYPED, {"path": str(path)})
    strict = getattr(duck_module, "_STRICT", None)  # the fast pass's second scan, if any
    plain = _PLAIN.format(key="id", max_line=lines.MAX_LINE_BYTES)
    for _ in range(repeat):
        fig.seconds[PLAIN].append(timed(duck(plain, params)))
        fig.seconds[FAST].append(timed(duck(fast, params)))
        if strict is not None:
            fig.seconds[STRICT].append(timed(duck(strict, params)))
        fig.seconds["DuckDB: typed read_json, unnest, group by"].append(timed(typed))
    counts = typed()
    assert isinstance(counts, list)
    fig.units["DuckDB typed query"] = (sum(n for _, n in counts), len(counts))


def spark(path: Path, runs: int, tmp: Path) -> tuple[float, dict[str, Any]]:
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"}
    with (tmp / "spark.log").open("wb") as err:
        started = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-m", "bench.sales_spark", str(path), str(runs)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=err,
            check=False,
        )
    seconds = time.perf_counter() - started
    if out.returncode != 0:
        raise SystemExit(f"the Spark job failed:\n{(tmp / 'spark.log').read_text()[-3000:]}")
    return seconds, json.loads(out.stdout.decode().strip().splitlines()[-1])


def measure_spark(fig: Figures, path: Path, jobs: int, tmp: Path) -> None:
    seconds, found = spark(path, 1, tmp)
    fig.seconds["PySpark local[2], a process (JVM start included)"].append(seconds)
    _, found = spark(path, 1 + jobs, tmp)
    # The first job in a new session pays for warming the JVM: the running session's figure
    # is the jobs after it.
    fig.seconds["PySpark local[2], job in a running session"] += found["seconds"][1:]
    fig.units["PySpark"] = (found["units"], found["products"])


def read_chunks(path: Path, digest: hashlib._Hash | None = None) -> None:
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            if digest is not None:
                digest.update(chunk)


def measure_limits(fig: Figures, path: Path, repeat: int) -> None:
    for _ in range(repeat):
        cat = timed(lambda: subprocess.run(["cat", str(path)], stdout=subprocess.DEVNULL))
        fig.seconds["read: cat > /dev/null"].append(cat)
        fig.seconds["read: Python, 1 MiB chunks"].append(timed(lambda: read_chunks(path)))
        fig.seconds["sha256: Python hashlib, 1 MiB chunks"].append(
            timed(lambda: read_chunks(path, hashlib.sha256()))
        )
        fig.seconds["files.inspect alone (sha256, UTF-8, line count)"].append(
            timed(lambda: files.inspect(path))
        )
        fig.seconds["DuckDB: line count (read_csv, count(*))"].append(
            timed(duck(_LINE_COUNT, {"path": str(path)}))
        )


# The report

WHARF = "Wharf ingest into SQLite, in-process"
SPARK_PROCESS = "PySpark local[2], a process (JVM start included)"
SPARK_JOB = "PySpark local[2], job in a running session"
CLI = "`wharf sales ingest` into SQLite, a process"


def target(label: str, value: float, ok: bool, goal: str) -> str:
    return f"- {label}: **{value:.2f}** (target {goal}: {'met' if ok else 'MISSED'})"


def report(fig: Figures, path: Path, lines_: int) -> list[str]:
    mb = path.stat().st_size / 1e6
    wharf = fig.median(WHARF)
    out = [
        "| what | seconds (median) | runs | lines/s | Wharf in-process ÷ this |",
        "|---|---|---|---|---|",
    ]
    for name, runs in fig.seconds.items():
        s = statistics.median(runs)
        rss = f" (peak RSS {fig.rss_mb[name]:,.0f} MB)" if name in fig.rss_mb else ""
        out.append(f"| {name}{rss} | {s:.3f} | {len(runs)} | {lines_ / s:,.0f} | {wharf / s:.2f} |")
    for name, phases in fig.phases.items():
        out += ["", f"Where the time of {name} goes (median of each phase):", ""]
        total_wall, total_cpu = (statistics.median(x) for x in zip(*phases["total"], strict=True))
        for phase, pairs in phases.items():
            wall, cpu = (statistics.median(x) for x in zip(*pairs, strict=True))
            out.append(
                f"- {phase}: {wall:.3f} s wall ({wall / total_wall:.0%}), "
                f"{cpu:.3f} s CPU ({cpu / total_cpu:.0%})"
            )
    distinct = set(fig.units.values())
    out += [
        "",
        "Counted: "
        + "; ".join(f"{k} {u:,} units of {p:,} products" for k, (u, p) in fig.units.items())
        + (" (all agree)." if len(distinct) == 1 else " (**they differ**)."),
        "",
        f"Targets ({lines_:,} lines, {mb:,.0f} MB; Wharf = {WHARF}, {wharf:.2f} s):",
        "",
    ]
    if SPARK_PROCESS in fig.seconds:
        ratio = fig.median(SPARK_PROCESS) / wharf
        out.append(target("PySpark process ÷ Wharf", ratio, ratio >= 15, ">= 15x"))
        ratio = fig.median(SPARK_JOB) / wharf
        out.append(target("PySpark job in a running session ÷ Wharf", ratio, ratio >= 10, ">= 10x"))
    ratio = wharf / fig.median(PLAIN)
    out.append(target("Wharf ÷ DuckDB's bare query (_PLAIN)", ratio, ratio <= 1.3, "<= 1.3x"))
    out.append(
        f"- Wharf ÷ DuckDB's fast pass for files not plain (_FAST): {wharf / fig.median(FAST):.2f}"
    )
    if STRICT in fig.seconds:
        both = fig.median(FAST) + fig.median(STRICT)
        out.append(
            f"- Wharf ÷ DuckDB's fast-pass query and strictness scan together: {wharf / both:.2f}"
        )
    typed = wharf / fig.median("DuckDB: typed read_json, unnest, group by")
    out.append(f"- Wharf ÷ DuckDB's simplest typed query: {typed:.2f}")
    peak = fig.rss_mb[CLI]
    out.append(target(f"peak RSS of {CLI}, MB", peak, peak < 500, "< 500 MB"))
    out.append(f"- Wharf in-process: {lines_ / wharf:,.0f} lines/s, {mb / wharf:,.0f} MB/s")
    for limit in (
        "DuckDB: line count (read_csv, count(*))",
        "sha256: Python hashlib, 1 MiB chunks",
    ):
        out.append(f"- Wharf ÷ {limit}: {wharf / fig.median(limit):.1f}")
    return out
