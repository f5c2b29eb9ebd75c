"""The imaging core (wharf.catalog.images): what it accepts, refuses, and makes."""

from __future__ import annotations

import io
import random
import threading
import time
from typing import Any

import pytest
import pyvips  # type: ignore[import-untyped]
from PIL import Image, JpegImagePlugin

from tests.catalog import imagefixtures as fx
from wharf.catalog import images
from wharf.catalog.images import ImageRejected, Spec, sniff, thumbnails

SPEC = Spec()


def vips(data: bytes) -> Any:
    return pyvips.Image.new_from_buffer(data, "")


def rejected(data: bytes, spec: Spec = SPEC) -> str:
    with pytest.raises(ImageRejected) as info:
        thumbnails(data, spec)
    return info.value.reason


class PeakRss:
    """This process's peak RSS (VmHWM), reset on demand (Linux's clear_refs)."""

    def reset(self) -> None:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # 5: set the peak RSS to the current RSS
        self.start = self.mib()

    def growth(self) -> float:
        return self.mib() - self.start

    @staticmethod
    def mib() -> float:
        with open("/proc/self/status") as fh:
            line = next(line for line in fh if line.startswith("VmHWM:"))
        return int(line.split()[1]) / 1024


@pytest.fixture
def peak() -> PeakRss:
    rss = PeakRss()
    try:
        rss.reset()
    except OSError:
        pytest.skip("cannot reset the peak RSS here")
    return rss


def is_red(pixel: list[float]) -> bool:
    return pixel[0] > 200 and max(pixel[1:3]) < 60


@pytest.fixture(scope="module")
def samples() -> dict[str, bytes]:
    photo = fx.photo(300, 200)
    return {
        "jpeg": fx.encode(photo, "JPEG", quality=90),
        "png": fx.encode(photo, "PNG"),
        "webp": fx.encode(photo, "WEBP", quality=80),
        "gif": fx.encode(photo.convert("P"), "GIF"),
        "avif": fx.encode(photo, "AVIF", quality=60),
    }


@pytest.fixture(scope="module")
def p3_profile() -> bytes:
    srgb = pyvips.Image.black(1, 1, bands=3).cast("uchar").copy(interpretation="srgb")
    return bytes(srgb.icc_transform("p3", input_profile="srgb").get("icc-profile-data"))


# Sniffing: the bytes decide, never a Content-Type.


@pytest.mark.parametrize("fmt", images.FORMATS)
def test_accepted_formats_are_sniffed_and_processed(samples: dict[str, bytes], fmt: str) -> None:
    assert sniff(samples[fmt]) == fmt
    processed = thumbnails(samples[fmt], SPEC)
    assert (processed.format, processed.width, processed.height) == (fmt, 300, 200)
    assert [(r.variant, r.format) for r in processed.renditions] == [
        ("web", "jpeg"),
        ("web", "webp"),
        ("mobile", "jpeg"),
        ("mobile", "webp"),
    ]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", "empty file"),
        (b"\n<!DOCTYPE html><html><body>Not found</body></html>", "start like HTML"),
        (b'{"error": "no such image"}', "start like JSON"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "start like a PDF"),
        (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>', "SVG is not"),
        (b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>', "SVG is not"),
        (b'<?xml version="1.0"?><feed/>', "start like XML"),
        (b"PK\x03\x04\x14\x00\x00\x00", "ZIP"),
        (b"just some words", "the bytes are text"),
        (bytes([0x00, 0x9F, 0x92, 0x96, 0xFE, 0x01]), "unrecognised bytes"),
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic", "HEIC (HEVC) images are not"),
        (b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2", "a video"),
    ],
)
def test_what_is_not_an_accepted_image_is_named(data: bytes, expected: str) -> None:
    with pytest.raises(ImageRejected) as info:
        sniff(data)
    assert expected in info.value.reason
    assert rejected(data) == info.value.reason


@pytest.mark.parametrize(("pillow", "name"), [("TIFF", "TIFF"), ("BMP", "BMP"), ("ICO", "ICO")])
def test_other_image_formats_are_refused(pillow: str, name: str) -> None:
    data = fx.encode(fx.photo(32, 32), pillow)
    assert rejected(data).startswith(f"{name} images are not accepted")


def test_refused_bytes_never_reach_libvips(monkeypatch: pytest.MonkeyPatch) -> None:
    def loader(*args: object, **kwargs: object) -> None:
        raise AssertionError("a libvips loader ran")

    monkeypatch.setattr(pyvips.Operation, "call", loader)
    assert "HTML" in rejected(b"<html><img src=x onerror=alert(1)></html>")


def test_only_the_sniffed_formats_loader_runs(
    monkeypatch: pytest.MonkeyPatch, samples: dict[str, bytes]
) -> None:
    calls: list[str] = []
    real = pyvips.Operation.call

    def spy(name: str, *args: object, **kwargs: object) -> Any:
        if "load" in name:
            calls.append(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(pyvips.Operation, "call", spy)
    thumbnails(samples["png"], SPEC)
    assert calls == ["pngload_buffer"]


def test_libvips_cannot_load_anything_else() -> None:
    svg = b'<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"/>'
    for op, data in (
        ("svgload_buffer", svg),
        ("tiffload_buffer", fx.encode(fx.photo(8, 8), "TIFF")),
    ):
        with pytest.raises(pyvips.Error, match="blocked"):
            pyvips.Operation.call(op, data)
    with pytest.raises(pyvips.Error):
        pyvips.Image.new_from_buffer(svg, "")


# Bombs, truncation, corruption.


def test_a_decompression_bomb_is_refused_from_its_header(peak: PeakRss) -> None:
    bomb = fx.png_bomb()  # 20000 x 20000, a few hundred KB
    assert len(bomb) < 1_000_000
    peak.reset()
    start = time.perf_counter()
    reason = rejected(bomb)
    assert time.perf_counter() - start < 0.5
    assert peak.growth() < 20  # decoded, it would be 400 MB
    assert reason == (
        "too many pixels: 20000x20000 is 400,000,000 pixels; "
        "the limit is 100,000,000 (WHARF_CARS_MAX_PIXELS)"
    )


def test_the_pixel_limit_is_the_specs() -> None:
    data = fx.with_jpeg_size(fx.jpeg(64, 64), 30_000, 30_000)
    assert rejected(data) == (
        "too many pixels: 30000x30000 is 900,000,000 pixels; "
        "the limit is 100,000,000 (WHARF_CARS_MAX_PIXELS)"
    )
    small = fx.jpeg(100, 50)
    assert thumbnails(small, Spec(max_pixels=5000)).width == 100
    assert "is 5,000 pixels; the limit is 4,999" in rejected(small, Spec(max_pixels=4999))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_a_truncated_image_is_refused(fmt: str) -> None:
    data = fx.encode(fx.photo(800, 600), fmt)
    assert rejected(data[: len(data) // 2]) == "truncated image"


def test_no_libvips_error_escapes(samples: dict[str, bytes]) -> None:
    """Damaged bytes either still decode or are refused: a pyvips.Error would fail the test."""
    rnd = random.Random(10)
    refused: list[ImageRejected] = []
    for data in samples.values():
        for _ in range(20):
            broken = bytearray(data)
            at = rnd.randrange(16, len(data))
            if rnd.random() < 0.5:
                broken[at : at + rnd.randrange(1, 64)] = rnd.randbytes(rnd.randrange(1, 64))
            else:
                del broken[at:]
            try:
                thumbnails(bytes(broken), SPEC)
            except ImageRejected as exc:
                refused.append(exc)
    assert len(refused) > 20
    assert all(exc.reason and exc.__cause__ is None for exc in refused)


def test_an_image_no_encoder_can_write_is_refused() -> None:
    tall = fx.encode(Image.new("RGB", (100, 20_000), (10, 20, 30)), "PNG")  # WebP stops at 16383
    assert rejected(tall) == "could not encode a 100x20000 web rendition as webp"


def test_rejections_carry_no_bytes_and_nothing_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    secret = b"<html>session=8f14e45fceea167a5a36dedd4bea2543</html>"
    assert b"8f14e45f" not in rejected(secret).encode()
    assert "8f14e45f" not in rejected(fx.jpeg(64, 64)[:300] + secret)
    assert caplog.records == []


# The renditions.


@pytest.mark.parametrize(
    ("size", "web", "mobile"),
    [
        ((4000, 3000), (1024, 768), (320, 240)),
        ((3001, 2001), (1024, 683), (320, 213)),  # round(h * w / W)
        ((6000, 4000), (1024, 683), (320, 213)),
        ((500, 300), (500, 300), (320, 192)),  # never upscaled
        ((200, 100), (200, 100), (200, 100)),
        ((800, 2400), (800, 2400), (320, 960)),
    ],
)
def test_variants_fit_the_width_keep_the_aspect_and_never_upscale(
    size: tuple[int, int], web: tuple[int, int], mobile: tuple[int, int]
) -> None:
    processed = thumbnails(fx.jpeg(*size), SPEC)
    assert (processed.width, processed.height) == size
    for rendition in processed.renditions:
        expected = web if rendition.variant == "web" else mobile
        decoded = vips(rendition.data)
        assert (rendition.width, rendition.height) == expected
        assert (decoded.width, decoded.height) == expected


def test_a_large_jpeg_is_shrunk_while_it_loads(
    monkeypatch: pytest.MonkeyPatch, peak: PeakRss
) -> None:
    data = fx.jpeg(6000, 4000)
    shrinks: list[object] = []
    real = pyvips.Operation.call

    def spy(name: str, *args: object, **kwargs: object) -> Any:
        if "load" in name:
            shrinks.append(kwargs.get("shrink", 1))
        return real(name, *args, **kwargs)

    monkeypatch.setattr(pyvips.Operation, "call", spy)
    peak.reset()
    thumbnails(data, SPEC)
    assert shrinks == [1, 4]  # the header, then the pixels at 1500 x 1000
    assert peak.growth() < 45  # the full decode alone is 69 MiB


def test_exif_orientation_is_applied_and_metadata_stripped() -> None:
    data = fx.exif_jpeg(600, 400, orientation=6)  # also GPS, XMP and an ICC profile
    assert b"Exif" in data
    assert b"adobe:ns:meta" in data
    assert b"ICC_PROFILE" in data
    processed = thumbnails(data, SPEC)
    assert (processed.width, processed.height) == (400, 600)
    made = processed.renditions + images.avif(data, SPEC)
    for rendition in made:
        decoded = vips(rendition.data)
        assert (decoded.width, decoded.height) == (
            (400, 600) if rendition.variant == "web" else (320, 480)
        )
        fields = decoded.get_fields()
        for field in ("exif-data", "xmp-data", "iptc-data", "icc-profile-data", "orientation"):
            assert field not in fields, (rendition.format, field)
        for marker in (b"Exif", b"EXIF", b"adobe:ns:meta", b"ICC_PROFILE", b"ICCP", b"WharfCam"):
            assert marker not in rendition.data, (rendition.format, marker)
    # Orientation 6 turns the picture a quarter clockwise: the stored top-left is top-right.
    web = vips(processed.get("web", "jpeg").data)
    assert is_red(web(390, 10))
    assert not is_red(web(10, 10))


def test_colours_are_converted_to_srgb(p3_profile: bytes) -> None:
    for rendition in thumbnails(fx.p3_jpeg(p3_profile), SPEC).renditions:
        pixel = vips(rendition.data)(10, 10)
        assert all(abs(a - b) <= 6 for a, b in zip(pixel, fx.P3_AS_SRGB, strict=True))
    cyan = vips(thumbnails(fx.cmyk_jpeg(), SPEC).get("web", "jpeg").data)
    assert (cyan.bands, cyan.interpretation) == (3, "srgb")
    red, green, blue = cyan(10, 10)
    assert red < 40 < 120 < green < blue


@pytest.mark.parametrize(
    "source",
    [Image.new("L", (64, 48), 90), Image.new("I;16", (64, 48), 40_000), Image.new("LA", (64, 48))],
)
def test_grey_and_16_bit_sources_come_out_8_bit_srgb(source: Image.Image) -> None:
    for rendition in thumbnails(fx.encode(source, "PNG"), SPEC).renditions:
        decoded = vips(rendition.data)
        assert decoded.format == "uchar"
        assert decoded.bands in (3, 4)


def test_transparency_is_white_in_jpeg_and_kept_in_webp_and_avif() -> None:
    data = fx.encode(fx.with_alpha(600, 400), "PNG")
    processed = thumbnails(data, SPEC)
    for variant in ("web", "mobile"):
        jpeg = vips(processed.get(variant, "jpeg").data)
        assert jpeg.bands == 3
        assert min(jpeg(0, 0)) >= 250
        webp = vips(processed.get(variant, "webp").data)
        assert webp.bands == 4
        assert webp(0, 0)[3] == 0
        assert webp(webp.width // 2, webp.height // 2)[3] == 255
    for rendition in images.avif(data, SPEC):
        decoded = vips(rendition.data)
        assert decoded.bands == 4
        assert decoded(0, 0)[3] == 0


def test_jpeg_at_the_specs_qualities() -> None:
    """Same quantization tables as libjpeg (Pillow's) makes at 88 and 84."""

    def tables(data: bytes) -> dict[int, list[int]]:
        image = Image.open(io.BytesIO(data))
        assert isinstance(image, JpegImagePlugin.JpegImageFile)
        return dict(image.quantization)

    processed = thumbnails(fx.jpeg(1600, 1200), SPEC)
    for variant, quality in (("web", 88), ("mobile", 84)):
        reference = fx.encode(Image.new("RGB", (8, 8)), "JPEG", quality=quality)
        assert tables(processed.get(variant, "jpeg").data) == tables(reference)


def test_a_gif_gives_its_first_frame() -> None:
    processed = thumbnails(fx.animated_gif(), SPEC)
    assert is_red(vips(processed.get("web", "jpeg").data)(20, 15))


def test_avif_renditions_and_rendition_names() -> None:
    web, mobile = images.avif(fx.jpeg(2000, 1500), SPEC)
    assert (web.variant, web.width, web.height) == ("web", 1024, 768)
    assert (mobile.variant, mobile.width, mobile.height) == ("mobile", 320, 240)
    assert sniff(web.data) == "avif"
    assert (web.suffix, web.content_type) == (".avif", "image/avif")
    jpeg = thumbnails(fx.jpeg(64, 64), SPEC).get("web", "jpeg")
    assert (jpeg.suffix, jpeg.content_type) == (".jpg", "image/jpeg")


# Threads.


def test_threads_make_the_same_bytes_and_the_gil_is_released() -> None:
    datas = [fx.jpeg(3000, 2000, seed=s) for s in (1, 2)]
    alone = [thumbnails(d, SPEC) for d in datas]
    results: dict[int, images.Processed] = {}
    threads = [
        threading.Thread(target=lambda i=i: results.__setitem__(i, thumbnails(datas[i], SPEC)))
        for i in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [results[0], results[1]] == alone

    # Python keeps running beside a thumbnail: libvips works without the GIL. (One libvips
    # thread, so that the spinning thread has a core of its own on a 2-core machine.)
    def spin(seconds: float) -> int:
        count, end = 0, time.perf_counter() + seconds
        while time.perf_counter() < end:
            count += 1
        return count

    threads_before = pyvips.concurrency_get()
    pyvips.concurrency_set(1)
    try:
        baseline = spin(0.2) / 0.2
        worker = threading.Thread(target=lambda: [thumbnails(datas[0], SPEC) for _ in range(3)])
        start = time.perf_counter()
        worker.start()
        count = 0
        while worker.is_alive():
            count += spin(0.01)
        rate = count / (time.perf_counter() - start)
    finally:
        pyvips.concurrency_set(threads_before)
    assert rate > 0.3 * baseline  # holding the GIL, the worker would leave it next to none
