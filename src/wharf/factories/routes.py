"""HTTP adapter for factories (seed 001)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/factories", tags=["factories"])
