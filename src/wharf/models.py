"""Every domain's tables on one metadata, for Alembic and the schema check."""

from wharf.accounts.models import ApiToken, User
from wharf.certificates.models import Certificate
from wharf.core.data.db import Base
from wharf.core.data.generations import Generation
from wharf.core.protect.idempotency.models import IdempotencyKey
from wharf.core.webhooks.models import (
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)
from wharf.core.work.models import Job, Lease
from wharf.crm.models import Company, Customer, Note
from wharf.sales.models import SalesDaily, SalesFile

__all__ = [
    "ApiToken",
    "Base",
    "Certificate",
    "Company",
    "Customer",
    "Generation",
    "IdempotencyKey",
    "Job",
    "Lease",
    "Note",
    "SalesDaily",
    "SalesFile",
    "User",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WebhookEvent",
]
