"""Sales (issue 8): ingest end to end against DuckDB alone and PySpark, and the product query.

Ingest (bench/sales_ingest.py): a generated file of 5,000,000 lines with 1-5 of 50,000
products each (cached under --cache-dir by its parameters), ingested into a fresh migrated
SQLite database in this process and as `wharf sales ingest`; beside it DuckDB's bare
queries, a PySpark `local[2]` job (a process, and inside a running session) and the cost of
reading and hashing the bytes. With a PostgreSQL --database-url, the same ingest into it too.

Query (bench/sales_query.py): `GET /api/v1/sales/products/{id}?days=30` over a year of counts,
uncached and cached, beside the uncached customers list and the raw ASGI app (on the
--database-url database, by default a fresh SQLite file).

    .venv/bin/python -m bench.run --only sales [--record] [--database-url postgresql://...]
    .venv/bin/python -m bench.sales --part ingest --lines 500000   # a quick look
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from bench import sales_ingest, sales_query
from bench.run import emit, ensure_pg_database, server_name
from wharf.sales.duck import DuckDBEngine


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--part", choices=("all", "ingest", "query"), default="all")
    parser.add_argument(
        "--database-url",
        help="also ingest into it, and serve the query from it; default: fresh SQLite files "
        "(e.g. postgresql://postgres@127.0.0.1:5432/wharf_bench)",
    )
    parser.add_argument("--record", action="store_true", help="append to bench/RESULTS.md")
    ingest = parser.add_argument_group("ingest")
    ingest.add_argument("--lines", type=int, default=5_000_000)
    ingest.add_argument("--products", type=int, default=50_000, help="distinct product ids")
    ingest.add_argument("--seed", type=int, default=1)
    ingest.add_argument("--repeat", type=int, default=3, help="runs of each in-process figure")
    ingest.add_argument("--spark-jobs", type=int, default=3, help="timed jobs in one session")
    ingest.add_argument("--no-spark", action="store_true", help="skip PySpark (slow)")
    ingest.add_argument(
        "--cache-dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "wharf-bench-cache",
        help="where generated files are kept between runs",
    )
    query = parser.add_argument_group("query")
    query.add_argument("--seconds", type=int, default=10)
    query.add_argument("--connections", type=int, default=64)
    query.add_argument("--p99-connections", type=int, default=16)
    query.add_argument("--query-days", type=int, default=365)
    query.add_argument("--query-products", type=int, default=5_000)
    query.add_argument("--cached-ids", type=int, default=500, help="ids the cached run rotates")
    return parser.parse_args(argv)


def ingest_part(args: argparse.Namespace, tmp: Path) -> list[str]:
    path = sales_ingest.generate(
        args.cache_dir, lines_=args.lines, products=args.products, seed=args.seed
    )
    fig = sales_ingest.Figures()
    sales_ingest.measure_limits(fig, path, 1)  # also brings the file into the page cache
    fig.seconds.clear()
    sales_ingest.measure_wharf(fig, f"sqlite:///{tmp}/x.db", "SQLite", path, tmp, args.repeat)
    if args.database_url and args.database_url.startswith("postgres"):
        sales_ingest.measure_wharf(fig, args.database_url, "PostgreSQL", path, tmp, args.repeat)
        sales_ingest.clear_sales(args.database_url)
    sales_ingest.measure_duckdb(fig, path, args.repeat)
    if not args.no_spark:
        sales_ingest.measure_spark(fig, path, args.spark_jobs, tmp)
    sales_ingest.measure_limits(fig, path, args.repeat)
    engine = DuckDBEngine()
    return [
        f"**Ingest.** {args.lines:,} lines (1-5 of {args.products:,} products each, seed "
        f"{args.seed}), {path.stat().st_size / 1e6:,.0f} MB, read from the page cache; DuckDB "
        f"{duckdb.__version__}, threads={engine.threads}, memory_limit={engine.memory_limit}. "
        f"Median of {args.repeat} runs"
        + (
            ""
            if args.no_spark
            else f" (PySpark local[2], UI off: a process once, then "
            f"{args.spark_jobs} jobs after a first in one session)"
        )
        + ". Nothing pinned: all use every core.",
        "",
        *sales_ingest.report(fig, path, args.lines),
    ]


def main(argv: list[str] | None = None, *, command: str | None = None) -> None:
    args = parse(argv)
    command = command or " ".join(["python -m bench.sales", *sys.argv[1:]])
    if args.part != "ingest" and not shutil.which("wrk"):
        raise SystemExit("wrk is not installed: apt-get install wrk")
    if args.database_url and args.database_url.startswith("postgres"):
        ensure_pg_database(args.database_url)
    tmp = Path(tempfile.mkdtemp(prefix="wharf-bench-sales-"))
    url = args.database_url or f"sqlite:///{tmp / 'query.db'}"
    lines = [f"### {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: `{command}`", ""]
    try:
        if args.part in ("all", "ingest"):
            lines += [*ingest_part(args, tmp), ""]
        if args.part in ("all", "query"):
            lines += [
                f"**Query.** {url.split(':', 1)[0]}; 1 server worker ({server_name()}).",
                *sales_query.run(args, url, tmp),
            ]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    emit(lines, record=args.record)


if __name__ == "__main__":
    main()
