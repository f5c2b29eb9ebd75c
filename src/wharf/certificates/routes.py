"""HTTP adapter for a user's certificates (seed 003)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query, Request, Response

from wharf.certificates import service
from wharf.certificates.schemas import (
    ActiveChange,
    CertificateCreate,
    CertificateList,
    CertificateRead,
)
from wharf.core.data.db import Db
from wharf.core.data.pagination import PageOf, page_response
from wharf.core.deps import KeyringDep, base_url
from wharf.core.http.concurrency import optional_precondition, versioned_response
from wharf.core.http.routing import Router
from wharf.core.security import Reader, Writer

router = Router(tags=["certificates"])
PATH = "/users/{user_id}/certificates"


def _shown(request: Request, row: dict[str, Any]) -> dict[str, Any]:
    row["url"] = f"{base_url(request)}/api/v1/users/{row['user_id']}/certificates/{row['id']}"
    return row


@router.post(PATH, status_code=201, response_model=CertificateRead)
async def create_certificate(
    user_id: int,
    body: CertificateCreate,
    request: Request,
    db: Db,
    me: Writer,
    keyring: KeyringDep,
) -> Response:
    """Store a certificate and its private key (encrypted; never returned). A PEM body is
    parsed and must match the key."""
    row = service.create_certificate(
        db,
        keyring=keyring,
        viewer=me,
        user_id=user_id,
        private_key=body.private_key,
        body=body.body,
        active=body.active,
    )
    return versioned_response(request, _shown(request, row), status=201, location=True)


@router.get(PATH, response_model=PageOf[CertificateRead])
async def list_certificates(
    user_id: int, request: Request, db: Db, me: Reader, q: Annotated[CertificateList, Query()]
) -> Response:
    """A user's certificates; `active=true|false`, `expiring_within_days`, `search` over
    subject, issuer and body, `ordering` over id, created_at, not_after (no expiry last)."""
    rows, total = service.list_certificates(
        db,
        viewer=me,
        user_id=user_id,
        active=None if q.active is None else q.active == "true",
        expiring_within_days=q.expiring_within_days,
        search=q.search,
        ordering=q.ordering,
        page=q.page,
    )
    response = page_response(request, [_shown(request, r) for r in rows], total, q.page)
    if q.expiring_within_days is not None:
        # The window moves with the clock, which no data generation follows: never cached.
        response.headers["Cache-Control"] = "no-store"
    return response


@router.get(PATH + "/{certificate_id}", response_model=CertificateRead)
async def get_certificate(
    user_id: int, certificate_id: int, request: Request, db: Db, me: Reader
) -> Response:
    """One certificate (never its private key)."""
    row = service.get_certificate(db, viewer=me, user_id=user_id, certificate_id=certificate_id)
    return versioned_response(request, _shown(request, row))


@router.delete(PATH + "/{certificate_id}", status_code=204)
async def delete_certificate(
    user_id: int, certificate_id: int, request: Request, db: Db, me: Writer
) -> Response:
    """Delete a certificate and its key."""
    service.delete_certificate(
        db,
        viewer=me,
        user_id=user_id,
        certificate_id=certificate_id,
        expected=optional_precondition(request),
    )
    return Response(status_code=204)


@router.patch(
    PATH + "/{certificate_id}/active",
    response_model=CertificateRead,
    responses={202: {"model": CertificateRead, "description": "Changed; notification queued."}},
)
async def set_certificate_active(
    user_id: int,
    certificate_id: int,
    body: ActiveChange,
    request: Request,
    db: Db,
    me: Writer,
) -> Response:
    """Activate or deactivate. The state is absolute, so no version is needed (`If-Match` is
    honoured). 202 when a notification was queued (`notify` and at least one webhook endpoint
    takes the event), 200 otherwise; setting the current state again changes nothing."""
    row, queued = service.set_active(
        db,
        viewer=me,
        user_id=user_id,
        certificate_id=certificate_id,
        active=body.active,
        notify=body.notify,
        expected=optional_precondition(request),
    )
    return versioned_response(request, _shown(request, row), status=202 if queued else 200)
