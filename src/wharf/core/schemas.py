"""Base classes for request bodies: no unknown fields (no mass assignment), no null fields."""

from __future__ import annotations

from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Strict(BaseModel):
    """A body that rejects fields it does not declare, read-only ones included (422)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Versioned(Strict):
    """A PUT body may carry the version the client last read instead of `If-Match`."""

    version: int | None = Field(default=None, ge=1, description="The version you last read.")


class Patch(Versioned):
    """A JSON merge patch (RFC 7396) over fields that may not become null."""

    @model_validator(mode="after")
    def _no_nulls(self) -> Self:
        nulls = sorted(f for f in self.model_fields_set if getattr(self, f) is None)
        if nulls:
            raise ValueError(f"{', '.join(nulls)} cannot be null; leave a field out to keep it")
        return self

    def changes(self) -> dict[str, object]:
        return self.model_dump(exclude_unset=True, exclude={"version"})
