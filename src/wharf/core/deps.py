"""Small request-scoped dependencies shared by every domain's routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from wharf.core.config import Settings
from wharf.core.keys import Keyring, KeySource
from wharf.core.outbound import Outbound


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


async def get_keyring(request: Request) -> Keyring:
    keys: KeySource = request.app.state.keys  # loaded at start-up, which needs one
    return keys.keyring()


async def get_outbound(request: Request) -> Outbound:
    outbound: Outbound = request.app.state.outbound
    return outbound


KeyringDep = Annotated[Keyring, Depends(get_keyring)]
OutboundDep = Annotated[Outbound, Depends(get_outbound)]


def base_url(request: Request) -> str:
    """Scheme, host and port as the client addressed us, for absolute `url` fields."""
    return str(request.base_url).rstrip("/")
