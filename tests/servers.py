"""Real server processes for tests that need one: `wharf serve` on 127.0.0.1."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx2
import pytest

from tests.conftest import TEST_KEYS
from wharf.accounts import service as accounts
from wharf.core.data.db import create_db_engine
from wharf.core.security import ROLE_SCOPES
from wharf.crm import service as crm

STARTUP_TIMEOUT = 30.0


@dataclass(frozen=True)
class Server:
    base_url: str
    token: str
    customer_id: int
    log: Path  # the server's stderr, where unhandled errors are logged
    pid: int  # the supervisor's, which is also its process group's

    def kill(self) -> None:
        """kill -9 the supervisor and every worker: no shutdown, no cleanup."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)


def seed(url: str) -> tuple[str, int]:
    """An admin's token and a customer's id, made once per database."""
    engine = create_db_engine(url)
    try:
        with engine.begin() as conn:
            admin = accounts.create_user(
                conn,
                email="admin@example.com",
                name="Admin",
                password="correct horse battery",
                role="admin",
            )
            token = accounts.issue_token(
                conn,
                user_id=admin["id"],
                name="lost-updates",
                scopes=ROLE_SCOPES["admin"],
                lifetime=timedelta(hours=1),
            )
            company = crm.create_company(conn, name="Counter Corp")
            customer = crm.create_customer(
                conn,
                values={
                    "first_name": "Counter",
                    "last_name": "0",
                    "status": "active",
                    "company_id": company["id"],
                },
            )
    finally:
        engine.dispose()
    return token, int(customer["id"])


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the uvicorn supervisor (it stops its workers); kill the whole group if stuck."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
    # Workers left behind by a crashed supervisor share its process group.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def _wait_until_up(proc: subprocess.Popen[bytes], base_url: str, stderr: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    with httpx2.Client(base_url=base_url, timeout=1.0) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(
                    f"wharf serve exited with {proc.returncode}:\n{stderr.read_text()[-4000:]}"
                )
            try:
                if client.get("/healthz").status_code == 200:
                    return
            except httpx2.TransportError:
                pass
            time.sleep(0.1)
    pytest.fail(
        f"wharf serve did not answer /healthz within {STARTUP_TIMEOUT:.0f} s:\n"
        f"{stderr.read_text()[-4000:]}"
    )


@contextlib.contextmanager
def serve(
    database_url: str,
    tmp_path: Path,
    *,
    env: dict[str, str] | None = None,
    workers: int = 2,
    seeded: tuple[str, int] | None = None,
    port: int | None = None,
) -> Iterator[Server]:
    """`wharf serve --workers N` on a free port, seeded with an admin and one customer (or,
    for a restart on the same database, with what `seed` already made)."""
    token, customer_id = seeded or seed(database_url)
    port = port or free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "WHARF_DATABASE_URL": database_url,
        "WHARF_LOG_LEVEL": "WARNING",
        # These tests measure locking and caching under load, not the rate limiter.
        "WHARF_RATE_LIMITS_ENABLED": "false",
        "WHARF_KEY_ENCRYPTION_KEYS": TEST_KEYS,
        **(env or {}),
    }
    stdout, stderr = tmp_path / "server.out", tmp_path / "server.err"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "wharf",
                "serve",
                "--port",
                str(port),
                "--workers",
                str(workers),
            ],
            cwd=tmp_path,  # no stray .env; var/ lands in the test's directory
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,  # its own process group, so teardown reaches the workers
        )
    try:
        _wait_until_up(proc, base_url, stderr)
        yield Server(base_url, token, customer_id, stderr, proc.pid)
    finally:
        _stop(proc)
