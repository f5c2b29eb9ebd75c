"""Settings: one tree, read from `WHARF_*` variables and `.env`, built only when asked."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Literal

import limits
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from standardwebhooks import Webhook


def _two_per_core() -> int:
    # Two thumbnail threads per core, not one: a libvips pipeline waits while its sequential
    # JPEG loader decodes and while libwebp encodes on one thread, so with one thread per core
    # both cores were ~15% idle (bench/catalog_import.py: 1.70 cores busy with 2 threads on 2
    # cores, 1.95 with 4, for the same CPU time). Each thread holds one web-sized image.
    return min(64, 2 * (os.cpu_count() or 1))


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
    key_encryption_keys: SecretStr | None = Field(
        default=None,
        description="Keys that encrypt private keys and webhook secrets at rest: "
        "`id:base64-of-32-bytes`, comma-separated, the first one current. Without it the key "
        "file `keys` in `var_dir` (written by `wharf keys generate`) is used.",
    )
    outbound_allow: str = Field(
        default="",
        description="Hosts or host:port pairs, comma-separated, that outbound requests "
        "(webhooks, image downloads) may reach although they resolve to internal addresses: "
        "for tests and intranets.",
    )
    outbound_connect_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    outbound_timeout_seconds: float = Field(
        default=10.0, gt=0, le=300, description="Whole-request deadline of an outbound request."
    )
    webhook_retry_schedule: str = Field(
        default="5,300,1800,7200,18000,36000,36000",
        description="Seconds to wait before each retry of a webhook delivery, comma-separated "
        "(jittered by 10%); when they run out the delivery is failed. The default spans ~27 h.",
    )
    webhook_secret_grace_hours: float = Field(
        default=24,
        ge=0,
        description="After a secret rotation, deliveries are signed with the old secret too "
        "for this long, so receivers can switch over.",
    )
    certificate_webhook_url: str | None = Field(
        default=None,
        description="A receiver of certificate events kept from settings, for a deployment "
        "with exactly one; its signing secret is `certificate_webhook_secret`.",
    )
    certificate_webhook_secret: SecretStr | None = None
    jobs_in_server: bool = Field(
        default=True,
        description="Each `wharf serve` worker also runs background jobs (webhook deliveries).",
    )
    job_poll_seconds: float = Field(
        default=0.2, gt=0, le=60, description="How often an idle job worker looks for work."
    )
    job_lease_seconds: float = Field(
        default=60,
        ge=1,
        description="How long a claimed job stays a worker's; a crashed worker's jobs are "
        "taken over after this.",
    )
    sales_engine: Literal["duckdb", "spark"] = Field(
        default="duckdb",
        description="What counts sales files: DuckDB, embedded, or Spark (the `spark` extra) "
        "for data that outgrows one machine.",
    )
    spark_master: str = Field(
        default="local[*]", description="Where Spark runs: local[*], spark://host:7077, yarn."
    )
    sales_max_upload_bytes: int = Field(
        default=2 * 1024**3, ge=1024, description="Largest sales file POST /sales/files takes."
    )
    sales_max_bad_ratio: float = Field(
        default=0.01,
        ge=0,
        le=1,
        description="A file with a larger share of bad lines is refused as a whole.",
    )
    sales_inbox: Path | None = Field(
        default=None,
        description="A directory `wharf serve` watches for sales files (one worker watches).",
    )
    media_root: Path | None = Field(
        default=None,
        description="Where stored files (car images and their thumbnails) live, named by "
        "content hash; served at /media/<key>. Unset: `media` in `var_dir`.",
    )
    # The car catalog (seed 002): image downloads and thumbnails.
    cars_max_image_bytes: int = Field(
        default=25 * 1024**2,
        ge=1024,
        description="Largest image a car may have, checked while it downloads.",
    )
    cars_max_pixels: int = Field(
        default=100_000_000,
        ge=1,
        description="Largest image, width times height, read from its header before it is "
        "decoded: a decompression bomb is refused.",
    )
    cars_max_csv_bytes: int = Field(
        default=20 * 1024**2, ge=1024, description="Largest CSV an import takes."
    )
    cars_fetch_concurrency: int = Field(
        default=16, ge=1, le=256, description="Image downloads in flight during an import."
    )
    cars_fetch_per_host: int = Field(
        default=4, ge=1, le=64, description="Image downloads in flight to any one host."
    )
    cars_thumbnail_threads: int = Field(
        default_factory=_two_per_core,
        ge=1,
        le=64,
        description="Threads making thumbnails (libvips releases the GIL): two per core.",
    )
    cars_web_width: int = Field(default=1024, ge=16, le=8192)
    cars_mobile_width: int = Field(default=320, ge=16, le=8192)
    cars_web_quality: int = Field(default=88, ge=1, le=100, description="JPEG quality, web.")
    cars_mobile_quality: int = Field(default=84, ge=1, le=100, description="JPEG quality, mobile.")

    @field_validator("database_url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if not value.startswith(("sqlite:", "postgresql:", "postgres:", "postgresql+")):
            raise ValueError("database_url must start with sqlite:/// or postgresql://")
        return value

    @field_validator("webhook_retry_schedule")
    @classmethod
    def _schedule(cls, value: str) -> str:
        try:
            delays = [float(part) for part in value.split(",") if part.strip()]
        except ValueError as exc:
            raise ValueError("must be seconds, comma-separated, like 5,300,1800") from exc
        if any(delay < 0 for delay in delays):
            raise ValueError("a retry delay cannot be negative")
        return value

    @model_validator(mode="after")
    def _webhook_secret(self) -> Settings:
        if self.certificate_webhook_url and not self.certificate_webhook_secret:
            raise ValueError(
                "certificate_webhook_url needs certificate_webhook_secret (WHARF_CERTIFICATE_"
                "WEBHOOK_SECRET), a Standard Webhooks secret such as whsec_<base64>"
            )
        url = self.certificate_webhook_url
        if url and not (url.startswith(("http://", "https://")) and len(url.split("/")[2]) > 0):
            raise ValueError("certificate_webhook_url must be an http:// or https:// URL")
        if self.certificate_webhook_secret is not None:
            secret = self.certificate_webhook_secret.get_secret_value()
            try:
                Webhook(secret)
                size = len(base64.b64decode(secret.removeprefix("whsec_") + "=="))
            except Exception as exc:  # the library raises several kinds for a bad secret
                raise ValueError(
                    "certificate_webhook_secret must be a Standard Webhooks secret: whsec_ "
                    "followed by base64 of at least 24 random bytes"
                ) from exc
            if size < 24:
                raise ValueError("certificate_webhook_secret must hold at least 24 bytes")
        if self.job_lease_seconds <= self.outbound_timeout_seconds + 1:
            # A job still running when its lease runs out is run again elsewhere: twice.
            raise ValueError(
                "job_lease_seconds must exceed outbound_timeout_seconds by more than 1 s"
            )
        return self

    @property
    def media_dir(self) -> Path:
        """Where car images and thumbnails are stored: `media_root`, or `var_dir/media`."""
        return self.media_root if self.media_root is not None else self.var_dir / "media"

    @property
    def retry_delays(self) -> tuple[float, ...]:
        return tuple(float(part) for part in self.webhook_retry_schedule.split(",") if part.strip())

    @property
    def outbound_allowed(self) -> frozenset[str]:
        return frozenset(
            part.strip().lower() for part in self.outbound_allow.split(",") if part.strip()
        )

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
