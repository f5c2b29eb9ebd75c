"""Small pure-ASGI helpers shared by Wharf's layers in front of routing."""

from __future__ import annotations

from typing import Any

from starlette.types import Message, Receive, Send

from wharf.core.responses import PROBLEM_JSON, problem_body


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
