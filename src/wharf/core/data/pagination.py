"""The list envelope, Link headers, ordering and search shared by every collection."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Generic, TypeVar
from urllib.parse import parse_qsl, urlencode

from fastapi import Depends, Query
from pydantic import BaseModel, Field
from sqlalchemy import ColumnElement, SQLColumnExpression
from starlette.requests import Request
from starlette.responses import Response

from wharf.core.deps import base_url
from wharf.core.errors import InvalidInput
from wharf.core.http.concurrency import body_etag, not_modified
from wharf.core.http.responses import JSONBytes, dumps
from wharf.core.http.schemas import BLANKS

MAX_LIMIT = 500
MAX_OFFSET = 2**63 - 1  # the largest SQL BIGINT; JSON serialization fails past 64 bits
T = TypeVar("T")


@dataclass(frozen=True)
class Page:
    limit: int
    offset: int


class PagedParams(BaseModel):
    """The page of a collection: what every list model takes. A collection with no text
    fields (sprocket types) builds on this, so it offers no `search` that could match nothing.

    One model per list (FastAPI's query-parameter models) is validated in one pass, which
    costs far less per request than a dependency per parameter.
    """

    limit: int = Field(default=50, ge=1, le=MAX_LIMIT, description="Page size, at most 500.")
    offset: int = Field(default=0, ge=0, le=MAX_OFFSET, description="Items to skip.")

    @property
    def page(self) -> Page:
        return Page(limit=self.limit, offset=self.offset)


class ListParams(PagedParams):
    """Query parameters every collection with text fields takes; a domain's list model adds
    its filters."""

    search: str | None = Field(default=None, max_length=200, description="Text to look for.")
    ordering: str | None = Field(
        default=None, description="Comma-separated fields, `-` for descending: `-last_name,id`."
    )


def ordering_field(*fields: str) -> Any:
    """A list model's `ordering` over `fields`. Its pattern in the OpenAPI document is exactly
    what `order_by` accepts (blanks around a part and empty parts are ignored), so clients
    see the sortable fields."""
    part = rf"[{BLANKS}]*(-?({'|'.join(fields)})[{BLANKS}]*)?"
    return Field(
        default=None,
        description=f"Comma-separated fields among {', '.join(fields)}; a `-` prefix sorts "
        "descending, e.g. `-created_at,id`.",
        json_schema_extra={"pattern": rf"^{part}(,{part})*$"},
    )


async def page_params(
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Page size, at most 500.")] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Items to skip.")] = 0,
) -> Page:
    return Page(limit=limit, offset=offset)


PageParams = Annotated[Page, Depends(page_params)]

OrderingQuery = Annotated[
    str | None,
    Query(
        description="Comma-separated fields; a `-` prefix sorts descending, e.g. `-last_name,id`."
    ),
]
SearchQuery = Annotated[str | None, Query(max_length=200, description="Text to look for.")]


def order_by(
    raw: str | None,
    columns: Mapping[str, SQLColumnExpression[Any]],
    *,
    tiebreak: SQLColumnExpression[Any],
) -> list[ColumnElement[Any]]:
    """Parse `ordering=a,-b` into ORDER BY clauses; the id always breaks ties."""
    clauses: list[ColumnElement[Any]] = []
    seen: set[str] = set()
    for part in (raw or "").split(","):
        name = part.strip()
        if not name:
            continue
        field = name.removeprefix("-")
        if field not in columns:
            raise InvalidInput(
                f"Cannot order by {field!r}; choose from {', '.join(sorted(columns))}.",
                loc=["query", "ordering"],
            )
        if field in seen:
            continue
        seen.add(field)
        column = columns[field]
        clause = column.desc() if name.startswith("-") else column.asc()
        if getattr(column, "nullable", False):
            # Null sorts as the largest value on every database (PostgreSQL's default;
            # SQLite's is the smallest): the same list on both, an absent expiry last.
            clause = clause.nulls_first() if name.startswith("-") else clause.nulls_last()
        clauses.append(clause)
    if "id" not in seen:
        clauses.append(tiebreak.asc())
    return clauses


def _with_offset(request: Request, offset: int) -> str:
    # Starlette's URL.include_query_params re-parses the whole URL; on the hot list path this
    # plain rebuild of the query string costs a fraction of it.
    raw = request.scope["query_string"].decode("latin-1")
    query = [(k, v) for k, v in parse_qsl(raw, keep_blank_values=True) if k != "offset"]
    query.append(("offset", str(offset)))
    return f"{base_url(request)}{request.scope['path']}?{urlencode(query)}"


def page_response(
    request: Request, items: list[dict[str, Any]], total: int, page: Page
) -> Response:
    """The collection envelope with next/previous links, a weak ETag and 304 support."""
    nxt = page.offset + page.limit
    next_url = _with_offset(request, nxt) if nxt < total else None
    prev_url = _with_offset(request, max(page.offset - page.limit, 0)) if page.offset else None
    body = dumps(
        {
            "items": items,
            "total": total,
            "limit": page.limit,
            "offset": page.offset,
            "next": next_url,
            "previous": prev_url,
        }
    )
    etag = body_etag(body)
    links = [f'<{u}>; rel="{rel}"' for u, rel in ((next_url, "next"), (prev_url, "prev")) if u]
    headers = {"ETag": etag}
    if links:
        headers["Link"] = ", ".join(links)
    if not_modified(request, etag):
        return Response(status_code=304, headers=headers)
    return JSONBytes(body, headers=headers)


class PageOf(BaseModel, Generic[T]):
    """The envelope every collection GET returns (for the OpenAPI document)."""

    items: list[T]
    total: int
    limit: int
    offset: int
    next: str | None
    previous: str | None
