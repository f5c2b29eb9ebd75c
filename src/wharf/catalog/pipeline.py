"""Images from their sources to stored thumbnails: downloads overlap with the CPU work.

Downloads run on a pool of threads (`cars_fetch_concurrency` in flight), at most
`cars_fetch_per_host` to any one host, and each finished download goes at once to a second
pool that thumbnails (libvips releases the GIL, so `cars_thumbnail_threads` use the cores).
A download's thread waits for its thumbnails, so the bodies in memory are bounded by the
download threads, however fast the network is.

Every failure becomes a `Failure` with a sentence a person can act on, never an exception:
one bad image never stops the others.
"""

from __future__ import annotations

import hashlib
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from wharf.catalog import images
from wharf.core.config import Settings
from wharf.core.outbound import Outbound, OutboundFailed, OutboundRefused
from wharf.core.storage import Storage, digest_of

MAX_REDIRECTS = 5
SUFFIXES = {"jpeg": ".jpg", "png": ".png", "webp": ".webp", "gif": ".gif", "avif": ".avif"}


@dataclass(frozen=True)
class Stored:
    """An image whose original and renditions are in storage: a `car_images` row."""

    sha256: str
    format: str
    width: int
    height: int
    original: str
    renditions: dict[str, dict[str, Any]]
    new: bool  # made by this run, not found already stored

    def row(self) -> dict[str, Any]:
        return {
            "sha256": self.sha256,
            "format": self.format,
            "width": self.width,
            "height": self.height,
            "original": self.original,
            "renditions": self.renditions,
        }


@dataclass(frozen=True)
class Failure:
    reason: str


Result = Stored | Failure
Known = Callable[[str], dict[str, Any] | None]  # a sha256 already stored -> its row


def spec_for(settings: Settings) -> images.Spec:
    return images.Spec(
        web_width=settings.cars_web_width,
        mobile_width=settings.cars_mobile_width,
        web_quality=settings.cars_web_quality,
        mobile_quality=settings.cars_mobile_quality,
        max_pixels=settings.cars_max_pixels,
    )


def store(
    storage: Storage, data: bytes, processed: images.Processed, *, sha256: str | None = None
) -> Stored:
    """Put an original and its renditions in storage (content-hashed: a retry rewrites nothing).
    `sha256` is the original's, when the caller hashed it already (280 MB of photos in the
    import bench cost 0.25 s of CPU to hash)."""
    original = storage.put(data, suffix=SUFFIXES[processed.format], digest=sha256)
    renditions: dict[str, dict[str, Any]] = {}
    for made in processed.renditions:
        entry = renditions.setdefault(
            made.variant, {"width": made.width, "height": made.height, "avif": None}
        )
        entry[made.format] = storage.put(made.data, suffix=made.suffix)
    return Stored(
        sha256=digest_of(original),  # the key is the original's hash: not hashed twice
        format=processed.format,
        width=processed.width,
        height=processed.height,
        original=original,
        renditions=renditions,
        new=True,
    )


class Pipeline:
    """Fetch and thumbnail many sources at once; `run` gives each source its result."""

    def __init__(
        self,
        settings: Settings,
        *,
        outbound: Outbound,
        storage: Storage,
        known: Known,
        base_dir: Path | None = None,
        on_result: Callable[[str, Result], None] | None = None,
    ) -> None:
        self.outbound, self.storage, self.known = outbound, storage, known
        self.spec = spec_for(settings)
        self.max_bytes = settings.cars_max_image_bytes
        self.concurrency = settings.cars_fetch_concurrency
        self.threads = settings.cars_thumbnail_threads
        self.per_host = settings.cars_fetch_per_host
        # Only the CLI passes a folder: a CSV read from disk may name images beside it. The
        # API never does, so there a path is just a URL without a scheme, and is refused.
        self.base_dir = base_dir
        self.on_result = on_result
        self._hosts: defaultdict[str, threading.BoundedSemaphore] = defaultdict(
            lambda: threading.BoundedSemaphore(self.per_host)
        )
        self._hosts_lock = threading.Lock()
        # sha256 -> its thumbnailing, once a run
        self._made: dict[str, Future[images.Processed | Failure]] = {}
        self._stored: dict[str, Stored] = {}
        self._made_lock = threading.Lock()

    def run(self, sources: Iterable[str]) -> dict[str, Result]:
        ordered = _interleaved(dict.fromkeys(sources))
        results: dict[str, Result] = {}
        with (
            ThreadPoolExecutor(self.concurrency, thread_name_prefix="wharf-fetch") as fetch,
            ThreadPoolExecutor(self.threads, thread_name_prefix="wharf-thumb") as cpu,
        ):
            pending = {source: fetch.submit(self._one, source, cpu) for source in ordered}
            for source, future in pending.items():
                results[source] = future.result()
        return results

    def _one(self, source: str, cpu: ThreadPoolExecutor) -> Result:
        try:
            result = self._fetch_and_make(source, cpu)
        except Exception as exc:  # a bug, not a bad image: still one row, never the import
            result = Failure(f"unexpected error while processing the image: {type(exc).__name__}")
        if self.on_result is not None:
            self.on_result(source, result)
        return result

    def _fetch_and_make(self, source: str, cpu: ThreadPoolExecutor) -> Result:
        # The download thread keeps its body until the thumbnails are stored, so memory
        # holds at most `cars_fetch_concurrency` images, however fast the network is.
        data = self._download(source)
        if isinstance(data, Failure):
            return data
        sha = hashlib.sha256(data).hexdigest()
        found = self.known(sha)
        if found is not None:
            return Stored(**found, new=False)
        with self._made_lock:  # two URLs of the same bytes: thumbnailed once
            done = self._stored.get(sha)
            making = self._made.get(sha)
            if done is None and making is None:
                making = self._made[sha] = cpu.submit(self._make, data)
        if done is not None:
            return done
        assert making is not None
        made = making.result()
        if isinstance(made, Failure):
            return made
        # Written by this download thread, not the thumbnail thread: the cores only make
        # thumbnails, and file writes (fsync) wait here. Content-hashed, so two threads
        # storing the same picture write it once.
        stored = store(self.storage, data, made, sha256=sha)
        with self._made_lock:
            # The renditions' bytes are on disk now: keep only the small record, so memory
            # holds the images in flight, never every image of the run.
            self._stored[sha] = stored
            self._made.pop(sha, None)
        return stored

    def _make(self, data: bytes) -> images.Processed | Failure:
        try:
            return images.thumbnails(data, self.spec)
        except images.ImageRejected as exc:
            return Failure(exc.reason)

    def _download(self, source: str) -> bytes | Failure:
        if self.base_dir is not None and "://" not in source:
            return self._read_file(source)
        host = (urlsplit(source).hostname or "").lower()
        with self._hosts_lock:
            gate = self._hosts[host]
        with gate:
            try:
                response = self.outbound.request(
                    "GET",
                    source,
                    headers={"accept": "image/avif,image/webp,image/*;q=0.8"},
                    max_bytes=self.max_bytes,
                    max_redirects=MAX_REDIRECTS,
                )
            except OutboundRefused as exc:
                return Failure(f"the image URL was refused: {exc.detail}")
            except OutboundFailed as exc:
                return Failure(f"the image could not be fetched: {_bytes_said(exc.reason)}")
        if 300 <= response.status < 400:
            return Failure(redirected("the image URL", response.status, response.headers))
        if response.status != 200:
            return Failure(f"the image URL answered HTTP {response.status}, not 200")
        return response.body

    def _read_file(self, name: str) -> bytes | Failure:
        assert self.base_dir is not None
        path = (self.base_dir / name).resolve()
        try:
            size = path.stat().st_size
            if size > self.max_bytes:
                return Failure(f"the image file is {size:,} bytes; the limit is {self.max_bytes:,}")
            return path.read_bytes()
        except OSError as exc:
            return Failure(f"the image file {name} cannot be read: {exc.strerror or exc}")


def redirected(what: str, status: int, headers: dict[str, str]) -> str:
    """Why a 3xx is where a request ended: redirects ran out, or it said nowhere to go."""
    if "location" not in headers:
        return f"{what} answered HTTP {status} without a Location to follow"
    return f"{what} redirected more than {MAX_REDIRECTS} times"


def _bytes_said(reason: str) -> str:
    # Outbound names the cap in bytes; a person reads it better with the setting's name.
    if "larger than" in reason:
        return f"{reason} (WHARF_CARS_MAX_IMAGE_BYTES)"
    return reason


def _interleaved(sources: Iterable[str]) -> list[str]:
    """Sources taken a host at a time, round robin: a download pool thread waiting on one
    host's limit then seldom blocks downloads from the others."""
    by_host: defaultdict[str, list[str]] = defaultdict(list)
    for source in sources:
        by_host[urlsplit(source).hostname or ""].append(source)
    queues = list(by_host.values())
    ordered: list[str] = []
    for i in range(max((len(q) for q in queues), default=0)):
        ordered += [q[i] for q in queues if i < len(q)]
    return ordered
