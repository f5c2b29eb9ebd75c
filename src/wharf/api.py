"""Every domain's router under /api/v1."""

from fastapi import APIRouter

from wharf.accounts.routes import router as accounts
from wharf.certificates.routes import router as certificates
from wharf.core.webhooks.routes import router as webhooks
from wharf.crm.routes import router as crm
from wharf.sales.routes import router as sales

api = APIRouter(prefix="/api/v1")
api.include_router(accounts)
api.include_router(crm)
api.include_router(certificates)
api.include_router(webhooks)
api.include_router(sales)
