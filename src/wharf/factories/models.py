"""Factories, their production readings, and the rollups that answer long ranges.

A reading is one (factory, time) sample of actual and goal production, time in Unix seconds.
The rollups hold the sums of whole UTC hours and days, kept in the same transaction as every
write of readings (the only write path is `service`), the way TimescaleDB's continuous
aggregates are: a year at `1d` then reads 365 rows, not a million.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, DateTime, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from wharf.core.data.db import Base

HOUR = 3600
DAY = 86400


class Factory(Base):
    __tablename__ = "factories"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Reading(Base):
    """One sample. The key is (factory, time): it makes a time unique within a factory and
    serves every range query; on SQLite the table is clustered on it (WITHOUT ROWID)."""

    __tablename__ = "factory_readings"
    __table_args__ = (
        CheckConstraint("actual >= 0 AND goal >= 0", name="production_not_negative"),
        {"sqlite_with_rowid": False},
    )

    factory_id: Mapped[int] = mapped_column(
        ForeignKey("factories.id", ondelete="CASCADE"), primary_key=True
    )
    time: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    actual: Mapped[int] = mapped_column(BigInteger)
    goal: Mapped[int] = mapped_column(BigInteger)


class HourlyRollup(Base):
    """Sums over one UTC hour: `start` is a multiple of 3600."""

    __tablename__ = "factory_rollups_hourly"
    __table_args__ = ({"sqlite_with_rowid": False},)

    factory_id: Mapped[int] = mapped_column(
        ForeignKey("factories.id", ondelete="CASCADE"), primary_key=True
    )
    start: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    readings: Mapped[int] = mapped_column(Integer)
    actual: Mapped[int] = mapped_column(BigInteger)
    goal: Mapped[int] = mapped_column(BigInteger)


class DailyRollup(Base):
    """Sums over one UTC day: `start` is a multiple of 86400."""

    __tablename__ = "factory_rollups_daily"
    __table_args__ = ({"sqlite_with_rowid": False},)

    factory_id: Mapped[int] = mapped_column(
        ForeignKey("factories.id", ondelete="CASCADE"), primary_key=True
    )
    start: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    readings: Mapped[int] = mapped_column(Integer)
    actual: Mapped[int] = mapped_column(BigInteger)
    goal: Mapped[int] = mapped_column(BigInteger)
