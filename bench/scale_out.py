"""Scale-out (issue 12): two Wharf processes on their own ports sharing PostgreSQL and Redis,
each loaded by its own wrk at once, beside one process alone, in the same run.

This machine has two cores, so "two hosts" here share them with both wrk processes,
PostgreSQL and Redis: the figures show that throughput adds up across processes with nothing
shared but the database and Redis, not what two real hosts would do. The guarantees across
processes (cache freshness, one rate-limit budget, idempotency, one webhook delivery, one
inbox watcher) are tests: tests/test_scale_out.py.

    .venv/bin/python -m bench.run --only scale-out [--record] [--seconds 10]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

from bench.cert_data import account, keyring_env
from bench.factories import fresh
from bench.run import LIST_PATH, Result, emit, ensure_pg_database, parse_wrk, server_name
from bench.sales_query import served
from wharf.crm import demo

PG_DEFAULT = "postgresql://postgres@127.0.0.1:5432/wharf_bench_scale"
REDIS_DEFAULT = "redis://127.0.0.1:6379/0"


def _wrk(port: int, token: str, seconds: int, connections: int, core: str) -> subprocess.Popen[str]:
    cmd = ["taskset", "-c", core, "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    cmd += ["-H", f"Authorization: Bearer {token}", f"http://127.0.0.1:{port}{LIST_PATH}"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)


def _results(procs: list[subprocess.Popen[str]], names: list[str]) -> list[Result]:
    out = []
    for proc, name in zip(procs, names, strict=True):
        stdout, _ = proc.communicate()
        if proc.returncode:
            raise SystemExit(f"wrk failed for {name}")
        result = parse_wrk(stdout)
        result.name = name
        out.append(result)
    return out


def run(env: dict[str, str], token: str, args: argparse.Namespace, mode: str) -> list[str]:
    """One process alone, then two at once, each with its own wrk; the table lines."""
    rows: list[Result] = []
    with served("wharf.app:app_from_env", env) as (_, port):
        _results([_wrk(port, token, 2, args.connections, "1")], ["warm-up"])
        rows += _results(
            [_wrk(port, token, args.seconds, args.connections, "1")],
            [f"one process alone (core 0; wrk on core 1), {mode}"],
        )
    with ExitStack() as stack:
        ports = [
            stack.enter_context(served("wharf.app:app_from_env", env, cpus=core))[1]
            for core in ("0", "1")
        ]
        _results([_wrk(p, token, 2, args.connections // 2, "0,1") for p in ports], ["w", "w"])
        both = _results(
            [_wrk(p, token, args.seconds, args.connections // 2, "0,1") for p in ports],
            [f"process {n} of 2 (core {n - 1}), {mode}" for n in (1, 2)],
        )
    rows += both
    total = sum(r.rps for r in both)
    return [
        "| what | req/s | p50 ms | p99 ms | errors |",
        "|---|---|---|---|---|",
        *[
            f"| {r.name} | {r.rps:,.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | {r.errors} |"
            for r in rows
        ],
        f"| two processes together, {mode} | {total:,.0f} | | | |",
        "",
        f"- {mode}: two processes give **{total / rows[0].rps:.2f}x** one process alone",
        "",
    ]


def main(argv: list[str] | None = None, *, command: str | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64, help="in all, split over two")
    parser.add_argument("--database-url", default=PG_DEFAULT)
    parser.add_argument("--redis-url", default=REDIS_DEFAULT)
    parser.add_argument("--record", action="store_true", help="append to bench/RESULTS.md")
    args = parser.parse_args(argv)
    command = command or " ".join(["python -m bench.scale_out", *sys.argv[1:]])
    ensure_pg_database(args.database_url)
    engine = fresh(args.database_url)
    with engine.begin() as conn:
        demo.load(conn)
        reader = account(conn, "bench-scale", role="user", scopes={"read"})
    engine.dispose()
    env = {
        "WHARF_DATABASE_URL": args.database_url,
        "WHARF_REDIS_URL": args.redis_url,
        "WHARF_REDIS_KEY_PREFIX": f"bench-scale-{time.time_ns()}",
        "WHARF_KEY_ENCRYPTION_KEYS": keyring_env(),
        "WHARF_LOG_LEVEL": "WARNING",
        "WHARF_RATE_LIMIT_API": "100000000/minute",
        "WHARF_VAR_DIR": str(Path("/tmp") / f"wharf-bench-scale-{time.time_ns()}"),
    }
    lines = [
        f"### {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: `{command}`",
        "",
        f"PostgreSQL and Redis shared; 1 worker a process ({server_name()}). `GET {LIST_PATH}`; "
        f"{args.connections} connections in all ({args.connections // 2} per process when "
        f"two), {args.seconds} s after a 2 s warm-up. Two processes and both wrk share the two "
        "cores with PostgreSQL and Redis, so this shows that throughput adds up across "
        "processes, not what two hosts would give.",
        "",
    ]
    lines += run({**env, "WHARF_CACHE": "off"}, reader.token, args, "uncached")
    lines += run({**env, "WHARF_CACHE": "on"}, reader.token, args, "cached, Redis")
    emit(lines, record=args.record)


if __name__ == "__main__":
    main()
