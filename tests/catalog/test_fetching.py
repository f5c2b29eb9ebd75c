"""The image pipeline's concurrency (wharf.catalog.pipeline): downloads bounded overall and
per host, and thumbnails made while other downloads are still in flight. Real HTTP to the
local test server, which records how many requests it holds at once."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

from tests.catalog.imagefixtures import jpeg
from tests.catalog.webserver import WebServer
from wharf.catalog.pipeline import Pipeline, Result, Stored
from wharf.core.config import Settings
from wharf.core.outbound import Outbound
from wharf.core.storage import LocalStorage

HOSTS = ("127.0.0.1", "localhost")  # two names of one server, so two hosts to the pipeline


def _ipv4(host: str, port: int) -> list[str]:
    # The server listens on 127.0.0.1 only, and `localhost` may also resolve to ::1 first.
    return [str(info[4][0]) for info in socket.getaddrinfo(host, port, socket.AF_INET)]


def _pipeline(
    web: WebServer,
    tmp_path: Path,
    *,
    concurrency: int,
    per_host: int,
    on_result: Callable[[str, Result], None] | None = None,
) -> tuple[Pipeline, LocalStorage]:
    settings = Settings(
        _env_file=None,
        outbound_allow=",".join(f"{host}:{web.port}" for host in HOSTS),
        cars_fetch_concurrency=concurrency,
        cars_fetch_per_host=per_host,
        cars_thumbnail_threads=2,
    )
    outbound = Outbound(allow=settings.outbound_allowed, timeout=10.0, resolve=_ipv4)
    storage = LocalStorage(tmp_path / "media")
    pipeline = Pipeline(
        settings,
        outbound=outbound,
        storage=storage,
        known=lambda _sha: None,
        on_result=on_result,
    )
    return pipeline, storage


def test_downloads_are_bounded_overall_and_per_host(web: WebServer, tmp_path: Path) -> None:
    # Three images a host, more than either limit lets through at once. localhost answers
    # three times slower, so that while its first two are still in flight the pipeline has
    # a free slot overall and another localhost image next in line: the per-host gate is
    # what must hold it back (and, before that, both hosts reach their limit).
    delays = {"127.0.0.1": 0.25, "localhost": 0.75}
    sources = []
    for h, host in enumerate(HOSTS):
        for i in range(3):
            path = f"/{h}/{i}.jpg"
            web.image(path, jpeg(64, 48, seed=10 * h + i), delay=delays[host])
            sources.append(web.url(path, host))
    pipeline, _ = _pipeline(web, tmp_path, concurrency=3, per_host=2)
    results = pipeline.run(sources)
    assert all(isinstance(results[s], Stored) for s in sources), results
    assert web.total() == 6  # each once
    assert web.in_flight.total() == 0
    assert web.peak_in_flight == 3  # the overall limit: reached, never exceeded
    assert dict(web.peak_by_host) == {f"{host}:{web.port}": 2 for host in HOSTS}


def test_a_single_host_gets_its_own_limit_only(web: WebServer, tmp_path: Path) -> None:
    """With one host, the per-host limit is the tighter one: free pool threads wait."""
    sources = [web.image(f"/{i}.jpg", jpeg(64, 48, seed=i), delay=0.25) for i in range(5)]
    pipeline, _ = _pipeline(web, tmp_path, concurrency=4, per_host=2)
    results = pipeline.run(sources)
    assert all(isinstance(r, Stored) for r in results.values())
    assert web.peak_in_flight == 2
    assert dict(web.peak_by_host) == {f"127.0.0.1:{web.port}": 2}


def test_images_are_thumbnailed_while_another_download_is_in_flight(
    web: WebServer, tmp_path: Path
) -> None:
    # The slow answer takes 2 s; each fast image is a 0.25 s download then tens of ms of
    # thumbnails, two pool threads for the four of them: about 0.6 s in all, often less.
    slow = web.image("/slow.jpg", jpeg(800, 600, seed=99), delay=2.0)
    fast = [web.image(f"/fast{i}.jpg", jpeg(1200, 900, seed=i), delay=0.25) for i in range(4)]
    seen: dict[str, tuple[int, int, bool]] = {}
    storage: LocalStorage | None = None

    def on_result(source: str, result: Result) -> None:
        # What the slow download had done when this image's thumbnails were stored.
        assert storage is not None
        with web.lock:
            arrived, answered = web.hits["/slow.jpg"], web.answered["/slow.jpg"]
        stored = isinstance(result, Stored) and all(
            storage.exists(key)
            for key in (
                result.original,
                *(made[f] for made in result.renditions.values() for f in ("jpeg", "webp")),
            )
        )
        seen[source] = (arrived, answered, stored)

    pipeline, storage = _pipeline(web, tmp_path, concurrency=3, per_host=3, on_result=on_result)
    results = pipeline.run([slow, *fast])
    assert all(isinstance(r, Stored) for r in results.values()), results
    assert list(seen)[-1] == slow  # the slow image came last, though it was asked for first
    for url in fast:
        # Stored (thumbnailed, files written) while the slow request was in flight: it had
        # reached the server, and the server had not begun to answer it.
        assert seen[url] == (1, 0, True), url
    assert seen[slow] == (1, 1, True)
