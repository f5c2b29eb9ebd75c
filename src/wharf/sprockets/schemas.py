"""Request and response shapes for sprocket types.

Bounds: `teeth` is 1 to 10,000 (TEETH_MAX) and `pitch_diameter`, `outside_diameter` and
`pitch` are 1 to 1,000,000 (SIZE_MAX), all integers. The seed gives no unit; the bounds are
far above any real sprocket yet well inside a 32-bit INTEGER column, so no value a client may
send can overflow on PostgreSQL. No rule ties the dimensions to each other: the seed's own
example (`pitch_diameter` 6, `outside_diameter` 4) would break an "outside is larger" rule.

Bodies take what JSON Schema calls an integer, exactly: a number without a fraction (`7` or
`7.0`), never a string (`"7"`) or a boolean, which Pydantic's lax mode would read as one:
those are more likely a client's bug than a measurement.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, Field, field_validator

from wharf.core.data.pagination import PagedParams, ordering_field
from wharf.core.http.schemas import MAX_INT, MIN_INT, Patch, Strict, Versioned
from wharf.sprockets.models import DIMENSIONS

TEETH_MAX = 10_000
SIZE_MAX = 1_000_000
BOUNDS = {
    "teeth": TEETH_MAX,
    "pitch_diameter": SIZE_MAX,
    "outside_diameter": SIZE_MAX,
    "pitch": SIZE_MAX,
}


Teeth = Annotated[int, Field(ge=1, le=TEETH_MAX, description="Number of teeth.")]
Size = Annotated[int, Field(ge=1, le=SIZE_MAX)]


class JsonIntegers(BaseModel):
    """The dimensions as JSON Schema's `integer`: Pydantic's strict mode would refuse 7.0,
    which the document allows (and schemathesis sends); its lax mode alone would accept "7"
    and true. A before-validator on the fields keeps their schema as it is."""

    @field_validator(*DIMENSIONS, mode="before", check_fields=False)
    @classmethod
    def _json_integer(cls, value: Any) -> Any:
        if isinstance(value, str | bool):
            raise ValueError("must be an integer, not a string or a boolean")
        return value


class SprocketCreate(Strict, JsonIntegers):
    teeth: Teeth
    pitch_diameter: Size
    outside_diameter: Size
    pitch: Size


class SprocketReplace(Versioned, JsonIntegers):
    teeth: Teeth
    pitch_diameter: Size
    outside_diameter: Size
    pitch: Size


class SprocketPatch(Patch, JsonIntegers):
    teeth: Teeth | None = None
    pitch_diameter: Size | None = None
    outside_diameter: Size | None = None
    pitch: Size | None = None


class SprocketRead(BaseModel):
    id: int
    url: str
    teeth: int
    pitch_diameter: int
    outside_diameter: int
    pitch: int
    version: int
    created_at: datetime
    updated_at: datetime


ORDERING = ("id", *DIMENSIONS, "created_at", "updated_at")
# Filters take any storable integer: a filter outside the body bounds matches nothing rather
# than being refused, and one past int32 is refused alike on both databases (see MIN_INT).
Filter = Annotated[int | None, Field(default=None, ge=MIN_INT, le=MAX_INT)]


class SprocketList(PagedParams):
    """Each dimension filters by equality (`teeth=5`) and by an inclusive range
    (`teeth_min=5&teeth_max=20`, either end alone); `ordering` over every field."""

    ordering: str | None = ordering_field(*ORDERING)
    teeth: Filter = None
    teeth_min: Filter = None
    teeth_max: Filter = None
    pitch_diameter: Filter = None
    pitch_diameter_min: Filter = None
    pitch_diameter_max: Filter = None
    outside_diameter: Filter = None
    outside_diameter_min: Filter = None
    outside_diameter_max: Filter = None
    pitch: Filter = None
    pitch_min: Filter = None
    pitch_max: Filter = None

    def equals(self) -> dict[str, Any]:
        """The exact-match filters that were given."""
        given = {name: getattr(self, name) for name in DIMENSIONS}
        return {name: value for name, value in given.items() if value is not None}

    def ranges(self) -> dict[str, tuple[int, int]]:
        """The inclusive ranges that were given; a missing end is the storable extreme."""
        found = {}
        for name in DIMENSIONS:
            low, high = getattr(self, f"{name}_min"), getattr(self, f"{name}_max")
            if low is not None or high is not None:
                found[name] = (MIN_INT if low is None else low, MAX_INT if high is None else high)
        return found
