"""The ASGI application: `create_app(settings)` wires core, middleware and every domain."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from wharf.accounts.service import resolve_token
from wharf.api import api
from wharf.core import handlers, observability, openapi
from wharf.core.cache import (
    Backend,
    Group,
    MemoryBackend,
    RedisBackend,
    ResponseCache,
    TieredBackend,
)
from wharf.core.config import Settings
from wharf.core.db import engine_for
from wharf.core.health import router as health
from wharf.core.idempotency import Idempotency
from wharf.core.logging import configure_logging
from wharf.core.middleware import HttpContract
from wharf.core.migrate import check_schema
from wharf.core.ratelimit import RateLimit
from wharf.core.responses import JSONBytes

LOGIN_PATH = "/api/v1/auth/token"
TOKENS_PATH = "/api/v1/auth/tokens"


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
    openapi.install(app)  # declare every problem response in the OpenAPI document
    app.include_router(health)
    app.include_router(api)
    # Request ids, the access log and request metrics around the whole stack; GET /metrics.
    observability.install(app)
    # Added first, so innermost: it must see normalised paths and bounded bodies, and sit
    # inside the rate limiter. Login and token minting answer with bearer secrets, which are
    # never stored, so they refuse the header (400) rather than silently not honour it.
    app.add_middleware(
        Idempotency,
        ttl_hours=settings.idempotency_ttl_hours,
        lock_timeout_seconds=settings.idempotency_lock_timeout_seconds,
        secret_paths=[LOGIN_PATH, TOKENS_PATH],
    )
    if settings.cache == "on":
        app.add_middleware(
            ResponseCache,
            engine=engine,
            resolver=resolve_token,
            backend=_cache_backend(settings),
            groups=CACHE_GROUPS,
            namespace=settings.database_url,
            key_prefix=settings.redis_key_prefix,
        )
    if settings.rate_limits_enabled:
        # Outside the cache (a hit still counts), inside HttpContract (normalised paths,
        # bounded bodies, and a request id on every 429).
        app.add_middleware(RateLimit, settings=settings, login_path=LOGIN_PATH)
    app.add_middleware(
        HttpContract, max_body_bytes=settings.max_body_bytes, form_paths=[LOGIN_PATH]
    )
    return app


# Which generation each cached path depends on (core.generations; triggers in the migrations).
# CRM data is the same for every reader; a user's account is theirs (and admins').
CACHE_GROUPS = (
    Group("crm", ("/api/v1/companies", "/api/v1/customers", "/api/v1/notes"), shared=True),
    Group("accounts", ("/api/v1/users",), shared=False),
)


def _cache_backend(settings: Settings) -> Backend:
    memory = MemoryBackend(settings.cache_memory_mb * 1024 * 1024)
    if settings.redis_url:
        return TieredBackend(memory, RedisBackend(settings.redis_url, settings.cache_ttl_seconds))
    return memory


def app_from_env() -> FastAPI:
    """Factory for `uvicorn --factory` and multi-worker serving: settings from the environment."""
    return create_app(Settings())
