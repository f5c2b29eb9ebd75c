"""The ASGI application: `create_app(settings)` wires core, middleware and every domain."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from wharf.accounts.service import resolve_token
from wharf.api import api
from wharf.core import handlers
from wharf.core.config import Settings
from wharf.core.db import engine_for
from wharf.core.health import router as health
from wharf.core.logging import configure_logging
from wharf.core.middleware import HttpContract
from wharf.core.migrate import check_schema
from wharf.core.responses import JSONBytes

LOGIN_PATH = "/api/v1/auth/token"


def create_app(settings: Settings) -> FastAPI:
    configure_logging(settings.log_level)
    engine = engine_for(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        check_schema(engine)  # refuse to serve an unmigrated or outdated database
        yield
        engine.dispose()

    app = FastAPI(
        title="Wharf",
        version="0.1.0",
        summary="Five business data APIs from one fast, safe core.",
        default_response_class=JSONBytes,
        redirect_slashes=False,
        lifespan=lifespan,
        swagger_ui_parameters={"persistAuthorization": True},
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.token_resolver = resolve_token
    handlers.install(app)
    app.include_router(health)
    app.include_router(api)
    app.add_middleware(
        HttpContract, max_body_bytes=settings.max_body_bytes, form_paths=[LOGIN_PATH]
    )
    return app


def app_from_env() -> FastAPI:
    """Factory for `uvicorn --factory` and multi-worker serving: settings from the environment."""
    return create_app(Settings())
