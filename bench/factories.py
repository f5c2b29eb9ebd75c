"""Factories (issue 9): chart-data over a year of readings, appending readings, the demo load.

- **Demo.** `factories.demo.load` into a fresh migrated database: the seed's files and a
  factory with a year of readings every 30 s (1,051,200 rows), timed (target: under 10 s).
- **Append.** `POST /api/v1/factories/{id}/readings` in batches of 10,000, one after another
  on one keep-alive connection to a served Wharf (server on core 0, client on core 1), and the
  same batches through the service in-process (target: at least 100,000 readings/s on SQLite).
- **Chart.** `GET /api/v1/factories/{id}/chart-data` on the demo factory: the whole year at
  `bucket=1d` and the last 30 days at `bucket=1h`, uncached, with wrk at 16 connections (p99
  target under 50 ms) and 64 (req/s target: at least 70% of the uncached customers list's,
  the two measured in turns on one server),
  beside the naive endpoint (bench/naive_chart.py, target: Wharf at least 20x its req/s) and
  the raw ASGI app with the same body, all in the same run.

    .venv/bin/python -m bench.run --only factories [--record] [--database-url postgresql://...]
"""

from __future__ import annotations

import argparse
import http.client
import json
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine

from bench.cert_data import account, keyring_env
from bench.run import (
    LIST_PATH,
    TURNS,
    Result,
    emit,
    ensure_pg_database,
    in_turns,
    parse_wrk,
    results_table,
    server_name,
    wrk,
)
from bench.sales_query import server
from wharf.core.data.db import create_db_engine
from wharf.core.data.migrate import upgrade
from wharf.crm import demo as crm_demo
from wharf.factories import demo, readings, service
from wharf.factories.models import DAY

BATCH = 10_000


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--part", choices=("all", "demo", "append", "chart"), default="all")
    parser.add_argument(
        "--database-url",
        help="default: fresh SQLite files (e.g. postgresql://postgres@127.0.0.1:5432/wharf_bench)",
    )
    parser.add_argument("--record", action="store_true", help="append to bench/RESULTS.md")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--p99-connections", type=int, default=16)
    parser.add_argument("--batches", type=int, default=30, help="batches of 10,000 appended")
    return parser.parse_args(argv)


def fresh(url: str) -> Engine:
    engine = create_db_engine(url)
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP SCHEMA public CASCADE")
            conn.exec_driver_sql("CREATE SCHEMA public")
    upgrade(engine)
    return engine


def settle(engine: Engine) -> None:
    """The steady state queries then meet, as SQLite's own checkpoints and PostgreSQL's
    autovacuum soon make it: bulk-loaded rows out of the WAL; planner statistics and the
    visibility map (autovacuum vacuums a table after bulk inserts, not only analyzes it)."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        sqlite = engine.dialect.name == "sqlite"
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)" if sqlite else "VACUUM ANALYZE")


def demo_part(url: str) -> tuple[list[str], int, int]:
    """Load the demo into a fresh database; its lines, the demo factory's id and its end."""
    engine = fresh(url)
    started = time.perf_counter()
    with engine.begin() as conn:
        loaded = demo.load(conn)
    seconds = time.perf_counter() - started
    with engine.connect() as conn:
        _, last = readings.extent(conn, loaded.demo_factory_id)
    settle(engine)
    engine.dispose()
    if last is None:
        raise SystemExit("the demo factory has no readings")
    rate = loaded.demo_readings / seconds
    lines = [
        f"**Demo.** `factories.demo.load` (the seed's two files and {loaded.demo_readings:,} "
        f"readings with their rollups, one transaction): **{seconds:.2f} s**, {rate:,.0f} "
        f"readings/s (target < 10 s: {'met' if seconds < 10 else 'MISSED'})",
    ]
    return lines, loaded.demo_factory_id, last + 1


def _batch(start: int, step: int) -> list[dict[str, int]]:
    return [{"time": start + i * step, "actual": 20 + i % 13, "goal": 25} for i in range(BATCH)]


def append_part(url: str, env: dict[str, str], batches: int) -> list[str]:
    engine = fresh(url)
    with engine.begin() as conn:
        writer = account(conn, "bench-factories", role="user", scopes={"read", "write"})
        over_http = service.create_factory(conn, name="Appended over HTTP")["id"]
        in_process = service.create_factory(conn, name="Appended in-process")["id"]
    bodies = [
        json.dumps(_batch(1_700_000_000 + n * BATCH * 30, 30)).encode() for n in range(batches)
    ]
    tuples = [[(r["time"], r["actual"], r["goal"]) for r in json.loads(b)] for b in bodies]
    started = time.perf_counter()
    for rows in tuples:
        with engine.begin() as conn:
            service.append_readings(conn, factory_id=in_process, rows=rows)
    in_process_rate = batches * BATCH / (time.perf_counter() - started)
    engine.dispose()
    with server("wharf.app:app_from_env", {**env, "WHARF_DATABASE_URL": url}) as port:
        client = http.client.HTTPConnection("127.0.0.1", port)
        headers = {"Authorization": f"Bearer {writer.token}", "Content-Type": "application/json"}
        started = time.perf_counter()
        for body in bodies:
            client.request("POST", f"/api/v1/factories/{over_http}/readings", body, headers)
            answer = client.getresponse()
            answer.read()
            if answer.status != 201:
                raise SystemExit(f"append answered {answer.status}")
        http_rate = batches * BATCH / (time.perf_counter() - started)
    sqlite = url.startswith("sqlite")
    target = ("met" if http_rate >= 100_000 else "MISSED") if sqlite else "reported only"
    return [
        f"**Append.** {batches} batches of {BATCH:,} readings, one after another:",
        "",
        f"- over HTTP (`POST .../readings`, JSON, auth, one keep-alive connection): "
        f"**{http_rate:,.0f} readings/s** (target >= 100,000 on SQLite: {target})",
        f"- in-process (`service.append_readings`, a transaction per batch): "
        f"{in_process_rate:,.0f} readings/s",
    ]


def slow_wrk(url: str, seconds: int) -> Result:
    """wrk on one connection, with a timeout long enough for the slowest request."""
    cmd = ["taskset", "-c", "1", "wrk", "-t1", "-c1", f"-d{seconds}s", "--timeout", "60s"]
    out = subprocess.run([*cmd, "--latency", url], capture_output=True, text=True, check=True)
    return parse_wrk(out.stdout)


def chart_part(
    url: str, env: dict[str, str], factory_id: int, end: int, args: argparse.Namespace
) -> list[str]:
    engine = create_db_engine(url)
    with engine.begin() as conn:
        crm_demo.load(conn)  # the customers list the issue compares with
        reader = account(conn, "bench-charts", role="user", scopes={"read"})
    engine.dispose()
    auth = [f"Authorization: Bearer {reader.token}"]
    month = end - 30 * DAY
    year = end - 365 * DAY
    cases = {
        "year at 1d": (f"from={year}&to={end}&bucket=1d", year, "1d"),
        "30 days at 1h": (f"from={month}&to={end}&bucket=1h", month, "1h"),
    }
    env = {**env, "WHARF_DATABASE_URL": url, "WHARF_CACHE": "off"}
    out: list[str] = []
    for label, (query, start, bucket) in cases.items():
        path = f"/api/v1/factories/{factory_id}/chart-data?{query}"
        lows: list[Result] = []
        highs: list[Result] = []
        with server("wharf.app:app_from_env", env) as port:
            target = f"http://127.0.0.1:{port}{path}"
            body = subprocess.run(
                ["curl", "-sf", "-H", auth[0], target], capture_output=True, check=True
            ).stdout
            wrk(target, auth, 2, args.connections)
            low = wrk(target, auth, args.seconds, args.p99_connections)
            customers = f"http://127.0.0.1:{port}{LIST_PATH}"
            high, crm, share = in_turns((target, auth), (customers, auth), args)
        crm.name = "wharf: customers list, uncached"
        low.name = high.name = f"wharf: chart-data, {label}, uncached"
        lows.append(low)
        highs.append(high)
        naive_path = f"/naive/{factory_id}?start={start}&end={end}&bucket={bucket}"
        with server("bench.naive_chart:app", env, factory=False) as port:
            # One connection: each request is CPU-bound Python holding the GIL, so more
            # connections only queue (and pass wrk's timeouts) without more throughput.
            naive_low = naive_high = slow_wrk(f"http://127.0.0.1:{port}{naive_path}", args.seconds)
        naive_low.name = naive_high.name = f"naive endpoint (readings into Python), {label}"
        lows.append(naive_low)
        highs.append(naive_high)
        body_file = Path(tempfile.mkstemp(suffix=".json")[1])
        body_file.write_bytes(body)
        with server(
            "bench.raw_app:app", {"WHARF_BENCH_RAW_BODY": str(body_file)}, factory=False
        ) as port:
            target = f"http://127.0.0.1:{port}/"
            wrk(target, [], 2, args.connections)
            raw_low, raw_high = (
                wrk(target, [], args.seconds, c) for c in (args.p99_connections, args.connections)
            )
        raw_low.name = raw_high.name = "raw ASGI app, same body"
        body_file.unlink()
        lows.append(raw_low)
        highs += [crm, raw_high]
        speedup = high.rps / naive_high.rps if naive_high.rps else float("inf")
        out += [
            f"*{label}* (`{path}`, {len(body):,} bytes, {json.loads(body)['points']} points):",
            "",
            f"{args.p99_connections} connections:",
            "",
            *results_table(lows, raw_low),
            "",
            f"{args.connections} connections:",
            "",
            *results_table(highs, raw_high),
            "",
            f"- p99 uncached at {args.p99_connections} connections: **{low.p99_ms:.2f} ms** "
            f"(target < 50 ms: {'met' if low.p99_ms < 50 else 'MISSED'})",
            f"- Wharf's req/s at {args.connections} connections ÷ the naive endpoint's (one "
            f"connection, its best): "
            f"**{speedup:,.1f}x** (target >= 20x: {'met' if speedup >= 20 else 'MISSED'})",
            f"- uncached req/s at {args.connections} connections ÷ the uncached customers "
            f"list's, the median of {TURNS} turns on one server: **{share:.0%}** "
            f"(target >= 70%: {'met' if share >= 0.7 else 'MISSED'})",
            "",
        ]
    return out


def main(argv: list[str] | None = None, *, command: str | None = None) -> None:
    args = parse(argv)
    command = command or " ".join(["python -m bench.factories", *sys.argv[1:]])
    if args.part in ("all", "chart") and not shutil.which("wrk"):
        raise SystemExit("wrk is not installed: apt-get install wrk")
    if args.database_url and args.database_url.startswith("postgres"):
        ensure_pg_database(args.database_url)
    tmp = Path(tempfile.mkdtemp(prefix="wharf-bench-factories-"))
    url = args.database_url or f"sqlite:///{tmp / 'factories.db'}"
    env = {
        "WHARF_KEY_ENCRYPTION_KEYS": keyring_env(),
        "WHARF_VAR_DIR": str(tmp / "var"),
        "WHARF_LOG_LEVEL": "WARNING",
        "WHARF_RATE_LIMIT_API": "100000000/minute",
    }
    lines = [
        f"### {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: `{command}`",
        "",
        f"{url.split(':', 1)[0]}; 1 server worker ({server_name()}), "
        f"server on core 0, wrk and clients on core 1, {args.seconds} s runs after a 2 s warm-up.",
        "",
    ]
    try:
        if args.part in ("all", "append"):
            lines += [*append_part(url, env, args.batches), ""]
        if args.part in ("all", "demo", "chart"):
            demo_lines, factory_id, end = demo_part(url)
            lines += [*demo_lines, ""]
            if args.part in ("all", "chart"):
                lines += chart_part(url, env, factory_id, end, args)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    emit(lines, record=args.record)


if __name__ == "__main__":
    main()
