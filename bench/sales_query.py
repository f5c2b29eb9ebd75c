"""Sales query: `GET /api/v1/sales/products/{id}?days=30` over a year of counts, with wrk.

A year (365 days x 5,000 products) goes straight into sales_daily and sales_files by one SQL
statement each (no files). The server is pinned to core 0 and wrk to core 1, as in
bench/run.py, whose helpers this uses; a Lua script walks the product ids, so requests are
never for one row. Uncached is a server with WHARF_CACHE=off; cached rotates over fewer ids,
all in the cache after the warm-up. Beside them, in the same run: the uncached customers
list (the CRM figure the issue compares with) and the raw ASGI app with the same body.
Used by bench/sales.py.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path

from sqlalchemy import Connection, insert, text

from bench.cert_data import account, keyring_env
from bench.run import (
    LIST_PATH,
    Result,
    measure,
    parse_wrk,
    results_table,
    serve,
    wait_ready,
)
from wharf.core.data.db import create_db_engine, utcnow
from wharf.core.data.migrate import upgrade
from wharf.crm import demo
from wharf.sales.models import SalesFile

END = date(2026, 11, 30)
WARM_UP = 2
_SQLITE_YEAR = """
WITH RECURSIVE p(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM p WHERE n < :products),
    d(k) AS (SELECT 0 UNION ALL SELECT k + 1 FROM d WHERE k < :days - 1)
INSERT INTO sales_daily (product_id, day, units)
SELECT n, date(:start, '+' || k || ' days'), (n * 7 + k * 13) % 50 + 1 FROM p, d ORDER BY n, k
"""
_PG_YEAR = """
INSERT INTO sales_daily (product_id, day, units)
SELECT n, CAST(:start AS DATE) + k, (n * 7 + k * 13) % 50 + 1
FROM generate_series(1, :products) n, generate_series(0, :days - 1) k ORDER BY n, k
"""
_LUA = """
local i = 0
request = function()
    i = i % {ids} + 1
    return wrk.format(nil, "/api/v1/sales/products/" .. i .. "?days=30")
end
"""


def load_year(conn: Connection, *, products: int, days: int) -> None:
    """`days` days up to END of `products` products, and a current ledger row per day."""
    start = END - timedelta(days=days - 1)
    postgres = conn.dialect.name == "postgresql"
    if postgres:
        conn.execute(text("TRUNCATE sales_daily, sales_files"))
    else:
        conn.execute(text("DELETE FROM sales_daily"))
        conn.execute(text("DELETE FROM sales_files"))
    conn.execute(
        text(_PG_YEAR if postgres else _SQLITE_YEAR),
        {"start": start if postgres else start.isoformat(), "products": products, "days": days},
    )
    now = utcnow()
    conn.execute(
        insert(SalesFile),
        [
            {
                "day": day,
                "name": f"{day:%Y%m%d}_transactions.json",
                "sha256": hashlib.sha256(day.isoformat().encode()).hexdigest(),
                **dict.fromkeys(("bytes", "lines", "transactions", "units", "bad_lines"), 0),
                "products": products,
                "bad_line_sample": [],
                "engine": "duckdb",
                "seconds": 0.0,
                "ingested_at": now,
            }
            for day in (start + timedelta(days=n) for n in range(days))
        ],
    )
    if postgres:
        conn.execute(text("ANALYZE sales_daily, sales_files"))  # as autovacuum soon would


def wrk_lua(port: int, script: Path, headers: list[str], seconds: int, connections: int) -> Result:
    """bench/run.py's wrk, with a Lua script that writes each request."""
    cmd = ["taskset", "-c", "1", "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for h in headers:
        cmd += ["-H", h]
    cmd += ["-s", str(script), f"http://127.0.0.1:{port}/"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return parse_wrk(out)


@contextmanager
def server(app: str, env: dict[str, str], *, factory: bool = True) -> Iterator[int]:
    with served(app, env, factory=factory) as (_, port):
        yield port


@contextmanager
def served(
    app: str, env: dict[str, str], *, factory: bool = True, cpus: str = "0"
) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """`server`, also giving the process (to sample it, say), on the cores `cpus`."""
    proc, port = serve(app, env, factory=factory, cpus=cpus)
    try:
        wait_ready(f"http://127.0.0.1:{port}{'/healthz' if factory else '/'}", proc)
        yield proc, port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # still working through queued slow requests
            proc.kill()
            proc.wait()


def at(
    name: str, port: int, script: Path, headers: list[str], args: argparse.Namespace
) -> tuple[Result, Result]:
    """After a warm-up: one run at the p99 connections, one at the throughput connections."""
    wrk_lua(port, script, headers, WARM_UP, args.connections)
    low = wrk_lua(port, script, headers, args.seconds, args.p99_connections)
    high = wrk_lua(port, script, headers, args.seconds, args.connections)
    low.name = high.name = name
    return low, high


def run(args: argparse.Namespace, url: str, tmp: Path) -> list[str]:
    engine = create_db_engine(url)
    upgrade(engine)
    with engine.begin() as conn:
        demo.load(conn)  # the CRM list's 1,000 customers (nothing when already there)
        reader = account(conn, "bench-sales", role="user", scopes={"read"})
        load_year(conn, products=args.query_products, days=args.query_days)
    engine.dispose()
    auth = [f"Authorization: Bearer {reader.token}"]
    env = {
        "WHARF_DATABASE_URL": url,
        "WHARF_KEY_ENCRYPTION_KEYS": keyring_env(),
        "WHARF_VAR_DIR": str(tmp / "var"),
        "WHARF_LOG_LEVEL": "WARNING",
        "WHARF_RATE_LIMIT_API": "100000000/minute",
    }
    rotate_all, rotate_few = tmp / "all.lua", tmp / "few.lua"
    rotate_all.write_text(_LUA.replace("{ids}", str(args.query_products)))
    rotate_few.write_text(_LUA.replace("{ids}", str(min(args.cached_ids, args.query_products))))
    lows, highs = [], []
    with server("wharf.app:app_from_env", {**env, "WHARF_CACHE": "off"}) as port:
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/v1/sales/products/1?days=30",
            headers={"Authorization": f"Bearer {reader.token}"},
        )
        with urllib.request.urlopen(request) as resp:
            body = resp.read()
        (tmp / "body.json").write_bytes(body)
        low, high = at("wharf: product, 30 days, uncached", port, rotate_all, auth, args)
        lows.append(low)
        highs.append(high)
    with server("wharf.app:app_from_env", env) as port:
        label = f"wharf: product, 30 days, cached in memory ({args.cached_ids} ids)"
        low, high = at(label, port, rotate_few, auth, args)
        lows.append(low)
        highs.append(high)
    crm_env = {**env, "WHARF_CACHE": "off"}
    crm = measure(
        "wharf: customers list, uncached", serve("wharf.app:app_from_env", crm_env), LIST_PATH,
        auth, args,
    )  # fmt: skip
    highs.append(crm)
    raw_env = {"WHARF_BENCH_RAW_BODY": str(tmp / "body.json")}
    with server("bench.raw_app:app", raw_env, factory=False) as port:
        raw_low, raw_high = at("raw ASGI app, same body", port, rotate_all, [], args)
    lows.append(raw_low)
    highs.append(raw_high)
    p99, share = lows[0].p99_ms, highs[0].rps / crm.rps
    return [
        f"{args.query_days} days x {args.query_products:,} products in sales_daily; "
        f"`GET /api/v1/sales/products/{{id}}?days=30` ({len(body):,} bytes), ids rotating "
        f"1..{args.query_products:,} (cached: 1..{args.cached_ids:,}); server on core 0, wrk on "
        f"core 1, {args.seconds} s after a {WARM_UP} s warm-up.",
        "",
        f"{args.p99_connections} connections:",
        "",
        *results_table(lows, raw_low),
        "",
        f"{args.connections} connections:",
        "",
        *results_table(highs, raw_high),
        "",
        f"- p99 uncached at {args.p99_connections} connections: **{p99:.2f} ms** "
        f"(target < 25 ms: {'met' if p99 < 25 else 'MISSED'})",
        f"- uncached req/s at {args.connections} connections ÷ the uncached customers list's: "
        f"**{share:.0%}** (target >= 80%: {'met' if share >= 0.8 else 'MISSED'})",
    ]
