"""Every domain's router under /api/v1."""

from fastapi import APIRouter

from wharf.accounts.routes import router as accounts
from wharf.catalog.routes import router as catalog
from wharf.certificates.routes import router as certificates
from wharf.core.webhooks.routes import router as webhooks
from wharf.crm.routes import router as crm
from wharf.factories.routes import router as factories
from wharf.sales.routes import router as sales
from wharf.sprockets.routes import router as sprockets

api = APIRouter(prefix="/api/v1")
api.include_router(accounts)
api.include_router(crm)
api.include_router(certificates)
api.include_router(webhooks)
api.include_router(sales)
api.include_router(factories)
api.include_router(sprockets)
api.include_router(catalog)
