"""Request and response shapes for webhook endpoints and deliveries."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from wharf.core.http.schemas import Patch, Strict

EventType = Annotated[
    str,
    Field(
        max_length=100,
        pattern=r"^(\*|[a-z][a-z_]*(\.[a-z][a-z_]*)+)$",
        description="An event type such as certificate.activated, or * for every type.",
    ),
]
Url = Annotated[
    str,
    Field(
        min_length=8,
        max_length=2000,
        pattern=r"^https?://\S+$",
        description="Where deliveries are POSTed: http or https, on a public address.",
    ),
]
Events = Annotated[list[EventType], Field(min_length=1, max_length=50)]
Description = Annotated[str, Field(min_length=1, max_length=500)]


class WebhookCreate(Strict):
    url: Url
    events: Events = ["*"]
    active: bool = True
    description: Description | None = None


class WebhookPatch(Patch):
    url: Url | None = None
    events: Events | None = None
    active: bool | None = None
    description: Description | None = None


class WebhookRead(BaseModel):
    id: int
    url: str = Field(description="The receiver's URL (this resource's own is its Location).")
    events: list[str]
    active: bool
    description: str
    source: Literal["api", "settings"] = Field(
        description="`settings`: kept from WHARF_CERTIFICATE_WEBHOOK_URL, read-only here."
    )
    secret_rotation_ends_at: datetime | None = Field(
        description="While set, deliveries are signed with the previous secret too."
    )
    version: int
    created_at: datetime
    updated_at: datetime


class WebhookCreated(WebhookRead):
    secret: str = Field(
        description="The signing secret (Standard Webhooks `whsec_...`). Shown only in this "
        "response; store it now."
    )


DeliveryStatus = Literal["pending", "delivered", "failed"]


class DeliveryRead(BaseModel):
    id: int
    url: str
    endpoint_id: int
    event_id: str = Field(description="The `webhook-id` header; the same on every retry.")
    event_type: str
    status: DeliveryStatus
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: datetime | None
    created_at: datetime
    delivered_at: datetime | None


class AttemptRead(BaseModel):
    attempt: int
    attempted_at: datetime
    status_code: int | None
    error: str | None
    duration_ms: int


class DeliveryDetail(DeliveryRead):
    history: list[AttemptRead] = Field(description="Every attempt made, oldest first.")
