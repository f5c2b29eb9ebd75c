"""The parts of the HTTP contract that hold before routing, as one pure ASGI layer.

Hand-written rather than Starlette's BaseHTTPMiddleware, which costs a task and a stream copy
per request; this layer only rewrites the scope and, rarely, answers on its own.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from functools import lru_cache

from starlette.types import ASGIApp, Receive, Scope, Send

from wharf.core.http.asgi import read_body, replay, send_problem

_BODY_METHODS = frozenset({b"POST", b"PUT", b"PATCH"})
_JSON_ACCEPTS = frozenset({"*/*", "application/*", "application/json", "application/problem+json"})


@lru_cache(maxsize=256)  # clients send a handful of distinct Accept values, again and again
def _accepts_json(accept: str) -> bool:
    for part in accept.split(","):
        media, _, params = part.strip().partition(";")
        if media.strip().lower() not in _JSON_ACCEPTS:
            continue
        q = re.search(r"q\s*=\s*([0-9.]+)", params)
        if q is None or _quality(q.group(1)) > 0:
            return True
    return False


def _quality(raw: str) -> float:
    # A garbled q-value ("q=.", "q=1.2.3") counts as the default 1, never as a 500.
    try:
        return float(raw)
    except ValueError:
        return 1.0


_NEGOTIATION = frozenset({b"accept", b"content-length", b"content-type", b"transfer-encoding"})


def _negotiation(scope: Scope) -> dict[str, str]:
    # Only the four headers this layer reads are decoded: it runs on every request.
    return {
        name.decode("latin-1"): value.decode("latin-1")
        for name, value in scope["headers"]
        if name in _NEGOTIATION
    }


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


class HttpContract:
    """Trailing slashes, 406/415 negotiation and the body size limit (413).

    `streams` maps the exact paths of uploads that their route streams to disk to their own
    size limit: their bodies are neither read here nor held to JSON (the route checks its
    media type and counts the bytes as they come).

    Request ids are `core.observability`'s, the outermost layer, so they reach these answers too.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        api_prefix: str = "/api/",
        form_paths: Iterable[str] = (),
        streams: Mapping[str, int] | None = None,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.streams = dict(streams or {})
        self.api_prefix = api_prefix
        self.form_paths = frozenset(form_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if len(path) > 1 and path.endswith("/"):
            # Same resource with or without the slash, and no redirect round trip.
            path = path.rstrip("/") or "/"
            scope["path"] = path
            scope["raw_path"] = path.encode()

        if path.startswith(self.api_prefix):
            method = scope["method"].encode()
            streamed = self.streams.get(path) if method in _BODY_METHODS else None
            refusal = self._refuse(method, path, _negotiation(scope), streamed)
            if refusal is not None:
                await send_problem(send, path, *refusal)
                return
            if method in _BODY_METHODS and streamed is None:
                body = await read_body(receive, self.max_body_bytes)
                if body is None:
                    await send_problem(
                        send,
                        path,
                        413,
                        "Content too large",
                        f"The request body exceeds {self.max_body_bytes} bytes.",
                    )
                    return
                receive = replay(body, receive)
        await self.app(scope, receive, send)

    def _refuse(
        self, method: bytes, path: str, headers: dict[str, str], streamed: int | None
    ) -> tuple[int, str, str] | None:
        accept = headers.get("accept")
        if accept and not _accepts_json(accept):
            return (
                406,
                "Not acceptable",
                (f"This API only produces application/json; the Accept header was {accept!r}."),
            )
        length = headers.get("content-length")
        if length is not None:
            if not (length.isascii() and length.isdigit()):  # int("²") raises
                return 400, "Bad request", "Content-Length is not a number."
            limit = self.max_body_bytes if streamed is None else streamed
            if int(length) > limit:
                return (
                    413,
                    "Content too large",
                    (f"The request body of {length} bytes exceeds {limit} bytes."),
                )
        if streamed is not None:
            return None
        has_body = (length is not None and length != "0") or "transfer-encoding" in headers
        if method in _BODY_METHODS and has_body and path not in self.form_paths:
            ctype = headers.get("content-type", "")
            if not _is_json(ctype):
                return (
                    415,
                    "Unsupported media type",
                    (f"Send the body as application/json; got {ctype or 'no Content-Type'}."),
                )
        return None
