"""Sprocket types: a type is its four dimensions, so two rows never share all four."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, DateTime, Index, Integer, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from wharf.core.data.db import Base

DIMENSIONS = ("teeth", "pitch_diameter", "outside_diameter", "pitch")


class SprocketType(Base):
    __tablename__ = "sprocket_types"
    __table_args__ = (
        UniqueConstraint(*DIMENSIONS, name="uq_sprocket_types_dimensions"),
        CheckConstraint(
            "teeth > 0 AND pitch_diameter > 0 AND outside_diameter > 0 AND pitch > 0",
            name="dimensions_positive",
        ),
        # The unique key serves filters on teeth; the others get their own for ordering.
        Index("ix_sprocket_types_pitch_diameter", "pitch_diameter"),
        Index("ix_sprocket_types_outside_diameter", "outside_diameter"),
        Index("ix_sprocket_types_pitch", "pitch"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    teeth: Mapped[int] = mapped_column(Integer)
    pitch_diameter: Mapped[int] = mapped_column(Integer)
    outside_diameter: Mapped[int] = mapped_column(Integer)
    pitch: Mapped[int] = mapped_column(Integer)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
