"""Sending one delivery: sign it (Standard Webhooks), POST it, classify the answer.

Runs as the `webhook.deliver` job (core.work): at least once, retried on timeouts,
connection errors, 5xx and 429 along the configured schedule, failed on any other answer.
Every attempt is recorded; a retry carries the same `webhook-id`, so receivers can drop
duplicates.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, update
from standardwebhooks import Webhook

from wharf.core.data.db import utcnow
from wharf.core.errors import WharfError
from wharf.core.keys import KeySource
from wharf.core.outbound import Outbound, OutboundFailed, OutboundRefused
from wharf.core.webhooks.models import (
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)
from wharf.core.webhooks.service import JOB_KIND, signing_secrets
from wharf.core.work import ClaimedJob, Outcome
from wharf.core.work.models import DONE

MAX_RETRY_AFTER = 24 * 3600.0  # a receiver cannot park a delivery for longer than a day
RESPONSE_LIMIT = 64 * 1024  # what is read of a receiver's answer before it is dropped
USER_AGENT = "Wharf-Webhooks/0.1"
INTERRUPTED = "not finished: the worker stopped"  # a claim taken over after its lease ran out


def signature(secrets: Sequence[str], message_id: str, timestamp: datetime, body: bytes) -> str:
    """The `webhook-signature` header: one `v1,<base64>` per secret, space-separated."""
    text = body.decode()
    return " ".join(Webhook(secret).sign(message_id, timestamp, text) for secret in secrets)


def retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), if it says any."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return min(max((moment - utcnow()).total_seconds(), 0.0), MAX_RETRY_AFTER)


class DeliveryHandler:
    kind = JOB_KIND

    def __init__(
        self,
        engine: Engine,
        *,
        keys: KeySource,
        outbound: Outbound,
        delays: Sequence[float],
        settings_secret: str | None,
    ) -> None:
        self.engine = engine
        self.keys = keys
        self.outbound = outbound
        self.delays = delays
        self.settings_secret = settings_secret

    def run(self, job: ClaimedJob) -> Outcome:
        # Every attempt leaves a history row, those that never reach the receiver included.
        start = time.perf_counter()
        began: dict[str, Any] = {"attempted_at": utcnow()}
        with self.engine.connect() as conn:
            found = conn.execute(
                select(
                    WebhookEndpoint.id,
                    WebhookEndpoint.url,
                    WebhookEndpoint.active,
                    WebhookEvent.message_id,
                    WebhookEvent.body,
                )
                .select_from(WebhookDelivery)
                .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
                .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
                .where(WebhookDelivery.job_id == job.id)
            ).first()
            if found is None:  # the endpoint was deleted, and its deliveries with it
                return Outcome("done")
            if not found.active:
                # Kept for when it is activated again, along the retry schedule.
                return Outcome("retry", error="the endpoint is inactive", facts=_took(began, start))
            try:
                secrets = signing_secrets(
                    conn,
                    keyring=self.keys.keyring(),
                    endpoint_id=found.id,
                    settings_secret=self.settings_secret,
                )
            except WharfError as exc:  # a key missing from the keyring: retry once it is back
                return Outcome("retry", error=exc.detail, facts=_took(began, start))
        if not secrets:
            return Outcome(
                "failed", error="the endpoint has no signing secret", facts=_took(began, start)
            )
        now = utcnow()
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "webhook-id": found.message_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": signature(secrets, found.message_id, now, found.body),
        }
        start = time.perf_counter()
        # `requested`: the request was made (or refused on the way), so its outcome is the
        # delivery's last status code.
        facts: dict[str, Any] = {"attempted_at": now, "requested": True}
        try:
            response = self.outbound.request(
                "POST",
                found.url,
                headers=headers,
                content=found.body,
                max_bytes=RESPONSE_LIMIT,
                truncate=True,  # only the status counts: a long answer is not a failure
            )
        except OutboundRefused as exc:
            return Outcome("failed", error=exc.detail, facts=_took(facts, start))
        except OutboundFailed as exc:
            return Outcome("retry", error=exc.reason, facts=_took(facts, start))
        facts = _took({**facts, "status_code": response.status}, start)
        status = response.status
        if 200 <= status < 300:
            return Outcome("done", facts=facts)
        if status == 429 or status >= 500:
            return Outcome(
                "retry",
                error=f"the receiver answered {status}",
                retry_in=retry_after(response.headers.get("retry-after")),
                facts=facts,
            )
        why = "redirects are not followed" if 300 <= status < 400 else "not retried"
        return Outcome("failed", error=f"the receiver answered {status}; {why}", facts=facts)

    def record(self, conn: Connection, job: ClaimedJob, outcome: Outcome, state: str) -> None:
        """One history row for every attempt: sent or not (an inactive endpoint, a missing
        key), and one the worker's own error cut short (an outcome without facts)."""
        delivery_id = _delivery_of(conn, job)
        if delivery_id is None:
            return  # the endpoint was deleted, and the delivery with it
        status = outcome.facts.get("status_code")
        conn.execute(
            insert(WebhookAttempt).values(
                delivery_id=delivery_id,
                attempt=job.attempts,
                attempted_at=outcome.facts.get("attempted_at") or utcnow(),
                status_code=status,
                error=outcome.error,
                duration_ms=outcome.facts.get("duration_ms", 0),
            )
        )
        if not outcome.facts.get("requested"):
            return  # nothing was sent: the last answer the receiver gave still stands
        conn.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery_id)
            .values(
                last_status_code=status,
                delivered_at=outcome.facts["attempted_at"] if state == DONE else None,
            )
        )

    def taken_over(self, conn: Connection, job: ClaimedJob) -> None:
        """The attempt a stopped worker never finished: whether it reached the receiver is
        unknown (the retry keeps its webhook-id, so a receiver can drop a duplicate)."""
        delivery_id = _delivery_of(conn, job)
        if delivery_id is None:
            return
        conn.execute(
            insert(WebhookAttempt).values(
                delivery_id=delivery_id,
                attempt=job.attempts - 1,
                attempted_at=job.interrupted_at or utcnow(),
                status_code=None,
                error=INTERRUPTED,
                duration_ms=0,
            )
        )


def _delivery_of(conn: Connection, job: ClaimedJob) -> int | None:
    found: int | None = conn.execute(
        select(WebhookDelivery.id).where(WebhookDelivery.job_id == job.id)
    ).scalar()
    return found


def _took(facts: dict[str, Any], start: float) -> dict[str, Any]:
    return {**facts, "duration_ms": int((time.perf_counter() - start) * 1000)}
