"""The renditions of non-JPEG sources (PNG, WebP, GIF, AVIF): sizes, orientation and
transparency in every output format; and the JPEG qualities as settings. test_images.py
covers JPEG sources and what is refused."""

from __future__ import annotations

import io
from typing import Any

import pytest
import pyvips  # type: ignore[import-untyped]
from PIL import Image, ImageDraw, JpegImagePlugin

from tests.catalog import imagefixtures as fx
from wharf.catalog import images
from wharf.catalog.images import Processed, Rendition, Spec, thumbnails
from wharf.catalog.pipeline import spec_for
from wharf.core.config import Settings

SPEC = Spec()
SOURCES = ("png", "webp", "gif", "avif")
RED = (255, 0, 0)


def vips(data: bytes) -> Any:
    return pyvips.Image.new_from_buffer(data, "")


def picture(width: int, height: int, *, alpha: bool = False, marker: bool = False) -> Image.Image:
    """Photo-like pixels (made small and scaled up: quick), a red square in the top-left
    corner if `marker`, and with `alpha` transparent corners around an opaque ellipse."""
    img = fx.photo(max(8, width // 4), max(8, height // 4)).resize((width, height))
    if marker:
        ImageDraw.Draw(img).rectangle((0, 0, width // 8, height // 8), fill=RED)
    if alpha:
        mask = Image.new("L", (width, height), 0)
        box = (width * 0.1, height * 0.1, width * 0.9, height * 0.9)
        ImageDraw.Draw(mask).ellipse(box, fill=255)
        img = img.convert("RGBA")
        img.putalpha(mask)
    return img


def encoded(img: Image.Image, fmt: str, **options: Any) -> bytes:
    if fmt == "gif" and img.mode == "RGB":
        img = img.convert("P")  # a palette, as GIFs are
    quality = {"webp": {"quality": 80}, "avif": {"quality": 60}}.get(fmt, {})
    data = fx.encode(img, fmt.upper(), **quality, **options)
    assert images.sniff(data) == fmt
    return data


def every_rendition(data: bytes) -> tuple[Processed, tuple[Rendition, ...]]:
    """The import's renditions (JPEG, WebP) and the AVIF job's, web and mobile each."""
    processed = thumbnails(data, SPEC)
    made = processed.renditions + images.avif(data, SPEC)
    assert sorted((r.variant, r.format) for r in made) == sorted(
        (v, f) for v in ("web", "mobile") for f in ("jpeg", "webp", "avif")
    )
    return processed, made


def is_red(pixel: list[float]) -> bool:
    return pixel[0] > 200 and max(pixel[1:3]) < 60


@pytest.mark.parametrize("fmt", SOURCES)
@pytest.mark.parametrize(
    ("size", "web", "mobile"),
    [
        ((1300, 975), (1024, 768), (320, 240)),
        ((2048, 600), (1024, 300), (320, 94)),  # round(600 * 320 / 2048) = round(93.75)
        ((600, 900), (600, 900), (320, 480)),  # portrait, narrower than web: not upscaled
        ((200, 100), (200, 100), (200, 100)),  # narrower than both: as it is
    ],
)
def test_sizes_fit_the_width_keep_the_aspect_and_never_upscale(
    fmt: str, size: tuple[int, int], web: tuple[int, int], mobile: tuple[int, int]
) -> None:
    data = encoded(picture(*size, alpha=fmt == "png"), fmt)  # a PNG with transparency
    processed, made = every_rendition(data)
    assert (processed.format, processed.width, processed.height) == (fmt, *size)
    for rendition in made:
        expected = web if rendition.variant == "web" else mobile
        decoded = vips(rendition.data)
        assert images.sniff(rendition.data) == rendition.format
        assert (rendition.width, rendition.height) == expected, rendition.format
        assert (decoded.width, decoded.height) == expected, rendition.format


# Where the stored top-left corner ends up, and the upright size of a 600 x 400 picture.
TURNS = {
    3: ((600, 400), "bottom-right"),  # half a turn
    6: ((400, 600), "top-right"),  # a quarter clockwise
    8: ((400, 600), "bottom-left"),  # a quarter anticlockwise
}


@pytest.mark.parametrize("orientation", sorted(TURNS))
@pytest.mark.parametrize("fmt", ["png", "webp", "avif"])  # GIF has no EXIF orientation
def test_exif_orientation_is_applied_and_stripped(fmt: str, orientation: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "WharfCam"  # Make: metadata that must not reach the renditions
    data = encoded(picture(600, 400, marker=True), fmt, exif=exif)
    (width, height), corner = TURNS[orientation]
    processed, made = every_rendition(data)
    assert (processed.width, processed.height) == (width, height)
    for rendition in made:
        decoded = vips(rendition.data)
        size = (width, height) if rendition.variant == "web" else (320, round(320 * height / width))
        assert (decoded.width, decoded.height) == size, rendition
        fields = decoded.get_fields()
        for field in ("exif-data", "xmp-data", "orientation"):
            assert field not in fields, (rendition.format, field)
        assert b"WharfCam" not in rendition.data
        right, bottom = decoded.width - 10, decoded.height - 10
        spots = {"top-left": (10, 10), "top-right": (right, 10)}
        spots |= {"bottom-left": (10, bottom), "bottom-right": (right, bottom)}
        for name, (x, y) in spots.items():
            assert is_red(decoded(x, y)) == (name == corner), (rendition.format, name)


@pytest.mark.parametrize("fmt", SOURCES)
def test_transparency_is_white_in_jpeg_and_kept_in_webp_and_avif(fmt: str) -> None:
    data = encoded(picture(1300, 800, alpha=True), fmt)
    assert vips(data).hasalpha()
    for rendition in every_rendition(data)[1]:
        decoded = vips(rendition.data)
        middle = decoded(decoded.width // 2, decoded.height // 2)
        if rendition.format == "jpeg":
            assert decoded.bands == 3
            assert min(decoded(0, 0)) >= 250, rendition  # white where it was transparent
            assert min(middle) < 250  # the picture itself is not washed out
        else:
            assert decoded.bands == 4, rendition
            assert decoded(0, 0)[3] == 0, rendition
            assert middle[3] == 255, rendition


@pytest.mark.parametrize("fmt", SOURCES)
def test_an_opaque_source_gains_no_alpha(fmt: str) -> None:
    for rendition in every_rendition(encoded(picture(300, 200), fmt))[1]:
        assert vips(rendition.data).bands == 3, rendition


# The JPEG qualities are settings.


def _tables(data: bytes) -> dict[int, list[int]]:
    image = Image.open(io.BytesIO(data))
    assert isinstance(image, JpegImagePlugin.JpegImageFile)
    return dict(image.quantization)


def _libjpeg_tables(quality: int) -> dict[int, list[int]]:
    return _tables(fx.encode(Image.new("RGB", (8, 8)), "JPEG", quality=quality))


def test_a_lower_jpeg_quality_setting_makes_a_smaller_jpeg(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = fx.jpeg(1600, 1200)
    default = thumbnails(data, spec_for(Settings(_env_file=None)))
    lower_web = thumbnails(data, spec_for(Settings(_env_file=None, cars_web_quality=60)))
    monkeypatch.setenv("WHARF_CARS_MOBILE_QUALITY", "50")  # as an operator sets it
    lower_mobile = thumbnails(data, spec_for(Settings(_env_file=None)))

    def size(processed: Processed, variant: str) -> int:
        return len(processed.get(variant, "jpeg").data)

    assert _tables(default.get("web", "jpeg").data) == _libjpeg_tables(88)
    assert _tables(default.get("mobile", "jpeg").data) == _libjpeg_tables(84)
    assert _tables(lower_web.get("web", "jpeg").data) == _libjpeg_tables(60)
    assert _tables(lower_mobile.get("mobile", "jpeg").data) == _libjpeg_tables(50)
    assert size(lower_web, "web") < 0.8 * size(default, "web")
    assert size(lower_mobile, "mobile") < 0.8 * size(default, "mobile")
    # Each setting changes its own rendition only: the others are byte for byte the same.
    for changed, variant in ((lower_web, "mobile"), (lower_mobile, "web")):
        assert changed.get(variant, "jpeg") == default.get(variant, "jpeg")
    for changed in (lower_web, lower_mobile):
        for variant in ("web", "mobile"):
            assert changed.get(variant, "webp") == default.get(variant, "webp")
