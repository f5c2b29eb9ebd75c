"""Certificates that users own, their private keys encrypted at rest (seed 003)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, DateTime, ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from wharf.core.data.db import Base


class Certificate(Base):
    __tablename__ = "certificates"
    __table_args__ = (
        # The seed's composite index: one user's certificates, by id; and by state and expiry.
        Index("ix_certificates_user_id_id", "user_id", "id"),
        Index("ix_certificates_user_id_active", "user_id", "active"),
        Index("ix_certificates_user_id_not_after", "user_id", "not_after"),
        Index("ix_certificates_key_id", "key_id"),  # `wharf keys rewrap` finds old keys' rows
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Deleting a user deletes their certificates in the same transaction.
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    body: Mapped[str] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(Boolean, default=False)
    # AES-256-GCM under key `key_id` (core.keys), bound to this row's id and user.
    key_id: Mapped[str] = mapped_column(String(32))
    private_key_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    # Parsed from a PEM body; null for an opaque one.
    subject: Mapped[str | None] = mapped_column(Text, nullable=True)
    issuer: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Text: RFC 5280 caps serials at 20 octets, but certificates in the wild exceed it.
    serial_number: Mapped[str | None] = mapped_column(Text, nullable=True)
    not_before: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    not_after: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    fingerprint_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    key_matches: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
