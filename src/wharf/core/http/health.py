"""Liveness and readiness probes, outside /api/v1 and without auth.

`/healthz` answers as long as the process serves HTTP; `/readyz` also asks every backend a
request may need (the database and, when configured, Redis), each within a short timeout, so
a load balancer stops sending traffic to a worker that could not serve it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable

import anyio
import anyio.to_thread
from fastapi import APIRouter, Request
from sqlalchemy import Engine, text

from wharf.core.errors import ServiceUnavailable
from wharf.core.http.responses import JSONBytes

router = APIRouter(tags=["operations"])
log = logging.getLogger("wharf.health")

# Probes run every few seconds; a backend slower than this is as good as down for them.
CHECK_TIMEOUT_SECONDS = 2.0
RETRY_AFTER_SECONDS = 5
OK, DOWN = "ok", "down"


@router.get("/healthz")
async def healthz() -> JSONBytes:
    """The process is up."""
    return JSONBytes({"status": "ok"})


@router.get("/readyz")
async def readyz(request: Request) -> JSONBytes:
    """The database (and Redis, when configured) answers; 503 naming what is down otherwise."""
    checks = {"database": await _check("database", _ping_database(request.app.state.engine))}
    redis_url: str | None = request.app.state.settings.redis_url
    if redis_url:
        checks["redis"] = await _check("redis", _ping_redis(redis_url))
    down = [name for name, result in checks.items() if result != OK]
    if down:
        raise ServiceUnavailable(
            f"Not ready: {' and '.join(down)} {'is' if len(down) == 1 else 'are'} unreachable.",
            extra=checks,
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    return JSONBytes({"status": "ready", **checks})


async def _check(name: str, probe: Awaitable[None]) -> str:
    try:
        with anyio.fail_after(CHECK_TIMEOUT_SECONDS):
            await probe
    except Exception as exc:  # any failure, a timeout included, means "not ready"
        log.warning("readiness check failed", extra={"backend": name, "reason": repr(exc)})
        return DOWN
    return OK


async def _ping_database(engine: Engine) -> None:
    def ping() -> None:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    # In a thread: a database that hangs must not stall the event loop that serves everyone
    # else; on timeout the thread is left to finish on its own.
    await anyio.to_thread.run_sync(ping, abandon_on_cancel=True)


async def _ping_redis(url: str) -> None:
    try:
        import redis.asyncio as aioredis
    except ImportError as exc:  # pragma: no cover - the `redis` extra is not installed
        raise RuntimeError("WHARF_REDIS_URL is set but the redis package is missing") from exc
    client = aioredis.Redis.from_url(
        url, socket_connect_timeout=CHECK_TIMEOUT_SECONDS, socket_timeout=CHECK_TIMEOUT_SECONDS
    )
    try:
        await client.ping()
    finally:
        await client.aclose()
