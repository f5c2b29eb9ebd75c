"""A large upload streams to disk: the server's memory does not grow by the file's size."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path

import httpx2

from tests.servers import serve

MIB = 1024 * 1024
LINE = b'{"id": 1, "products": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17]}\n'


def rss(pid: int) -> int:
    """Resident memory of the process, in bytes (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_a_40_mib_upload_streams_without_holding_the_body(
    database_url: str, tmp_path: Path
) -> None:
    chunk = LINE * (MIB // len(LINE))
    with serve(database_url, tmp_path, workers=1) as server:
        headers = {
            "Authorization": f"Bearer {server.token}",
            "Content-Type": "application/x-ndjson",
        }
        url = f"{server.base_url}/api/v1/sales/files"
        with httpx2.Client(timeout=120) as http:
            # A first upload loads what an ingest needs (DuckDB and the rest) before measuring.
            warm = http.post(url, params={"date": "2026-11-01"}, content=chunk, headers=headers)
            assert warm.status_code == 201, warm.text
            before = rss(server.pid)
            seen: list[int] = []

            def body() -> Iterator[bytes]:
                for n in range(40):
                    if n == 32:
                        seen.append(rss(server.pid))  # ~30 MiB sent, none of it ingested yet
                    yield chunk

            response = http.post(
                url, params={"date": "2026-11-02"}, content=body(), headers=headers
            )
            assert response.status_code == 201, response.text
            assert response.json()["lines"] == 40 * (MIB // len(LINE))
            # Gzipped: 12 MiB of lines once inflated, read by the engine from the stored file.
            zipped = gzip.compress(chunk * 12, compresslevel=1)
            second = http.post(
                url,
                params={"date": "2026-11-03"},
                content=zipped,
                headers={**headers, "Content-Encoding": "gzip"},
            )
            assert second.status_code == 201, second.text
    grown = seen[0] - before
    assert grown < 12 * MIB, f"the server grew by {grown / MIB:.1f} MiB while receiving 32 MiB"
