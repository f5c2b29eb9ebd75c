"""HTTP adapter for webhook endpoints and their deliveries (admins only)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import Query, Request, Response
from starlette.concurrency import run_in_threadpool

from wharf.core.data.db import Db
from wharf.core.data.pagination import PageOf, PageParams, page_response
from wharf.core.deps import KeyringDep, OutboundDep, SettingsDep, base_url
from wharf.core.http.concurrency import optional_precondition, precondition, versioned_response
from wharf.core.http.routing import Router
from wharf.core.security import Admin
from wharf.core.webhooks import outbox, service
from wharf.core.webhooks.schemas import (
    DeliveryDetail,
    DeliveryRead,
    DeliveryStatus,
    WebhookCreate,
    WebhookCreated,
    WebhookPatch,
    WebhookRead,
)

router = Router(tags=["webhooks"])


def _endpoint(request: Request, row: dict[str, Any], status: int = 200) -> Response:
    # `url` is the receiver's, so the resource's own address goes only in Location.
    response = versioned_response(request, row, status=status)
    if status == 201:
        response.headers["Location"] = f"{base_url(request)}/api/v1/webhooks/{row['id']}"
    return response


def _delivery(request: Request, row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "url": f"{base_url(request)}/api/v1/webhooks/deliveries/{row['id']}"}


@router.post("/webhooks", status_code=201, response_model=WebhookCreated)
async def create_webhook(
    body: WebhookCreate,
    request: Request,
    db: Db,
    _: Admin,
    keyring: KeyringDep,
    outbound: OutboundDep,
) -> Response:
    """Add a receiver of events. Its signing secret is in this response only."""
    # The URL's host is resolved to be checked: blocking DNS, off the event loop.
    row = await run_in_threadpool(
        service.create_endpoint,
        db,
        keyring=keyring,
        outbound=outbound,
        url=body.url,
        events=body.events,
        active=body.active,
        description=body.description or "",
    )
    return _endpoint(request, row, 201)


@router.get("/webhooks", response_model=PageOf[WebhookRead])
async def list_webhooks(request: Request, db: Db, _: Admin, page: PageParams) -> Response:
    """Every webhook endpoint."""
    rows, total = service.list_endpoints(db, page=page)
    return page_response(request, rows, total, page)


@router.get("/webhooks/{webhook_id}", response_model=WebhookRead)
async def get_webhook(webhook_id: int, request: Request, db: Db, _: Admin) -> Response:
    """One webhook endpoint (never its secret)."""
    return _endpoint(request, service.get_endpoint(db, endpoint_id=webhook_id))


@router.patch("/webhooks/{webhook_id}", response_model=WebhookRead)
async def patch_webhook(
    webhook_id: int,
    body: WebhookPatch,
    request: Request,
    db: Db,
    _: Admin,
    outbound: OutboundDep,
) -> Response:
    """Change url, events, active or description. Needs `If-Match` or `version`."""
    expected = precondition(request, body.version)
    row = await run_in_threadpool(
        service.change_endpoint,
        db,
        outbound=outbound,
        endpoint_id=webhook_id,
        values=body.changes(),
        expected=expected,
    )
    return _endpoint(request, row)


@router.delete("/webhooks/{webhook_id}", status_code=204)
async def delete_webhook(webhook_id: int, request: Request, db: Db, _: Admin) -> Response:
    """Delete an endpoint and its delivery history; pending deliveries are dropped."""
    service.delete_endpoint(db, endpoint_id=webhook_id, expected=optional_precondition(request))
    return Response(status_code=204)


@router.post("/webhooks/{webhook_id}/rotate-secret", response_model=WebhookCreated)
async def rotate_webhook_secret(
    webhook_id: int,
    request: Request,
    db: Db,
    _: Admin,
    keyring: KeyringDep,
    settings: SettingsDep,
) -> Response:
    """A new signing secret, shown once; the old one keeps signing beside it for the grace
    period (`WHARF_WEBHOOK_SECRET_GRACE_HOURS`)."""
    row = service.rotate_secret(
        db,
        keyring=keyring,
        endpoint_id=webhook_id,
        grace=timedelta(hours=settings.webhook_secret_grace_hours),
    )
    return _endpoint(request, row)


@router.get("/webhooks/{webhook_id}/deliveries", response_model=PageOf[DeliveryRead])
async def list_webhook_deliveries(
    webhook_id: int,
    request: Request,
    db: Db,
    _: Admin,
    page: PageParams,
    status: Annotated[DeliveryStatus | None, Query()] = None,
) -> Response:
    """The endpoint's deliveries, newest first, with attempts, last answer and next attempt."""
    rows, total = outbox.list_deliveries(db, endpoint_id=webhook_id, status=status, page=page)
    return page_response(request, [_delivery(request, r) for r in rows], total, page)


@router.get("/webhooks/deliveries/{delivery_id}", response_model=DeliveryDetail)
async def get_webhook_delivery(delivery_id: int, request: Request, db: Db, _: Admin) -> Response:
    """One delivery, with the history of its attempts."""
    row = outbox.delivery_with_attempts(db, delivery_id=delivery_id)
    return versioned_response(request, _delivery(request, row))


@router.post("/webhooks/deliveries/{delivery_id}/retry", response_model=DeliveryRead)
async def retry_webhook_delivery(delivery_id: int, request: Request, db: Db, _: Admin) -> Response:
    """Send a failed delivery again (same `webhook-id`, a fresh retry schedule); 409 unless
    it failed."""
    row = outbox.retry_delivery(db, delivery_id=delivery_id)
    return versioned_response(request, _delivery(request, row))
