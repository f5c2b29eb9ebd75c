"""Settings: one tree, read from `WHARF_*` variables and `.env`, built only when asked."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import limits
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
    idempotency_ttl_hours: int = Field(
        default=24, ge=1, description="How long a POST's Idempotency-Key replays its response."
    )
    idempotency_lock_timeout_seconds: int = Field(
        default=60,
        ge=1,
        description="After this long, a key still in flight is taken to belong to a worker "
        "that died, and a retry runs the request again.",
    )
    redis_url: str | None = Field(
        default=None,
        description="redis://host:port/db. Shares rate limits and the response cache across "
        "workers and hosts; without it both live in each process's memory.",
    )
    cache: Literal["on", "off"] = Field(
        default="on", description="The response cache for authenticated GETs."
    )
    cache_ttl_seconds: int = Field(
        default=300, ge=1, description="How long Redis keeps an entry (old ones just age out)."
    )
    cache_memory_mb: int = Field(default=64, ge=1, description="Per-process cache size.")
    redis_key_prefix: str = Field(
        default="wharf",
        description="Start of every key Wharf keeps in Redis: give each deployment (or test "
        "run) that shares one Redis its own.",
    )
    rate_limits_enabled: bool = True
    rate_limit_api: str = Field(
        default="1200/minute",
        description="Requests per bearer token (per client address without one), in the "
        "`limits` syntax: `N/second|minute|hour|day`, `N/10 seconds`; `;` joins several.",
    )
    rate_limit_login: str = Field(
        default="10/minute",
        description="Login attempts per client address and account (brute-force guard).",
    )
    rate_limit_login_address: str = Field(
        default="60/minute",
        description="Login attempts per client address over all accounts (password spraying).",
    )
    log_level: str = "INFO"
    metrics_public: bool = Field(
        default=False,
        description="Serve /metrics without a token. Off by default: /metrics then needs a "
        "bearer token with the admin scope, which Prometheus sends from its scrape config.",
    )
    var_dir: Path = Path("var")

    @field_validator("database_url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if not value.startswith(("sqlite:", "postgresql:", "postgres:", "postgresql+")):
            raise ValueError("database_url must start with sqlite:/// or postgresql://")
        return value

    @field_validator("rate_limit_api", "rate_limit_login", "rate_limit_login_address")
    @classmethod
    def _rate_limit(cls, value: str) -> str:
        try:
            items = limits.parse_many(value)
        except ValueError as exc:
            raise ValueError(f"not a rate limit like 1200/minute: {exc}") from exc
        if any(item.amount < 1 for item in items):
            raise ValueError("a rate limit must allow at least 1 request")
        return value
