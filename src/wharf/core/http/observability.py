"""Request ids, the access log and request metrics (GET /metrics is `core.exposition`).

`Observability` is the outermost layer of the whole application (`wharf.app.Wharf`), so it
sees every answer: the 406/413/415 of `HttpContract`, a 429, a cache hit, and the 500 of an
unhandled error, which it answers itself when it was raised in front of routing. It is the one
place that generates or echoes `X-Request-ID`, and it adds every layer's response headers.

The route label is the template of the route that answered (`/api/v1/customers/{customer_id}`,
see `RouteTemplates`), or `unmatched` for a path no route knows, so unknown paths cannot blow up
the label set. A layer that answers before routing may also name the route itself by setting
`scope[ROUTE_KEY]` to its template.
"""

from __future__ import annotations

import logging
import os
import re
from collections import OrderedDict
from time import perf_counter
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from wharf.core.http.asgi import RESPONSE_HEADERS, send_problem
from wharf.core.metrics import (
    LATENCY,
    REQUESTS,
)

access_log = logging.getLogger("wharf.access")
errors_log = logging.getLogger("wharf.errors")

ROUTE_KEY = "wharf.route"
UNMATCHED = "unmatched"

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
