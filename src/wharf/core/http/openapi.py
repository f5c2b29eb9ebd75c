"""The OpenAPI document tells the whole HTTP contract: every error an operation can answer.

FastAPI declares only the success and a 422 in its own shape. Every error Wharf sends is RFC 9457
problem+json (see `core.handlers`), and which ones an operation can answer follows from the
contract in API.md (auth, path ids, preconditions, bodies), so they are declared here for every
route by rule instead of route by route: a new endpoint is documented, and fuzzed against its
document, without anyone remembering to.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from typing import Any, cast

import fastapi.routing
from fastapi import FastAPI
from fastapi.routing import APIRoute

from wharf.core.http.responses import PROBLEM_JSON

PROBLEM_REF = "#/components/schemas/Problem"
VALIDATION_PROBLEM_REF = "#/components/schemas/ValidationProblem"

_PROBLEM = {
    "title": "Problem",
    "description": "An RFC 9457 problem: every status >= 400 has this shape.",
    "type": "object",
    "required": ["type", "title", "status", "detail", "instance"],
    "properties": {
        "type": {"type": "string", "description": "A URI naming the problem type."},
        "title": {"type": "string", "description": "A short summary of the problem type."},
        "status": {"type": "integer", "description": "The HTTP status, repeated."},
        "detail": {"type": "string", "description": "What went wrong, in words to act on."},
        "instance": {"type": "string", "description": "The request path."},
    },
    "additionalProperties": True,
}
_VALIDATION_PROBLEM = {
    "title": "ValidationProblem",
    "description": "A 422 problem that lists every invalid input.",
    "allOf": [
        {"$ref": PROBLEM_REF},
        {
            "type": "object",
            "required": ["errors"],
            "properties": {
                "errors": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["loc", "msg", "type"],
                        "properties": {
                            "loc": {
                                "type": "array",
                                "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
                            },
                            "msg": {"type": "string"},
                            "type": {"type": "string"},
                        },
                    },
                }
            },
        },
    ],
}

_WHY = {
    400: "Malformed JSON, a malformed header, or a value the database cannot store.",
    401: "No bearer token, or one that is malformed, unknown, expired or revoked.",
    403: "The token lacks the scope this operation needs, or (browser sessions) the CSRF "
    "header is missing or the request came from another site.",
    404: "No such object, or one you may not see.",
    406: "The Accept header excludes JSON.",
    409: "The change conflicts with the data (a duplicate, a reference, a stale body version)"
    " or an Idempotency-Key still in flight.",
    412: "If-Match names a version that is no longer current.",
    413: "The request body is too large.",
    415: "The request body is not JSON.",
    422: "The input is not valid.",
    428: 'Send If-Match: "<version>" or the body\'s "version".',
    429: "Too many requests; retry after Retry-After seconds.",
    503: "The database (or another backing service) is unreachable; retry shortly.",
}
_HEADERS = {
    401: {"WWW-Authenticate": {"schema": {"type": "string"}, "description": "Bearer."}},
    429: {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait."}},
    503: {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait."}},
}
# What the layers in front of routing add to operations: the Idempotency-Key request header
# (every API POST but those that answer with a secret), and response headers.
_IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "Makes a retried POST safe: the first response is stored for 24 h and "
    "replayed, with Idempotent-Replayed: true, for the same key and body (Stripe's rules).",
    "schema": {"type": "string", "pattern": "^[!-~]{1,255}$"},
}
_RESPONSE_HEADERS: dict[str, dict[str, Any]] = {
    "X-Request-ID": {
        "description": "The request's id: the client's when it sent a sane one, else new.",
        "schema": {"type": "string"},
    },
}
_API_RESPONSE_HEADERS: dict[str, dict[str, Any]] = {
    "RateLimit-Policy": {
        "description": 'The quotas this request counts against, e.g. "api";q=1200;w=60.',
        "schema": {"type": "string"},
    },
    "RateLimit": {
        "description": "What is left of each quota and when its window rolls over, e.g. "
        '"api";r=1187;t=42.',
        "schema": {"type": "string"},
    },
}
_REPLAYED = {
    "Idempotent-Replayed": {
        "description": "true when this is the stored response to an earlier request with the "
        "same Idempotency-Key.",
        "schema": {"type": "string", "enum": ["true"]},
    }
}
_BODY_METHODS = frozenset({"post", "put", "patch"})
_WRITE_METHODS = frozenset({"post", "put", "patch", "delete"})
_HTTP_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})


def error_statuses(
    path: str, method: str, operation: dict[str, Any], *, api_prefix: str, login_paths: set[str]
) -> set[int]:
    """The problem statuses an operation can answer, from what the contract says about it."""
    statuses = {422, 503}
    if path.startswith(api_prefix):
        statuses |= {400, 406, 413, 429}
    if operation.get("security"):
        statuses |= {401, 403}
    if path in login_paths:
        statuses.add(401)  # a wrong password
    if any(p.get("in") == "path" for p in operation.get("parameters", [])):
        statuses.add(404)
    if method in _BODY_METHODS and "requestBody" in operation:
        statuses.add(415)
    if method in _WRITE_METHODS and path.startswith(api_prefix):
        statuses |= {403, 409}  # 403: core.http.session's CSRF and Origin checks
    if method in {"put", "patch", "delete"}:
        statuses.add(412)
    if method in {"put", "patch"}:
        statuses.add(428)
    return statuses


def _problem_response(status: int) -> dict[str, Any]:
    ref = VALIDATION_PROBLEM_REF if status == 422 else PROBLEM_REF
    response: dict[str, Any] = {
        "description": _WHY[status],
        "content": {PROBLEM_JSON: {"schema": {"$ref": ref}}},
    }
    if status in _HEADERS:
        response["headers"] = copy.deepcopy(_HEADERS[status])
    return response


def declare_problems(
    doc: dict[str, Any],
    *,
    api_prefix: str = "/api/",
    no_idempotency: frozenset[str] = frozenset(),
    also_login: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """Add the Problem schemas, every operation's problem responses and the headers of the
    layers in front of routing to `doc`, in place."""
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas.setdefault("Problem", copy.deepcopy(_PROBLEM))
    schemas.setdefault("ValidationProblem", copy.deepcopy(_VALIDATION_PROBLEM))
    login_paths = set(also_login) | {
        flow["tokenUrl"]
        for scheme in components.get("securitySchemes", {}).values()
        for flow in scheme.get("flows", {}).values()
        if "tokenUrl" in flow
    }
    for path, item in doc.get("paths", {}).items():
        for method, operation in item.items():
            if method not in _HTTP_METHODS:
                continue
            responses = operation.setdefault("responses", {})
            statuses = error_statuses(
                path, method, operation, api_prefix=api_prefix, login_paths=login_paths
            )
            for status in sorted(statuses):
                existing = responses.get(str(status))
                # FastAPI's own 422 is {"detail": [...]} as application/json: not what is sent.
                if existing is None or (
                    status == 422 and PROBLEM_JSON not in existing.get("content", {})
                ):
                    responses[str(status)] = _problem_response(status)
            if method == "get" and path.startswith(api_prefix):
                responses.setdefault(
                    "304", {"description": "Not modified: If-None-Match names the current ETag."}
                )
            _declare_headers(path, method, operation, api_prefix, no_idempotency)
    _int32(doc)
    # Nothing refers to FastAPI's validation shapes any more.
    if "#/components/schemas/HTTPValidationError" not in _refs(doc.get("paths", {})):
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
    return doc


def _declare_headers(
    path: str,
    method: str,
    operation: dict[str, Any],
    api_prefix: str,
    no_idempotency: frozenset[str],
) -> None:
    api = path.startswith(api_prefix)
    idempotent = api and method == "post" and path not in no_idempotency
    if idempotent:
        parameters = operation.setdefault("parameters", [])
        if not any(p.get("name") == "Idempotency-Key" for p in parameters):
            parameters.append(copy.deepcopy(_IDEMPOTENCY_KEY))
    for status, response in operation.get("responses", {}).items():
        headers = response.setdefault("headers", {})
        wanted = {**_RESPONSE_HEADERS, **(_API_RESPONSE_HEADERS if api else {})}
        if idempotent and status.startswith("2"):
            wanted.update(_REPLAYED)
        for name, header in wanted.items():
            headers.setdefault(name, copy.deepcopy(header))


def _int32(node: Any) -> None:
    """Ids, versions and the like live in INTEGER columns, 32-bit on PostgreSQL: an integer
    the schema does not bound otherwise is an int32 (a larger one is refused, never a 500)."""
    if isinstance(node, dict):
        if node.get("type") == "integer" and "maximum" not in node:
            node.setdefault("format", "int32")
        for value in node.values():
            _int32(value)
    elif isinstance(node, list):
        for value in node:
            _int32(value)


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        return found.union(*(_refs(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_refs(v) for v in node))
    return set()


def install(
    app: FastAPI,
    *,
    api_prefix: str = "/api/",
    no_idempotency: frozenset[str] = frozenset(),
    also_login: frozenset[str] = frozenset(),
) -> None:
    """Make `app.openapi()` declare problem responses; composes with other wrappers of it."""
    generate: Callable[[], dict[str, Any]] = app.openapi
    declared: list[int] = []

    def openapi() -> dict[str, Any]:
        doc = generate()
        if id(doc) not in declared:  # FastAPI caches the document; amend it once
            declare_problems(
                doc, api_prefix=api_prefix, no_idempotency=no_idempotency, also_login=also_login
            )
            declared.append(id(doc))
        return doc

    app.openapi = openapi  # type: ignore[method-assign]


def operation_id(route: APIRoute) -> str:
    """The one rule for operation ids (FastAPI's `generate_unique_id_function`, set on the
    app): the endpoint function's name, e.g. `list_customers`. Generated clients name their
    functions after it; FastAPI's default appends the path and method
    (`list_customers_api_v1_customers_get`). A name is therefore part of the API: rename an
    endpoint function only deliberately (tests/operation_ids.txt holds the current ones)."""
    return route.name


def _routes(app: FastAPI) -> Iterable[Any]:
    """Every route of the app. FastAPI from 0.16x keeps an included router as one lazy
    branch of `app.routes`; its `iter_route_contexts` walks them, giving each route as
    included (the app's prefix and id rule applied). Earlier versions copy routes flat."""
    walk = getattr(fastapi.routing, "iter_route_contexts", None)
    return cast(Iterable[Any], walk(app.routes) if walk is not None else app.routes)


def check_operation_ids(app: FastAPI) -> None:
    """Refuse to build an app whose document would give two operations one id (FastAPI only
    warns, and a generated client then silently loses one of them)."""
    seen: dict[str, str] = {}
    for route in _routes(app):
        if not isinstance(getattr(route, "original_route", route), APIRoute):
            continue
        if not route.include_in_schema:
            continue
        op_id = route.operation_id or route.unique_id
        where = f"{' '.join(sorted(route.methods))} {route.path}"
        if len(route.methods) > 1:
            raise RuntimeError(
                f"{where} is one endpoint for several methods, so one operation id "
                f"({op_id!r}) would name several operations: split it."
            )
        if op_id in seen:
            raise RuntimeError(
                f"Operation id {op_id!r} of {where} is already that of {seen[op_id]}: "
                "rename one of the endpoint functions."
            )
        seen[op_id] = where
