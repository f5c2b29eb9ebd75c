"""HTTP adapter for factories, their readings and chart data (seed 001)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query, Request, Response

from wharf.core.data.db import Db
from wharf.core.data.pagination import PageOf, page_response
from wharf.core.deps import base_url
from wharf.core.http.concurrency import (
    body_etag,
    not_modified,
    optional_precondition,
    precondition,
    versioned_response,
)
from wharf.core.http.responses import JSONBytes, dumps
from wharf.core.http.routing import Router
from wharf.core.security import Admin, Reader, Writer
from wharf.factories import imports, service
from wharf.factories.chart import DEFAULT_POINTS, MAX_POINTS
from wharf.factories.schemas import (
    AppendReport,
    ChartData,
    ChartQuery,
    FactoryCreate,
    FactoryDetail,
    FactoryList,
    FactoryPatch,
    FactoryRead,
    FactoryReplace,
    ImportReport,
    Readings,
    import_body_schema,
)
from wharf.factories.service import FACTORIES
from wharf.sprockets.schemas import BOUNDS

# `{factory_id:int}` matches digits only: `/factories/imports` sits beside the factory's
# paths, and `PUT /factories/imports` must be 405 (that path takes only POST), not a 422 for
# a factory id that is not a number.
router = Router(prefix="/factories", tags=["factories"])


def _one(request: Request, row: dict[str, Any], status: int = 200) -> Response:
    item = FACTORIES.render(base_url(request), row)
    return versioned_response(request, item, status=status, location=status == 201)


def _json(request: Request, data: Any, status: int = 200) -> Response:
    body = dumps(data)
    etag = body_etag(body)
    if status == 200 and not_modified(request, etag):
        return Response(status_code=304, headers={"ETag": etag})
    return JSONBytes(body, status_code=status, headers={"ETag": etag})


@router.get("", response_model=PageOf[FactoryRead])
async def list_factories(
    request: Request, db: Db, _: Reader, q: Annotated[FactoryList, Query()]
) -> Response:
    """Factories with a summary of their readings; `search` matches the name, `ordering`
    over id, name, created_at."""
    rows, total = service.list_factories(db, search=q.search, ordering=q.ordering, page=q.page)
    base = base_url(request)
    return page_response(request, [FACTORIES.render(base, r) for r in rows], total, q.page)


@router.post("", status_code=201, response_model=FactoryRead)
async def create_factory(body: FactoryCreate, request: Request, db: Db, _: Writer) -> Response:
    """Create a factory; names are unique (409)."""
    return _one(request, service.create_factory(db, name=body.name), 201)


@router.post(
    "/imports",
    response_model=ImportReport,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": import_body_schema(BOUNDS)}},
        }
    },
)
async def import_factory_file(request: Request, db: Db, _: Admin) -> Response:
    """Load one of the seed's files (`{"factories": [...]}` or `{"sprockets": [...]}`), as
    `wharf factories load` does: nothing already stored is added again, and bad input is
    refused whole (422 naming its place, e.g. `factories[1].factory.chart_data.time[7]`)."""
    return JSONBytes(dumps(imports.load_document(db, await request.body())))


@router.get("/{factory_id:int}", response_model=FactoryDetail)
async def get_factory(factory_id: int, request: Request, db: Db, _: Reader) -> Response:
    """One factory, its summary and `chart_data` as /chart-data gives it by default."""
    return _one(request, service.factory_detail(db, factory_id=factory_id))


@router.put("/{factory_id:int}", response_model=FactoryRead)
async def replace_factory(
    factory_id: int, body: FactoryReplace, request: Request, db: Db, _: Writer
) -> Response:
    """Replace a factory (its name). Needs `If-Match` or `version`."""
    expected = precondition(request, body.version)
    values = body.model_dump(exclude={"version"})
    row = service.change_factory(db, factory_id=factory_id, values=values, expected=expected)
    return _one(request, row)


@router.patch("/{factory_id:int}", response_model=FactoryRead)
async def patch_factory(
    factory_id: int, body: FactoryPatch, request: Request, db: Db, _: Writer
) -> Response:
    """Change some fields of a factory. Needs `If-Match` or `version`."""
    expected = precondition(request, body.version)
    row = service.change_factory(
        db, factory_id=factory_id, values=body.changes(), expected=expected
    )
    return _one(request, row)


@router.delete("/{factory_id:int}", status_code=204)
async def delete_factory(factory_id: int, request: Request, db: Db, _: Writer) -> Response:
    """Delete a factory with its readings."""
    service.delete_factory(db, factory_id=factory_id, expected=optional_precondition(request))
    return Response(status_code=204)


@router.post("/{factory_id:int}/readings", status_code=201, response_model=AppendReport)
async def append_factory_readings(
    factory_id: int, body: Readings, request: Request, db: Db, _: Writer
) -> Response:
    """Append up to 10,000 readings. A time the factory already has is 409 (naming the
    times) and nothing is appended; send an `Idempotency-Key` to retry a batch safely."""
    rows = [(r["time"], r["actual"], r["goal"]) for r in body]
    report = service.append_readings(db, factory_id=factory_id, rows=rows)
    base = base_url(request)
    report["factory"] = FACTORIES.render(base, report["factory"])
    # What was created is a stretch of the series: Location is the chart-data window of it.
    times = [t for t, _, _ in rows]
    window = f"from={min(times)}&to={max(times) + 1}"
    location = f"{base}/api/v1/factories/{factory_id}/chart-data?{window}"
    return JSONBytes(dumps(report), status_code=201, headers={"Location": location})


@router.get("/{factory_id:int}/chart-data", response_model=ChartData)
async def get_factory_chart_data(
    factory_id: int, request: Request, db: Db, _: Reader, q: Annotated[ChartQuery, Query()]
) -> Response:
    """Actual and goal production over `[from, to)`, raw or summed per `bucket` (`time` is
    each bucket's UTC start; weeks start on Monday). Without `bucket`: the raw readings if
    they fit `max_points`, else the smallest bucket that does, named in `bucket`."""
    found = service.chart_data(
        db,
        factory_id=factory_id,
        start=q.from_,
        end=q.to,
        bucket=q.bucket,
        # An explicit bucket is the caller's choice: only the hard cap limits it.
        max_points=q.max_points or (DEFAULT_POINTS if q.bucket is None else MAX_POINTS),
    )
    return _json(request, found)
