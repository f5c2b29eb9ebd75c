"""The ASGI application: `create_app(settings)` wires core, middleware and every domain."""

from __future__ import annotations

import gc
import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy import Engine
from starlette.types import ASGIApp, Receive, Scope, Send

from wharf.accounts.service import resolve_token
from wharf.api import api
from wharf.catalog import jobs as catalog_jobs
from wharf.core.config import Settings
from wharf.core.data.db import create_db_engine, engine_for
from wharf.core.data.generations import GenerationReader
from wharf.core.data.migrate import check_schema
from wharf.core.http import exposition, handlers, observability, openapi
from wharf.core.http.health import router as health
from wharf.core.http.media import router as media
from wharf.core.http.middleware import HttpContract
from wharf.core.http.responses import JSONBytes
from wharf.core.http.session import SESSION_PATH, SessionCookies
from wharf.core.keys import KeySource
from wharf.core.logging import configure_logging
from wharf.core.outbound import Outbound
from wharf.core.protect.cache import (
    Backend,
    Group,
    MemoryBackend,
    RedisBackend,
    ResponseCache,
    TieredBackend,
)
from wharf.core.protect.idempotency import Idempotency
from wharf.core.protect.principals import PrincipalMemo, ResolvePrincipal
from wharf.core.protect.ratelimit import RateLimit
from wharf.core.storage import LocalStorage, Storage
from wharf.core.webhooks.delivery import DeliveryHandler
from wharf.core.webhooks.service import sync_settings_endpoint
from wharf.core.work import Handler, Worker
from wharf.core.work.jobs import watch_commits
from wharf.dashboard.routes import router as dashboard
from wharf.sales.inbox import Inbox, LeasedInbox
from wharf.sales.ingest import counter_for

LOGIN_PATH = "/api/v1/auth/token"
SALES_UPLOAD = "/api/v1/sales/files"
CARS_IMPORT = "/api/v1/cars/imports"  # JSON, or the CSV itself: the route reads its body
TOKENS_PATH = "/api/v1/auth/tokens"
# POSTs whose response holds a secret shown once (a bearer token, a webhook signing secret):
# never stored for an Idempotency-Key replay, so the header is refused there.
SECRET_PATHS = (
    LOGIN_PATH,
    SESSION_PATH,  # its Set-Cookie holds the session's token
    TOKENS_PATH,
    "/api/v1/webhooks",
    "/api/v1/webhooks/{webhook_id}/rotate-secret",
)
# POSTs whose body the route streams to disk under its own size limit (HttpContract).
STREAMED_PATHS = (SALES_UPLOAD, CARS_IMPORT)


def create_app(settings: Settings) -> FastAPI:
    configure_logging(settings.log_level)
    engine = engine_for(settings)

    outbound = Outbound.from_settings(settings)
    storage = LocalStorage(settings.media_dir)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        check_schema(engine)  # refuse to serve an unmigrated or outdated database
        # Refuse to serve without a key-encryption key (MissingKeys names the command).
        app.state.keys = keys = KeySource(settings)
        sync_settings_endpoint(engine, url=settings.certificate_webhook_url)
        # Jobs get a small pool of their own: background work never takes a connection a
        # request is waiting for (and the pool metrics keep meaning "requests").
        jobs_engine = create_db_engine(settings.database_url, pool_size=2)
        watch_commits(engine)  # a request that queues a job wakes this process's worker
        worker = Worker(
            jobs_engine,
            job_handlers(
                settings, engine=jobs_engine, keys=keys, outbound=outbound, storage=storage
            ),
            poll_seconds=settings.job_poll_seconds,
            lease_seconds=settings.job_lease_seconds,
        )
        if settings.jobs_in_server:
            worker.start()
        inbox = _sales_inbox(settings, jobs_engine)
        if inbox is not None:
            inbox.start()
        yield
        if inbox is not None:
            inbox.stop()
        worker.stop()
        outbound.close()
        jobs_engine.dispose()
        engine.dispose()

    app = Wharf(
        title="Wharf",
        version="0.1.0",
        summary="Five business data APIs from one fast, safe core.",
        default_response_class=JSONBytes,
        redirect_slashes=False,
        lifespan=lifespan,
        swagger_ui_parameters={"persistAuthorization": True},
        generate_unique_id_function=openapi.operation_id,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.token_resolver = resolve_token
    app.state.outbound = outbound
    app.state.storage = storage
    handlers.install(app)
    # Declare every problem response, and the headers of the layers in front of routing.
    openapi.install(
        app,
        no_idempotency=frozenset(SECRET_PATHS + STREAMED_PATHS),
        also_login=frozenset({SESSION_PATH}),  # a password form too (401 for a wrong one)
    )
    app.include_router(health)
    app.include_router(media)  # GET /media/<key>: stored images, public
    app.include_router(api)
    app.include_router(dashboard)  # GET / and /ui/...: the browser dashboard
    exposition.install(app)  # GET /metrics
    openapi.check_operation_ids(app)  # every route is in by now
    # Inside FastAPI's own middleware, so only POSTs pay for it. Login and token minting
    # answer with bearer secrets, which are never stored, so they refuse the header (400)
    # rather than silently not honour it.
    app.add_middleware(
        Idempotency,
        ttl_hours=settings.idempotency_ttl_hours,
        lock_timeout_seconds=settings.idempotency_lock_timeout_seconds,
        secret_paths=SECRET_PATHS,
        streamed_paths=STREAMED_PATHS,
    )
    # In front of all of FastAPI, innermost first: a cache hit skips routing and FastAPI's
    # and Starlette's own layers, yet pays the rate limit and is logged and counted.
    front: ASGIApp = app.routed
    if settings.cache == "on":
        front = ResponseCache(
            front,
            backend=_cache_backend(settings),
            groups=CACHE_GROUPS,
        )
    front = ResolvePrincipal(
        front,
        engine=engine,
        resolver=resolve_token,
        generations=GenerationReader(engine),
        memo=PrincipalMemo(),
    )
    if settings.rate_limits_enabled:
        # Outside the cache (a hit still counts), inside HttpContract (normalised paths,
        # bounded bodies).
        front = RateLimit(front, settings=settings, login_paths=(LOGIN_PATH, SESSION_PATH))
    front = HttpContract(
        front,
        max_body_bytes=settings.max_body_bytes,
        form_paths=[LOGIN_PATH, SESSION_PATH],
        streams={
            SALES_UPLOAD: settings.sales_max_upload_bytes,
            CARS_IMPORT: settings.cars_max_csv_bytes,
        },
    )
    # The dashboard's session cookie becomes a bearer token before any layer looks for one.
    front = SessionCookies(front)
    # Outermost: request ids, every layer's response headers, the access log and metrics.
    app.front = observability.Observability(front, routes=observability.RouteTemplates(app))
    return app


class Wharf(FastAPI):
    """FastAPI, with Wharf's pre-routing layers (`front`) in front of all of it.

    `add_middleware` can only place a layer inside Starlette's ServerErrorMiddleware and
    FastAPI's own wrappers, which every request would then cross before reaching it; the
    layers in `front` answer cache hits, 429s and contract errors without crossing them.
    """

    front: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.front is not None:
            await self.front(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)

    async def routed(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The application behind the front layers: FastAPI as it comes."""
        await super().__call__(scope, receive, send)


# Which generation each cached path depends on (core.generations; triggers in the migrations).
# CRM data is the same for every reader; a user's account is theirs (and admins').
CACHE_GROUPS = (
    Group("crm", ("/api/v1/companies", "/api/v1/customers", "/api/v1/notes"), shared=True),
    # A user's certificates live under their user path: those entries also depend on the
    # certificates generation, so a certificate change does not flush the token lookups.
    Group("accounts", ("/api/v1/users",), shared=False, also=("certificates",)),
    # Every answer about sales depends on the counts, which each ingest changes as a whole.
    Group("sales", ("/api/v1/sales",), shared=True),
    # Factories, their readings and sprocket types: every write bumps it (seed 001 wanted each
    # answer refreshed on every write; this makes every read cacheable and never stale).
    Group("factories", ("/api/v1/factories", "/api/v1/sprockets"), shared=True),
    # Cars and their images; import records (admins' only) are sent with no-store.
    Group("catalog", ("/api/v1/cars",), shared=True),
)


def job_handlers(
    settings: Settings,
    *,
    engine: Engine,
    keys: KeySource,
    outbound: Outbound,
    storage: Storage | None = None,
) -> list[Handler]:
    """Every kind of background job, for the worker in `wharf serve` and in the CLI."""
    secret = settings.certificate_webhook_secret
    storage = storage or LocalStorage(settings.media_dir)
    catalog = catalog_jobs.handlers(engine, settings=settings, outbound=outbound, storage=storage)
    return [
        *catalog,
        DeliveryHandler(
            engine,
            keys=keys,
            outbound=outbound,
            delays=settings.retry_delays,
            settings_secret=secret.get_secret_value() if secret else None,
        ),
    ]


def _sales_inbox(settings: Settings, engine: Engine) -> LeasedInbox | None:
    """The sales inbox watcher, when `sales_inbox` is set: every worker runs one, and the
    one that holds the named lease watches."""
    if settings.sales_inbox is None:
        return None
    box = Inbox(
        settings.sales_inbox,
        db=engine,
        counter=counter_for(settings),
        max_bad_ratio=settings.sales_max_bad_ratio,
    )
    return LeasedInbox(box, db=engine)


def _cache_backend(settings: Settings) -> Backend:
    memory = MemoryBackend(settings.cache_memory_mb * 1024 * 1024)
    if not settings.redis_url:
        return memory
    # The database's identity: two deployments sharing one Redis never share entries.
    database = hashlib.blake2b(settings.database_url.encode(), digest_size=6).hexdigest()
    prefix = f"{settings.redis_key_prefix}:rc:{database}:"
    return TieredBackend(
        memory, RedisBackend(settings.redis_url, settings.cache_ttl_seconds, prefix)
    )


def app_from_env() -> FastAPI:
    """Factory for `uvicorn --factory` and multi-worker serving: settings from the environment."""
    app = create_app(Settings())
    # What is alive now (modules, routes, the app) lives as long as the server: frozen, the
    # garbage collector stops re-scanning it, which cut p99 latency under load by a fifth.
    gc.collect()
    gc.freeze()
    return app
