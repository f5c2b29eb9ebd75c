"""HTTP adapter for the car catalog (seed 002).

The seed's routes keep their meaning: `GET /api/cars/web/` and `/api/cars/mobile/` are
`GET /api/v1/cars/web` and `/api/v1/cars/mobile`, where each car's `image` is that variant's
JPEG URL. `{car_id:int}` matches digits only, so `/cars/web` and `/cars/imports` sit beside a
car's paths.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from wharf.catalog import importer, service
from wharf.catalog.schemas import (
    CarCreate,
    CarForPlatform,
    CarList,
    CarPatch,
    CarPlatformList,
    CarRead,
    CarReplace,
    ImportDetail,
    ImportRead,
    ImportRequest,
)
from wharf.core.data.db import Db
from wharf.core.data.pagination import PagedParams, PageOf, page_response
from wharf.core.deps import OutboundDep, SettingsDep, base_url
from wharf.core.errors import PayloadTooLarge, UnsupportedMediaType
from wharf.core.http.concurrency import optional_precondition, precondition, versioned_response
from wharf.core.http.responses import JSONBytes, dumps
from wharf.core.http.routing import Router
from wharf.core.security import Admin, Reader, Writer

router = Router(prefix="/cars", tags=["cars"])
IMPORTS_PATH = "/api/v1/cars/imports"
CSV_TYPES = frozenset({"text/csv", "application/csv", "text/plain"})
# Import records change as their import runs, and only admins may see them: never kept by
# the response cache (whose `catalog` group is shared by every reader).
NO_STORE = {"Cache-Control": "no-store"}


def _one(request: Request, row: dict[str, Any], status: int = 200) -> Response:
    item = service.render(base_url(request), row)
    return versioned_response(request, item, status=status, location=status == 201)


def _page(request: Request, db: Db, q: CarList | CarPlatformList, platform: str | None) -> Response:
    rows, total = service.list_cars(
        db, search=q.search, ordering=q.ordering, has_image=q.has_image, page=q.page
    )
    base = base_url(request)
    items = [service.render(base, row, platform=platform) for row in rows]
    return page_response(request, items, total, q.page)


@router.get("", response_model=PageOf[CarRead])
async def list_cars(
    request: Request, db: Db, _: Reader, q: Annotated[CarList, Query()]
) -> Response:
    """Cars. `search` covers title and description, `ordering` id, title and created_at,
    `has_image` filters; `platform=web|mobile` adds `image` as /cars/web and /cars/mobile do."""
    return _page(request, db, q, q.platform)


@router.get("/web", response_model=PageOf[CarForPlatform])
async def list_cars_web(
    request: Request, db: Db, _: Reader, q: Annotated[CarPlatformList, Query()]
) -> Response:
    """Cars for the web: each `image` is the 1024 px wide JPEG thumbnail, or null."""
    return _page(request, db, q, "web")


@router.get("/mobile", response_model=PageOf[CarForPlatform])
async def list_cars_mobile(
    request: Request, db: Db, _: Reader, q: Annotated[CarPlatformList, Query()]
) -> Response:
    """Cars for mobile: each `image` is the 320 px wide JPEG thumbnail, or null."""
    return _page(request, db, q, "mobile")


@router.post("", status_code=201, response_model=CarRead)
async def create_car(
    body: CarCreate, request: Request, db: Db, _: Writer, outbound: OutboundDep
) -> Response:
    """Create a car. Its `image_url` is checked now and fetched in the background; a title
    another car has is 409 naming it."""
    if body.image_url is not None:
        outbound.check_field(body.image_url, loc=["body", "image_url"])
    return _one(request, service.create_car(db, values=body.model_dump()), 201)


@router.get("/imports", response_model=PageOf[ImportRead])
async def list_car_imports(
    request: Request, db: Db, _: Admin, q: Annotated[PagedParams, Query()]
) -> Response:
    """Imports, newest first, with their counts (the per-row report is on each one)."""
    rows, total = importer.list_imports(db, limit=q.limit, offset=q.offset)
    base = base_url(request)
    response = page_response(request, [_import(base, r) for r in rows], total, q.page)
    response.headers.update(NO_STORE)
    return response


@router.post(
    "/imports",
    status_code=202,
    response_model=ImportDetail,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": ImportRequest.model_json_schema()},
                # Any bytes: whether they are a usable CSV, the import's record says.
                "text/csv": {"schema": {"description": "The CSV file itself."}},
            },
        }
    },
)
async def import_cars(
    request: Request,
    db: Db,
    who: Admin,
    settings: SettingsDep,
    outbound: OutboundDep,
    sync: Annotated[
        bool, Query(description="With a CSV body: delete the cars it no longer lists.")
    ] = False,
) -> Response:
    """Import cars from a CSV: `{"url": ..., "sync": false}`, or the CSV itself as a
    `text/csv` body. It runs in the background: poll the record until `status` is `done` or
    `failed`. Cars are matched by title and updated in place; `sync` deletes the others."""
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media == "application/json":
        try:
            asked = ImportRequest.model_validate_json(await _body(request, 64 * 1024))
        except ValidationError as exc:  # answered as FastAPI answers a body it validated
            errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]
            raise RequestValidationError(errors) from None
        outbound.check_field(asked.url, loc=["body", "url"])
        record = importer.start(db, source=asked.url, sync=asked.sync, user_id=who.user_id)
    elif media in CSV_TYPES:
        csv = await _body(request, settings.cars_max_csv_bytes)
        record = importer.start(db, source="upload", sync=sync, user_id=who.user_id, body=csv)
    else:
        raise UnsupportedMediaType(
            f'Send {{"url": ...}} as application/json, or the CSV as text/csv; got '
            f"{media or 'no Content-Type'}."
        )
    item = _import(base_url(request), record)
    headers = {"Location": item["url"], **NO_STORE}
    return JSONBytes(dumps(item), status_code=202, headers=headers)


@router.get("/imports/{import_id:int}", response_model=ImportDetail)
async def get_car_import(import_id: int, request: Request, db: Db, _: Admin) -> Response:
    """One import: its status, counts, and report row by row."""
    item = _import(base_url(request), importer.get_import(db, import_id=import_id))
    return JSONBytes(dumps(item), headers=NO_STORE)


@router.get("/{car_id:int}", response_model=CarRead)
async def get_car(car_id: int, request: Request, db: Db, _: Reader) -> Response:
    """One car, with its thumbnails' URLs."""
    return _one(request, service.get_car(db, car_id=car_id))


@router.put("/{car_id:int}", response_model=CarRead)
async def replace_car(
    car_id: int, body: CarReplace, request: Request, db: Db, _: Writer, outbound: OutboundDep
) -> Response:
    """Replace a car. Needs `If-Match` or `version`; a new `image_url` is fetched again."""
    expected = precondition(request, body.version)
    if body.image_url is not None:
        outbound.check_field(body.image_url, loc=["body", "image_url"])
    values = body.model_dump(exclude={"version"})
    return _one(request, service.change_car(db, car_id=car_id, values=values, expected=expected))


@router.patch("/{car_id:int}", response_model=CarRead)
async def patch_car(
    car_id: int, body: CarPatch, request: Request, db: Db, _: Writer, outbound: OutboundDep
) -> Response:
    """Change some of a car's fields (`image_url: null` drops its image). Needs `If-Match`
    or `version`."""
    expected = precondition(request, body.version)
    changes = body.changes()
    if body.image_url is not None:
        outbound.check_field(body.image_url, loc=["body", "image_url"])
    row = service.change_car(db, car_id=car_id, values=changes, expected=expected)
    return _one(request, row)


@router.delete("/{car_id:int}", status_code=204)
async def delete_car(car_id: int, request: Request, db: Db, _: Writer) -> Response:
    """Delete a car; its image files go once no car shows them."""
    service.delete_car(db, car_id=car_id, expected=optional_precondition(request))
    return Response(status_code=204)


def _import(base: str, record: dict[str, Any]) -> dict[str, Any]:
    shown = {k: v for k, v in record.items() if k != "user_id"}
    shown["url"] = f"{base}{IMPORTS_PATH}/{record['id']}"
    return shown


async def _body(request: Request, limit: int) -> bytes:
    # The body of this path is not read by HttpContract (it may be a CSV): read it here, in
    # memory, under its own limit (the CSV limit is a few MiB, not a stream's gigabytes).
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"The body exceeds {limit:,} bytes (WHARF_CARS_MAX_CSV_BYTES).")
        chunks.append(chunk)
    return b"".join(chunks)
