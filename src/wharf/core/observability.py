"""Request ids, the access log, request metrics and GET /metrics.

`Observability` is the outermost layer of the whole application (`wharf.app.Wharf`), so it
sees every answer: the 406/413/415 of `HttpContract`, a 429, a cache hit, and the 500 of an
unhandled error, which it answers itself when it was raised in front of routing. It is the one
place that generates or echoes `X-Request-ID`, and it adds every layer's response headers.

The route label is the template of the route that answered (`/api/v1/customers/{customer_id}`,
see `RouteTemplates`), or `unmatched` for a path no route knows, so unknown paths cannot blow up
the label set. A layer that answers before routing may also name the route itself by setting
`scope[ROUTE_KEY]` to its template.

Metrics with several workers: `wharf serve --workers N` (N > 1) runs N processes, each with its
own counters. `serve` then turns on prometheus_client's multiprocess mode (see
`multiprocess_metrics`): every worker writes its samples to files under `var/prometheus`, wiped
at each start, and /metrics on any worker adds up all of them.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from time import perf_counter
from typing import Any

import anyio.to_thread
from fastapi import FastAPI, Request
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest, values
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector
from sqlalchemy import Engine, event
from sqlalchemy.pool import QueuePool
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from wharf.core.asgi import RESPONSE_HEADERS, send_problem
from wharf.core.metrics import (
    DB_POOL_CHECKED_OUT,
    DB_POOL_SIZE,
    LATENCY,
    POOL_CHECKED_OUT_HELP,
    POOL_SIZE_HELP,
    REQUESTS,
)
from wharf.core.security import Admin

access_log = logging.getLogger("wharf.access")
errors_log = logging.getLogger("wharf.errors")

ROUTE_KEY = "wharf.route"
UNMATCHED = "unmatched"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
METRICS_PATH = "/metrics"

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_MAX_USER_AGENT = 256
_MAX_PATH = 512


def request_id_for(given: bytes) -> str:
    """The client's X-Request-ID when it is sane (no spaces, quotes or markup), else a new one."""
    candidate = given.decode("latin-1")
    # 128 random bits as 32 hex digits, the shape of a uuid4().hex at a third of its cost.
    return candidate if _REQUEST_ID.fullmatch(candidate) else os.urandom(16).hex()


class RouteTemplates:
    """The template of the route that answered a request, for log lines and metric labels.

    Normally read after the app ran from `scope["route"]`. FastAPI (from 0.16x) puts the route
    object of an included router there, with its own unprefixed path (`/customers/{id}`); the
    full template is known to its route contexts, which the OpenAPI document is built from.
    (Older versions put a copy that carries the full path there, which the fallback reads.)

    A request answered before routing (a cache hit, a 406 or 413 of HttpContract) has no route
    in its scope: its path is matched against the templates here, remembered in a bounded LRU
    so repeated cache hits cost one lookup. A 404 without a route is `unmatched` at once.
    """

    MEMO_SIZE = 4096

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        # id(route) -> (route, template); the route is kept so its id cannot be reused.
        self._known: dict[int, tuple[object, str]] = {}
        self._patterns: list[tuple[re.Pattern[str], frozenset[str], str]] | None = None
        self._memo: OrderedDict[tuple[str, str], str] = OrderedDict()

    def of(self, scope: Scope, status: int) -> str:
        named: str | None = scope.get(ROUTE_KEY)
        if named:
            return named
        route = scope.get("route")
        if route is not None:
            return self._template(route)
        if status == 404:
            return UNMATCHED
        return self._match(scope["method"], scope["path"])

    def _template(self, route: object) -> str:
        known = self._known.get(id(route))
        if known is None:
            self._refresh()  # first request, or routes were added since
            known = self._known.get(id(route))
            if known is None:
                known = (route, str(getattr(route, "path_format", None) or UNMATCHED))
                self._known[id(route)] = known
        return known[1]

    def _match(self, method: str, path: str) -> str:
        key = (method, path)
        found = self._memo.get(key)
        if found is not None:
            self._memo.move_to_end(key)
            return found
        if self._patterns is None:
            self._refresh()
        same_path = None
        for pattern, methods, template in self._patterns or ():
            if pattern.match(path):
                if method in methods:
                    same_path = template
                    break
                same_path = same_path or template  # a 405: the path's route all the same
        if same_path is None:
            return UNMATCHED  # not remembered: unknown paths must not fill the memo
        self._memo[key] = same_path
        if len(self._memo) > self.MEMO_SIZE:
            self._memo.popitem(last=False)
        return same_path

    def _refresh(self) -> None:
        patterns: list[tuple[re.Pattern[str], frozenset[str], str]] = []
        try:
            from fastapi.routing import iter_route_contexts
        except ImportError:  # pragma: no cover - FastAPI before lazily included routers
            for route in self.app.routes:
                regex = getattr(route, "path_regex", None)
                if regex is not None:
                    methods = frozenset(getattr(route, "methods", None) or ())
                    patterns.append((regex, methods, str(getattr(route, "path_format", ""))))
            self._patterns = patterns
            return
        found: dict[int, tuple[object, str]] = {}
        ambiguous: set[int] = set()
        for context in iter_route_contexts(self.app.routes):
            route, template = context.original_route, context.path_format
            regex = getattr(context, "path_regex", None)
            if not template:
                continue
            if regex is not None:
                patterns.append((regex, frozenset(context.methods or ()), template))
            seen = found.get(id(route))
            if seen is not None and seen[1] != template:
                ambiguous.add(id(route))  # one router included under two prefixes
            found[id(route)] = (route, template)
        for key in ambiguous:
            del found[key]
        self._known.update(found)
        self._patterns = patterns


class Observability:
    """Request id, one access log line and the request metrics for every HTTP request."""

    def __init__(self, app: ASGIApp, *, routes: RouteTemplates) -> None:
        self.app = app
        self.routes = routes
        self._series: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = perf_counter()
        given = agent = b""
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                given = value
            elif name == b"user-agent":
                agent = value
        request_id = request_id_for(given)
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = request_id
        path: str = scope["path"]  # before HttpContract trims a trailing slash: what was asked
        # Response headers from every layer inside (request id, rate limits), added by the one
        # send wrapper below; see core.asgi.with_response_headers.
        extra = scope[RESPONSE_HEADERS] = [(b"x-request-id", request_id.encode())]
        status = 500  # what the server sends for an app that never starts a response
        started = False
        end = 0.0

        async def send_with_headers(message: Message) -> None:
            nonlocal status, started, end
            if message["type"] == "http.response.start":
                status = message["status"]
                started = True
                message["headers"] = [*message.get("headers", ()), *extra]
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                end = perf_counter()
            await send(message)

        error: str | None = None
        try:
            await self.app(scope, receive, send_with_headers)
        except Exception as exc:
            error = type(exc).__name__
            if not started:
                # Raised in front of routing, where no error middleware runs: answer here.
                errors_log.error("unhandled error", exc_info=exc, extra={"request_id": request_id})
                await send_problem(
                    send_with_headers,
                    path,
                    500,
                    "Internal server error",
                    "Something went wrong on our side. Quote request id "
                    f"{request_id} when reporting it.",
                )
            # Otherwise ServerErrorMiddleware has answered 500 (unless the response had begun)
            # and core.handlers logged the traceback with the request id. Re-raising would only
            # make the server log the same traceback a second time, without the request id.
        duration = (end or perf_counter()) - start
        route = self.routes.of(scope, status)
        method = scope["method"] if scope["method"] in _METHODS else "OTHER"
        counter, histogram = self._children(route, method, status)
        counter.inc()
        histogram.observe(duration)
        level = logging.INFO if status < 500 else logging.WARNING
        if access_log.isEnabledFor(level):
            fields: dict[str, Any] = {
                "request_id": request_id,
                "method": method,
                "route": route,
                "path": path[:_MAX_PATH],
                "status": status,
                "duration_ms": round(duration * 1000, 3),
                "principal_id": state.get("principal_id"),
                "user_agent": agent[:_MAX_USER_AGENT].decode("latin-1"),
            }
            if error is not None:
                fields["error"] = error
            # As Logger.log would, less its search of the stack for the caller's file and
            # line (a third of the cost of a line, and always this one).
            record = access_log.makeRecord(
                access_log.name,
                level,
                __file__,
                0,
                "%s %s %d",
                (method, route, status),
                None,
                extra=fields,
            )
            access_log.handle(record)

    def _children(self, route: str, method: str, status: int) -> tuple[Any, Any]:
        # `labels()` takes a lock and builds a key on every call; the label sets are bounded
        # (route templates x methods x statuses), so their children are kept here.
        key = (route, method, status)
        found = self._series.get(key)
        if found is None:
            found = (REQUESTS.labels(route, method, str(status)), LATENCY.labels(route, method))
            self._series[key] = found
        return found


# The /metrics endpoint


def pool_use(engine: Engine) -> tuple[int, int] | None:
    """(checked out, configured size) of the engine's current pool, if it is a queue pool."""
    pool = engine.pool
    if not isinstance(pool, QueuePool):
        return None
    return pool.checkedout(), pool.size()


class _ScrapeTime(Collector):
    """The default registry plus this app's database pool, read at scrape time."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    def collect(self) -> Iterable[Metric]:
        yield from REGISTRY.collect()
        use = pool_use(self.app.state.engine)
        if use is not None:
            yield GaugeMetricFamily("wharf_db_pool_checked_out", POOL_CHECKED_OUT_HELP, use[0])
            yield GaugeMetricFamily("wharf_db_pool_size", POOL_SIZE_HELP, use[1])


def multiprocess_enabled() -> bool:
    # The value class, not the variable: prometheus_client picks it once, at import, so a
    # variable set later does not put any sample into the files.
    return values.ValueClass is not values.MutexValue


def track_pool(engine: Engine) -> None:
    """Keep this worker's pool gauges current from pool events (multiprocess mode only: a
    scrape answered by one worker cannot read the other workers' pools)."""
    use = pool_use(engine)
    if use is None:
        return
    DB_POOL_SIZE.set(use[1])
    # Engine-level listeners carry over to the pool that replaces this one after a disconnect.
    event.listen(engine, "checkout", lambda *_: DB_POOL_CHECKED_OUT.inc())
    event.listen(engine, "checkin", lambda *_: DB_POOL_CHECKED_OUT.dec())


class _AllWorkers(Collector):
    """Every worker's samples, from the files of prometheus_client's multiprocess mode."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.registry = CollectorRegistry()
        MultiProcessCollector(self.registry, directory)  # type: ignore[no-untyped-call]

    def collect(self) -> Iterable[Metric]:
        # A live-summed gauge (the pool) counts every worker whose files are there; uvicorn
        # neither runs exit hooks (it re-raises SIGTERM) nor reports a crashed worker, so the
        # files of workers that are gone are dropped here, before each scrape.
        for path in Path(self.directory).glob("gauge_live*_*.db"):
            pid = path.stem.rsplit("_", 1)[1]
            if pid.isdigit() and not _alive(int(pid)):
                mark_process_dead(int(pid), self.directory)  # type: ignore[no-untyped-call]
        return self.registry.collect()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive, and not ours to judge
        return True
    return True


def _collector(app: FastAPI) -> Collector:
    if not multiprocess_enabled():
        return _ScrapeTime(app)
    track_pool(app.state.engine)
    return _AllWorkers(os.environ.get(MULTIPROC_ENV) or os.environ[MULTIPROC_ENV.lower()])


def _exposition(request: Request) -> Response:
    collector: Collector = request.app.state.metrics_collector
    # The classic text format every Prometheus version reads (what generate_latest writes).
    return Response(generate_latest(collector), media_type=CONTENT_TYPE_PLAIN_0_0_4)


async def metrics_public(request: Request) -> Response:
    """Prometheus metrics (text format): requests, latency, cache, rate limits, database pool."""
    return await anyio.to_thread.run_sync(_exposition, request)


async def metrics_admin(request: Request, _: Admin) -> Response:
    """Prometheus metrics (text format): requests, latency, cache, rate limits, database pool.

    Needs a token with the `admin` scope (Prometheus sends one with `authorization:` in its
    scrape config), unless the server runs with `WHARF_METRICS_PUBLIC=true`.
    """
    return await anyio.to_thread.run_sync(_exposition, request)


def install(app: FastAPI) -> None:
    """Serve GET /metrics. (The `Observability` layer itself is placed by `wharf.app`.)"""
    app.state.metrics_collector = _collector(app)
    public = app.state.settings.metrics_public
    app.add_api_route(
        METRICS_PATH,
        metrics_public if public else metrics_admin,
        methods=["GET"],
        response_class=PlainTextResponse,
        tags=["operations"],
        summary="Prometheus metrics",
    )


@contextmanager
def multiprocess_metrics(directory: Path) -> Iterator[None]:
    """Run the block (a multi-worker server) with prometheus_client's multiprocess mode on.

    The directory is emptied first: samples of an earlier run's workers must not be added in.
    Workers inherit the variable; it is restored afterwards so nothing else started from this
    process later points at a directory that may be gone.
    """
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    before = os.environ.get(MULTIPROC_ENV)
    os.environ[MULTIPROC_ENV] = str(directory.resolve())
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(MULTIPROC_ENV, None)
        else:
            os.environ[MULTIPROC_ENV] = before
