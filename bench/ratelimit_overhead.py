"""The rate limiter's cost per request, in process: a bare ASGI app against the same app behind
`core.ratelimit.RateLimit`, with one bearer token, on the memory store (and on Redis when
`--redis-url` is given).

    .venv/bin/python -m bench.ratelimit_overhead [--requests 200000] [--redis-url redis://...]
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from wharf.core.config import Settings
from wharf.core.protect.ratelimit import RateLimit

TOKEN = b"wharf_" + b"x" * 43
SCOPE: Scope = {
    "type": "http",
    "method": "GET",
    "path": "/api/v1/customers",
    "query_string": b"",
    "client": ("127.0.0.1", 50000),
    "headers": [
        (b"host", b"localhost"),
        (b"user-agent", b"bench"),
        (b"accept", b"*/*"),
        (b"authorization", b"Bearer " + TOKEN),
    ],
}
START: Message = {"type": "http.response.start", "status": 200, "headers": []}
BODY: Message = {"type": "http.response.body", "body": b"{}"}


async def raw(_scope: Scope, _receive: Receive, send: Send) -> None:
    await send(START)
    await send(BODY)


async def receive() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


async def send(_message: Message) -> None:
    return None


async def per_request(app: ASGIApp, n: int) -> float:
    for _ in range(1000):  # warm up
        await app(SCOPE, receive, send)
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(n):
            await app(SCOPE, receive, send)
        best = min(best, (time.perf_counter() - start) / n)
    return best * 1e6


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--redis-url")
    args = parser.parse_args()
    limits = {"rate_limit_api": "1000000000/minute"}
    settings = Settings(_env_file=None, **limits)  # type: ignore[arg-type]
    bare = await per_request(raw, args.requests)
    limited = await per_request(
        RateLimit(raw, settings=settings, login_paths=["/login"]), args.requests
    )
    print(f"bare ASGI app:            {bare:6.2f} us/request")
    print(f"behind RateLimit, memory: {limited:6.2f} us/request  (+{limited - bare:.2f} us)")
    if args.redis_url:
        settings = Settings(
            _env_file=None,
            redis_url=args.redis_url,
            redis_key_prefix=f"bench-{uuid.uuid4().hex}",
            **limits,  # type: ignore[arg-type]
        )
        n = max(args.requests // 50, 1000)
        redis = await per_request(RateLimit(raw, settings=settings, login_paths=["/login"]), n)
        print(f"behind RateLimit, redis:  {redis:6.2f} us/request  (+{redis - bare:.2f} us)")


if __name__ == "__main__":
    asyncio.run(main())
