"""Generated images for the imaging tests and bench/thumbnails.py: deterministic, made with
Pillow (a dev dependency), never with the module under test."""

from __future__ import annotations

import io
import random
import struct
import zlib
from typing import Any

from PIL import Image, ImageDraw

# Display P3, as libvips builds it in: (200, 100, 50) in P3 is about (215, 93, 32) in sRGB.
P3_RGB, P3_AS_SRGB = (200, 100, 50), (215, 93, 32)


def photo(width: int, height: int, seed: int = 1) -> Image.Image:
    """Photo-like RGB content: colour noise at coarse scales (smooth areas), hard-edged
    shapes, and texture and grain in luminance only, as a camera's noise mostly is (colour
    noise at the finest scales is rare in photos and the worst case for 4:2:0 chroma)."""
    rnd = random.Random(seed)

    def noise(w: int, h: int, mode: str = "RGB") -> Image.Image:
        return Image.frombytes(mode, (w, h), rnd.randbytes(w * h * len(mode)))

    size = (width, height)
    bicubic, bilinear = Image.Resampling.BICUBIC, Image.Resampling.BILINEAR
    img = noise(max(2, width // 256), max(2, height // 256)).resize(size, bicubic)
    img = Image.blend(
        img, noise(max(2, width // 32), max(2, height // 32)).resize(size, bicubic), 0.35
    )
    draw = ImageDraw.Draw(img)
    scale = width / 1000
    for _ in range(80):
        x, y, r = rnd.uniform(0, width), rnd.uniform(0, height), rnd.uniform(10, 120) * scale
        colour = (rnd.randrange(256), rnd.randrange(256), rnd.randrange(256))
        kind = rnd.randrange(3)
        box = (x - r, y - r * rnd.uniform(0.3, 1), x + r, y + r * rnd.uniform(0.3, 1))
        if kind == 0:
            draw.ellipse(box, fill=colour)
        elif kind == 1:
            points = [(x + rnd.uniform(-r, r), y + rnd.uniform(-r, r)) for _ in range(5)]
            draw.polygon(points, fill=colour)
        else:
            end = (x + rnd.uniform(-4, 4) * r, y + rnd.uniform(-4, 4) * r)
            draw.line([(x, y), end], fill=colour, width=max(1, int(rnd.uniform(1, 12) * scale)))
    fine = noise(max(2, width // 4), max(2, height // 4), "L").resize(size, bilinear).convert("RGB")
    img = Image.blend(img, fine, 0.12)
    return Image.blend(img, noise(width, height, "L").convert("RGB"), 0.05)


def encode(img: Image.Image, fmt: str, **options: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **options)
    return buf.getvalue()


def jpeg(width: int, height: int, seed: int = 1, quality: int = 90, **options: Any) -> bytes:
    return encode(photo(width, height, seed), "JPEG", quality=quality, **options)


def with_alpha(width: int, height: int, seed: int = 1) -> Image.Image:
    """A photo inside a transparent border (the corners are fully transparent), soft-edged."""
    img = photo(width, height, seed).convert("RGBA")
    mask = Image.new("L", (width, height), 0)
    ImageDraw.Draw(mask).ellipse((width * 0.1, height * 0.1, width * 0.9, height * 0.9), fill=255)
    img.putalpha(mask)
    return img


def exif_jpeg(width: int, height: int, orientation: int) -> bytes:
    """A JPEG stored `width` x `height` with an EXIF orientation, GPS position, XMP and an
    sRGB ICC profile: everything the renditions must not carry."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "WharfCam"  # Make
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2] = "N", (51.0, 30.0, 12.5)
    gps[3], gps[4] = "W", (0.0, 7.0, 39.0)
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF/></x:xmpmeta>'
    img = photo(width, height)
    # A marker in the top-left corner as stored, to see where it ends up.
    ImageDraw.Draw(img).rectangle((0, 0, width // 8, height // 8), fill=(255, 0, 0))
    return encode(img, "JPEG", quality=90, exif=exif, xmp=xmp, icc_profile=_srgb_icc())


def _srgb_icc() -> bytes:
    from PIL import ImageCms

    return bytes(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())


def p3_jpeg(p3_profile: bytes, size: int = 64) -> bytes:
    """A flat P3_RGB JPEG tagged with a Display P3 profile (a non-sRGB source)."""
    return encode(
        Image.new("RGB", (size, size), P3_RGB), "JPEG", quality=95, icc_profile=p3_profile
    )


def cmyk_jpeg(size: int = 64) -> bytes:
    """Pure cyan in a CMYK JPEG without a profile."""
    return encode(Image.new("CMYK", (size, size), (255, 0, 0, 0)), "JPEG", quality=95)


def animated_gif() -> bytes:
    """Two frames, red then blue: only the first may be used."""
    frames = [Image.new("RGB", (40, 30), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)


def png_bomb(width: int = 20_000, height: int = 20_000) -> bytes:
    """A complete, valid greyscale PNG of one colour: a few hundred KB that decode to
    width x height bytes (400 MB by default)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body)
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    packer = zlib.compressobj(9)
    row = bytes(width + 1)  # filter byte 0, then black pixels
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def with_jpeg_size(data: bytes, width: int, height: int) -> bytes:
    """The same JPEG with its frame header (SOF) claiming another size."""
    i = 2
    while i < len(data):
        marker, length = data[i + 1], int.from_bytes(data[i + 2 : i + 4], "big")
        if marker in (0xC0, 0xC1, 0xC2):
            dims = struct.pack(">HH", height, width)
            return data[: i + 5] + dims + data[i + 9 :]
        i += 2 + length
    raise ValueError("no SOF marker")
