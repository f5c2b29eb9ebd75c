"""Request and response shapes for factories, their readings and chart data."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, with_config
from typing_extensions import TypedDict

from wharf.core.data.pagination import ListParams, ordering_field
from wharf.core.http.schemas import Patch, Strict, Versioned
from wharf.factories.chart import DEFAULT_POINTS, MAX_POINTS, Bucket
from wharf.factories.readings import MAX_BATCH, MAX_PRODUCTION, MAX_TIME

FactoryName = Annotated[str, Field(min_length=1, max_length=200)]
# The instants ISO 8601 can name, as Unix seconds (0001-01-01 to 10000-01-01, exclusive).
MIN_INSTANT, MAX_INSTANT = -62_135_596_800, 253_402_300_800
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SECONDS = re.compile(r"[+-]?\d{1,15}")


def _instant(value: Any) -> int:
    """Unix seconds from an integer or ISO 8601 text (no offset means UTC). A fraction of a
    second rounds up: readings are whole seconds, and in a half-open window `[from, to)`
    rounding both ends up keeps exactly the readings the exact instants would."""
    if isinstance(value, int) and not isinstance(value, bool):
        seconds = value
    elif isinstance(value, str) and _SECONDS.fullmatch(value.strip()):
        seconds = int(value)
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip().upper())
        except ValueError:
            raise ValueError("must be Unix seconds or an ISO 8601 date-time") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        elapsed = moment - _EPOCH
        seconds = elapsed.days * 86_400 + elapsed.seconds + (1 if elapsed.microseconds else 0)
    else:
        raise ValueError("must be Unix seconds or an ISO 8601 date-time")
    if not MIN_INSTANT <= seconds <= MAX_INSTANT:
        raise ValueError("must lie between the years 1 and 9999")
    return seconds


Instant = Annotated[
    int,
    BeforeValidator(_instant),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": MIN_INSTANT, "maximum": MAX_INSTANT},
                {"type": "string", "format": "date-time"},
            ]
        }
    ),
]


class FactoryCreate(Strict):
    name: FactoryName


class FactoryReplace(Versioned):
    name: FactoryName


class FactoryPatch(Patch):
    name: FactoryName | None = None


class FactoryRead(BaseModel):
    id: int
    url: str
    name: str
    version: int = Field(description="Raised by every change, appended readings included.")
    created_at: datetime
    updated_at: datetime
    readings: int
    first_time: int | None = Field(description="Unix seconds of the first reading.")
    last_time: int | None = Field(description="Unix seconds of the last reading.")
    actual_total: int
    goal_total: int
    attainment: float | None = Field(description="actual_total / goal_total; null when 0.")


class ChartData(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    sprocket_production_actual: list[int]
    sprocket_production_goal: list[int]
    time: list[int] = Field(description="Each reading's time, or each bucket's start.")
    from_: int | None = Field(alias="from", description="The window's start (inclusive).")
    to: int | None = Field(description="The window's end (exclusive).")
    bucket: Bucket | None = Field(description="null: raw readings.")
    points: int


class FactoryDetail(FactoryRead):
    chart_data: ChartData = Field(description="As /chart-data answers without parameters.")


class ChartQuery(BaseModel):
    """The window (half-open, `[from, to)`), the bucket and the most points."""

    model_config = ConfigDict(populate_by_name=True)

    from_: Instant | None = Field(
        default=None,
        alias="from",
        description="Start (inclusive): Unix seconds or ISO 8601; by default the first reading.",
    )
    to: Instant | None = Field(
        default=None,
        description="End (exclusive): Unix seconds or ISO 8601; by default just after the "
        "last reading.",
    )
    bucket: Bucket | None = Field(
        default=None,
        description="Sum readings per bucket (time = the bucket's UTC start; weeks start on "
        "Monday). Without it: raw readings if they fit max_points, else the smallest bucket "
        "that does.",
    )
    max_points: int | None = Field(
        default=None,
        ge=1,
        le=MAX_POINTS,
        description=f"The most points to answer. Without a bucket (default {DEFAULT_POINTS:,}): "
        "raw readings up to this many, else the smallest bucket that fits. With a bucket "
        f"(default {MAX_POINTS:,}): more buckets than this over the window is 422.",
    )


def _whole_numbers(value: Any) -> Any:
    # JSON Schema's `integer` is any number without a fraction, 30.0 included, so such floats
    # become ints here; a string is no integer, so the fields are strict otherwise. Once per
    # batch, in one pass: a validator per field made 10,000 readings cost 10x as much to
    # check (50 ms), as did a model instance per reading, hence the TypedDict.
    if not isinstance(value, list) or not any(
        type(v) is float for item in value if isinstance(item, dict) for v in item.values()
    ):
        return value
    return [
        {k: int(v) if type(v) is float and v.is_integer() else v for k, v in item.items()}
        if isinstance(item, dict)
        else item
        for item in value
    ]


@with_config(ConfigDict(extra="forbid"))
class ReadingIn(TypedDict):
    time: Annotated[int, Field(strict=True, ge=0, le=MAX_TIME, description="Unix seconds.")]
    actual: Annotated[int, Field(strict=True, ge=0, le=MAX_PRODUCTION)]
    goal: Annotated[int, Field(strict=True, ge=0, le=MAX_PRODUCTION)]


Readings = Annotated[
    list[ReadingIn],
    BeforeValidator(_whole_numbers),
    Field(min_length=1, max_length=MAX_BATCH),
]


class AppendReport(BaseModel):
    appended: int
    factory: FactoryRead


class FactoryList(ListParams):
    """`search` matches the name; `ordering` over id, name, created_at."""

    ordering: str | None = ordering_field("id", "name", "created_at")


class Counts(BaseModel):
    created: int
    unchanged: int
    duplicates: int = Field(
        description="Skipped as repeats of an earlier row of the same load (sprocket types; a "
        "file that repeats a factory's name or a time is refused instead)."
    )


class ImportReport(BaseModel):
    factories: Counts
    readings: Counts
    sprocket_types: Counts


def _series(high: int) -> dict[str, Any]:
    return {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": high}}


def import_body_schema(sprocket_bounds: dict[str, int]) -> dict[str, Any]:
    """The body of POST /factories/imports, one of the seed's two files, for the document.
    The loader checks what a schema cannot say: equal lengths, times that increase."""
    chart = {
        "type": "object",
        "additionalProperties": False,
        "required": ["sprocket_production_actual", "sprocket_production_goal", "time"],
        "properties": {
            "sprocket_production_actual": _series(MAX_PRODUCTION),
            "sprocket_production_goal": _series(MAX_PRODUCTION),
            "time": _series(MAX_TIME),
        },
    }
    factory = {
        "type": "object",
        "additionalProperties": False,
        "required": ["chart_data"],
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": r"\S"},
            "chart_data": chart,
        },
    }
    entry = {
        "type": "object",
        "additionalProperties": False,
        "required": ["factory"],
        "properties": {"factory": factory},
    }
    sprocket = {
        "type": "object",
        "additionalProperties": False,
        "required": list(sprocket_bounds),
        "properties": {
            name: {"type": "integer", "minimum": 1, "maximum": high}
            for name, high in sprocket_bounds.items()
        },
    }
    return {
        "oneOf": [
            {
                "type": "object",
                "additionalProperties": False,
                "required": ["factories"],
                "properties": {"factories": {"type": "array", "items": entry}},
            },
            {
                "type": "object",
                "additionalProperties": False,
                "required": ["sprockets"],
                "properties": {"sprockets": {"type": "array", "items": sprocket}},
            },
        ]
    }
