"""Webhook endpoints: their rules, their signing secrets (sealed at rest, rotated with a grace
period) and the one endpoint kept from the settings. Events and deliveries are `outbox`."""

from __future__ import annotations

import base64
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, func, select, update

from wharf.core.data import crud
from wharf.core.data.db import utcnow
from wharf.core.data.pagination import Page
from wharf.core.errors import Conflict, InvalidInput
from wharf.core.http.concurrency import Precondition
from wharf.core.keys import Keyring, Sealed
from wharf.core.outbound import Outbound
from wharf.core.rewrap import declare_sealed
from wharf.core.webhooks.models import (
    API,
    SETTINGS,
    WebhookEndpoint,
)

JOB_KIND = "webhook.deliver"
ALL_EVENTS = "*"
# Event types the domains publish (`declare_events`); endpoints may subscribe to these or "*".
KNOWN_EVENTS: set[str] = set()

ENDPOINTS = crud.Resource(
    WebhookEndpoint,
    "Webhook endpoint",
    "/api/v1/webhooks",
    (
        WebhookEndpoint.id,
        WebhookEndpoint.url,
        WebhookEndpoint.events,
        WebhookEndpoint.active,
        WebhookEndpoint.description,
        WebhookEndpoint.source,
        WebhookEndpoint.previous_until,
        WebhookEndpoint.version,
        WebhookEndpoint.created_at,
        WebhookEndpoint.updated_at,
    ),
)
Rows = tuple[list[dict[str, Any]], int]


def declare_events(*types: str) -> None:
    KNOWN_EVENTS.update(types)


def new_secret() -> str:
    """A Standard Webhooks secret: `whsec_` and 32 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def secret_aad(endpoint_id: int) -> bytes:
    # Binds a sealed secret to its endpoint: copied onto another row, it does not open.
    return f"wharf:webhook_endpoint:{endpoint_id}".encode()


# Both secrets of an endpoint (the current and, during a rotation, the previous) are sealed.
for _key, _blob in (("secret_key_id", "secret_sealed"), ("previous_key_id", "previous_sealed")):
    declare_sealed(WebhookEndpoint.__table__, _key, _blob, lambda row: secret_aad(row.id))


def _shown(row: dict[str, Any]) -> dict[str, Any]:
    """A row as the API shows it: events as a list, the rotation's end under its own name."""
    out = dict(row)
    out["events"] = out["events"].split()
    until = out.pop("previous_until")
    out["secret_rotation_ends_at"] = (
        until if until is not None and _aware(until) > utcnow() else None
    )
    return out


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _events(events: list[str]) -> str:
    unknown = sorted(set(events) - KNOWN_EVENTS - {ALL_EVENTS})
    if unknown:
        raise InvalidInput(
            f"Unknown event type {', '.join(unknown)}; choose from "
            f"{', '.join(sorted(KNOWN_EVENTS))} or * for all.",
            loc=["body", "events"],
        )
    return " ".join(sorted(set(events)))


def create_endpoint(
    conn: Connection,
    *,
    keyring: Keyring,
    outbound: Outbound,
    url: str,
    events: list[str],
    active: bool,
    description: str,
) -> dict[str, Any]:
    """A new endpoint and its signing secret, which is returned here and never again."""
    outbound.check_field(url, loc=["body", "url"])
    row = crud.create(
        conn,
        ENDPOINTS,
        {
            "url": url,
            "events": _events(events),
            "active": active,
            "description": description,
            "source": API,
        },
    )
    secret = new_secret()
    sealed = keyring.seal(secret.encode(), aad=secret_aad(row["id"]))
    conn.execute(
        update(WebhookEndpoint)
        .where(WebhookEndpoint.id == row["id"])
        .values(secret_key_id=sealed.key_id, secret_sealed=sealed.blob)
    )
    return {**_shown(row), "secret": secret}


def list_endpoints(conn: Connection, *, page: Page) -> Rows:
    total = conn.execute(select(func.count()).select_from(WebhookEndpoint)).scalar_one()
    rows = conn.execute(
        select(*ENDPOINTS.columns)
        .order_by(WebhookEndpoint.id)
        .limit(page.limit)
        .offset(page.offset)
    ).mappings()
    return [_shown(dict(r)) for r in rows], total


def get_endpoint(conn: Connection, *, endpoint_id: int) -> dict[str, Any]:
    return _shown(crud.fetch(conn, ENDPOINTS, endpoint_id))


def _api_managed(conn: Connection, endpoint_id: int) -> dict[str, Any]:
    current = crud.fetch(conn, ENDPOINTS, endpoint_id)
    if current["source"] == SETTINGS:
        raise Conflict(
            f"Webhook endpoint {endpoint_id} is kept from the settings "
            "(WHARF_CERTIFICATE_WEBHOOK_URL and _SECRET); change it there."
        )
    return current


def change_endpoint(
    conn: Connection,
    *,
    outbound: Outbound,
    endpoint_id: int,
    values: dict[str, Any],
    expected: Precondition,
) -> dict[str, Any]:
    current = _api_managed(conn, endpoint_id)
    if current["version"] != expected.version:
        raise expected.stale(current["version"], f"Webhook endpoint {endpoint_id}")
    if "url" in values:
        outbound.check_field(values["url"], loc=["body", "url"])
    if "events" in values:
        values = {**values, "events": _events(values["events"])}
    return _shown(crud.change(conn, ENDPOINTS, endpoint_id, values, expected))


def delete_endpoint(conn: Connection, *, endpoint_id: int, expected: Precondition | None) -> None:
    """Its deliveries go with it; their jobs find nothing left to send."""
    _api_managed(conn, endpoint_id)
    crud.remove(conn, ENDPOINTS, endpoint_id, expected)


def rotate_secret(
    conn: Connection, *, keyring: Keyring, endpoint_id: int, grace: timedelta
) -> dict[str, Any]:
    """A new secret; the current one keeps signing beside it for `grace`."""
    current = _api_managed(conn, endpoint_id)
    old = conn.execute(
        select(WebhookEndpoint.secret_key_id, WebhookEndpoint.secret_sealed).where(
            WebhookEndpoint.id == endpoint_id
        )
    ).one()
    secret = new_secret()
    sealed = keyring.seal(secret.encode(), aad=secret_aad(endpoint_id))
    row = crud.change(
        conn,
        ENDPOINTS,
        endpoint_id,
        {
            "secret_key_id": sealed.key_id,
            "secret_sealed": sealed.blob,
            "previous_key_id": old.secret_key_id,
            "previous_sealed": old.secret_sealed,
            "previous_until": utcnow() + grace,
        },
        Precondition(current["version"], from_header=False),
    )
    return {**_shown(row), "secret": secret}


def signing_secrets(
    conn: Connection, *, keyring: Keyring, endpoint_id: int, settings_secret: str | None
) -> list[str]:
    """The secrets a delivery to this endpoint is signed with now (two during a rotation)."""
    row = conn.execute(
        select(
            WebhookEndpoint.source,
            WebhookEndpoint.secret_key_id,
            WebhookEndpoint.secret_sealed,
            WebhookEndpoint.previous_key_id,
            WebhookEndpoint.previous_sealed,
            WebhookEndpoint.previous_until,
        ).where(WebhookEndpoint.id == endpoint_id)
    ).one()
    if row.source == SETTINGS:
        return [settings_secret] if settings_secret else []
    aad = secret_aad(endpoint_id)
    found = [keyring.open(Sealed(row.secret_key_id, row.secret_sealed), aad=aad).decode()]
    rotating = row.previous_until is not None and _aware(row.previous_until) > utcnow()
    if rotating and row.previous_sealed is not None:
        previous = Sealed(row.previous_key_id, row.previous_sealed)
        found.append(keyring.open(previous, aad=aad).decode())
    return found


def sync_settings_endpoint(engine: Engine, *, url: str | None) -> None:
    """Keep the one endpoint the settings define (WHARF_CERTIFICATE_WEBHOOK_URL) as a row, so
    its deliveries are recorded, retried and listed like any other; without the setting it
    is deactivated (its history stays). Every server worker runs this as it starts: one write
    transaction each (the row locked on PostgreSQL, the database on SQLite), and a unique
    index on the settings row, so workers starting together make one row, not two.

    The address is not resolved here: a receiver whose DNS is down must not stop Wharf from
    starting; each delivery checks it (and retries)."""
    with engine.connect() as conn:
        conn.execution_options(wharf_write=True)
        with conn.begin():
            existing = conn.execute(
                select(WebhookEndpoint.id, WebhookEndpoint.url, WebhookEndpoint.active)
                .where(WebhookEndpoint.source == SETTINGS)
                .with_for_update()
            ).first()
            if url is None:
                if existing is not None and existing.active:
                    crud.change(
                        conn,
                        ENDPOINTS,
                        existing.id,
                        {"active": False},
                        _any_version(conn, existing.id),
                    )
                return
            values = {"url": url, "events": ALL_EVENTS, "active": True}
            if existing is not None:
                if existing.url != url or not existing.active:
                    crud.change(
                        conn, ENDPOINTS, existing.id, values, _any_version(conn, existing.id)
                    )
                return
            try:
                with conn.begin_nested():
                    crud.create(
                        conn,
                        ENDPOINTS,
                        {
                            **values,
                            "source": SETTINGS,
                            "description": "From WHARF_CERTIFICATE_WEBHOOK_URL",
                        },
                    )
            except Conflict:  # another worker, starting at the same moment, made it
                pass


def _any_version(conn: Connection, endpoint_id: int) -> Precondition:
    return Precondition(crud.fetch(conn, ENDPOINTS, endpoint_id)["version"], from_header=False)
