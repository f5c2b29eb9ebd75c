"""Every domain's router under /api/v1."""

from fastapi import APIRouter

from wharf.accounts.routes import router as accounts
from wharf.crm.routes import router as crm

api = APIRouter(prefix="/api/v1")
api.include_router(accounts)
api.include_router(crm)
