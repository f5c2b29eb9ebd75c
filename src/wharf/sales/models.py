"""Daily counts per product, and the ledger of the files they came from."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import JSON, BigInteger, Date, DateTime, Float, Index, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column

from wharf.core.data.db import Base


class SalesDaily(Base):
    """Units of one product sold on one day. The key serves "product X over a range"; the
    day index serves replacing a day and the top products of a window."""

    __tablename__ = "sales_daily"
    __table_args__ = (Index("ix_sales_daily_day_product_id", "day", "product_id"),)

    product_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    units: Mapped[int] = mapped_column(BigInteger)


class SalesFile(Base):
    """One ingested file. A day has at most one current file (`replaced_at` null); a file
    replaced by `--replace` stays in the ledger with the time it was replaced."""

    __tablename__ = "sales_files"
    __table_args__ = (
        Index(
            "uq_sales_files_day_current",
            "day",
            unique=True,
            sqlite_where=text("replaced_at IS NULL"),
            postgresql_where=text("replaced_at IS NULL"),
        ),
        Index("ix_sales_files_sha256", "sha256"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    day: Mapped[date] = mapped_column(Date)
    name: Mapped[str] = mapped_column(String(255))  # the file's name as given, no directory
    sha256: Mapped[str] = mapped_column(String(64))
    bytes: Mapped[int] = mapped_column(BigInteger)
    lines: Mapped[int] = mapped_column(BigInteger)  # non-empty lines
    transactions: Mapped[int] = mapped_column(BigInteger)  # good lines
    units: Mapped[int] = mapped_column(BigInteger)
    products: Mapped[int] = mapped_column(Integer)  # distinct products
    bad_lines: Mapped[int] = mapped_column(BigInteger)
    # The first 100 bad lines: [{"line": n, "reason": "..."}].
    bad_line_sample: Mapped[list[dict[str, object]]] = mapped_column(JSON)
    engine: Mapped[str] = mapped_column(String(10))
    seconds: Mapped[float] = mapped_column(Float)
    ingested_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    replaced_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
