"""HTTP adapter for sprockets (seed 001)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/sprockets", tags=["sprockets"])
