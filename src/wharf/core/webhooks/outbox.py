"""The outbox and deliveries: events written with the change that caused them, one delivery
per subscribed endpoint, and what became of each."""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy import Connection, func, insert, select

from wharf.core.data import crud
from wharf.core.data.db import utcnow
from wharf.core.data.pagination import Page
from wharf.core.errors import Conflict, NotFound
from wharf.core.http.responses import dumps
from wharf.core.webhooks.models import (
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)
from wharf.core.webhooks.service import ALL_EVENTS, ENDPOINTS, JOB_KIND, Rows
from wharf.core.work import enqueue
from wharf.core.work.jobs import requeue
from wharf.core.work.models import DONE, FAILED, Job


def publish(conn: Connection, event_type: str, data: dict[str, Any]) -> int:
    """Write an event and one delivery per subscribed, active endpoint, in the caller's
    transaction (the outbox): sent exactly when the change commits. How many were queued."""
    now = utcnow()
    body = dumps({"type": event_type, "timestamp": now, "data": data})
    event_id = conn.execute(
        insert(WebhookEvent)
        .values(
            message_id=f"msg_{secrets.token_hex(12)}", type=event_type, body=body, created_at=now
        )
        .returning(WebhookEvent.id)
    ).scalar_one()
    endpoints = conn.execute(
        select(WebhookEndpoint.id, WebhookEndpoint.events).where(WebhookEndpoint.active.is_(True))
    ).all()
    queued = 0
    for endpoint in endpoints:
        wanted = endpoint.events.split()
        if ALL_EVENTS not in wanted and event_type not in wanted:
            continue
        # The job finds its delivery by job id (deliveries.job_id is unique).
        job_id = enqueue(conn, JOB_KIND, {})
        conn.execute(
            insert(WebhookDelivery).values(
                endpoint_id=endpoint.id, event_id=event_id, job_id=job_id, created_at=now
            )
        )
        queued += 1
    return queued


_STATUS = {DONE: "delivered", FAILED: "failed"}  # pending and running both read "pending"

DELIVERY_COLUMNS = (
    WebhookDelivery.id,
    WebhookDelivery.endpoint_id,
    WebhookEvent.message_id.label("event_id"),
    WebhookEvent.type.label("event_type"),
    Job.state,
    Job.attempts,
    WebhookDelivery.last_status_code,
    Job.last_error,
    Job.due_at,
    WebhookDelivery.created_at,
    WebhookDelivery.delivered_at,
)


def _delivery(row: Any) -> dict[str, Any]:
    out = dict(row)
    state, due = out.pop("state"), out.pop("due_at")
    out["status"] = _STATUS.get(state, "pending")
    out["next_attempt_at"] = due if out["status"] == "pending" else None
    return out


def _deliveries() -> Any:
    return (
        select(*DELIVERY_COLUMNS)
        .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
        .join(Job, Job.id == WebhookDelivery.job_id)
    )


def list_deliveries(conn: Connection, *, endpoint_id: int, status: str | None, page: Page) -> Rows:
    crud.fetch(conn, ENDPOINTS, endpoint_id)  # 404 for an endpoint that does not exist
    where = [WebhookDelivery.endpoint_id == endpoint_id]
    if status == "delivered":
        where.append(Job.state == DONE)
    elif status == "failed":
        where.append(Job.state == FAILED)
    elif status == "pending":
        where.append(Job.state.not_in([DONE, FAILED]))
    total = conn.execute(
        select(func.count())
        .select_from(WebhookDelivery)
        .join(Job, Job.id == WebhookDelivery.job_id)
        .where(*where)
    ).scalar_one()
    rows = conn.execute(
        _deliveries()
        .where(*where)
        .order_by(WebhookDelivery.id.desc())
        .limit(page.limit)
        .offset(page.offset)
    ).mappings()
    return [_delivery(r) for r in rows], total


def get_delivery(conn: Connection, *, delivery_id: int) -> dict[str, Any]:
    row = conn.execute(_deliveries().where(WebhookDelivery.id == delivery_id)).mappings().first()
    if row is None:
        raise NotFound(f"No webhook delivery {delivery_id}.")
    return _delivery(row)


def delivery_with_attempts(conn: Connection, *, delivery_id: int) -> dict[str, Any]:
    """One delivery, with every attempt made at it (oldest first)."""
    found = get_delivery(conn, delivery_id=delivery_id)
    attempts = conn.execute(
        select(
            WebhookAttempt.attempt,
            WebhookAttempt.attempted_at,
            WebhookAttempt.status_code,
            WebhookAttempt.error,
            WebhookAttempt.duration_ms,
        )
        .where(WebhookAttempt.delivery_id == delivery_id)
        .order_by(WebhookAttempt.id)
    ).mappings()
    return {**found, "history": [dict(a) for a in attempts]}


def retry_delivery(conn: Connection, *, delivery_id: int) -> dict[str, Any]:
    """Send a failed delivery again, with a fresh retry schedule and the same webhook-id."""
    current = get_delivery(conn, delivery_id=delivery_id)
    if current["status"] != "failed":
        raise Conflict(
            f"Webhook delivery {delivery_id} is {current['status']}; only a failed one can be "
            "retried."
        )
    job_id = conn.execute(
        select(WebhookDelivery.job_id).where(WebhookDelivery.id == delivery_id)
    ).scalar_one()
    requeue(conn, job_id)
    return get_delivery(conn, delivery_id=delivery_id)
