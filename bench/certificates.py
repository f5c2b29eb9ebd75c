"""The certificates list, uncached and cached, against the raw ASGI app in the same run.

Same setup as the customers list in bench/run.py (its helpers, imported): the server pinned
to core 0, wrk to core 1, 64 connections. One user owns 250 certificates (EC P-256, real PEM
bodies, so each item carries the parsed fields), 200 of them active; the request is their
first page of 50 active ones with the total, as that user.

    .venv/bin/python -m bench.certificates [--record] [--database-url postgresql://...]
    .venv/bin/python -m bench.run --only certificates [--record] [--database-url ...]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

from bench.cert_data import account, keyring_env, seed_certificates
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
from wharf.core.data.db import create_db_engine
from wharf.core.data.migrate import upgrade
from wharf.core.keys import Keyring

CERTIFICATES, INACTIVE_EVERY = 250, 5  # 200 active


def list_path(user_id: int) -> str:
    return f"/api/v1/users/{user_id}/certificates?active=true"


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
    command = command or " ".join(["python -m bench.certificates", *sys.argv[1:]])
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed: apt-get install wrk")

    tmp = Path(tempfile.mkdtemp(prefix="wharf-bench-certs-"))
    url = args.database_url or f"sqlite:///{tmp / 'bench.db'}"
    if url.startswith("postgres"):
        ensure_pg_database(url)
    keys = keyring_env()
    engine = create_db_engine(url)
    upgrade(engine)
    with engine.begin() as conn:
        owner = account(conn, "bench-certs", role="user", scopes={"read"})
        seed_certificates(
            conn, Keyring.parse(keys), owner, count=CERTIFICATES, inactive_every=INACTIVE_EVERY
        )
    engine.dispose()
    path = list_path(owner.user_id)
    auth = [f"Authorization: Bearer {owner.token}"]
    env = {
        "WHARF_DATABASE_URL": url,
        "WHARF_KEY_ENCRYPTION_KEYS": keys,
        "WHARF_VAR_DIR": str(tmp / "var"),
        "WHARF_LOG_LEVEL": "WARNING",
        "WHARF_RATE_LIMIT_API": "100000000/minute",
    }

    uncached = serve("wharf.app:app_from_env", {**env, "WHARF_CACHE": "off"})
    wait_ready(f"http://127.0.0.1:{uncached[1]}/healthz", uncached[0])
    request = urllib.request.Request(
        f"http://127.0.0.1:{uncached[1]}{path}", headers={"Authorization": f"Bearer {owner.token}"}
    )
    with urllib.request.urlopen(request) as resp:
        body = resp.read()
    page = json.loads(body)
    if len(page["items"]) != 50 or page["total"] != CERTIFICATES - CERTIFICATES // INACTIVE_EVERY:
        raise SystemExit(f"unexpected page: {len(page['items'])} items of {page['total']}")
    (tmp / "body.json").write_bytes(body)
    results = [measure("wharf: certificates list, uncached", uncached, path, auth, args)]
    results.append(
        measure(
            "wharf: certificates list, cached in memory",
            serve("wharf.app:app_from_env", env),
            path,
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
        "`GET /api/v1/users/{id}/certificates?active=true` as that user: a page of 50 of the "
        f"200 active (of {CERTIFICATES}) PEM certificates with total, {body_bytes:,} bytes.",
        "",
        *results_table(results, raw),
    ]
    emit(lines, record=args.record)


if __name__ == "__main__":
    main()
