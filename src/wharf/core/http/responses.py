"""JSON and problem+json responses, serialized once with orjson."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import JSONResponse, Response

# Naive datetimes from SQLite are UTC by construction; render every timestamp with a `Z`.
_OPTS = orjson.OPT_NAIVE_UTC | orjson.OPT_UTC_Z


def dumps(value: Any) -> bytes:
    return orjson.dumps(value, option=_OPTS)


class JSONBytes(JSONResponse):
    # A JSONResponse, so FastAPI documents each route's response_model as its body schema
    # (for any other Response class the OpenAPI document says only "a string").
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        if isinstance(content, bytes):
            return content
        return dumps(content)


PROBLEM_JSON = "application/problem+json"


def problem_body(
    status: int,
    title: str,
    detail: str,
    instance: str,
    *,
    type_: str = "about:blank",
    extra: dict[str, Any] | None = None,
) -> bytes:
    body: dict[str, Any] = {
        "type": type_,
        "title": title,
        "status": status,
        "detail": detail,
        "instance": instance,
    }
    if extra:
        body.update(extra)
    return dumps(body)


def problem(
    status: int,
    title: str,
    detail: str,
    instance: str,
    *,
    type_: str = "about:blank",
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    return Response(
        problem_body(status, title, detail, instance, type_=type_, extra=extra),
        status_code=status,
        media_type=PROBLEM_JSON,
        headers=headers,
    )
