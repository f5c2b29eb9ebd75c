"""Every domain's tables on one metadata, for Alembic and the schema check."""

from wharf.accounts.models import ApiToken, User
from wharf.catalog.models import Car, CarImage, CarImport
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
from wharf.factories.models import DailyRollup, Factory, HourlyRollup, Reading
from wharf.sales.models import SalesDaily, SalesFile
from wharf.sprockets.models import SprocketType

__all__ = [
    "ApiToken",
    "Base",
    "Car",
    "CarImage",
    "CarImport",
    "Certificate",
    "Company",
    "Customer",
    "DailyRollup",
    "Factory",
    "Generation",
    "HourlyRollup",
    "IdempotencyKey",
    "Job",
    "Lease",
    "Note",
    "Reading",
    "SalesDaily",
    "SalesFile",
    "SprocketType",
    "User",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WebhookEvent",
]
