"""Small request-scoped dependencies shared by every domain's routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from wharf.core.config import Settings


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


def base_url(request: Request) -> str:
    """Scheme, host and port as the client addressed us, for absolute `url` fields."""
    return str(request.base_url).rstrip("/")
