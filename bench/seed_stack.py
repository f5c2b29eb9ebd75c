"""The seed's own stack (Django REST framework + SQLite + gunicorn, bench/seed_stack/), served
beside Wharf in the same run, so "x times the seed" is a ratio measured, not remembered.

Its virtualenv is made on first use under var/bench/ (Django is no dependency of Wharf's).
The CRM rows are exported from Wharf's own bench database, so both answer the same query
over the same 1,000 customers: `GET /customer/?company=2&status=active&ordering=-last_name`,
a page of 50 with the count, with a token checked against the database.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Connection, select

from bench.run import ROOT, free_port
from wharf.crm.models import Company, Customer

APP = ROOT / "bench" / "seed_stack"
VENV = ROOT / "var" / "bench" / "seed-stack-venv"
REQUIREMENTS = ["django>=5.1,<6", "djangorestframework>=3.15", "django-filter>=24", "gunicorn>=23"]
PATH = "/customer/?company=2&status=active&ordering=-last_name"


def export(conn: Connection, out: Path) -> None:
    """Wharf's companies and customers as JSON, for the seed stack to load."""
    companies = [dict(r._mapping) for r in conn.execute(select(Company.id, Company.name))]
    customers = [dict(r._mapping) for r in conn.execute(select(Customer))]
    out.write_text(json.dumps({"companies": companies, "customers": customers}, default=str))


def _python() -> Path:
    python = VENV / "bin" / "python"
    if not (VENV / ".installed").exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        subprocess.run([*pip, *REQUIREMENTS], check=True)
        (VENV / ".installed").touch()
    return python


def _wait_listening(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"gunicorn exited early: {log.read_text()[-2000:]}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise SystemExit(f"gunicorn on port {port} did not come up")


@contextmanager
def seed_stack(rows: Path, tmp: Path) -> Iterator[tuple[int, str]]:
    """The seed's stack loaded with `rows`, served by one gunicorn sync worker on core 0 (its
    README's `gunicorn customer_api.wsgi`): its port and a token."""
    python = _python()
    env = {"SEED_STACK_DB": str(tmp / "seed.sqlite3"), "PYTHONPATH": str(APP)}
    token = subprocess.run(
        [str(python), str(APP / "load.py"), str(rows)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    port = free_port()
    cmd = ["taskset", "-c", "0", str(python), "-m", "gunicorn", "--workers", "1"]
    cmd += ["--bind", f"127.0.0.1:{port}", "--chdir", str(APP), "seedsite:application"]
    log = tmp / "gunicorn.log"
    with log.open("wb") as err:
        proc = subprocess.Popen(cmd, env=env, stderr=err)
    try:
        _wait_listening(port, proc, log)
        yield port, token
    finally:
        proc.terminate()
        proc.wait(timeout=10)
