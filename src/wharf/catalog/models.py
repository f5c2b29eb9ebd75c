"""Cars, their processed images, and import records.

An image is stored once per content (`car_images.sha256`, the hash of the original's bytes):
two cars with the same picture share its files, and a re-import that finds the same bytes
again makes nothing new. A car points at its image; the image's files (the original and every
rendition) are named by their own content hashes in `core.storage`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from wharf.core.data.db import Base

TITLE_LENGTH = 200
# Import states: a record is `running` from the moment it is created (queued or in progress;
# a client only needs to know whether to keep polling), then `done` or `failed`.
RUNNING, DONE, FAILED = "running", "done", "failed"


class CarImage(Base):
    __tablename__ = "car_images"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    format: Mapped[str] = mapped_column(String(10))  # of the original: jpeg, png, webp, gif, avif
    width: Mapped[int] = mapped_column(Integer)  # after EXIF orientation
    height: Mapped[int] = mapped_column(Integer)
    original: Mapped[str] = mapped_column(String(120))  # storage key
    # {"web": {"width", "height", "jpeg": key, "webp": key, "avif": key | None}, "mobile": ...}
    renditions: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Car(Base):
    __tablename__ = "cars"
    __table_args__ = (Index("ix_cars_created_at", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # The catalog's key: a re-import updates the car with the same title in place.
    title: Mapped[str] = mapped_column(String(TITLE_LENGTH), unique=True)
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    image_url: Mapped[str | None] = mapped_column(Text, nullable=True)  # the source, as given
    image_sha256: Mapped[str | None] = mapped_column(
        ForeignKey("car_images.sha256", ondelete="SET NULL"), nullable=True, index=True
    )
    # Why the source gave no image (a refused address, a 404, not an image...); NULL once it
    # has one, or while it is being fetched (`image_pending`).
    image_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    image_pending: Mapped[bool] = mapped_column(Boolean, default=False)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class CarImport(Base):
    __tablename__ = "car_imports"
    __table_args__ = (Index("ix_car_imports_created_at", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    status: Mapped[str] = mapped_column(String(10), default=RUNNING)
    source: Mapped[str] = mapped_column(Text)  # a URL, "upload", or the CLI's path
    sync: Mapped[bool] = mapped_column(Boolean, default=False)
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    # An uploaded CSV, kept until its background job has read it: the job may run on another
    # worker, or after a restart. Cleared when the import ends.
    body: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    counts: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)
    report: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
