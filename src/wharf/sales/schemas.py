"""Request and response shapes for sales."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from wharf.core.data.pagination import ListParams, ordering_field
from wharf.core.http.schemas import Day
from wharf.sales.service import MAX_DAYS

FILE_ORDERING = ("id", "day", "ingested_at")


class Upload(BaseModel):
    """The query of POST /sales/files."""

    date: Day = Field(
        description="The day the file's sales happened (YYYY-MM-DD): an upload has no file "
        "name to take it from."
    )
    replace: bool = Field(
        default=False, description="Replace the day's counts when it already has another file."
    )
    max_bad_ratio: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Refuse the file when a larger share of its lines is bad (default 0.01).",
    )


class BadLineRead(BaseModel):
    line: int
    reason: str


class SalesFileRead(BaseModel):
    id: int
    url: str
    day: dt.date
    name: str
    sha256: str
    bytes: int
    lines: int = Field(description="Non-empty lines.")
    transactions: int = Field(description="Good lines.")
    units: int = Field(description="Products sold, a product listed twice counting twice.")
    products: int = Field(description="Distinct products sold.")
    bad_lines: int
    bad_line_sample: list[BadLineRead] = Field(description="The first 100 bad lines.")
    engine: str
    seconds: float
    ingested_at: dt.datetime
    replaced_at: dt.datetime | None = Field(description="When another file replaced this one.")


class IngestReport(SalesFileRead):
    status: Literal["ingested", "already ingested"]


class FileList(ListParams):
    day: Day | None = None
    current: Literal["true", "false"] | None = Field(
        default=None, description="true: each day's current file; false: replaced ones."
    )
    ordering: str | None = ordering_field(*FILE_ORDERING)


class Window(BaseModel):
    """The window of a sales question: `days` ending at `to`, or `from`..`to`."""

    model_config = ConfigDict(populate_by_name=True)

    days: int | None = Field(
        default=None,
        ge=1,
        le=MAX_DAYS,
        description="How many days, ending at `to` (default 7).",
    )
    from_: Day | None = Field(
        default=None, alias="from", description="First day (inclusive), instead of `days`."
    )
    to: Day | None = Field(
        default=None, description="Last day (inclusive); by default the latest day ingested."
    )


class TopQuery(Window):
    limit: int = Field(default=10, ge=1, le=1000)


class DayUnits(BaseModel):
    date: dt.date
    units: int


class ProductSales(BaseModel):
    product_id: int
    from_: dt.date | None = Field(alias="from")
    to: dt.date | None
    days: int
    total: int
    by_day: list[DayUnits]
    note: str | None = Field(default=None, description="Set when the window holds no data.")


class ProductDay(BaseModel):
    product_id: int
    date: dt.date
    units: int


class TopProduct(BaseModel):
    product_id: int
    units: int


class TopProducts(BaseModel):
    from_: dt.date | None = Field(alias="from")
    to: dt.date | None
    days: int
    items: list[TopProduct]
    note: str | None = None


class SalesDay(BaseModel):
    date: dt.date
    units: int
    transactions: int
    products: int
    files: list[SalesFileRead]
