"""Fixtures of the catalog's tests: a local web server the outbound client may reach, media
under the test's own folder, and a job worker the test drives itself."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from tests.catalog.webserver import WebServer, serving
from wharf.app import job_handlers
from wharf.core.config import Settings
from wharf.core.work import Worker


@pytest.fixture
def web() -> Iterator[WebServer]:
    with serving() as server:
        yield server


@pytest.fixture
def settings(settings: Settings, web: WebServer, tmp_path: Path) -> Settings:
    return settings.model_copy(
        update={
            "outbound_allow": web.allow,
            "media_root": tmp_path / "media",
            "outbound_timeout_seconds": 3.0,
        }
    )


@pytest.fixture
def worker(app: FastAPI, client: TestClient, engine: Engine, settings: Settings) -> Worker:
    # `client` first: its lifespan loads the keys the handlers take.
    handlers = job_handlers(
        settings,
        engine=engine,
        keys=app.state.keys,
        outbound=app.state.outbound,
        storage=app.state.storage,
    )
    return Worker(engine, handlers, poll_seconds=0.01, lease_seconds=30)


def drain(worker: Worker) -> int:
    """Run jobs until none is due (imports queue image and AVIF jobs); how many ran."""
    total = 0
    while ran := worker.run_once():
        total += ran
    return total
