"""Lost updates against a real `wharf serve --workers 2` process, on SQLite and PostgreSQL.

Eight client threads each increment one counter (a customer's `last_name`) fifty times by
read-modify-write. With `If-Match` every increment must survive (final value 400, 400 successful
PATCHes); a client that defeats the check by fetching a fresh ETag right before writing must lose
some, which proves the test can see a lost update when there is one.
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx2
import pytest

from tests.servers import Server, serve

THREADS = 8
CYCLES = 50
TOTAL = THREADS * CYCLES
MAX_ATTEMPTS = 500  # per increment; the contention seen in practice needs far fewer
WORKLOAD_DEADLINE = 120.0  # seconds for the whole workload, a backstop against hangs


@dataclass
class Tally:
    successes: int = 0
    retries: int = 0  # 412s, each followed by a re-read
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, *, successes: int = 0, retries: int = 0) -> None:
        with self.lock:
            self.successes += successes
            self.retries += retries


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[Server]:
    with serve(database_url, tmp_path) as running:
        yield running


def _client(server: Server) -> httpx2.Client:
    return httpx2.Client(
        base_url=server.base_url,
        headers={"Authorization": f"Bearer {server.token}"},
        timeout=httpx2.Timeout(20.0),
    )


def _read(client: httpx2.Client, path: str) -> tuple[int, str]:
    got = client.get(path)
    if got.status_code != 200:
        raise AssertionError(f"GET {path}: {got.status_code} {got.text}")
    return int(got.json()["last_name"]), got.headers["etag"]


def _patch(client: httpx2.Client, path: str, value: int, etag: str) -> httpx2.Response:
    return client.patch(path, json={"last_name": str(value)}, headers={"If-Match": etag})


def _locking_worker(server: Server, tally: Tally, start: threading.Barrier, end: float) -> None:
    """The well-behaved client: write with the ETag of the read the new value came from."""
    path = f"/api/v1/customers/{server.customer_id}"
    with _client(server) as client:
        start.wait(timeout=30)
        for _ in range(CYCLES):
            for _attempt in range(MAX_ATTEMPTS):
                if time.monotonic() > end:
                    raise AssertionError("workload deadline passed")
                value, etag = _read(client, path)
                resp = _patch(client, path, value + 1, etag)
                if resp.status_code == 200:
                    tally.add(successes=1)
                    break
                if resp.status_code != 412:
                    raise AssertionError(f"PATCH {path}: {resp.status_code} {resp.text}")
                tally.add(retries=1)
            else:
                raise AssertionError(f"no increment after {MAX_ATTEMPTS} attempts")


def _unchecked_worker(server: Server, tally: Tally, start: threading.Barrier, end: float) -> None:
    """A client that ignores locking: it reads the value, then fetches a fresh ETag just before
    writing, so the server's version check never notices that the value is stale."""
    path = f"/api/v1/customers/{server.customer_id}"
    with _client(server) as client:
        start.wait(timeout=30)
        for _ in range(CYCLES):
            value, _ = _read(client, path)
            time.sleep(random.uniform(0, 0.002))  # widen the race window
            for _attempt in range(MAX_ATTEMPTS):
                if time.monotonic() > end:
                    raise AssertionError("workload deadline passed")
                _, etag = _read(client, path)
                resp = _patch(client, path, value + 1, etag)  # the stale value, a fresh ETag
                if resp.status_code == 200:
                    tally.add(successes=1)
                    break
                if resp.status_code != 412:
                    raise AssertionError(f"PATCH {path}: {resp.status_code} {resp.text}")
                tally.add(retries=1)
            else:
                raise AssertionError(f"no write after {MAX_ATTEMPTS} attempts")


def _server_errors(log: Path) -> list[str]:
    """The distinct exceptions the server logged (a shared test database being reset by
    another test session shows up here as a missing table or an unknown token)."""
    found = re.findall(r"^[a-z_]\w*(?:\.\w+)+: .*$", log.read_text(), re.MULTILINE)
    return sorted(set(found))[:10]


Worker = Callable[[Server, Tally, threading.Barrier, float], None]


def _run(server: Server, worker: Worker) -> tuple[Tally, int, int, float]:
    tally = Tally()
    start = threading.Barrier(THREADS)
    end = time.monotonic() + WORKLOAD_DEADLINE

    def run() -> None:
        try:
            worker(server, tally, start, end)
        except BaseException as exc:
            with tally.lock:
                tally.errors.append(f"{type(exc).__name__}: {exc}")
            start.abort()

    threads = [threading.Thread(target=run, daemon=True) for _ in range(THREADS)]
    began = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=max(0.0, end - time.monotonic()) + 10)
    elapsed = time.monotonic() - began
    assert not any(t.is_alive() for t in threads), "client threads hung past the deadline"
    assert not tally.errors, (tally.errors[:3], _server_errors(server.log))
    with _client(server) as client:
        final = client.get(f"/api/v1/customers/{server.customer_id}")
    assert final.status_code == 200, final.text
    return tally, int(final.json()["last_name"]), int(final.json()["version"]), elapsed


def _backend(url: str) -> str:
    return url.split(":", 1)[0]


def test_if_match_loses_no_updates(server: Server, database_url: str) -> None:
    tally, value, version, elapsed = _run(server, _locking_worker)
    print(
        f"\n[{_backend(database_url)}] with If-Match: {tally.successes} successful PATCHes, "
        f"{tally.retries} 412 retries, final value {value}, version {version}, "
        f"lost updates {TOTAL - value}, {elapsed:.1f} s"
    )
    assert tally.successes == TOTAL
    assert value == TOTAL, f"lost {TOTAL - value} updates"
    assert version == 1 + TOTAL  # every success bumped the version exactly once
    assert tally.retries > 0, "no 412 at all: the workload never raced"


def test_unchecked_client_loses_updates(server: Server, database_url: str) -> None:
    tally, value, version, elapsed = _run(server, _unchecked_worker)
    print(
        f"\n[{_backend(database_url)}] ignoring locking: {tally.successes} successful PATCHes, "
        f"{tally.retries} 412 retries, final value {value}, version {version}, "
        f"lost updates {TOTAL - value}, {elapsed:.1f} s"
    )
    assert tally.successes == TOTAL
    assert version == 1 + TOTAL
    assert value < TOTAL, "an unchecked read-modify-write lost nothing: the test cannot see losses"
