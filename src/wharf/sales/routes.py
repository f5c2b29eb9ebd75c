"""HTTP adapter for sales: file uploads and the questions (seed 004)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Annotated, Any, BinaryIO

import anyio
from fastapi import Path as PathParam
from fastapi import Query, Request, Response

from wharf.core.data.db import Db
from wharf.core.data.pagination import PageOf, PageParams, page_response
from wharf.core.deps import SettingsDep, base_url
from wharf.core.errors import PayloadTooLarge, UnsupportedMediaType
from wharf.core.http.concurrency import body_etag, not_modified
from wharf.core.http.responses import JSONBytes, dumps
from wharf.core.http.routing import Router
from wharf.core.http.schemas import Day
from wharf.core.security import Reader, StreamWriter
from wharf.sales import service
from wharf.sales.errors import FileRefused
from wharf.sales.files import GZIP_MAGIC
from wharf.sales.ingest import counter_for, ingest
from wharf.sales.schemas import (
    FileList,
    IngestReport,
    ProductDay,
    ProductSales,
    SalesDay,
    SalesFileRead,
    TopProducts,
    TopQuery,
    Upload,
    Window,
)

router = Router(prefix="/sales", tags=["sales"])
NDJSON = frozenset({"application/x-ndjson", "application/jsonl", "application/json-lines"})
ProductId = Annotated[int, PathParam(ge=0, le=2**63 - 1)]


def _json(request: Request, data: Any) -> Response:
    body = dumps(data)
    etag = body_etag(body)
    if not_modified(request, etag):
        return Response(status_code=304, headers={"ETag": etag})
    return JSONBytes(body, headers={"ETag": etag})


def _shown(request: Request, row: dict[str, Any]) -> dict[str, Any]:
    return service.FILES.render(base_url(request), row)


@router.post(
    "/files",
    status_code=201,
    response_model=IngestReport,
    responses={200: {"model": IngestReport, "description": "This file was already ingested."}},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/x-ndjson": {"schema": {"type": "string"}}},
        }
    },
)
async def upload_sales_file(
    request: Request, _: StreamWriter, q: Annotated[Upload, Query()], settings: SettingsDep
) -> Response:
    """Ingest one day's file, sent as the body (`application/x-ndjson`, `Content-Encoding:
    gzip` allowed). 201 with the report; 200 when this very file was already ingested; 409
    when the day has another file and `replace` is not set."""
    gzipped = _check_media(request)
    folder = settings.var_dir / "sales" / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix="upload-", suffix=".part", dir=folder)
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            await _receive(request, out, limit=settings.sales_max_upload_bytes)
        if gzipped and not _starts_with(path, GZIP_MAGIC):
            raise FileRefused("Content-Encoding says gzip, but the body is not gzip.")
        recorded = await anyio.to_thread.run_sync(
            lambda: ingest(
                request.app.state.engine,
                path,
                counter=counter_for(settings),
                day=q.date,
                name=f"upload-{q.date}.json" + (".gz" if gzipped else ""),
                replace=q.replace,
                max_bad_ratio=settings.sales_max_bad_ratio
                if q.max_bad_ratio is None
                else q.max_bad_ratio,
            )
        )
    finally:
        path.unlink(missing_ok=True)
    report = _shown(request, recorded.file)
    report["status"] = "ingested" if recorded.created else "already ingested"
    return JSONBytes(
        dumps(report),
        status_code=201 if recorded.created else 200,
        headers={"Location": report["url"]},
    )


def _check_media(request: Request) -> bool:
    """Whether the body is gzipped; 415 for anything but JSON lines, plain or gzipped."""
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media not in NDJSON:
        raise UnsupportedMediaType(
            f"Send the file as application/x-ndjson; got {media or 'no Content-Type'}."
        )
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("identity", "gzip"):
        raise UnsupportedMediaType(
            f"Content-Encoding {encoding} is not supported: send the file plain or gzipped."
        )
    return encoding == "gzip"


async def _receive(request: Request, out: BinaryIO, *, limit: int) -> None:
    # To disk as it arrives: memory holds one chunk of the body, never all of it.
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"The file exceeds the upload limit of {limit} bytes.")
        out.write(chunk)
    if size == 0:
        raise FileRefused("The body is empty: send the day's file as the body.")


def _starts_with(path: Path, magic: bytes) -> bool:
    with path.open("rb") as fh:
        return fh.read(len(magic)) == magic


@router.get("/files", response_model=PageOf[SalesFileRead])
async def list_sales_files(
    request: Request, db: Db, _: Reader, q: Annotated[FileList, Query()]
) -> Response:
    """The ledger of ingested files; `day`, `current=true|false`, `ordering` over id, day,
    ingested_at."""
    rows, total = service.list_files(
        db,
        day=q.day,
        current=None if q.current is None else q.current == "true",
        ordering=q.ordering,
        page=q.page,
    )
    return page_response(request, [_shown(request, r) for r in rows], total, q.page)


@router.get("/files/{file_id}", response_model=SalesFileRead)
async def get_sales_file(file_id: int, request: Request, db: Db, _: Reader) -> Response:
    """One ingested file's report."""
    return _json(request, _shown(request, service.get_file(db, file_id=file_id)))


@router.get("/days", response_model=PageOf[SalesDay])
async def list_sales_days(request: Request, db: Db, _: Reader, page: PageParams) -> Response:
    """The days that have sales, newest first, each with its files."""
    items, total = service.ingested_days(db, page=page)
    for item in items:
        item["files"] = [_shown(request, f) for f in item["files"]]
    return page_response(request, items, total, page)


@router.get("/products/{product_id}", response_model=ProductSales)
async def get_product_sales(
    product_id: ProductId, request: Request, db: Db, _: Reader, q: Annotated[Window, Query()]
) -> Response:
    """How often the product was sold in the past `days` days (default 7) of data, or over
    `from`..`to`: the total and each day's units, missing days as 0."""
    found = service.product_window(db, product_id=product_id, days=q.days, start=q.from_, end=q.to)
    return _json(request, found)


@router.get("/products/{product_id}/days/{day}", response_model=ProductDay)
async def get_product_day(
    product_id: ProductId, day: Day, request: Request, db: Db, _: Reader
) -> Response:
    """Units of the product sold on one day (0 when none)."""
    units = service.product_day(db, product_id=product_id, day=day)
    return _json(request, {"product_id": product_id, "date": day, "units": units})


@router.get("/top", response_model=TopProducts)
async def get_top_products(
    request: Request, db: Db, _: Reader, q: Annotated[TopQuery, Query()]
) -> Response:
    """The best-selling products over the window; ties go by product id."""
    found = service.top_window(db, days=q.days, start=q.from_, end=q.to, limit=q.limit)
    return _json(request, found)
