"""`wharf cars thumbnails --rebuild`: every variant made again from the stored originals,
after the widths or qualities changed (or a better encoder came along)."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from sqlalchemy import Engine, select, update

from wharf.catalog import images, service
from wharf.catalog.models import Car, CarImage
from wharf.catalog.pipeline import spec_for, store
from wharf.core.config import Settings
from wharf.core.data.db import utcnow
from wharf.core.storage import Storage


@dataclass(frozen=True)
class Rebuilt:
    rebuilt: int
    failed: int
    removed: int


def rebuild(
    engine: Engine,
    *,
    settings: Settings,
    storage: Storage,
    on_total: Callable[[int], None] | None = None,
    on_done: Callable[[], None] | None = None,
) -> Rebuilt:
    """Thumbnail every image again (JPEG, WebP and AVIF), each image's row and its cars'
    versions changed in one transaction; then the files no image names any more go."""
    spec = spec_for(settings)
    with engine.connect() as conn:
        rows = conn.execute(select(CarImage.sha256, CarImage.original)).all()
    if on_total is not None:
        on_total(len(rows))
    old_keys: set[str] = set()
    failed = 0

    def one(sha: str, original: str) -> bool:
        try:
            data = storage.read(original)
            made = store(storage, data, images.thumbnails(data, spec))
            avif = images.avif(data, spec)
        except (OSError, images.ImageRejected):
            return False
        renditions = {k: dict(v) for k, v in made.renditions.items()}
        for rendition in avif:
            renditions[rendition.variant]["avif"] = storage.put(
                rendition.data, suffix=rendition.suffix
            )
        with engine.connect() as conn:
            conn.execution_options(wharf_write=True)
            with conn.begin():
                before = service.known_images(conn, [sha]).get(sha)
                if before is None:
                    return True  # deleted meanwhile; its files go with it
                old_keys.update(service.file_keys(before))
                conn.execute(
                    update(CarImage)
                    .where(CarImage.sha256 == sha)
                    .values(
                        width=made.width,
                        height=made.height,
                        renditions=renditions,
                        updated_at=utcnow(),
                    )
                )
                conn.execute(
                    update(Car)
                    .where(Car.image_sha256 == sha)
                    .values(version=Car.version + 1, updated_at=utcnow())
                )
        return True

    with ThreadPoolExecutor(settings.cars_thumbnail_threads) as pool:
        for ok in pool.map(lambda row: one(row.sha256, row.original), rows):
            failed += not ok
            if on_done is not None:
                on_done()
    with engine.connect() as conn:
        in_use = service.keys_in_use(conn, old_keys)
    stale = old_keys - in_use
    for key in stale:
        storage.delete(key)
    return Rebuilt(rebuilt=len(rows) - failed, failed=failed, removed=len(stale))
