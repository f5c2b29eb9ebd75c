"""Car images (issue 10): check untrusted bytes and make the web and mobile renditions.

Pure functions over bytes, no I/O and no logging: the importer calls `thumbnails` for each
downloaded image (JPEG and WebP, web and mobile), a background job calls `avif` later. The
work is libvips' (pyvips): it decodes a JPEG at 1/2, 1/4 or 1/8 of its size straight from
the DCT coefficients, streams the rest, and releases the GIL, so a pool of threads keeps both
cores busy. bench/thumbnails.py measures all of it against the seed's Pillow approach.
"""

from __future__ import annotations

import logging
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, Final

import pyvips  # type: ignore[import-untyped]

# Process-wide libvips settings, made once here: this module is Wharf's only libvips user.
# Loaders marked untrusted (parsers not fuzzed for hostile input) can never run; beyond that,
# every loader is blocked except the five this module calls by name after sniffing, so even a
# stray `new_from_buffer` elsewhere cannot reach SVG, TIFF, PDF, matrix or CSV parsers.
pyvips.block_untrusted_set(True)
pyvips.operation_block_set("VipsForeignLoad", True)
_LOADERS: Final = {
    "jpeg": "jpegload_buffer",
    "png": "pngload_buffer",
    "webp": "webpload_buffer",
    "gif": "gifload_buffer",  # the first frame only (n=1 is the default)
    "avif": "heifload_buffer",
}
for _class in ("Jpeg", "Png", "Webp", "Nsgif", "Heif"):
    pyvips.operation_block_set(f"VipsForeignLoad{_class}Buffer", False)
# The operation cache keeps up to 100 recent operations and their pixels, keyed by arguments:
# each upload is new bytes, so it would only pin memory and serialize threads on its lock.
pyvips.cache_set_max(0)
# pyvips logs every operation's arguments at DEBUG, the whole input buffer among them: an
# image's bytes must not reach the logs whatever WHARF_LOG_LEVEL says.
logging.getLogger("pyvips").setLevel(logging.INFO)
# libvips' own threads per pipeline stay at its default, the number of cores. With one,
# `thumbnails` from a pool of 2 threads was 7% slower to 16% faster between interleaved runs
# on the shared bench machine (noise), and equal from a single thread; but `avif` took 1.6x
# as long with one: the AV1 encoder follows the setting.
# Never fork (a fork-started multiprocessing pool) once libvips has run: such a child hung
# on its first image (a fork copies libvips' locks, not its threads). Threads, or spawn.

FORMATS: Final = tuple(_LOADERS)
_ACCEPTED: Final = "JPEG, PNG, WebP, GIF or AVIF"
_SUFFIX: Final = {"jpeg": ".jpg", "webp": ".webp", "avif": ".avif"}
# Bytes 8:12 of an ISO-BMFF `ftyp` box and what to call a refused one.
_HEIF_BRANDS: Final = frozenset({b"avif", b"avis"})
_HEIC_BRANDS: Final = frozenset({b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1"})
_TRUNCATED_HINTS: Final = ("premature end", "truncated", "read error", "unexpected end", "eof")


class ImageRejected(Exception):
    """The bytes are not an image this module will process; `reason` says why, for a report."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Spec:
    """What to make; the caller builds it from settings."""

    web_width: int = 1024
    mobile_width: int = 320
    web_quality: int = 88  # the seed's JPEG qualities
    mobile_quality: int = 84
    # WebP and AVIF: the lowest quality whose web rendition is at least as close as the web
    # JPEG's to a full-decode Lanczos reference (luma SSIM) on each of the bench's photos:
    # the same fidelity in fewer bytes (bench/thumbnails.py's quality ladder). WebP 86 is
    # ~80% of the JPEG's bytes and meets its PSNR too; AVIF 75 is ~77%. By PSNR alone AVIF
    # would need 82, at ~95% of the bytes: PSNR punishes AV1's smoothing of fine grain.
    webp_quality: int = 86
    # libwebp effort 0..6. The import is CPU-bound and WebP is about a third of its work
    # (bench/thumbnails.py: JPEG and WebP at effort 0 cost 1.48x the JPEG pipeline, at 2
    # 1.71x, at 4 2.43x), so 0: the WebP files are 4% larger than at 2, the import 14% faster.
    webp_effort: int = 0
    avif_quality: int = 75
    # libaom speed, 0 (slowest) .. 9: 7 costs 6-11x the JPEG pipeline. Slower, 6 saved 0.6%
    # of the bytes for 1.5x the time, 5 1.4% for 9-10x; faster, 8 and 9 cost 3% and 8% more.
    avif_speed: int = 7
    max_pixels: int = 100_000_000


@dataclass(frozen=True)
class Rendition:
    variant: str  # "web" | "mobile"
    format: str  # "jpeg" | "webp" | "avif"
    width: int
    height: int
    data: bytes

    @property
    def suffix(self) -> str:
        return _SUFFIX[self.format]

    @property
    def content_type(self) -> str:
        return f"image/{self.format}"


@dataclass(frozen=True)
class Processed:
    format: str  # the source's format, sniffed
    width: int  # of the original, after its EXIF orientation
    height: int
    renditions: tuple[Rendition, ...]

    def get(self, variant: str, format: str) -> Rendition:
        return next(r for r in self.renditions if (r.variant, r.format) == (variant, format))


def sniff(data: bytes) -> str:
    """The image format from the magic bytes, or ImageRejected naming what they look like."""
    head = data[:64]
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[4:8] == b"ftyp":
        size = int.from_bytes(head[:4], "big")
        brands = {head[8:12]} | {data[i : i + 4] for i in range(16, min(size, 256), 4)}
        if brands & _HEIF_BRANDS:
            return "avif"
        if brands & _HEIC_BRANDS:
            raise ImageRejected(f"HEIC (HEVC) images are not accepted; send {_ACCEPTED}")
        raise ImageRejected("not an image: the bytes start like a video (MP4/QuickTime)")
    raise ImageRejected(_what_else(data))


def _what_else(data: bytes) -> str:
    if not data:
        return "empty file"
    named = {
        b"II*\x00": "TIFF",
        b"MM\x00*": "TIFF",
        b"BM": "BMP",
        b"\x00\x00\x01\x00": "ICO",
        b"8BPS": "PSD",
        b"\xff\x0a": "JPEG XL",
        b"\x00\x00\x00\x0cJXL ": "JPEG XL",
    }
    for magic, name in named.items():
        if data.startswith(magic):
            return f"{name} images are not accepted; send {_ACCEPTED}"
    text = data[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if b"<svg" in text or (text.startswith(b"<?xml") and b"svg" in text):
        return f"SVG is not accepted (scripts, external references); send {_ACCEPTED}"
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<body")) or b"<html" in text:
        return "not an image: the bytes start like HTML"
    kinds = {
        b"<?xml": "XML",
        b"<": "XML or HTML",
        b"%pdf-": "a PDF",
        b"pk\x03\x04": "a ZIP archive",
        b"\x1f\x8b": "gzip data",
        b"{": "JSON",
        b"[": "JSON",
    }
    for magic, name in kinds.items():
        if text.startswith(magic):
            return f"not an image: the bytes start like {name}"
    try:
        data[:1024].decode("utf-8")
    except UnicodeDecodeError:
        return "not an image: unrecognised bytes"
    return "not an image: the bytes are text"


def thumbnails(data: bytes, spec: Spec) -> Processed:
    """Web and mobile renditions, each as JPEG and WebP (4), of an image's bytes."""
    return render(data, spec, ("jpeg", "webp"))


def avif(data: bytes, spec: Spec) -> tuple[Rendition, ...]:
    """Web and mobile AVIF renditions (the background job's, after the import's JPEG/WebP)."""
    return render(data, spec, ("avif",)).renditions


def render(data: bytes, spec: Spec, formats: tuple[str, ...]) -> Processed:
    """Web then mobile, each in `formats` ("jpeg", "webp", "avif"), from one decode."""
    fmt, width, height, web, mobile = _decode(data, spec)
    renditions = tuple(
        _encode(image, variant, out, _quality(spec, variant, out), spec)
        for variant, image in (("web", web), ("mobile", mobile))
        for out in formats
    )
    return Processed(fmt, width, height, renditions)


def _quality(spec: Spec, variant: str, fmt: str) -> int:
    if fmt == "jpeg":
        return spec.web_quality if variant == "web" else spec.mobile_quality
    return spec.webp_quality if fmt == "webp" else spec.avif_quality


def _decode(data: bytes, spec: Spec) -> tuple[str, int, int, Any, Any]:
    """(format, width, height, web pixels, mobile pixels): upright, sRGB, in memory."""
    fmt = sniff(data)
    try:
        header = _load(fmt, data)  # libvips loaders are lazy: this reads the header only
        w, h = header.width, header.height
        if w * h > spec.max_pixels:
            raise ImageRejected(
                f"too many pixels: {w}x{h} is {w * h:,} pixels; the limit is "
                f"{spec.max_pixels:,} (WHARF_CARS_MAX_PIXELS)"
            )
        orientation = header.get("orientation") if header.get_typeof("orientation") else 1
        turned = orientation in (5, 6, 7, 8)  # a quarter turn: width and height swap
        width, height = (h, w) if turned else (w, h)
        tw, th = _fit(width, height, spec.web_width)
        sw, sh = (th, tw) if turned else (tw, th)  # the target in the stored orientation
        image = header
        shrink = _jpeg_shrink(w, h, sw, sh) if fmt == "jpeg" else 1
        if shrink > 1:
            image = _load(fmt, data, shrink=shrink)
        # Decoding happens here, streamed through the resize: truncation and corrupt data
        # raise now, and only the web-sized pixels are ever held.
        image = _resize(image, sw, sh).copy_memory()
        if orientation != 1:
            image = image.autorot().copy_memory()
        web = _srgb(image)
        # Mobile comes from the web pixels (cheaper than decoding again; the same quality),
        # sized from the original's dimensions so its height rounds as the original's would.
        mobile = _resize(web, *_fit(width, height, spec.mobile_width)).copy_memory()
        return fmt, width, height, web, mobile
    except pyvips.Error as error:
        raise ImageRejected(_reason(fmt, data, error)) from None


def _load(fmt: str, data: bytes, **options: Any) -> Any:
    # fail_on="truncated": by default libvips pads a cut-off image with grey or black rows.
    return pyvips.Operation.call(
        _LOADERS[fmt], data, fail_on="truncated", access="sequential", **options
    )


def _fit(width: int, height: int, target: int) -> tuple[int, int]:
    """Fit to `target` wide, keeping the aspect; never upscaled."""
    if width <= target:
        return width, height
    return target, max(1, round(height * target / width))


def _jpeg_shrink(w: int, h: int, tw: int, th: int) -> int:
    """The largest shrink-on-load (1/2, 1/4, 1/8) that still leaves at least the target size.

    libvips' own `thumbnail` shrinks less, keeping a 2x margin above the target. Without the
    margin, a 4000x3000 photo's pipeline ran ~1.4x faster and its web JPEG came out a little
    closer to the full-decode Lanczos reference, not further (32.20 dB against 32.10).
    """
    for shrink in (8, 4, 2):
        if -(-w // shrink) >= tw and -(-h // shrink) >= th:
            return shrink
    return 1


def _resize(image: Any, width: int, height: int) -> Any:
    """Lanczos3 to exactly width x height; alpha premultiplied so no dark fringes."""
    if (image.width, image.height) == (width, height):
        return image
    alpha = image.hasalpha()
    band_format = image.format
    if alpha:
        image = image.premultiply()
    image = image.resize(width / image.width, vscale=height / image.height, kernel="lanczos3")
    if alpha:
        image = image.unpremultiply().cast(band_format)
    return image


def _srgb(image: Any) -> Any:
    """8-bit sRGB (plus alpha if any), whatever the source's colour space and profile.

    Done on the web-sized pixels (cheap), and kept in memory: every rendition reads them."""
    source = image
    # A broken profile: the pixels are better shown unconverted than refused.
    with suppress(pyvips.Error):
        if image.get_typeof("icc-profile-data") != 0:
            image = image.icc_transform("srgb", embedded=True).copy_memory()
        elif image.interpretation == "cmyk":  # no profile: libvips' built-in CMYK one
            image = image.icc_transform("srgb", input_profile="cmyk").copy_memory()
    if image.interpretation != "srgb" or image.format != "uchar":
        image = image.colourspace("srgb").cast("uchar")
    return image if image is source else image.copy_memory()


def _encode(image: Any, variant: str, fmt: str, quality: int, spec: Spec) -> Rendition:
    # keep="none": no EXIF (GPS, camera serials), XMP, IPTC or ICC; the pixels are sRGB.
    try:
        if fmt == "jpeg":
            if image.hasalpha():
                image = image.flatten(background=[255, 255, 255])
            # No optimize_coding: 3% fewer bytes, but 8% more time on a 4000x3000 photo.
            data = image.jpegsave_buffer(Q=quality, keep="none")
        elif fmt == "webp":
            # No smart_subsample: it tripled the encode's time for no gain in dB per byte.
            data = image.webpsave_buffer(Q=quality, effort=spec.webp_effort, keep="none")
        else:
            data = image.heifsave_buffer(
                compression="av1", Q=quality, effort=9 - spec.avif_speed, keep="none"
            )
    except pyvips.Error:
        raise ImageRejected(
            f"could not encode a {image.width}x{image.height} {variant} rendition as {fmt}"
        ) from None
    return Rendition(variant, fmt, image.width, image.height, bytes(data))


# How each format's file ends; a file that failed to decode and lacks it was cut short.
_ENDINGS: Final = {"jpeg": b"\xff\xd9", "png": b"IEND\xaeB`\x82", "gif": b";"}


def _reason(fmt: str, data: bytes, error: pyvips.Error) -> str:
    # The bytes decide first: libvips' error buffer is shared by every thread, so the text
    # may be another thread's, or gone (cleared by it) by the time it is read. The text only
    # picks between two fixed sentences and is never passed on.
    ending = _ENDINGS.get(fmt)
    if ending is not None and not data.rstrip(b"\0\r\n ").endswith(ending):
        return "truncated image"
    detail = f"{error.message} {error.detail}".lower()
    if any(hint in detail for hint in _TRUNCATED_HINTS):
        return "truncated image"
    # libwebp only says "unable to parse"; the RIFF header says how long the file should be.
    if fmt == "webp" and int.from_bytes(data[4:8], "little") + 8 > len(data):
        return "truncated image"
    return f"unreadable {fmt.upper()} image: corrupt or unsupported data"
