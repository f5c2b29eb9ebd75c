"""Benchmark runner (`make bench`): Wharf's hot endpoints against a raw ASGI app, in one run.

The server is pinned to one core and wrk to the other, with 64 connections, as the issue asks.
Figures are printed as ratios against the raw app measured in the same run, because absolute
numbers on these shared machines move from run to run.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from bench.cert_data import keyring_env
from bench.hit_overhead import hit_overhead
from wharf.accounts import service as accounts
from wharf.cli import SERVER_HTTP, SERVER_LOOP
from wharf.core.data.db import create_db_engine
from wharf.core.data.migrate import upgrade
from wharf.crm import demo

ROOT = Path(__file__).resolve().parent.parent
LIST_PATH = "/api/v1/customers?company_id=2&status=active&ordering=-last_name"
# `--only NAME` runs another suite: that module's `main(argv, command=...)` takes the rest.
SUITES = {
    "catalog-import": "bench.catalog_import",
    "catalog-reads": "bench.catalog_reads",
    "certificates": "bench.certificates",
    "factories": "bench.factories",
    "keys": "bench.keyring_cost",
    "notify": "bench.notify_latency",
    "sales": "bench.sales",
    "scale-out": "bench.scale_out",
    "table": "bench.table",
    "thumbnails": "bench.thumbnails",
}


@dataclass
class Result:
    name: str
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int  # non-2xx/3xx answers plus wrk's timeouts
    timeouts: int = 0  # of which timeouts: no answer within wrk's 2 s


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(
                f"server exited early: {proc.stderr.read().decode() if proc.stderr else ''}"
            )
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"server at {url} did not come up")


# The ASGI server every suite runs its apps under (the raw app too): uvicorn, as `wharf serve`
# does, or `WHARF_BENCH_SERVER=granian` to compare serving stacks in otherwise equal runs.
SERVER = os.environ.get("WHARF_BENCH_SERVER", "uvicorn")


def serve(
    app: str, env: dict[str, str], *, factory: bool = True, workers: int = 1, cpus: str = "0"
) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    common = ["--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    if SERVER == "granian":
        server = ["granian", "--interface", "asgi", app, *common, "--loop", "asyncio"]
        server += ["--http", "1", "--no-ws", "--log-level", "warning", "--no-access-log"]
    else:
        server = ["uvicorn", app, *common, "--loop", SERVER_LOOP, "--http", SERVER_HTTP]
        server += ["--no-access-log", "--log-level", "warning"]
    cmd = ["taskset", "-c", cpus, sys.executable, "-m", *server]
    if factory:
        cmd.append("--factory")
    proc = subprocess.Popen(cmd, env={**os.environ, **env}, stderr=subprocess.PIPE)
    return proc, port


def server_name() -> str:
    """The serving stack, as the reports name it."""
    if SERVER == "granian":
        return "granian, asyncio loop"
    return f"uvicorn, {SERVER_LOOP} loop, {SERVER_HTTP}"


def wrk(url: str, headers: list[str], seconds: int, connections: int) -> Result:
    cmd = ["taskset", "-c", "1", "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for h in headers:
        cmd += ["-H", h]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    return parse_wrk(out)


TURNS = 3


def _median(runs: list[Result]) -> Result:
    return sorted(runs, key=lambda r: r.rps)[len(runs) // 2]


def in_turns(
    first: tuple[str, list[str]], second: tuple[str, list[str]], args: argparse.Namespace
) -> tuple[Result, Result, float]:
    """Two targets (url, headers) at `args.connections`, in turns, `TURNS` times: this
    machine's speed drifts by 2x within a minute, so the ratio of two runs a minute apart
    measured the drift more than the endpoints. Each side's median run, and the median of the
    turns' ratios (first ÷ second)."""
    seconds = max(2, args.seconds // 2)
    firsts: list[Result] = []
    seconds_: list[Result] = []
    for _ in range(TURNS):
        firsts.append(wrk(*first, seconds, args.connections))
        seconds_.append(wrk(*second, seconds, args.connections))
    ratios = sorted(a.rps / b.rps for a, b in zip(firsts, seconds_, strict=True))
    return _median(firsts), _median(seconds_), ratios[len(ratios) // 2]


def parse_wrk(out: str) -> Result:
    """Requests per second, median and p99 latency, and errors from wrk's report."""
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    errors = timeouts = 0
    if m := re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out):
        errors += int(m.group(1))
    if m := re.search(r"Socket errors:.*?timeout (\d+)", out):
        timeouts = int(m.group(1))
    return Result("", rps, _pct(out, "50%"), _pct(out, "99%"), errors + timeouts, timeouts)


def _pct(out: str, label: str) -> float:
    m = re.search(rf"{label}\s+([\d.]+)(us|ms|s)\b", out)
    if not m:
        return float("nan")
    value, unit = float(m.group(1)), m.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def measure(
    name: str,
    proc_port: tuple[subprocess.Popen[bytes], int],
    path: str,
    headers: list[str],
    args: argparse.Namespace,
) -> Result:
    proc, port = proc_port
    try:
        url = f"http://127.0.0.1:{port}{path}"
        wait_ready(f"http://127.0.0.1:{port}/healthz" if "api" in path else url, proc)
        wrk(url, headers, 2, args.connections)  # warm-up
        result = wrk(url, headers, args.seconds, args.connections)
        result.name = name
        return result
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def measure_raw(body: Path, args: argparse.Namespace) -> Result:
    """The ceiling every read is shown against: a bare ASGI app sending `body`, measured the
    same way in the same run."""
    raw = serve("bench.raw_app:app", {"WHARF_BENCH_RAW_BODY": str(body)}, factory=False)
    return measure("raw ASGI app, same body", raw, "/", [], args)


def cached_against_raw(
    env: dict[str, str], body: Path, headers: list[str], args: argparse.Namespace
) -> float:
    """The cached list's req/s ÷ the raw app's, in turns (`in_turns`), both servers up at
    once on core 0: the one that waits costs nothing."""
    cached = serve("wharf.app:app_from_env", env, factory=True)
    raw = serve("bench.raw_app:app", {"WHARF_BENCH_RAW_BODY": str(body)}, factory=False)
    try:
        list_url, raw_url = (f"http://127.0.0.1:{p}" for p in (cached[1], raw[1]))
        wait_ready(f"{list_url}/healthz", cached[0])
        wait_ready(f"{raw_url}/", raw[0])
        list_url += LIST_PATH
        wrk(list_url, headers, 2, args.connections)  # warm-up: fills the cache
        wrk(raw_url, [], 2, args.connections)
        return in_turns((list_url, headers), (raw_url, []), args)[2]
    finally:
        for proc, _ in (cached, raw):
            proc.terminate()
            proc.wait(timeout=10)


def ensure_pg_database(url: str) -> None:
    """Create the benchmark's own PostgreSQL database on first use (never the test database)."""
    import psycopg
    from psycopg import sql

    name = urlsplit(url).path.lstrip("/")
    admin = urlunsplit(urlsplit(url)._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            return
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def main() -> None:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--only", choices=("crm", *SUITES), default="crm")
    chosen, rest = pre.parse_known_args()
    if chosen.only != "crm":
        suite = importlib.import_module(SUITES[chosen.only])
        suite.main(rest, command=" ".join(["python -m bench.run", *sys.argv[1:]]))
        return
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--only",
        choices=("crm", *SUITES),
        default="crm",
        help="crm (default): the customers list; the others run bench/<module>.py's suite",
    )
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument(
        "--database-url",
        help="default: a fresh SQLite file; e.g. postgresql://postgres@127.0.0.1:5432/wharf_bench",
    )
    parser.add_argument(
        "--redis-url", help="also measure the Redis-backed cache, e.g. redis://127.0.0.1:6379/0"
    )
    parser.add_argument("--record", action="store_true", help="append to bench/RESULTS.md")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed: apt-get install wrk")

    tmp = Path(tempfile.mkdtemp(prefix="wharf-bench-"))
    url = args.database_url or f"sqlite:///{tmp / 'bench.db'}"
    if url.startswith("postgres"):
        ensure_pg_database(url)
    engine = create_db_engine(url)
    upgrade(engine)
    with engine.begin() as conn:
        demo.load(conn)  # 5 companies, 1,000 customers
        user = accounts.create_user(
            conn, email=f"bench-{time.time_ns()}@example.com", name="Bench", password="benchmark!"
        )
        token = accounts.issue_token(
            conn,
            user_id=user["id"],
            name="bench",
            scopes=frozenset({"read"}),
            lifetime=timedelta(hours=2),
        )
    engine.dispose()
    auth = [f"Authorization: Bearer {token}"]
    # The limiter stays on (its cost is part of every figure) with room for wrk's load.
    env = {
        "WHARF_DATABASE_URL": url,
        "WHARF_LOG_LEVEL": "WARNING",
        "WHARF_RATE_LIMIT_API": "100000000/minute",
        # The server refuses to start without a key-encryption key (certificates, webhooks).
        "WHARF_KEY_ENCRYPTION_KEYS": keyring_env(),
    }

    # The raw app returns the very bytes Wharf returns for the list, so both move equal data.
    uncached = serve("wharf.app:app_from_env", {**env, "WHARF_CACHE": "off"}, factory=True)
    wait_ready(f"http://127.0.0.1:{uncached[1]}/healthz", uncached[0])
    req = urllib.request.Request(
        f"http://127.0.0.1:{uncached[1]}{LIST_PATH}", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(req) as resp:
        body = resp.read()
    (tmp / "body.json").write_bytes(body)
    results = [measure("wharf: customers list, uncached", uncached, LIST_PATH, auth, args)]
    results.append(
        measure(
            "wharf: customers list, cached in memory",
            serve("wharf.app:app_from_env", env, factory=True),
            LIST_PATH,
            auth,
            args,
        )
    )
    if args.redis_url:
        results.append(
            measure(
                "wharf: customers list, cached in Redis",
                serve("wharf.app:app_from_env", {**env, "WHARF_REDIS_URL": args.redis_url}),
                LIST_PATH,
                auth,
                args,
            )
        )
    raw = measure_raw(tmp / "body.json", args)
    results.append(raw)
    turns = cached_against_raw(env, tmp / "body.json", auth, args)
    overhead = hit_overhead(url, token)
    report(results, raw, args, url, overhead, turns)
    shutil.rmtree(tmp, ignore_errors=True)


def report(
    results: list[Result],
    raw: Result,
    args: argparse.Namespace,
    url: str,
    overhead: dict[str, float],
    turns: float,
) -> None:
    backend = url.split(":", 1)[0]
    command = " ".join(["python -m bench.run", *sys.argv[1:]])
    lines = [
        f"### {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: `{command}`",
        "",
        f"{backend}; server on core 0 (1 worker, {server_name()}), "
        "wrk on core 1, "
        f"{args.connections} connections, {args.seconds} s after a 2 s warm-up. `GET {LIST_PATH}`: "
        "a page of 50 with total.",
        "",
        *results_table(results, raw),
        "",
        f"- cached in memory ÷ the raw app, the median of {TURNS} turns with both servers up: "
        f"**{turns:.1%}** (target >= 50%: {'met' if turns >= 0.5 else 'MISSED'})",
        "",
        "In-process, on a warm cache entry (no network or HTTP parsing; bench/hit_overhead.py):",
        "",
        *[f"- {name}: {value:.1f}" for name, value in overhead.items()],
    ]
    emit(lines, record=args.record)


def results_table(results: list[Result], raw: Result) -> list[str]:
    """The markdown table of wrk results, each as a share of the raw app's req/s."""
    lines = [
        "| what | req/s | p50 ms | p99 ms | errors | vs raw ASGI |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.name} | {r.rps:,.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | {r.errors} | "
            f"{r.rps / raw.rps:.1%} |"
        )
    return lines


def emit(lines: list[str], *, record: bool) -> None:
    """Print a results section; with `record`, append it to bench/RESULTS.md."""
    text = "\n".join(lines) + "\n"
    print(text)
    if record:
        with (ROOT / "bench" / "RESULTS.md").open("a") as fh:
            fh.write("\n" + text)


if __name__ == "__main__":
    main()
