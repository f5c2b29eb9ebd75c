"""The table behind `Idempotency-Key`: one row per (caller, key), in flight or completed."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from wharf.core.data.db import Base


class IdempotencyKey(Base):
    """A POST's key and, once it has finished, its response.

    `status` is NULL while the first request runs (`lock` names the worker running it); the
    unique (user_id, key) constraint is what lets exactly one of two racing requests start.
    """

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("user_id", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # The one link from core to a domain table, and on purpose: deleting a user deletes their
    # keys, so a later user who is given the same id (SQLite reuses the highest rowid) can
    # never replay a stranger's response.
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(255))
    # sha256 of method, path, query and body: the same key with another request is a 422.
    fingerprint: Mapped[str] = mapped_column(String(64))
    lock: Mapped[str | None] = mapped_column(String(32), nullable=True)
    status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    headers: Mapped[list[list[str]] | None] = mapped_column(JSON, nullable=True)
    body: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    locked_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
