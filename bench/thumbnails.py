"""Car thumbnails (issue 10): wharf.catalog.images (libvips) against the seed's approach.

The seed's approach, measured in the same run on the same bytes: Pillow opens and fully
decodes the original, resizes each variant from it with LANCZOS and saves JPEG at 88 (web,
1024 wide) and 84 (mobile, 320 wide). The photos are generated (tests/catalog/imagefixtures.py:
colour noise at coarse scales, hard-edged shapes, luminance texture and grain; JPEG quality
90; deterministic): four 4000x3000 and one 6000x4000. "One core" pins every thread of this
process to one core and libvips to one thread; the thread-pool figures use both cores.

Quality is measured against a reference: the full-decode LANCZOS resize before any encoding
(the seed's own pixels before its JPEG encoder), so the seed loses only to its encoder and we
to the shrink-on-load, our resize and ours. PSNR checks ours against the seed; the WebP and
AVIF qualities are picked from a ladder by luma SSIM against the web JPEG's, PSNR beside it.

    .venv/bin/python -m bench.thumbnails [--repeat 5] [--trials 3] [--record]
    .venv/bin/python -m bench.run --only thumbnails [--record]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import itertools
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import replace
from datetime import UTC, datetime
from functools import partial
from typing import Any

import PIL
import pyvips  # type: ignore[import-untyped]
from PIL import Image

from bench.run import emit
from tests.catalog import imagefixtures
from wharf.catalog import images

SPEC = images.Spec()
LANCZOS = Image.Resampling.LANCZOS
WEBP_LADDER, AVIF_LADDER = (82, 84, 86, 88, 90), (60, 65, 70, 75, 78, 80, 82, 84)
WEBP_EFFORTS, AVIF_SPEEDS = (0, 2, 4, 5), (5, 6, 7, 8, 9)


def seed_thumbnails(data: bytes, *, alpha_to_rgb: bool = False) -> list[bytes]:
    """The seed's approach (as described in the module docstring)."""
    original = Image.open(io.BytesIO(data))
    original.load()
    out = []
    for width, quality in (
        (SPEC.web_width, SPEC.web_quality),
        (SPEC.mobile_width, SPEC.mobile_quality),
    ):
        size = (width, round(original.height * width / original.width))
        resized = original.resize(size, LANCZOS)
        if alpha_to_rgb:  # Pillow cannot write RGBA as JPEG
            resized = resized.convert("RGB")
        buf = io.BytesIO()
        resized.save(buf, "JPEG", quality=quality)
        out.append(buf.getvalue())
    return out


def ours_jpeg(data: bytes, spec: images.Spec = SPEC) -> images.Processed:
    """The import's JPEG pipeline alone: decode once, web and mobile JPEG."""
    return images.render(data, spec, ("jpeg",))


def timed(fns: dict[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    """Median seconds per call of each, after a warm-up; interleaved, so that a neighbour's
    load on this shared machine falls on all of them alike."""
    for fn in fns.values():
        fn()
    runs: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            runs[name].append(time.perf_counter() - start)
    return {name: statistics.median(r) for name, r in runs.items()}


@contextmanager
def one_core() -> Iterator[None]:
    """Every thread of the process (libvips' workers too) on one core, libvips at one thread."""
    every = os.sched_getaffinity(0)
    threads = pyvips.concurrency_get()

    def pin(cpus: set[int]) -> None:
        for tid in os.listdir("/proc/self/task"):
            with suppress(OSError):  # the thread ended meanwhile
                os.sched_setaffinity(int(tid), cpus)

    pin({min(every)})
    pyvips.concurrency_set(1)
    try:
        yield
    finally:
        pyvips.concurrency_set(threads)
        pin(every)


def psnr(decoded: Any, reference: Any) -> float:
    diff = decoded.cast("float") - reference.cast("float")
    return 10 * math.log10(255**2 / (diff * diff).avg())


def decoded(data: bytes) -> Any:
    return pyvips.Image.new_from_buffer(data, "")[0:3]


def references(data: bytes) -> dict[str, Any]:
    """The full-decode LANCZOS resizes, unencoded, as libvips images."""
    full = Image.open(io.BytesIO(data)).convert("RGB")
    refs = {}
    for variant, width in (("web", SPEC.web_width), ("mobile", SPEC.mobile_width)):
        img = full.resize((width, round(full.height * width / full.width)), LANCZOS)
        refs[variant] = pyvips.Image.new_from_memory(img.tobytes(), *img.size, 3, "uchar")
    return refs


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.0f}"


def speed_part(photos: dict[str, list[bytes]], repeat: int) -> tuple[list[str], float]:
    lines = [
        "| photos, one core | seed ms/image | ours ms/image | seed / ours "
        "| ours with WebP (`thumbnails`) ms |",
        "|---|---|---|---|---|",
    ]
    totals = {"seed": 0.0, "ours": 0.0}
    with one_core():
        for label, datas in photos.items():
            sums = {"seed": 0.0, "ours": 0.0, "both": 0.0}
            for data in datas:
                took = timed(
                    {
                        "seed": partial(seed_thumbnails, data),
                        "ours": partial(ours_jpeg, data),
                        "both": partial(images.thumbnails, data, SPEC),
                    },
                    repeat,
                )
                sums = {name: sums[name] + took[name] for name in sums}
            totals = {name: totals[name] + sums[name] for name in totals}
            n = len(datas)
            lines.append(
                f"| {label} (x{n}) | {ms(sums['seed'] / n)} | {ms(sums['ours'] / n)} | "
                f"{sums['seed'] / sums['ours']:.2f}x | {ms(sums['both'] / n)} |"
            )
    count = sum(len(d) for d in photos.values())
    mixed = totals["seed"] / totals["ours"]
    lines.append(
        f"| mixed, 4 to 1 | {ms(totals['seed'] / count)} | {ms(totals['ours'] / count)} "
        f"| **{mixed:.2f}x** | |"
    )
    return lines, mixed


def quality_part(photos: dict[str, list[bytes]]) -> tuple[list[str], float]:
    lines = [
        "| photo | variant | seed dB | ours dB | ours - seed | seed bytes | ours bytes |",
        "|---|---|---|---|---|---|---|",
    ]
    worst = math.inf
    for label, datas in photos.items():
        refs = references(datas[0])
        seed = dict(zip(("web", "mobile"), seed_thumbnails(datas[0]), strict=True))
        ours = {r.variant: r.data for r in ours_jpeg(datas[0]).renditions}
        for variant, ref in refs.items():
            a, b = psnr(decoded(seed[variant]), ref), psnr(decoded(ours[variant]), ref)
            worst = min(worst, b - a)
            lines.append(
                f"| {label} | {variant} | {a:.2f} | {b:.2f} | {b - a:+.2f} | "
                f"{len(seed[variant]):,} | {len(ours[variant]):,} |"
            )
    return lines, worst


def ssim(decoded: Any, reference: Any) -> float:
    """Mean SSIM of the luma (Gaussian window, sigma 1.5, the usual constants). PSNR weighs
    each pixel's error alike, SSIM local structure; they disagree most about AVIF, which
    smooths fine grain away."""
    a, b = (im.colourspace("b-w")[0].cast("float") for im in (decoded, reference))

    def blur(im: Any) -> Any:
        return im.gaussblur(1.5, precision="float")

    ma, mb = blur(a), blur(b)
    va, vb, cov = blur(a * a) - ma * ma, blur(b * b) - mb * mb, blur(a * b) - ma * mb
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    num = (ma * mb * 2 + c1) * (cov * 2 + c2)
    return float((num / ((ma * ma + mb * mb + c1) * (va + vb + c2))).avg())


def ladder_part(firsts: dict[str, bytes]) -> list[str]:
    """Web-rendition dB, SSIM and bytes per quality, beside the web JPEG's, on each photo."""
    refs = {label: references(data)["web"] for label, data in firsts.items()}
    jpegs = {label: ours_jpeg(data).get("web", "jpeg").data for label, data in firsts.items()}
    targets = {label: ssim(decoded(jpegs[label]), refs[label]) for label in firsts}
    labels = list(firsts)
    lines = [
        "| format | quality | "
        + " | ".join(f"{label} dB | SSIM | bytes vs JPEG" for label in labels)
        + " | SSIM at or above the JPEG's |",
        "|---|---|" + "---|---|---|" * len(labels) + "---|",
        f"| jpeg (web) | {SPEC.web_quality} | "
        + " | ".join(
            f"{psnr(decoded(jpegs[label]), refs[label]):.2f} | {targets[label]:.4f} | "
            f"{len(jpegs[label]):,} B"
            for label in labels
        )
        + " | |",
    ]
    for fmt, ladder, field in (
        ("webp", WEBP_LADDER, "webp_quality"),
        ("avif", AVIF_LADDER, "avif_quality"),
    ):
        for quality in ladder:
            spec = replace(SPEC, **{field: quality})
            cells, meets = [], True
            for label, data in firsts.items():
                made = images.render(data, spec, (fmt,)).get("web", fmt).data
                db, ratio = psnr(decoded(made), refs[label]), len(made) / len(jpegs[label])
                similar = ssim(decoded(made), refs[label])
                meets = meets and similar >= targets[label]
                cells.append(f"{db:.2f} | {similar:.4f} | {ratio:.0%}")
            mark = " (default)" if quality == getattr(SPEC, field) else ""
            lines.append(
                f"| {fmt} | {quality}{mark} | {' | '.join(cells)} | {'yes' if meets else 'no'} |"
            )
    return lines


def cost_part(data: bytes, png: bytes, repeat: int) -> list[str]:
    """On one core: what WebP and AVIF add to the JPEG pipeline, and the PNG with alpha."""
    ref = references(data)["web"]
    jobs: dict[str, tuple[images.Spec, Callable[[bytes, images.Spec], Any]]] = {
        "JPEG pipeline (decode, web + mobile JPEG)": (SPEC, ours_jpeg),
    }
    for effort in WEBP_EFFORTS:
        mark = " (default)" if effort == SPEC.webp_effort else ""
        name = f"`thumbnails` (+ WebP), WebP effort {effort}{mark}"
        jobs[name] = (replace(SPEC, webp_effort=effort), images.thumbnails)
    for speed in AVIF_SPEEDS:
        mark = " (default)" if speed == SPEC.avif_speed else ""
        jobs[f"`avif`, speed {speed}{mark}"] = (replace(SPEC, avif_speed=speed), images.avif)
    with one_core():
        took = timed({name: partial(fn, data, spec) for name, (spec, fn) in jobs.items()}, repeat)
        png_took = timed(
            {
                "seed": lambda: seed_thumbnails(png, alpha_to_rgb=True),
                "ours": lambda: ours_jpeg(png),
                "both": lambda: images.thumbnails(png, SPEC),
            },
            repeat,
        )
    jpeg = took[next(iter(jobs))]
    lines = [
        "| what (one core) | ms | vs the JPEG pipeline | web + mobile bytes | web dB |",
        "|---|---|---|---|---|",
    ]
    for name, (spec, fn) in jobs.items():
        made = fn(data, spec)
        made = made.renditions if isinstance(made, images.Processed) else made
        made = [r for r in made if r.format != "jpeg"] or made  # the format the row adds
        lines.append(
            f"| {name} | {ms(took[name])} | {took[name] / jpeg:.2f}x | "
            f"{sum(len(r.data) for r in made):,} | {psnr(decoded(made[0].data), ref):.2f} |"
        )
    lines += [
        "",
        "| 3000x2000 PNG with alpha, one core | ms | seed / this |",
        "|---|---|---|",
        f"| seed (full decode, LANCZOS, to RGB, JPEG) | {ms(png_took['seed'])} | |",
        f"| ours, web + mobile JPEG (flattened on white) | {ms(png_took['ours'])} "
        f"| {png_took['seed'] / png_took['ours']:.2f}x |",
        f"| ours, `thumbnails` (+ WebP, alpha kept) | {ms(png_took['both'])} "
        f"| {png_took['seed'] / png_took['both']:.2f}x |",
    ]
    return lines


def pool_rate(work: Callable[[], object], workers: int, items: int) -> tuple[float, float]:
    """(items per second, cores busy) of `items` calls of `work` through a pool of `workers`;
    cores busy is this process's CPU time over the wall time."""
    with ThreadPoolExecutor(workers) as pool:
        start, cpu = time.perf_counter(), time.process_time()
        list(pool.map(lambda _: work(), range(items)))
        wall = time.perf_counter() - start
    return items / wall, (time.process_time() - cpu) / wall


def threads_part(datas: list[bytes], trials: int) -> list[str]:
    """`thumbnails` through a pool of 1 and of 2 threads on both cores, the best of `trials`
    interleaved runs (a neighbour's load only slows a run down). Beside it, a control that
    releases the GIL (hashlib.sha256 of 64 MiB), whose 2 / 1 is what the machine allowed
    then: a neighbour taking a core shows in both, serialization (the GIL, a lock) in ours
    alone, as fewer cores busy for the same work per CPU-second."""
    lines = [
        "| work | pool of 1, per s | cores busy | pool of 2, per s | cores busy | 2 / 1 "
        "| per CPU-second, 1 / 2 |",
        "|---|---|---|---|---|---|---|",
    ]
    default = pyvips.concurrency_get()
    blob, turn = os.urandom(64 << 20), itertools.count()

    def thumb() -> object:
        return images.thumbnails(datas[next(turn) % len(datas)], SPEC)

    jobs: dict[str, tuple[Callable[[], object], int, int]] = {
        f"`thumbnails`, libvips at {default} threads (default)": (thumb, len(datas) * 2, default),
        "`thumbnails`, libvips at 1 thread": (thumb, len(datas) * 2, 1),
        "control: hashlib.sha256, 64 MiB": (lambda: hashlib.sha256(blob).digest(), 12, default),
    }
    best = {(name, workers): (0.0, 0.0) for name in jobs for workers in (1, 2)}
    for _ in range(trials):  # interleaved, so that all meet the same neighbours
        for name, (work, items, threads) in jobs.items():
            pyvips.concurrency_set(threads)
            for workers in (1, 2):
                run = pool_rate(work, workers, items)
                best[name, workers] = max(best[name, workers], run)
    pyvips.concurrency_set(default)
    for name in jobs:
        (rate1, busy1), (rate2, busy2) = best[name, 1], best[name, 2]
        lines.append(
            f"| {name} | {rate1:.2f} | {busy1:.2f} | {rate2:.2f} | {busy2:.2f} | "
            f"{rate2 / rate1:.2f}x | {rate1 / busy1:.2f} / {rate2 / busy2:.2f} |"
        )
    return lines


# Peak RSS from /proc/self/status (VmHWM): getrusage's ru_maxrss would do in a process of its
# own, but Linux carries the parent's high-water mark over fork and exec, and this parent holds
# the photos, so every child would report the parent's figure.
RSS_SCRIPT = """
import sys
def peak_mib():
    with open("/proc/self/status") as fh:
        line = next(line for line in fh if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024
path, which = sys.argv[1], sys.argv[2]
data = open(path, "rb").read()
if which == "ours":
    from wharf.catalog import images
    spec = images.Spec()
    run = lambda: images.thumbnails(data, spec)
else:
    from bench.thumbnails import seed_thumbnails
    run = lambda: seed_thumbnails(data)
before = peak_mib()
run()
print(before, peak_mib())
"""


def rss_part(data: bytes) -> list[str]:
    """Peak RSS of one call, each in a fresh process, over the peak before it (imports, bytes)."""
    peaks = {}
    with tempfile.NamedTemporaryFile(suffix=".jpg") as fh:
        fh.write(data)
        fh.flush()
        for which in ("ours", "seed"):
            command = [sys.executable, "-c", RSS_SCRIPT, fh.name, which]
            out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
            peaks[which] = (float(out.split()[0]), float(out.split()[1]))
    (ours, ours_after), (seed, seed_after) = peaks["ours"], peaks["seed"]
    return [
        f"- ours (`thumbnails`, JPEG + WebP): peak RSS grew **{ours_after - ours:.0f} MiB** "
        f"during the call; the seed's grew {seed_after - seed:.0f} MiB",
        f"- the decoded original, for scale: {6000 * 4000 * 3 / 2**20:.0f} MiB",
    ]


def main(argv: list[str] | None = None, *, command: str | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5, help="timed calls per figure (median)")
    parser.add_argument("--trials", type=int, default=3, help="thread-pool runs (the best)")
    parser.add_argument("--record", action="store_true", help="append to bench/RESULTS.md")
    args = parser.parse_args(argv)
    command = command or " ".join(["python -m bench.thumbnails", *sys.argv[1:]])
    photos = {
        "4000x3000": [imagefixtures.jpeg(4000, 3000, seed=s) for s in range(1, 5)],
        "6000x4000": [imagefixtures.jpeg(6000, 4000, seed=5)],
    }
    png = imagefixtures.encode(imagefixtures.with_alpha(3000, 2000), "PNG")
    every = [d for datas in photos.values() for d in datas]
    sizes = ", ".join(
        f"{label} {statistics.mean(map(len, d)) / 1e6:.1f} MB" for label, d in photos.items()
    )
    speed, mixed = speed_part(photos, args.repeat)
    quality, worst = quality_part(photos)
    lines = [
        f"### {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: `{command}`",
        "",
        f"libvips {pyvips.version(0)}.{pyvips.version(1)}.{pyvips.version(2)}, Pillow "
        f"{PIL.__version__}, {os.cpu_count()} cores. Photos: JPEG q90, {sizes} on average; "
        f"PNG 3000x2000 RGBA {len(png) / 1e6:.1f} MB. Medians of {args.repeat} calls after a "
        "warm-up. Seed and reference as in bench/thumbnails.py's docstring.",
        "",
        "*Per image, one core, web + mobile JPEG:*",
        "",
        *speed,
        "",
        "*Quality, PSNR against the full-decode LANCZOS reference (first photo of each size):*",
        "",
        *quality,
        "",
        "*WebP and AVIF quality ladder: the web rendition against the same reference, beside "
        "the web JPEG (first photo of each size; AVIF at the default speed). A default is the "
        "lowest quality at or above the JPEG's SSIM on both:*",
        "",
        *ladder_part({label: datas[0] for label, datas in photos.items()}),
        "",
        "*Costs (first 4000x3000 photo; bytes and dB of the WebP or AVIF renditions; AVIF "
        "speed is libaom's, 0 slowest .. 9 fastest):*",
        "",
        *cost_part(every[0], png, args.repeat),
        "",
        f"*Thread pools on both cores (`thumbnails` over the {len(every)} photos twice), best "
        f"of {args.trials}:*",
        "",
        *threads_part(every, args.trials),
        "",
        "*Memory, one 6000x4000 JPEG in a fresh process:*",
        "",
        *rss_part(photos["6000x4000"][0]),
        "",
        f"- mixed set, one core, seed ÷ ours: **{mixed:.2f}x** (target >= 4x: "
        f"{'met' if mixed >= 4 else 'MISSED'})",
        f"- PSNR, ours - seed, worst case: **{worst:+.2f} dB** (target >= -0.25 dB: "
        f"{'met' if worst >= -0.25 else 'MISSED'})",
    ]
    emit(lines, record=args.record)


if __name__ == "__main__":
    main()
