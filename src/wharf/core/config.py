"""Settings: one tree, read from `WHARF_*` variables and `.env`, built only when asked."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything Wharf can be configured with. `create_app(settings)` takes one of these."""

    model_config = SettingsConfigDict(env_prefix="WHARF_", env_file=".env", extra="ignore")

    database_url: str = Field(
        default="sqlite:///var/wharf.db",
        description="`sqlite:///path` (embedded default) or `postgresql://user@host/db`.",
    )
    database_pool_size: int = Field(default=10, ge=1, le=200)
    access_token_ttl_seconds: int = Field(
        default=3600, ge=60, description="Lifetime of tokens from the password grant."
    )
    api_token_max_days: int = Field(
        default=365, ge=1, description="Longest expiry a named API token may ask for."
    )
    max_body_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    log_level: str = "INFO"
    var_dir: Path = Path("var")

    @field_validator("database_url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if not value.startswith(("sqlite:", "postgresql:", "postgres:", "postgresql+")):
            raise ValueError("database_url must start with sqlite:/// or postgresql://")
        return value
