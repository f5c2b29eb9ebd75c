"""What auth and rate limiting add to a cache hit, in microseconds per request.

Measured in-process (no network, no HTTP parsing) on a warm cache entry, so the figures are
the layers' own cost: a full cached request with the limiter on and off, and the token check
in front (`ResolvePrincipal`: generation read plus principal lookup) timed on its own.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, cast

from starlette.types import Message

from wharf.app import Wharf, create_app
from wharf.core.config import Settings
from wharf.core.protect.principals import ResolvePrincipal
from wharf.core.security import PRINCIPAL_STATE, token_hash

ROUNDS = 3000
PATH, QUERY = "/api/v1/customers", b"company_id=2&status=active&ordering=-last_name"


def _per_request_us(settings: Settings, token: str) -> float:
    app = create_app(settings)
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": PATH,
        "raw_path": PATH.encode(),
        "query_string": QUERY,
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1"), (b"authorization", f"Bearer {token}".encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    statuses: list[int] = []

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    async def run() -> float:
        for _ in range(200):  # warm: fill the cache, the statement caches, the principal
            await app(dict(scope), receive, send)
        start = time.perf_counter()
        for _ in range(ROUNDS):
            await app(dict(scope), receive, send)
        return (time.perf_counter() - start) / ROUNDS * 1e6

    elapsed = asyncio.run(run())
    if set(statuses) != {200}:
        raise SystemExit(f"unexpected statuses in the overhead run: {sorted(set(statuses))}")
    app.state.engine.dispose()
    return elapsed


def _auth_on_hit_us(settings: Settings, token: str) -> float:
    app = create_app(settings)
    engine = app.state.engine
    # The app's own layer, found along the chain in front of FastAPI.
    layer: Any = cast(Wharf, app).front
    while not isinstance(layer, ResolvePrincipal):
        layer = layer.app
    digest = token_hash(token)

    async def run() -> float:
        await layer.resolve({}, digest)  # warm
        scope: dict[str, Any] = {}
        start = time.perf_counter()
        for _ in range(ROUNDS):
            scope = {}
            await layer.resolve(scope, digest)
        elapsed = (time.perf_counter() - start) / ROUNDS * 1e6
        assert scope["state"][PRINCIPAL_STATE][1] is not None
        return elapsed

    elapsed = asyncio.run(run())
    engine.dispose()
    return elapsed


def hit_overhead(database_url: str, token: str) -> dict[str, float]:
    base = Settings(
        _env_file=None,
        database_url=database_url,
        log_level="WARNING",
        rate_limit_api="100000000/minute",
    )
    limited = _per_request_us(base, token)
    unlimited = _per_request_us(base.model_copy(update={"rate_limits_enabled": False}), token)
    auth = _auth_on_hit_us(base, token)
    return {
        "cached request, all layers (us)": limited,
        "rate limiting (us)": limited - unlimited,
        "auth on a hit: generation read + token check (us)": auth,
    }
