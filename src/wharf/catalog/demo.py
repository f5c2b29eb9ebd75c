"""The demo catalog: generated pictures and a CSV with a few broken rows, imported through
the CLI's own path, so a newcomer's `make run` shows thumbnails and a report with real
failures, with no internet access.

The pictures are drawn with libvips (already the thumbnailer), deterministically: gradients
under noise, so they compress like photos rather than flat colour. Among them a 6000x4000
JPEG, PNGs with transparency, a WebP, and a JPEG whose EXIF says "rotate 90°".
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyvips  # type: ignore[import-untyped]
from sqlalchemy import Engine

from wharf.catalog import importer
from wharf.core.config import Settings
from wharf.core.data.db import writing
from wharf.core.outbound import Outbound
from wharf.core.storage import LocalStorage

CSV_NAME = "cars.csv"
# (file, width, height, kind): kind is jpeg, png (with alpha), webp, or rotated (EXIF 6).
PICTURES = (
    ("roadster.jpg", 6000, 4000, "jpeg"),
    ("estate.jpg", 4000, 3000, "jpeg"),
    ("coupe.jpg", 3000, 2000, "jpeg"),
    ("pickup.jpg", 2400, 1600, "jpeg"),
    ("hatchback.jpg", 1920, 1080, "jpeg"),
    ("saloon.jpg", 1600, 1200, "jpeg"),
    ("minivan.jpg", 1280, 960, "jpeg"),
    ("cabriolet.jpg", 1024, 768, "jpeg"),
    ("van.jpg", 800, 600, "jpeg"),
    ("microcar.jpg", 640, 480, "jpeg"),
    ("kei.jpg", 300, 200, "jpeg"),
    ("rally.jpg", 2000, 3000, "jpeg"),
    ("limousine.jpg", 5000, 1500, "jpeg"),
    ("vintage.jpg", 2048, 1536, "rotated"),
    ("buggy.png", 1200, 900, "png"),
    ("badge.png", 512, 512, "png"),
    ("concept.png", 2000, 1000, "png"),
    ("tractor.webp", 1600, 900, "webp"),
    ("taxi.webp", 1024, 1024, "webp"),
    ("sports.jpg", 3840, 2160, "jpeg"),
    ("truck.jpg", 2560, 1440, "jpeg"),
    ("scooter.jpg", 1440, 1080, "jpeg"),
    ("sedan.jpg", 1366, 768, "jpeg"),
    ("wagon.jpg", 1000, 1000, "jpeg"),
)
BROKEN_FILE, NOT_AN_IMAGE, TRUNCATED = "missing.jpg", "notes.jpg", "halfway.jpg"


@dataclass(frozen=True)
class Demo:
    csv: Path
    rows: int


def _picture(width: int, height: int, seed: int) -> pyvips.Image:
    """A photo-like picture: colour gradients, a few shapes, and grain."""
    xyz = pyvips.Image.xyz(width, height)
    x, y = xyz[0] / width, xyz[1] / height
    r = (x * (120 + seed * 37 % 120) + y * 60 + 20) % 256
    g = (y * (140 + seed * 53 % 100) + 30) % 256
    b = ((1 - x) * 180 + seed * 11 % 60) % 256
    image = r.bandjoin([g, b])
    image = image + pyvips.Image.gaussnoise(width, height, sigma=14, mean=0)
    for i in range(4):
        size = max(8, min(width, height) // (3 + i))
        left = (seed * 97 + i * 331) % max(1, width - size)
        top = (seed * 61 + i * 173) % max(1, height - size)
        colour = [(seed * 40 + i * 70) % 256, (i * 90) % 256, (255 - seed * 20) % 256]
        image = image.draw_rect(colour, left, top, size, size // 2, fill=True)
    return image.cast("uchar").copy(interpretation="srgb")


def _encode(image: pyvips.Image, kind: str, seed: int) -> bytes:
    if kind == "png":
        width, height = image.width, image.height
        circle = pyvips.Image.black(width, height).draw_circle(
            255, width // 2, height // 2, min(width, height) // 2 - 4, fill=True
        )
        return bytes(image.bandjoin(circle.cast("uchar")).pngsave_buffer(compression=6))
    if kind == "webp":
        return bytes(image.webpsave_buffer(Q=85))
    if kind == "rotated":  # stored landscape, shown portrait: EXIF orientation 6
        image = image.copy()
        image.set_type(pyvips.GValue.gint_type, "orientation", 6)
        return bytes(image.jpegsave_buffer(Q=90, keep="exif"))
    return bytes(image.jpegsave_buffer(Q=90 - seed % 5))


def write(folder: Path) -> Demo:
    """The pictures and the CSV in `folder`; pictures already there are kept as they are."""
    folder.mkdir(parents=True, exist_ok=True)
    rows: list[tuple[str, str, str]] = []
    for seed, (name, width, height, kind) in enumerate(PICTURES):
        path = folder / name
        if not path.exists():
            tmp = path.with_suffix(path.suffix + ".tmp")
            tmp.write_bytes(_encode(_picture(width, height, seed), kind, seed))
            tmp.replace(path)
        title = name.split(".")[0].replace("-", " ").title()
        rows.append((f"{title} {seed + 1}", f"A {title.lower()}, {width}x{height} {kind}.", name))
    (folder / NOT_AN_IMAGE).write_text("These are notes, not a picture.\n")
    if not (folder / TRUNCATED).exists():
        whole = _encode(_picture(1200, 800, 99), "jpeg", 99)
        (folder / TRUNCATED).write_bytes(whole[: len(whole) // 2])
    rows += [
        ("Phantom", "Its picture was never saved.", BROKEN_FILE),
        ("Notebook", "A text file that calls itself .jpg.", NOT_AN_IMAGE),
        ("Halfway", "A JPEG cut in half.", TRUNCATED),
        ("Insider", "Points at a cloud metadata address.", "http://169.254.169.254/latest/car.jpg"),
        ("Localhost", "Points at this machine.", "http://127.0.0.1:9/car.jpg"),
        ("Bare", "A car with no picture.", ""),
        ("", "A row without a title.", "kei.jpg"),
        ("T" * 201, "A title over 200 characters.", ""),
    ]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(("Title", "Description", "Image"))  # any case: the header is matched so
    writer.writerows(rows)
    path = folder / CSV_NAME
    path.write_text(out.getvalue(), encoding="utf-8")
    return Demo(csv=path, rows=len(rows))


def load(engine: Engine, settings: Settings, folder: Path) -> dict[str, Any]:
    """Write the demo files and import them as `wharf cars import` does; its record."""
    made = write(folder)
    with writing(engine) as conn:
        record = importer.start(
            conn, source=str(made.csv), sync=False, user_id=None, background=False
        )
    return importer.run(
        engine,
        record["id"],
        settings=settings,
        outbound=Outbound.from_settings(settings),
        storage=LocalStorage(settings.media_dir),
        csv=made.csv.read_bytes(),
        base_dir=folder,
    )
