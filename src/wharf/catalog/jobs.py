"""The catalog's background jobs, run by `core.work`'s leased workers.

- `catalog.import`: one CSV import, start to end. A worker that stops mid-import stops
  renewing its lease, and another worker runs the import again from the start: its writes
  are all in one transaction at the end, and files already stored are found again.
- `catalog.image`: the image of one car created or changed through the API.
- `catalog.avif`: the AVIF renditions of images just made. AVIF costs several times the
  whole JPEG pipeline, so it comes after; the API lists an AVIF URL once the file exists.
- `catalog.files`: files of images no car shows any more, deleted after the commit that
  let them go.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Engine, update

from wharf.catalog import images, importer, service
from wharf.catalog.models import FAILED as FAILED_IMPORT
from wharf.catalog.models import Car, CarImage
from wharf.catalog.pipeline import Failure, Pipeline, spec_for
from wharf.core.config import Settings
from wharf.core.data.db import utcnow
from wharf.core.outbound import Outbound
from wharf.core.storage import Storage
from wharf.core.work import ClaimedJob, Handler, Outcome, enqueue
from wharf.core.work.models import FAILED

log = logging.getLogger("wharf.catalog")
RETRIES = (5.0, 30.0, 120.0)


class _Base:
    kind = ""
    delays: Sequence[float] = RETRIES

    def __init__(
        self, engine: Engine, *, settings: Settings, outbound: Outbound, storage: Storage
    ) -> None:
        self.engine, self.settings = engine, settings
        self.outbound, self.storage = outbound, storage

    def record(self, conn: Connection, job: ClaimedJob, outcome: Outcome, state: str) -> None:
        """Nothing of the job's own to record beyond its row in `jobs`."""

    def taken_over(self, conn: Connection, job: ClaimedJob) -> None:  # noqa: ARG002
        log.warning("%s job %s runs again: its worker stopped", self.kind, job.id)


class ImportHandler(_Base):
    kind = importer.IMPORT_JOB

    def run(self, job: ClaimedJob) -> Outcome:
        record = importer.run(
            self.engine,
            int(job.payload["import_id"]),
            settings=self.settings,
            outbound=self.outbound,
            storage=self.storage,
        )
        return Outcome("done", facts={"status": record["status"]})

    def record(self, conn: Connection, job: ClaimedJob, outcome: Outcome, state: str) -> None:
        if state == FAILED:  # out of retries: the record says so, and stops "running"
            error = f"The import could not be completed: {outcome.error}"
            importer.finish(conn, int(job.payload["import_id"]), status=FAILED_IMPORT, error=error)


class ImageHandler(_Base):
    kind = service.IMAGE_JOB

    def run(self, job: ClaimedJob) -> Outcome:
        car_id, url = int(job.payload["car_id"]), str(job.payload["image_url"])

        def known(sha: str) -> dict[str, Any] | None:
            with self.engine.connect() as conn:
                return service.known_images(conn, [sha]).get(sha)

        result = Pipeline(
            self.settings, outbound=self.outbound, storage=self.storage, known=known
        ).run([url])[url]
        with self.engine.connect() as conn:
            conn.execution_options(wharf_write=True)
            with conn.begin():
                if isinstance(result, Failure):
                    values: dict[str, Any] = {"image_error": result.reason}
                else:
                    service.save_images(conn, [result.row()])
                    values = {"image_sha256": result.sha256, "image_error": None}
                # Only if the car still wants this image: a later change has its own job.
                changed = conn.execute(
                    update(Car)
                    .where(Car.id == car_id, Car.image_url == url, Car.image_pending.is_(True))
                    .values(
                        **values,
                        image_pending=False,
                        version=Car.version + 1,
                        updated_at=utcnow(),
                    )
                ).rowcount
                if not isinstance(result, Failure):
                    if result.new and changed:
                        enqueue(conn, service.AVIF_JOB, {"shas": [result.sha256]})
                    if not changed:
                        service.release_images(conn, [result.sha256])
        return Outcome("done")


class AvifHandler(_Base):
    kind = service.AVIF_JOB

    def run(self, job: ClaimedJob) -> Outcome:
        spec = spec_for(self.settings)
        for sha in job.payload["shas"]:
            with self.engine.connect() as conn:
                image = service.known_images(conn, [sha]).get(sha)
            if image is None or all(m.get("avif") for m in image["renditions"].values()):
                continue  # gone since, or made already (a retry)
            try:
                made = images.avif(self.storage.read(image["original"]), spec)
            except (images.ImageRejected, OSError) as exc:
                log.warning("no AVIF for image %s: %s", sha, exc)
                continue
            renditions = {k: dict(v) for k, v in image["renditions"].items()}
            for rendition in made:
                renditions[rendition.variant]["avif"] = self.storage.put(
                    rendition.data, suffix=rendition.suffix
                )
            with self.engine.connect() as conn:
                conn.execution_options(wharf_write=True)
                with conn.begin():
                    conn.execute(
                        update(CarImage)
                        .where(CarImage.sha256 == sha)
                        .values(renditions=renditions, updated_at=utcnow())
                    )
                    # The cars' representations changed: their ETags (versions) must too.
                    conn.execute(
                        update(Car)
                        .where(Car.image_sha256 == sha)
                        .values(version=Car.version + 1, updated_at=utcnow())
                    )
        return Outcome("done")


class FilesHandler(_Base):
    kind = service.FILES_JOB

    def run(self, job: ClaimedJob) -> Outcome:
        keys = [str(key) for key in job.payload["keys"]]
        with self.engine.connect() as conn:
            in_use = service.keys_in_use(conn, keys)
        for key in keys:
            if key not in in_use:
                self.storage.delete(key)
        return Outcome("done")


def handlers(
    engine: Engine, *, settings: Settings, outbound: Outbound, storage: Storage
) -> list[Handler]:
    made = (ImportHandler, ImageHandler, AvifHandler, FilesHandler)
    return [h(engine, settings=settings, outbound=outbound, storage=storage) for h in made]
