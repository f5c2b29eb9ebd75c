"""Every domain's tables on one metadata, for Alembic and the schema check."""

from wharf.accounts.models import ApiToken, User
from wharf.core.db import Base
from wharf.core.generations import Generation
from wharf.core.models_idempotency import IdempotencyKey
from wharf.crm.models import Company, Customer, Note

__all__ = [
    "ApiToken",
    "Base",
    "Company",
    "Customer",
    "Generation",
    "IdempotencyKey",
    "Note",
    "User",
]
