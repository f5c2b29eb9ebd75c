"""Base classes for request bodies: no unknown fields (no mass assignment), no null fields."""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Any, ClassVar, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

# What str.strip() removes, spelled out for regexes in the OpenAPI document: JSON Schema's
# (ECMA) `\s` is not the same set as Python's.
BLANKS = r"\u0009-\u000d\u001c-\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
NOT_BLANK = f"[^{BLANKS}]"
# Ids live in INTEGER columns, 32-bit on PostgreSQL: a filter on one out of that range is
# refused on every backend alike instead of failing on one (400) and matching nothing on the
# other.
MIN_INT, MAX_INT = -(2**31), 2**31 - 1
_ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def _iso_day(value: Any) -> Any:
    # Pydantic's lax mode reads `0` or `1700000000` as a date (Unix time): a calendar day in
    # a URL is only ever YYYY-MM-DD.
    if isinstance(value, date) or (isinstance(value, str) and _ISO_DAY.fullmatch(value)):
        return value
    raise ValueError("must be a date, YYYY-MM-DD")


Day = Annotated[date, BeforeValidator(_iso_day)]


class Strict(BaseModel):
    """A body that rejects fields it does not declare, read-only ones included (422).

    Text fields are stripped of surrounding blanks and may not be blank; their lengths are
    those of the text as sent, so the OpenAPI document states the rules exactly. Fields named
    in `verbatim` (passwords) are kept as sent.
    """

    model_config = ConfigDict(extra="forbid")
    verbatim: ClassVar[frozenset[str]] = frozenset()

    @field_validator("*", mode="after")
    @classmethod
    def _strip(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, str) or info.field_name in cls.verbatim:
            return value
        stripped = value.strip()
        if not stripped:
            raise ValueError("cannot be blank")
        return stripped

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        for name, prop in handler.resolve_ref_schema(schema).get("properties", {}).items():
            if name in cls.verbatim:
                continue
            for option in [prop, *prop.get("anyOf", ())]:
                free_text = not {"pattern", "enum", "const", "format"} & option.keys()
                if option.get("type") == "string" and free_text:
                    option["pattern"] = NOT_BLANK
        return schema


class Versioned(Strict):
    """A PUT body may carry the version the client last read instead of `If-Match`."""

    version: int | None = Field(default=None, ge=1, description="The version you last read.")


class Patch(Versioned):
    """A JSON merge patch (RFC 7396) over fields that may not become null, but for those
    named in `nullable` (null there clears the field)."""

    nullable: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="after")
    def _no_nulls(self) -> Self:
        nulls = sorted(
            f for f in self.model_fields_set if getattr(self, f) is None and f not in self.nullable
        )
        if nulls:
            raise ValueError(f"{', '.join(nulls)} cannot be null; leave a field out to keep it")
        return self

    def changes(self) -> dict[str, object]:
        return self.model_dump(exclude_unset=True, exclude={"version"})

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        # The fields are optional but never null (see `_no_nulls`): document them that way.
        schema = super().__get_pydantic_json_schema__(core_schema, handler)
        for name, prop in handler.resolve_ref_schema(schema).get("properties", {}).items():
            if name in cls.nullable:
                continue
            options = [o for o in prop.get("anyOf", ()) if o != {"type": "null"}]
            if len(options) == 1 and len(prop["anyOf"]) == 2:
                del prop["anyOf"]
                prop.update(options[0])
                if prop.get("default", ...) is None:
                    del prop["default"]
        return schema
