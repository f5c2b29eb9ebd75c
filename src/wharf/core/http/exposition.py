"""GET /metrics: Prometheus text for this process or, with several workers, all of them.

Metrics with several workers: `wharf serve --workers N` (N > 1) runs N processes, each with its
own counters. `serve` then turns on prometheus_client's multiprocess mode (see
`multiprocess_metrics`): every worker writes its samples to files under `var/prometheus`, wiped
at each start, and /metrics on any worker adds up all of them.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio.to_thread
from fastapi import FastAPI, Request
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest, values
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector
from sqlalchemy import Engine, event
from sqlalchemy.pool import QueuePool
from starlette.responses import PlainTextResponse, Response

from wharf.core.metrics import (
    DB_POOL_CHECKED_OUT,
    DB_POOL_SIZE,
    POOL_CHECKED_OUT_HELP,
    POOL_SIZE_HELP,
)
from wharf.core.security import Admin

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
METRICS_PATH = "/metrics"


def pool_use(engine: Engine) -> tuple[int, int] | None:
    """(checked out, configured size) of the engine's current pool, if it is a queue pool."""
    pool = engine.pool
    if not isinstance(pool, QueuePool):
        return None
    return pool.checkedout(), pool.size()


class _ScrapeTime(Collector):
    """The default registry plus this app's database pool, read at scrape time."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    def collect(self) -> Iterable[Metric]:
        yield from REGISTRY.collect()
        use = pool_use(self.app.state.engine)
        if use is not None:
            yield GaugeMetricFamily("wharf_db_pool_checked_out", POOL_CHECKED_OUT_HELP, use[0])
            yield GaugeMetricFamily("wharf_db_pool_size", POOL_SIZE_HELP, use[1])


def multiprocess_enabled() -> bool:
    # The value class, not the variable: prometheus_client picks it once, at import, so a
    # variable set later does not put any sample into the files.
    return values.ValueClass is not values.MutexValue


def track_pool(engine: Engine) -> None:
    """Keep this worker's pool gauges current from pool events (multiprocess mode only: a
    scrape answered by one worker cannot read the other workers' pools)."""
    use = pool_use(engine)
    if use is None:
        return
    DB_POOL_SIZE.set(use[1])
    # Engine-level listeners carry over to the pool that replaces this one after a disconnect.
    event.listen(engine, "checkout", lambda *_: DB_POOL_CHECKED_OUT.inc())
    event.listen(engine, "checkin", lambda *_: DB_POOL_CHECKED_OUT.dec())
    # A connection taken out of the pool for good (the generation reader's) is never checked
    # in, and no longer counts as the pool's either.
    event.listen(engine, "detach", lambda *_: DB_POOL_CHECKED_OUT.dec())


class _AllWorkers(Collector):
    """Every worker's samples, from the files of prometheus_client's multiprocess mode."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.registry = CollectorRegistry()
        MultiProcessCollector(self.registry, directory)  # type: ignore[no-untyped-call]

    def collect(self) -> Iterable[Metric]:
        # A live-summed gauge (the pool) counts every worker whose files are there; uvicorn
        # neither runs exit hooks (it re-raises SIGTERM) nor reports a crashed worker, so the
        # files of workers that are gone are dropped here, before each scrape.
        for path in Path(self.directory).glob("gauge_live*_*.db"):
            pid = path.stem.rsplit("_", 1)[1]
            if pid.isdigit() and not _alive(int(pid)):
                mark_process_dead(int(pid), self.directory)  # type: ignore[no-untyped-call]
        return self.registry.collect()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive, and not ours to judge
        return True
    return True


def _collector(app: FastAPI) -> Collector:
    if not multiprocess_enabled():
        return _ScrapeTime(app)
    track_pool(app.state.engine)
    return _AllWorkers(os.environ.get(MULTIPROC_ENV) or os.environ[MULTIPROC_ENV.lower()])


def _exposition(request: Request) -> Response:
    collector: Collector = request.app.state.metrics_collector
    # The classic text format every Prometheus version reads (what generate_latest writes).
    return Response(generate_latest(collector), media_type=CONTENT_TYPE_PLAIN_0_0_4)


async def metrics_public(request: Request) -> Response:
    """Prometheus metrics (text format): requests, latency, cache, rate limits, database pool."""
    return await anyio.to_thread.run_sync(_exposition, request)


async def metrics_admin(request: Request, _: Admin) -> Response:
    """Prometheus metrics (text format): requests, latency, cache, rate limits, database pool.

    Needs a token with the `admin` scope (Prometheus sends one with `authorization:` in its
    scrape config), unless the server runs with `WHARF_METRICS_PUBLIC=true`.
    """
    return await anyio.to_thread.run_sync(_exposition, request)


def install(app: FastAPI) -> None:
    """Serve GET /metrics. (The `Observability` layer itself is placed by `wharf.app`.)"""
    app.state.metrics_collector = _collector(app)
    public = app.state.settings.metrics_public
    app.add_api_route(
        METRICS_PATH,
        metrics_public if public else metrics_admin,
        methods=["GET"],
        # One operation id whichever function serves it (see openapi.operation_id).
        name="get_metrics",
        response_class=PlainTextResponse,
        tags=["operations"],
        summary="Prometheus metrics",
    )


@contextmanager
def multiprocess_metrics(directory: Path) -> Iterator[None]:
    """Run the block (a multi-worker server) with prometheus_client's multiprocess mode on.

    The directory is emptied first: samples of an earlier run's workers must not be added in.
    Workers inherit the variable; it is restored afterwards so nothing else started from this
    process later points at a directory that may be gone.
    """
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    before = os.environ.get(MULTIPROC_ENV)
    os.environ[MULTIPROC_ENV] = str(directory.resolve())
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(MULTIPROC_ENV, None)
        else:
            os.environ[MULTIPROC_ENV] = before
