"""`make bench`: one table over every domain's hot reads and a write per domain (issue 12).

For each database (a fresh SQLite file, then PostgreSQL unless `--no-postgres`), one fresh
database gets every system's bench data:

- CRM: the demo's 5 companies and 1,000 customers;
- certificates: one user's 250 EC P-256 certificates, 200 of them active;
- sales: a year of daily counts of 5,000 products;
- factories: the demo, with its year of readings every 30 s (1,051,200 rows);
- cars: 200 imported the CLI's way, with their JPEG, WebP and AVIF renditions.

Then each read is measured against a server with the cache off ("uncached"), one with the
in-memory cache ("cached") and, on PostgreSQL, one with Redis for the cache generations and
the rate limits ("cached, Redis": the production path). The writes run against the default
server (cache on, so every write also moves its group's generation). Beside each read, in the
same run, the raw ASGI app sends that read's own bytes. As in bench/run.py: the server pinned
to core 0, wrk to core 1, 64 connections, a Lua script writing each request (sales rotates over
100 products; the writes make every request a new row or a real change).

`--profile DIR` then samples each uncached read and each write with py-spy and prints where
the time goes (bench/profile.py).

    .venv/bin/python -m bench.run --only table [--record] [--no-postgres] [--seconds 5]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import text

from bench import seed_stack
from bench.catalog_reads import load_cars, server_env, server_settings
from bench.cert_data import account, keyring_env, seed_certificates
from bench.factories import fresh, settle
from bench.profile import sampling, summarize
from bench.run import LIST_PATH, Result, emit, ensure_pg_database, server_name
from bench.sales_query import load_year, served, server, wrk_lua
from wharf.core.data.db import create_db_engine
from wharf.core.keys import Keyring
from wharf.crm import demo as crm_demo
from wharf.factories import demo as factories_demo
from wharf.factories import readings
from wharf.factories import service as factories
from wharf.factories.models import DAY

PG_DEFAULT = "postgresql://postgres@127.0.0.1:5432/wharf_bench"
REDIS_DEFAULT = "redis://127.0.0.1:6379/0"
CERTIFICATES, PRODUCTS, ROTATE = 250, 5_000, 100


@dataclass(frozen=True)
class Endpoint:
    name: str
    lua: str  # a wrk script: `request` writes each request
    sample: str = ""  # a read's path, fetched once for the raw app's body


@dataclass
class Row:
    endpoint: Endpoint
    backend: str
    figures: dict[str, Result] = field(default_factory=dict)  # by mode, and "raw"
    body: bytes = b""


def _script(token: str, body: str, *, scheme: str = "Bearer") -> str:
    """A wrk script with the token and JSON headers, and `body` defining `request`."""
    return (
        f'wrk.headers["Authorization"] = "{scheme} {token}"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        "local i = 0\n" + body
    )


def _get(name: str, token: str, path: str, *, scheme: str = "Bearer") -> Endpoint:
    body = f'request = function() return wrk.format("GET", "{path}") end\n'
    lua = _script(token, body, scheme=scheme)
    return Endpoint(name, lua, path)


def _rotating_get(name: str, token: str, prefix: str, count: int, suffix: str) -> Endpoint:
    """GETs of `prefix` + 1..count + `suffix`, in turn."""
    lua = _script(
        token,
        "request = function()\n"
        f"    i = i % {count} + 1\n"
        f'    return wrk.format("GET", "{prefix}" .. i .. "{suffix}")\n'
        "end\n",
    )
    return Endpoint(name, lua, f"{prefix}1{suffix}")


def _lua_ids(ids: list[int]) -> str:
    return "local ids = {" + ",".join(map(str, ids)) + "}\n"


@dataclass(frozen=True)
class Seeded:
    token: str
    reads: list[Endpoint]
    writes: list[Endpoint]
    env: dict[str, str]


def seed(url: str, tmp: Path, keys: str) -> Seeded:
    """A fresh database with every system's bench data, and the endpoints to measure."""
    engine = fresh(url)
    settings = server_settings(url, keys, tmp)
    with engine.begin() as conn:
        crm_demo.load(conn)
        loaded = factories_demo.load(conn)
        appended = factories.create_factory(conn, name="Appended by the bench")["id"]
        load_year(conn, products=PRODUCTS, days=365)
        owner = account(conn, "bench-table", role="user", scopes={"read", "write"})
        certs = seed_certificates(
            conn, Keyring.parse(keys), owner, count=CERTIFICATES, inactive_every=5
        )
        customers = [
            int(i)
            for i in conn.execute(text("SELECT id FROM customers ORDER BY id LIMIT :n"), {"n": 100})
            .scalars()
            .all()
        ]
        _, last = readings.extent(conn, loaded.demo_factory_id)
    load_cars(engine, settings, tmp / "cars")
    settle(engine)
    engine.dispose()
    if last is None:
        raise SystemExit("the demo factory has no readings")
    end = (last + 1) // DAY * DAY + DAY
    token = owner.token
    chart = f"/api/v1/factories/{loaded.demo_factory_id}/chart-data"
    reads = [
        _get("CRM: customers list", token, LIST_PATH),
        _get(
            "certificates: list",
            token,
            f"/api/v1/users/{owner.user_id}/certificates?active=true",
        ),
        _rotating_get(
            "sales: a product, 30 days", token, "/api/v1/sales/products/", ROTATE, "?days=30"
        ),
        _get(
            "factories: chart-data, a year at 1d",
            token,
            f"{chart}?from={end - 365 * DAY}&to={end}&bucket=1d",
        ),
        _get("cars: web list", token, "/api/v1/cars/web"),
    ]
    note = (
        _lua_ids(customers) + "request = function()\n"
        "    i = i + 1\n"
        '    local path = "/api/v1/customers/" .. ids[(i - 1) % #ids + 1] .. "/notes"\n'
        '    return wrk.format("POST", path, nil, \'{"text": "bench note \' .. i .. \'"}\')\n'
        "end\n"
    )
    # Ten readings a request, each run after the last one's times (`BASE` is set per run).
    append = (
        "request = function()\n"
        "    local rows = {}\n"
        "    for k = 0, 9 do\n"
        "        local t = BASE + (i * 10 + k) * 60\n"
        '        rows[#rows + 1] = \'{"time": \' .. t .. \', "actual": 20, "goal": 25}\'\n'
        "    end\n"
        "    i = i + 1\n"
        f'    return wrk.format("POST", "/api/v1/factories/{appended}/readings", nil,\n'
        '        "[" .. table.concat(rows, ",") .. "]")\n'
        "end\n"
    )
    # Each pass over the certificates sets the opposite state, so every request changes one.
    toggle = (
        _lua_ids(certs) + "request = function()\n"
        "    local n = #ids\n"
        "    local active = (math.floor(i / n) % 2 == 1) and 'true' or 'false'\n"
        "    i = i + 1\n"
        f'    local path = "/api/v1/users/{owner.user_id}/certificates/" .. ids[(i - 1) % n + 1]'
        ' .. "/active"\n'
        "    return wrk.format(\"PATCH\", path, nil, '{\"active\": ' .. active .. '}')\n"
        "end\n"
    )
    writes = [
        Endpoint("CRM: create a note", _script(token, note)),
        Endpoint("factories: append 10 readings", _script(token, append)),
        Endpoint("certificates: activate/deactivate", _script(token, toggle)),
    ]
    return Seeded(token, reads, writes, server_env(url, keys, tmp))


class Runner:
    """Runs wrk scripts against a served port; every run gets its own script file, and the
    append's `BASE` moves on each run so no two runs write the same reading time."""

    def __init__(self, tmp: Path, args: argparse.Namespace) -> None:
        self.tmp, self.args, self.runs = tmp, args, 0

    def run(self, port: int, script: str, seconds: int) -> Result:
        self.runs += 1
        path = self.tmp / f"run{self.runs}.lua"
        path.write_text(f"BASE = {2_000_000_000 + self.runs * 1_000_000_000}\n" + script)
        return wrk_lua(port, path, [], seconds, self.args.connections)

    def measure(self, port: int, endpoint: Endpoint) -> Result:
        self.run(port, endpoint.lua, 2)  # warm-up (fills the cache; writes write)
        result = self.run(port, endpoint.lua, self.args.seconds)
        result.name = endpoint.name
        return result


def _fetch(port: int, token: str, path: str) -> bytes:
    """A read's answer as a client sees it (a 200 with JSON), for the raw app to send."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request) as resp:
        body: bytes = resp.read()
    json.loads(body)
    return body


def backend_rows(url: str, args: argparse.Namespace, runner: Runner) -> list[Row]:
    """Seed a fresh database at `url`, then measure every read in every mode, the raw app
    beside each, and the writes."""
    tmp = Path(tempfile.mkdtemp(prefix="wharf-bench-table-"))
    try:
        seeded = seed(url, tmp, keyring_env())
        backend = url.split(":", 1)[0]
        reads = [Row(e, backend) for e in seeded.reads]
        modes = {"uncached": {"WHARF_CACHE": "off"}, "cached": {"WHARF_CACHE": "on"}}
        if backend.startswith("postgres") and args.redis_url:
            modes["cached, Redis"] = {"WHARF_CACHE": "on", "WHARF_REDIS_URL": args.redis_url}
        for mode, extra in modes.items():
            with server("wharf.app:app_from_env", {**seeded.env, **extra}) as port:
                for row in reads:
                    if not row.body:
                        row.body = _fetch(port, seeded.token, row.endpoint.sample)
                    row.figures[mode] = runner.measure(port, row.endpoint)
        for row in reads:
            body_file = tmp / "raw-body.json"
            body_file.write_bytes(row.body)
            raw_env = {"WHARF_BENCH_RAW_BODY": str(body_file)}
            with server("bench.raw_app:app", raw_env, factory=False) as port:
                row.figures["raw"] = runner.measure(port, _get("raw", "", "/"))
        if backend == "sqlite":  # the seed's own stack, on the same customers
            engine = create_db_engine(url)
            with engine.connect() as conn:
                seed_stack.export(conn, tmp / "crm.json")
            engine.dispose()
            with seed_stack.seed_stack(tmp / "crm.json", tmp) as (port, token):
                drf = _get("seed", token, seed_stack.PATH, scheme="Token")
                reads[0].figures["seed"] = runner.measure(port, drf)
        writes = [Row(e, backend) for e in seeded.writes]
        with server("wharf.app:app_from_env", seeded.env) as port:
            for row in writes:
                row.figures["write"] = runner.measure(port, row.endpoint)
        if args.profile:
            profile_rows(url, seeded, reads + writes, args, runner)
        return reads + writes
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def profile_rows(
    url: str, seeded: Seeded, rows: list[Row], args: argparse.Namespace, runner: Runner
) -> None:
    """Each uncached read and each write under wrk again, sampled by py-spy (bench/profile.py);
    the summaries go into `args.profile_lines` for the report."""
    backend = url.split(":", 1)[0]
    for row in rows:
        env = {**seeded.env, "WHARF_CACHE": "off" if row.endpoint.sample else "on"}
        out = Path(args.profile) / f"{backend}-{len(args.profile_lines)}.txt"
        with served("wharf.app:app_from_env", env) as (proc, port):
            runner.run(port, row.endpoint.lua, 2)
            with sampling(proc.pid, args.seconds, out):
                runner.run(port, row.endpoint.lua, args.seconds)
        mode = "uncached" if row.endpoint.sample else "write"
        args.profile_lines.append((f"{row.endpoint.name}, {backend}, {mode}", summarize(out)))


def report(rows: list[Row], args: argparse.Namespace, command: str) -> list[str]:
    modes = ["uncached", "cached", "cached, Redis"]
    lines = [
        f"### {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: `{command}`",
        "",
        f"Server on core 0 (1 worker, {server_name()}, the idle job worker on, as by default), "
        f"wrk on core 1, {args.connections} connections, {args.seconds} s after a 2 s warm-up. "
        "Each read's raw ASGI app sends that read's own bytes, measured in the same run. "
        '"cached, Redis": cache generations and rate limits in Redis, the production path.',
        "",
        "| read | db | bytes | raw ASGI req/s | "
        + " | ".join(f"{m} req/s | p99 ms | vs raw" for m in modes)
        + " | errors |",
        "|---|---|---|---|" + "---|---|---|" * len(modes) + "---|",
    ]
    for row in (r for r in rows if r.endpoint.sample):
        raw = row.figures["raw"]
        cells = []
        for mode in modes:
            if mode in row.figures:
                r = row.figures[mode]
                cells.append(f"{r.rps:,.0f} | {r.p99_ms:.1f} | {r.rps / raw.rps:.1%}")
            else:
                cells.append("n/a | n/a | n/a")
        errors = sum(r.errors for mode, r in row.figures.items() if mode != "seed")
        lines.append(
            f"| {row.endpoint.name} | {row.backend} | {len(row.body):,} | {raw.rps:,.0f} | "
            + " | ".join(cells)
            + f" | {errors} |"
        )
    for row in (r for r in rows if "seed" in r.figures):
        seed, mine = row.figures["seed"], row.figures
        lines += [
            "",
            "The seed's own stack (Django REST framework, SQLite, one gunicorn sync worker: "
            "bench/seed_stack/) on the same customers, in the same run: "
            f"**{seed.rps:,.0f} req/s**, p99 {seed.p99_ms:.0f} ms, {seed.errors} errors. "
            f"Wharf's uncached list is **{mine['uncached'].rps / seed.rps:.1f}x** it, "
            f"cached **{mine['cached'].rps / seed.rps:.0f}x**.",
        ]
    lines += [
        "",
        "| write (cache on) | db | req/s | p50 ms | p99 ms | errors (of which timeouts) |",
        "|---|---|---|---|---|---|",
    ]
    for row in (r for r in rows if not r.endpoint.sample):
        w = row.figures["write"]
        lines.append(
            f"| {row.endpoint.name} | {row.backend} | {w.rps:,.0f} | {w.p50_ms:.1f} | "
            f"{w.p99_ms:.1f} | {w.errors} ({w.timeouts}) |"
        )
    for title, summary in args.profile_lines:
        lines += ["", f"Profile, {title} (py-spy, leaf frames):", "", *summary]
    return lines


def main(argv: list[str] | None = None, *, command: str | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--sqlite", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument(
        "--postgres-url", default=PG_DEFAULT, help=f"default {PG_DEFAULT}; its schema is reset"
    )
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--redis-url", default=REDIS_DEFAULT, help=f"default {REDIS_DEFAULT}")
    parser.add_argument("--profile", metavar="DIR", help="also sample each path with py-spy")
    parser.add_argument("--record", action="store_true", help="append to bench/RESULTS.md")
    args = parser.parse_args(argv)
    args.profile_lines = []
    command = command or " ".join(["python -m bench.table", *sys.argv[1:]])
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed: apt-get install wrk")
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="wharf-bench-table-"))
    runner = Runner(tmp, args)
    rows: list[Row] = []
    try:
        if args.sqlite:
            rows += backend_rows(f"sqlite:///{tmp / 'bench.db'}", args, runner)
        if not args.no_postgres:
            ensure_pg_database(args.postgres_url)
            rows += backend_rows(args.postgres_url, args, runner)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    emit(report(rows, args, command), record=args.record)


if __name__ == "__main__":
    main()
