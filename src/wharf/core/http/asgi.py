"""Small pure-ASGI helpers shared by Wharf's layers in front of routing."""

from __future__ import annotations

import hashlib
from typing import Any

from starlette.types import Message, Receive, Scope, Send

from wharf.core.http.responses import PROBLEM_JSON, problem_body
from wharf.core.security import TOKEN_PREFIX

# Scope keys shared by the layers in front of routing.
RESPONSE_HEADERS = "wharf.response_headers"  # extra response headers, added by the outermost
_DIGEST = "wharf.token_digest"
_TOKEN_PREFIX = TOKEN_PREFIX.encode()
_MAX_TOKEN = 200


def bearer_digest(scope: Scope) -> str | None:
    """The sha256 (hex) of the request's well-formed Wharf bearer token, else None.

    Equal to `core.security.token_hash`; worked out once per request (the rate limiter and the
    cache both key on it) and straight from the header's bytes, as tokens are ASCII.
    """
    if _DIGEST in scope:
        digest: str | None = scope[_DIGEST]
        return digest
    digest = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            token = value[7:]
            if (
                value[:7].lower() == b"bearer "
                and token.startswith(_TOKEN_PREFIX)
                and len(token) <= _MAX_TOKEN
                and token.isascii()
            ):
                digest = hashlib.sha256(token).hexdigest()
            break
    scope[_DIGEST] = digest
    return digest


def with_response_headers(scope: Scope, send: Send, headers: list[tuple[bytes, bytes]]) -> Send:
    """A `send` whose response start carries `headers` too.

    Under the observability layer the headers join its per-request list, so a request pays for
    one send wrapper however many layers add headers; on its own a layer wraps `send` itself.
    """
    extra: list[tuple[bytes, bytes]] | None = scope.get(RESPONSE_HEADERS)
    if extra is not None:
        extra.extend(headers)
        return send

    async def send_with_headers(message: Message) -> None:
        if message["type"] == "http.response.start":
            # A new dict and list: the cache inside may keep the messages it was given.
            message = {**message, "headers": [*message.get("headers", ()), *headers]}
        await send(message)

    return send_with_headers


async def read_body(receive: Receive, limit: int | None = None) -> bytes | None:
    """The whole request body, or None once it passes `limit` bytes. A client that leaves
    mid-body gets what had arrived: there is nobody left to answer."""
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if limit is not None and size > limit:
            return None
        chunks.append(chunk)
        more = message.get("more_body", False)
    return b"".join(chunks)


def replay(body: bytes, upstream: Receive) -> Receive:
    """A `receive` that hands the app the buffered body, then waits on the client as usual."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await upstream()  # later calls wait for the client's disconnect

    return receive


async def send_problem(
    send: Send,
    path: str,
    status: int,
    title: str,
    detail: str,
    *,
    extra: dict[str, Any] | None = None,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """Answer with problem+json from a layer that runs before FastAPI's error handlers."""
    body = problem_body(status, title, detail, path, extra=extra)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", PROBLEM_JSON.encode()),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
