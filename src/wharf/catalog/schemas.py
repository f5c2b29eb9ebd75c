"""Request and response shapes for cars and their imports."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from wharf.core.data.pagination import ListParams, ordering_field
from wharf.core.http.schemas import Patch, Strict, Versioned

TITLE_MAX, DESCRIPTION_MAX, URL_MAX = 200, 2000, 2000
Title = Annotated[str, Field(min_length=1, max_length=TITLE_MAX, description="The car's key.")]
Description = Annotated[str | None, Field(default=None, max_length=DESCRIPTION_MAX)]
# What the outbound client takes; whether the host is public only it can say (DNS).
HTTP_URL = r"^https?://\S+$"
ImageUrl = Annotated[
    str | None,
    Field(
        default=None,
        max_length=URL_MAX,
        pattern=HTTP_URL,
        description="An http(s) URL of the car's image; it is fetched and thumbnailed in the "
        "background (`image_status` says how far it got).",
    ),
]


class CarCreate(Strict):
    title: Title
    description: Description = None
    image_url: ImageUrl = None


class CarReplace(Versioned):
    title: Title
    description: Description = None
    image_url: ImageUrl = None


class CarPatch(Patch):
    """A JSON merge patch: `description` and `image_url` may be set to null (no image)."""

    nullable = frozenset({"description", "image_url"})
    title: Title | None = None
    description: Description = None
    image_url: ImageUrl = None


class Variant(BaseModel):
    width: int
    height: int
    jpeg: str
    webp: str
    avif: str | None = Field(description="Listed once the background worker has made it.")


class Images(BaseModel):
    width: int
    height: int
    original: str
    web: Variant
    mobile: Variant


class CarRead(BaseModel):
    id: int
    url: str
    title: str
    description: str | None
    image_url: str | None = Field(description="The image's source, as given.")
    images: Images | None
    image_status: Literal["none", "pending", "ready", "failed"]
    image_error: str | None = Field(description="Why the source gave no image, when it failed.")
    version: int
    created_at: datetime
    updated_at: datetime


class CarForPlatform(CarRead):
    image: str | None = Field(description="This platform's JPEG thumbnail (the seed's field).")


Platform = Literal["web", "mobile"]


class CarList(ListParams):
    """`search` covers title and description; `ordering` over id, title, created_at."""

    ordering: str | None = ordering_field("id", "title", "created_at")
    has_image: bool | None = Field(default=None, description="Only cars with (or without) one.")
    platform: Platform | None = Field(
        default=None, description="Give each car `image`, this platform's JPEG (as /cars/web)."
    )


class CarPlatformList(ListParams):
    ordering: str | None = ordering_field("id", "title", "created_at")
    has_image: bool | None = Field(default=None, description="Only cars with (or without) one.")


class ImportRequest(Strict):
    url: str = Field(max_length=URL_MAX, pattern=HTTP_URL, description="An http(s) URL of the CSV.")
    sync: bool = Field(default=False, description="Delete the cars the CSV no longer lists.")


class ImportRead(BaseModel):
    id: int
    url: str
    status: Literal["running", "done", "failed"]
    source: str
    sync: bool
    counts: dict[str, int]
    error: str | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None


class ImportDetail(ImportRead):
    report: list[dict[str, Any]] = Field(
        description="One entry per CSV row (`row` as a spreadsheet numbers it, the header "
        "being row 1): its `action` (created, updated, unchanged, skipped, superseded), "
        "`image` (fetched, reused, kept, failed, none) and `problems` (column and reason); "
        "and one per car deleted by `sync`."
    )
