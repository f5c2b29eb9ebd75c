"""Liveness and readiness probes, outside /api/v1 and without auth."""

from __future__ import annotations

from fastapi import APIRouter, Request
from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

from wharf.core.errors import ServiceUnavailable
from wharf.core.responses import JSONBytes

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz() -> JSONBytes:
    """The process is up."""
    return JSONBytes({"status": "ok"})


@router.get("/readyz")
async def readyz(request: Request) -> JSONBytes:
    """The database answers; 503 otherwise."""
    engine: Engine = request.app.state.engine
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        raise ServiceUnavailable(f"The database is unreachable: {type(exc).__name__}.") from exc
    return JSONBytes({"status": "ready", "database": "ok"})
