"""HTTP adapter for sprocket types (seed 001).

Real verbs replace the seed's GET-mutation URLs, which are not kept:
`/api/sprocket/create/5/6/4/7/` is `POST /api/v1/sprockets` with the four fields as JSON,
and `/api/sprocket/3/update/...` is `PUT /api/v1/sprockets/3`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query, Request, Response

from wharf.core.data.db import Db
from wharf.core.data.pagination import PageOf, page_response
from wharf.core.deps import base_url
from wharf.core.http.concurrency import optional_precondition, precondition, versioned_response
from wharf.core.http.routing import Router
from wharf.core.security import Reader, Writer
from wharf.sprockets import service
from wharf.sprockets.schemas import (
    SprocketCreate,
    SprocketList,
    SprocketPatch,
    SprocketRead,
    SprocketReplace,
)
from wharf.sprockets.service import SPROCKETS

router = Router(prefix="/sprockets", tags=["sprockets"])


def _one(request: Request, row: dict[str, Any], status: int = 200) -> Response:
    return versioned_response(
        request, SPROCKETS.render(base_url(request), row), status=status, location=status == 201
    )


@router.get("", response_model=PageOf[SprocketRead])
async def list_sprockets(
    request: Request, db: Db, _: Reader, q: Annotated[SprocketList, Query()]
) -> Response:
    """Sprocket types. Each dimension filters by equality (`teeth=5`) and by an inclusive
    range (`teeth_min`, `teeth_max`); `ordering` over every field."""
    rows, total = service.list_sprockets(
        db, equals=q.equals(), ranges=q.ranges(), ordering=q.ordering, page=q.page
    )
    base = base_url(request)
    return page_response(request, [SPROCKETS.render(base, r) for r in rows], total, q.page)


@router.post("", status_code=201, response_model=SprocketRead)
async def create_sprocket(body: SprocketCreate, request: Request, db: Db, _: Writer) -> Response:
    """Create a sprocket type; one with the same four dimensions is 409 naming it."""
    return _one(request, service.create_sprocket(db, values=body.model_dump()), 201)


@router.get("/{sprocket_id}", response_model=SprocketRead)
async def get_sprocket(sprocket_id: int, request: Request, db: Db, _: Reader) -> Response:
    """One sprocket type."""
    return _one(request, service.get_sprocket(db, sprocket_id=sprocket_id))


@router.put("/{sprocket_id}", response_model=SprocketRead)
async def replace_sprocket(
    sprocket_id: int, body: SprocketReplace, request: Request, db: Db, _: Writer
) -> Response:
    """Replace a sprocket type's dimensions. Needs `If-Match` or `version`."""
    expected = precondition(request, body.version)
    values = body.model_dump(exclude={"version"})
    row = service.change_sprocket(db, sprocket_id=sprocket_id, values=values, expected=expected)
    return _one(request, row)


@router.patch("/{sprocket_id}", response_model=SprocketRead)
async def patch_sprocket(
    sprocket_id: int, body: SprocketPatch, request: Request, db: Db, _: Writer
) -> Response:
    """Change some dimensions of a sprocket type. Needs `If-Match` or `version`."""
    expected = precondition(request, body.version)
    row = service.change_sprocket(
        db, sprocket_id=sprocket_id, values=body.changes(), expected=expected
    )
    return _one(request, row)


@router.delete("/{sprocket_id}", status_code=204)
async def delete_sprocket(sprocket_id: int, request: Request, db: Db, _: Writer) -> Response:
    """Delete a sprocket type."""
    service.delete_sprocket(db, sprocket_id=sprocket_id, expected=optional_precondition(request))
    return Response(status_code=204)
