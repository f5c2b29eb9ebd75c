"""Rules and queries for cars: a car's title is its key, its image is fetched in the background.

A car whose `image_url` is set or changed is saved with `image_pending`, and a job
(`catalog.image`, in `catalog.jobs`) fetches and thumbnails the image after the transaction
commits: no request waits on a download or on the CPU. An import does the same work for many
rows at once, in its own job (`catalog.importer`).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from typing import Any, cast

from sqlalchemy import Connection, SQLColumnExpression, bindparam, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite

from wharf.catalog.models import Car, CarImage
from wharf.core.data import crud, listing
from wharf.core.data.db import utcnow
from wharf.core.data.pagination import Page
from wharf.core.errors import Conflict
from wharf.core.http.concurrency import Precondition
from wharf.core.work import enqueue

IMAGE_JOB, AVIF_JOB, FILES_JOB = "catalog.image", "catalog.avif", "catalog.files"
PLATFORMS = ("web", "mobile")
CARS = crud.Resource(
    Car,
    "Car",
    "/api/v1/cars",
    (
        Car.id,
        Car.title,
        Car.description,
        Car.image_url,
        Car.image_sha256,
        Car.image_error,
        Car.image_pending,
        Car.version,
        Car.created_at,
        Car.updated_at,
    ),
    ordering={"id": Car.id, "title": Car.title, "created_at": Car.created_at},
    search=(Car.title, cast(SQLColumnExpression[str], Car.description)),
)
_IMAGE_COLUMNS = (
    CarImage.sha256,
    CarImage.format,
    CarImage.width,
    CarImage.height,
    CarImage.original,
    CarImage.renditions,
)
Rows = tuple[list[dict[str, Any]], int]
# Built once, with the shas as an expanding parameter: building a statement per request costs
# more than running it (see core.data.listing).
_IMAGES_OF = select(*_IMAGE_COLUMNS).where(CarImage.sha256.in_(bindparam("shas", expanding=True)))


def list_cars(
    conn: Connection,
    *,
    search: str | None,
    ordering: str | None,
    has_image: bool | None,
    page: Page,
) -> Rows:
    null = None if has_image is None else {"image_sha256": not has_image}
    rows, total = listing.page(
        conn, CARS, equals={}, search=search, ordering=ordering, page=page, null=null
    )
    return with_images(conn, rows), total


def get_car(conn: Connection, *, car_id: int) -> dict[str, Any]:
    return with_images(conn, [crud.fetch(conn, CARS, car_id)])[0]


def with_images(conn: Connection, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each row with `image`, its processed image's row or None (one query for a page)."""
    shas = {row["image_sha256"] for row in rows if row["image_sha256"]}
    found: dict[str, dict[str, Any]] = {}
    if shas:
        result = conn.execute(_IMAGES_OF, {"shas": list(shas)})
        found = {r.sha256: dict(r._mapping) for r in result}
    for row in rows:
        row["image"] = found.get(row["image_sha256"]) if row["image_sha256"] else None
    return rows


def image_status(row: dict[str, Any]) -> str:
    if row["image_pending"]:
        return "pending"
    if row["image"] is not None:
        return "ready"
    return "failed" if row["image_error"] else "none"


def _images(media: str, image: dict[str, Any] | None) -> dict[str, Any] | None:
    if image is None:
        return None
    shown: dict[str, Any] = {
        "width": image["width"],
        "height": image["height"],
        "original": media + image["original"],
    }
    for variant in PLATFORMS:
        made = image["renditions"][variant]
        shown[variant] = {
            "width": made["width"],
            "height": made["height"],
            **{f: media + made[f] if made.get(f) else None for f in ("jpeg", "webp", "avif")},
        }
    return shown


def render(base: str, row: dict[str, Any], *, platform: str | None = None) -> dict[str, Any]:
    """A car as the API shows it. With `platform`, `image` is that variant's JPEG URL (the
    seed's shape), or null."""
    images = _images(f"{base}/media/", row["image"])
    shown = {
        "id": row["id"],
        "url": f"{base}{CARS.path}/{row['id']}",
        "title": row["title"],
        "description": row["description"],
        "image_url": row["image_url"],
        "images": images,
        "image_status": image_status(row),
        "image_error": row["image_error"],
        "version": row["version"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }
    if platform is not None:
        shown["image"] = images[platform]["jpeg"] if images else None
    return shown


def _title_free(conn: Connection, title: str, *, other_than: int | None = None) -> None:
    query = select(Car.id).where(Car.title == title)
    if other_than is not None:
        query = query.where(Car.id != other_than)
    existing = conn.execute(query).scalar()
    if existing is not None:
        raise Conflict(
            f"Car {existing} already has the title {title!r} ({CARS.path}/{existing}): a title "
            "is a car's key in the catalog. Change that car, or choose another title.",
            extra={"existing_id": existing},
        )


def _image_values(image_url: str | None) -> dict[str, Any]:
    """A new source: no image until the job has fetched it (or none is wanted)."""
    return {
        "image_url": image_url,
        "image_sha256": None,
        "image_error": None,
        "image_pending": image_url is not None,
    }


def _fetch_later(conn: Connection, row: dict[str, Any]) -> None:
    if row["image_pending"]:
        enqueue(conn, IMAGE_JOB, {"car_id": row["id"], "image_url": row["image_url"]})


def create_car(conn: Connection, *, values: dict[str, Any]) -> dict[str, Any]:
    _title_free(conn, values["title"])
    row = crud.create(conn, CARS, {**values, **_image_values(values.get("image_url"))})
    _fetch_later(conn, row)
    return with_images(conn, [row])[0]


def change_car(
    conn: Connection, *, car_id: int, values: dict[str, Any], expected: Precondition
) -> dict[str, Any]:
    """A PUT's or a PATCH's values; a new `image_url` fetches the new image. As elsewhere, a
    missing car is 404 and a stale version 412/409 before the title is checked."""
    current = crud.fetch(conn, CARS, car_id)
    if values and current["version"] != expected.version:
        raise expected.stale(current["version"], f"{CARS.label} {car_id}")
    changes = {k: v for k, v in values.items() if current[k] != v}
    if "title" in changes:
        _title_free(conn, changes["title"], other_than=car_id)
    if "image_url" in changes:
        changes.update(_image_values(changes["image_url"]))
    elif "image_url" in values and current["image_error"] and values["image_url"]:
        # The same URL again, after it failed: what a person means is "try again".
        changes.update(_image_values(values["image_url"]))
    if not changes:
        return with_images(conn, [current])[0]
    row = crud.change(conn, CARS, car_id, changes, expected)
    if current["image_sha256"] and current["image_sha256"] != row["image_sha256"]:
        release_images(conn, [current["image_sha256"]])
    _fetch_later(conn, row)
    return with_images(conn, [row])[0]


def delete_car(conn: Connection, *, car_id: int, expected: Precondition | None) -> None:
    current = crud.fetch(conn, CARS, car_id)
    crud.remove(conn, CARS, car_id, expected)
    if current["image_sha256"]:
        release_images(conn, [current["image_sha256"]])


def release_images(conn: Connection, shas: Iterable[str]) -> None:
    """Forget the images no car shows any more, and queue the deletion of their files.

    The files go in a job (`catalog.files`), which exists only once this transaction has
    committed: a rollback deletes nothing, and a commit is never followed by a car whose
    files are gone. The job checks again that no image row names the files before it deletes
    them, in case an import brought the same picture back meanwhile.
    """
    wanted = sorted(set(shas))
    if not wanted:
        return
    used = set(
        conn.execute(
            select(Car.image_sha256).where(Car.image_sha256.in_(wanted)).group_by(Car.image_sha256)
        ).scalars()
    )
    unused = [sha for sha in wanted if sha not in used]
    if not unused:
        return
    gone = conn.execute(
        delete(CarImage).where(CarImage.sha256.in_(unused)).returning(*_IMAGE_COLUMNS)
    ).all()
    keys = [key for row in gone for key in file_keys(dict(row._mapping))]
    if keys:
        enqueue(conn, FILES_JOB, {"keys": keys})


def file_keys(image: dict[str, Any]) -> list[str]:
    """Every stored file of an image: its original and each rendition."""
    keys = [image["original"]]
    for made in image["renditions"].values():
        keys += [made[f] for f in ("jpeg", "webp", "avif") if made.get(f)]
    return keys


def keys_in_use(conn: Connection, keys: Collection[str]) -> set[str]:
    """Which of these storage keys an image row still names (read before deleting files).

    Every row is read, not only those of the images released: two originals that differ only
    in their metadata make the same renditions, whose content-hashed keys they then share."""
    rows = conn.execute(select(*_IMAGE_COLUMNS)).all() if keys else []
    named = {key for row in rows for key in file_keys(dict(row._mapping))}
    return named & set(keys)


def save_images(conn: Connection, images: Sequence[dict[str, Any]]) -> None:
    """Store image rows, each unless it is there already (same bytes, same sha256), in one
    statement batched by the driver."""
    if not images:
        return
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    now = utcnow()
    conn.execute(
        dialect.insert(CarImage).on_conflict_do_nothing(index_elements=["sha256"]),
        [{**image, "created_at": now, "updated_at": now} for image in images],
    )


def known_images(conn: Connection, shas: Collection[str]) -> dict[str, dict[str, Any]]:
    if not shas:
        return {}
    result = conn.execute(_IMAGES_OF, {"shas": list(shas)})
    return {r.sha256: dict(r._mapping) for r in result}


def count_cars(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(Car)).scalar_one())
