"""Redis stopped in the middle of a load: a real `wharf serve --workers 2` keeps answering
from the database with no 5xx, and caching resumes once Redis is back."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2
import pytest

from tests.conftest import REQUIRE_SERVICES
from tests.servers import free_port, serve

LIST = "/api/v1/customers?ordering=-last_name"


@contextmanager
def private_redis(port: int) -> Iterator[subprocess.Popen[bytes]]:
    binary = shutil.which("redis-server")
    if binary is None:
        if REQUIRE_SERVICES:
            pytest.fail("redis-server is not installed")
        pytest.skip("redis-server is not installed")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_redis(port)
        yield proc
    finally:
        proc.kill()
        proc.wait(timeout=10)


def _wait_for_redis(port: int) -> None:
    import redis

    client = redis.Redis(port=port, socket_timeout=0.5)
    for _ in range(100):
        try:
            client.ping()
            return
        except redis.RedisError:
            time.sleep(0.05)
    pytest.fail(f"private redis-server on port {port} did not start")


def _keys(port: int) -> int:
    import redis

    return int(redis.Redis(port=port, socket_timeout=1).dbsize())


def test_redis_outage_mid_load_is_invisible_to_clients(database_url: str, tmp_path: Path) -> None:
    port = free_port()
    statuses: Counter[int] = Counter()
    lock = threading.Lock()
    stop = threading.Event()
    with (
        private_redis(port) as redis_server,
        serve(database_url, tmp_path, env={"WHARF_REDIS_URL": f"redis://127.0.0.1:{port}/0"}) as s,
    ):
        headers = {"Authorization": f"Bearer {s.token}"}

        def load() -> None:
            with httpx2.Client(base_url=s.base_url, headers=headers, timeout=20) as client:
                deadline = time.monotonic() + 30  # backstop
                while not stop.is_set() and time.monotonic() < deadline:
                    code = client.get(LIST).status_code
                    with lock:
                        statuses[code] += 1

        threads = [threading.Thread(target=load) for _ in range(4)]
        for thread in threads:
            thread.start()
        time.sleep(1.5)
        assert _keys(port) > 0, "the cache was not in use before the outage"
        with lock:
            before = sum(statuses.values())
        # Redis dies under load ...
        redis_server.kill()
        time.sleep(2.0)
        with httpx2.Client(base_url=s.base_url, headers=headers, timeout=20) as client:
            # ... a write during the outage ...
            assert rename(client, s.customer_id, "during-outage").status_code == 200
            with lock:
                during = sum(statuses.values()) - before
            # ... and it comes back, empty, on the same port.
            with private_redis(port):
                time.sleep(3.0)  # longer than the backend's pause after a failure
                fresh = client.get(LIST).json()
                assert fresh["items"][0]["last_name"] == "during-outage"
                # Entries already in each process's memory need no Redis; the next
                # generation's entries must reach Redis again.
                assert rename(client, s.customer_id, "after-outage").status_code == 200
                assert client.get(LIST).json()["items"][0]["last_name"] == "after-outage"
                time.sleep(0.5)
                stop.set()
                for thread in threads:
                    thread.join(timeout=30)
                assert _keys(port) > 0, "the cache did not resume after Redis came back"
    print(f"\nresponses: {dict(statuses)}; during the outage: {during}")
    assert during > 0, "no requests were served while Redis was down"
    assert all(code == 200 for code in statuses), dict(statuses)


def rename(client: httpx2.Client, customer_id: int, last_name: str) -> httpx2.Response:
    """Read the customer, then change its last name at the version just read."""
    path = f"/api/v1/customers/{customer_id}"
    current = client.get(path)
    return client.patch(
        path, json={"last_name": last_name}, headers={"If-Match": current.headers["etag"]}
    )
