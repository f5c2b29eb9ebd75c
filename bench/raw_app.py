"""The ceiling: a bare ASGI app that returns a fixed body, served by the same server."""

from __future__ import annotations

import os
from pathlib import Path

from starlette.types import Receive, Scope, Send

_BODY = (
    Path(os.environ.get("WHARF_BENCH_RAW_BODY", "")).read_bytes()
    if os.environ.get("WHARF_BENCH_RAW_BODY")
    else b'{"items":[],"total":0}'
)
_HEADERS = [
    (b"content-type", b"application/json"),
    (b"content-length", str(len(_BODY)).encode()),
]


async def app(scope: Scope, _receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": _BODY})
