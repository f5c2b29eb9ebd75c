"""Notification latency, from the commit of a certificate change to the webhook's receipt.

A real server (uvicorn, `wharf.app:app_from_env`, pinned to core 0) with its in-server job
worker, a receiver on 127.0.0.1 (allowed by WHARF_OUTBOUND_ALLOW) in this process on core 1,
and one webhook endpoint for every event. For each of N certificates, one after another:
`PATCH .../certificates/{id}/active` with `notify: true` (a fresh connection each, so with
several server processes the changes land on all of them), then wait for that event to
arrive. The commit happens before the response, so "after the response" (arrival minus the
time the response was read) is a lower bound of commit-to-receipt and "from the request"
(arrival minus the time the request was sent) an upper bound. A random pause of up to one
poll interval before each change keeps the changes out of step with the worker's polling.

Cases: the in-server worker with 1 and with 2 server processes (each process's worker is
woken by commits in its own process, `jobs.WAKE`), and a server with its worker off beside a
`wharf webhooks deliver` process, which can only find the work by polling.

    .venv/bin/python -m bench.notify_latency [--changes 200] [--record] [--database-url ...]
    .venv/bin/python -m bench.run --only notify [--changes 200] [--record]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from sqlalchemy import update
from standardwebhooks import Webhook

from bench.cert_data import Account, account, keyring_env, seed_certificates
from bench.run import emit, ensure_pg_database, free_port, serve, wait_ready
from wharf.core.config import Settings
from wharf.core.data.db import create_db_engine
from wharf.core.data.migrate import upgrade
from wharf.core.keys import Keyring
from wharf.core.outbound import Outbound
from wharf.core.webhooks import service as webhooks
from wharf.core.webhooks.models import WebhookEndpoint

DEFAULT_POLL = Settings.model_fields["job_poll_seconds"].default


@dataclass(frozen=True)
class Arrival:
    at: float  # time.time() once the request's body was read
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """Answers 200 to every POST and files it by (certificate id, active)."""

    port: int = field(default_factory=free_port)
    arrivals: dict[tuple[int, bool], list[Arrival]] = field(default_factory=dict)
    cond: threading.Condition = field(default_factory=threading.Condition)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def up(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                at = time.time()
                data = json.loads(body)["data"]
                headers = {k.lower(): v for k, v in self.headers.items()}
                with receiver.cond:
                    key = (int(data["id"]), bool(data["active"]))
                    receiver.arrivals.setdefault(key, []).append(Arrival(at, headers, body))
                    receiver.cond.notify_all()
                self.send_response(200)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def down(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def wait(self, key: tuple[int, bool], timeout: float) -> Arrival | None:
        with self.cond:
            self.cond.wait_for(lambda: key in self.arrivals, timeout)
            found = self.arrivals.get(key)
            return found[0] if found else None

    def clear(self) -> None:
        with self.cond:
            self.arrivals.clear()


@dataclass
class Case:
    name: str
    after_response_ms: list[float] = field(default_factory=list)
    from_request_ms: list[float] = field(default_factory=list)
    round_trip_ms: list[float] = field(default_factory=list)
    lost: int = 0
    duplicates: int = 0
    arrived: int = 0  # deliveries received, warm-up and duplicates included
    verified: int = 0


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def patch(port: int, owner: Account, certificate_id: int, active: bool) -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1/users/{owner.user_id}/certificates/{certificate_id}/active",
        data=json.dumps({"active": active, "notify": True}).encode(),
        method="PATCH",
        headers={"Authorization": f"Bearer {owner.token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        resp.read()
        return int(resp.status)


def deliverer(env: dict[str, str]) -> subprocess.Popen[bytes]:
    """`wharf webhooks deliver` on the server's core, once it says it is delivering."""
    proc = subprocess.Popen(
        ["taskset", "-c", "0", sys.executable, "-m", "wharf", "webhooks", "deliver"],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    if b"Delivering" not in proc.stdout.readline():
        proc.kill()
        raise SystemExit("`wharf webhooks deliver` did not start")
    return proc


def run_case(
    case: Case,
    env: dict[str, str],
    *,
    workers: int,
    with_deliverer: bool,
    receiver: Receiver,
    owner: Account,
    states: dict[int, bool],
    secret: str,
    args: argparse.Namespace,
) -> Case:
    proc, port = serve("wharf.app:app_from_env", env, workers=workers)
    helper = deliverer(env) if with_deliverer else None
    try:
        wait_ready(f"http://127.0.0.1:{port}/healthz", proc)
        time.sleep(1.0 * workers)  # let every server process finish starting
        receiver.clear()
        ids = list(states)
        for n, certificate_id in enumerate(ids):
            time.sleep(random.uniform(0, args.pause))
            target = not states[certificate_id]
            sent = time.time()
            status = patch(port, owner, certificate_id, target)
            answered = time.time()
            states[certificate_id] = target
            if status != 202:
                raise SystemExit(f"PATCH answered {status}, not 202 (notification queued)")
            arrival = receiver.wait((certificate_id, target), args.timeout)
            if n < args.warmup:
                continue
            if arrival is None:
                case.lost += 1
                continue
            case.after_response_ms.append((arrival.at - answered) * 1000)
            case.from_request_ms.append((arrival.at - sent) * 1000)
            case.round_trip_ms.append((answered - sent) * 1000)
        time.sleep(0.5)  # a late duplicate would show up by now
        hook = Webhook(secret)
        with receiver.cond:
            for got in receiver.arrivals.values():
                case.duplicates += len(got) - 1
                case.arrived += len(got)
                for one in got:
                    try:
                        hook.verify(one.body, one.headers)
                        case.verified += 1
                    except Exception:  # a failed signature is counted, not raised
                        continue
        return case
    finally:
        if helper is not None:
            helper.send_signal(signal.SIGINT)
            try:
                helper.wait(timeout=10)
            except subprocess.TimeoutExpired:
                helper.kill()
        proc.terminate()
        proc.wait(timeout=10)


def main(argv: list[str] | None = None, *, command: str | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--changes", type=int, default=200, help="measured changes per case")
    parser.add_argument("--warmup", type=int, default=10, help="unmeasured changes first")
    parser.add_argument("--poll", type=float, help=f"WHARF_JOB_POLL_SECONDS ({DEFAULT_POLL})")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds before 'lost'")
    parser.add_argument("--database-url", help="default: a fresh SQLite file")
    parser.add_argument("--record", action="store_true", help="append to bench/RESULTS.md")
    args = parser.parse_args(argv)
    command = command or " ".join(["python -m bench.notify_latency", *sys.argv[1:]])
    poll = args.poll if args.poll is not None else DEFAULT_POLL
    args.pause = poll
    os.sched_setaffinity(0, {1})  # this process (client and receiver) on core 1

    tmp = Path(tempfile.mkdtemp(prefix="wharf-bench-notify-"))
    url = args.database_url or f"sqlite:///{tmp / 'bench.db'}"
    if url.startswith("postgres"):
        ensure_pg_database(url)
    keys = keyring_env()
    keyring = Keyring.parse(keys)
    receiver = Receiver()
    settings = Settings(_env_file=None, outbound_allow=f"127.0.0.1:{receiver.port}")
    outbound = Outbound.from_settings(settings)
    engine = create_db_engine(url)
    upgrade(engine)
    with engine.begin() as conn:
        # A reused database keeps earlier runs' endpoints, whose receivers are gone.
        conn.execute(update(WebhookEndpoint).values(active=False))
        endpoint = webhooks.create_endpoint(
            conn,
            keyring=keyring,
            outbound=outbound,
            url=receiver.url,
            events=["*"],
            active=True,
            description="bench",
        )
        owner = account(conn, "bench-notify", role="user", scopes={"read", "write"})
        ids = seed_certificates(
            conn, keyring, owner, count=args.changes + args.warmup, inactive_every=1
        )
    engine.dispose()
    outbound.close()
    states = dict.fromkeys(ids, False)
    env = {
        "WHARF_DATABASE_URL": url,
        "WHARF_KEY_ENCRYPTION_KEYS": keys,
        "WHARF_OUTBOUND_ALLOW": f"127.0.0.1:{receiver.port}",
        "WHARF_VAR_DIR": str(tmp / "var"),
        "WHARF_LOG_LEVEL": "WARNING",
        "WHARF_RATE_LIMIT_API": "100000000/minute",
        "WHARF_JOBS_IN_SERVER": "true",
    }
    if args.poll is not None:
        env["WHARF_JOB_POLL_SECONDS"] = str(args.poll)
    common: dict[str, Any] = {
        "receiver": receiver,
        "owner": owner,
        "states": states,
        "secret": endpoint["secret"],
        "args": args,
    }
    receiver.up()
    try:
        cases = [
            run_case(
                Case("in-server worker, 1 process"), env, workers=1, with_deliverer=False, **common
            ),
            run_case(
                Case("in-server workers, 2 processes"),
                env,
                workers=2,
                with_deliverer=False,
                **common,
            ),
            run_case(
                Case("`wharf webhooks deliver` alone (server's worker off)"),
                {**env, "WHARF_JOBS_IN_SERVER": "false"},
                workers=1,
                with_deliverer=True,
                **common,
            ),
        ]
    finally:
        receiver.down()
    report(cases, args, url, command, poll)
    shutil.rmtree(tmp, ignore_errors=True)


def report(
    cases: list[Case], args: argparse.Namespace, url: str, command: str, poll: float
) -> None:
    backend = url.split(":", 1)[0]
    lines = [
        f"### {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: `{command}`",
        "",
        f"{backend}; server on core 0 (uvicorn, `wharf.app:app_from_env`), job poll {poll} s; "
        "client and receiver (127.0.0.1, answers 200) on core 1. Per case "
        f"{args.changes} sequential `PATCH .../active` with notify after {args.warmup} "
        f"unmeasured, each after a random pause of 0-{args.pause} s; a fresh connection per "
        "change. Latency in ms from the response (a lower bound of commit to receipt) and "
        "from the request (an upper bound). Target: within 1 s of the commit.",
        "",
        "| case | after response p50 | p99 | max | from request p50 | p99 | PATCH p50 | p99 "
        "| over half a poll | arrived before response | lost | duplicates | signatures verified |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in cases:
        early = sum(1 for v in c.after_response_ms if v < 0)
        slow = sum(1 for v in c.after_response_ms if v > poll * 500)
        got = len(c.after_response_ms)
        lines.append(
            f"| {c.name} | {pct(c.after_response_ms, 50):.1f} | {pct(c.after_response_ms, 99):.1f}"
            f" | {max(c.after_response_ms, default=float('nan')):.1f}"
            f" | {pct(c.from_request_ms, 50):.1f} | {pct(c.from_request_ms, 99):.1f}"
            f" | {pct(c.round_trip_ms, 50):.1f} | {pct(c.round_trip_ms, 99):.1f}"
            f" | {slow}/{got} | {early}/{got} | {c.lost} | {c.duplicates}"
            f" | {c.verified}/{c.arrived} |"
        )
    emit(lines, record=args.record)


if __name__ == "__main__":
    main()
