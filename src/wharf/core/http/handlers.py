"""Exception handlers: every error, the framework's own included, becomes problem+json."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import DataError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Match

from wharf.core.errors import WharfError
from wharf.core.http.responses import problem

log = logging.getLogger("wharf.errors")


def _title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


async def wharf_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, WharfError)
    return problem(
        exc.status,
        exc.title,
        exc.detail,
        request.url.path,
        type_=exc.type,
        extra=exc.extra,
        headers=exc.headers,
    )


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    detail = str(exc.detail)
    headers = dict(exc.headers or {})
    if status == 404 and detail == "Not Found":
        detail = f"No resource at {request.url.path}. See /docs for the endpoints."
    elif status == 405:
        headers.pop("allow", None)
        headers["Allow"] = allowed = _allowed_methods(request)
        detail = f"{request.method} is not allowed on {request.url.path}; allowed: {allowed}."
    return problem(status, _title(status), detail, request.url.path, headers=headers)


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _allowed_methods(request: Request) -> str:
    # Starlette's 405 names only the first route that matched the path, but each method of a
    # path is its own route: ask the router which methods it would take here, so `Allow`
    # lists them all (RFC 9110 15.5.6).
    routes = request.app.router.routes
    return ", ".join(
        method
        for method in _METHODS
        if any(r.matches({**request.scope, "method": method})[0] is Match.FULL for r in routes)
    )


def _clean(err: dict[str, Any]) -> dict[str, Any]:
    # Pydantic's ctx may hold exception objects; keep the JSON-safe fields clients act on.
    return {"loc": list(err.get("loc", ())), "msg": str(err.get("msg", "")), "type": err["type"]}


async def validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = [_clean(e) for e in exc.errors()]
    bad_json = next((e for e in errors if e["type"] == "json_invalid"), None)
    if bad_json is not None:
        return problem(
            400,
            "Malformed JSON",
            f"The request body is not valid JSON: {bad_json['msg']}.",
            request.url.path,
        )
    summary = "; ".join(
        f"{'.'.join(str(p) for p in e['loc'] if p != 'body') or 'body'}: {e['msg']}"
        for e in errors[:5]
    )
    return problem(
        422,
        "Unprocessable content",
        f"The request is not valid: {summary}.",
        request.url.path,
        extra={"errors": errors},
    )


async def unstorable_value(request: Request, exc: Exception) -> Response:
    # The database refused a value the schemas let through (an id beyond 64 bits, which
    # SQLite's driver cannot bind; a NUL character or out-of-range number on PostgreSQL):
    # the input's fault, so not a 500.
    log.info("value refused by the database: %s", type(exc).__name__)
    return problem(
        400,
        "Bad request",
        "A value in the request cannot be stored or compared by the database: a number is "
        "too large or a text contains a NUL character.",
        request.url.path,
    )


async def database_unavailable(request: Request, exc: Exception) -> Response:
    # The database went away (restart, failover, network): not the request's fault, and the
    # pool has been replaced, so an immediate retry normally succeeds.
    log.warning("database unavailable: %s", type(exc).__name__)
    return problem(
        503,
        "Service unavailable",
        "The database is unreachable right now; retry shortly.",
        request.url.path,
        headers={"Retry-After": "1"},
    )


async def unexpected_error(request: Request, exc: Exception) -> Response:
    request_id = getattr(request.state, "request_id", "-")
    log.error("unhandled error", exc_info=exc, extra={"request_id": request_id})
    return problem(
        500,
        "Internal server error",
        f"Something went wrong on our side. Quote request id {request_id} when reporting it.",
        request.url.path,
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(WharfError, wharf_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(DataError, unstorable_value)
    app.add_exception_handler(OverflowError, unstorable_value)
    app.add_exception_handler(OperationalError, database_unavailable)
    app.add_exception_handler(Exception, unexpected_error)
