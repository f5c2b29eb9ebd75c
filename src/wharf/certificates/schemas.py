"""Request and response shapes for certificates."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from wharf.core.data.pagination import ListParams, ordering_field
from wharf.core.http.schemas import BLANKS, Strict

ORDERING = ("id", "created_at", "not_after")
# What certificates.crypto accepts, stated for clients (and the fuzzer): canonical base64,
# line breaks and blanks anywhere ignored (as `base64` wraps its output), never empty.
_W = f"[{BLANKS}]*"
_C = f"(?:[A-Za-z0-9+/]{_W})"
BASE64_PATTERN = f"^{_W}(?:(?:{_C}{{4}})*(?:{_C}{{2}}={_W}=|{_C}{{3}}=)|(?:{_C}{{4}})+){_W}$"


class CertificateCreate(Strict):
    # The decoded key's size (16 KiB) is checked in certificates.crypto; this bounds the text.
    private_key: Annotated[
        str,
        Field(
            min_length=1,
            max_length=32 * 1024,
            json_schema_extra={"pattern": BASE64_PATTERN},
            description="The private key, base64: PEM or DER; PKCS#8, PKCS#1 or SEC1; RSA, EC "
            "or Ed25519. Stored encrypted; never returned.",
        ),
    ]
    body: Annotated[
        str,
        Field(
            min_length=1,
            max_length=64 * 1024,
            description="The certificate: a PEM X.509 certificate (parsed and checked against "
            "the key), or any text up to 64 KiB.",
        ),
    ]
    active: bool = False


class ActiveChange(Strict):
    active: bool
    notify: bool = Field(
        default=False,
        description="Send certificate.activated or certificate.deactivated to the webhooks.",
    )


class CertificateList(ListParams):
    # Only the two words: `?active=1` or `?active=yes` is 422, not a silent guess.
    active: Literal["true", "false"] | None = Field(
        default=None, description="true: the active ones; false: the inactive ones."
    )
    expiring_within_days: int | None = Field(
        default=None,
        ge=0,
        le=36500,
        description="Only those whose not_after falls within this many days from now.",
    )
    ordering: str | None = ordering_field(*ORDERING)


class CertificateRead(BaseModel):
    id: int
    url: str
    user_id: int
    active: bool
    body: str
    subject: str | None
    issuer: str | None
    serial_number: str | None = Field(description="Hexadecimal.")
    not_before: datetime | None
    not_after: datetime | None
    fingerprint_sha256: str | None
    key_matches: bool | None = Field(
        description="The private key belongs to this certificate; null for an opaque body."
    )
    version: int
    created_at: datetime
    updated_at: datetime
