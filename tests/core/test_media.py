"""GET/HEAD /media/<key>: immutable caching, 304s, byte ranges, and never a path outside the
root, through the whole application (its front layers included)."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient
from starlette.types import Message

from wharf.core.config import Settings
from wharf.core.http.media import IMMUTABLE, RangeNotSatisfiable, byte_range
from wharf.core.storage import LocalStorage

# Larger than FileResponse's 64 KiB chunk, so ranges cross chunk boundaries.
DATA = bytes(range(256)) * 1024
SIZE = len(DATA)
DIGEST = hashlib.sha256(DATA).hexdigest()
ETAG = f'"{DIGEST}"'
SECRET = b"TOP-SECRET-CONTENT"


@pytest.fixture
def settings(settings: Settings, tmp_path: Path) -> Settings:
    return settings.model_copy(update={"media_root": tmp_path / "media"})


@pytest.fixture
def store(settings: Settings) -> LocalStorage:
    return LocalStorage(settings.media_dir)


@pytest.fixture
def key(store: LocalStorage) -> str:
    return store.put(DATA, suffix=".jpg")


def assert_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert set(body) >= {"type", "title", "detail", "instance"}
    return body


# Whole files


def test_get_serves_the_file_with_immutable_caching(anon: TestClient, key: str) -> None:
    response = anon.get(f"/media/{key}")

    assert response.status_code == 200
    assert response.content == DATA
    assert response.headers["content-type"] == "image/jpeg"
    assert response.headers["content-length"] == str(SIZE)
    assert response.headers["cache-control"] == IMMUTABLE == "public, max-age=31536000, immutable"
    assert response.headers["etag"] == ETAG
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["accept-ranges"] == "bytes"
    assert "last-modified" not in response.headers  # per host, not per content
    assert "x-request-id" in response.headers  # the front layers ran


def test_head_sends_the_headers_only(anon: TestClient, key: str) -> None:
    response = anon.head(f"/media/{key}")

    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["content-length"] == str(SIZE)
    assert response.headers["etag"] == ETAG


@pytest.mark.parametrize(
    ("suffix", "media_type"),
    [
        (".webp", "image/webp"),
        (".avif", "image/avif"),
        (".png", "image/png"),
        (".gif", "image/gif"),
    ],
)
def test_the_content_type_follows_the_suffix(
    anon: TestClient, store: LocalStorage, suffix: str, media_type: str
) -> None:
    response = anon.get(f"/media/{store.put(b'picture', suffix=suffix)}")

    assert response.headers["content-type"] == media_type


def test_media_is_public_and_a_token_changes_nothing(client: TestClient, key: str) -> None:
    # `client` is `anon` with an admin token: the response cache and rate limit (both /api/
    # only) must leave the answer as it is, on a first request and a repeated one.
    for _ in range(2):
        response = client.get(f"/media/{key}", headers={"Range": "bytes=0-9"})
        assert response.status_code == 206
        assert response.content == DATA[:10]
        assert "ratelimit" not in response.headers


def test_media_is_not_in_the_openapi_document(app: FastAPI) -> None:
    assert not [path for path in app.openapi()["paths"] if path.startswith("/media")]


# Conditional requests


@pytest.mark.parametrize(
    "if_none_match", [ETAG, f"W/{ETAG}", f'"other", {ETAG}', "*", f' "x" ,W/{ETAG} ']
)
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_a_matching_if_none_match_is_304(
    anon: TestClient, key: str, if_none_match: str, method: str
) -> None:
    response = anon.request(method, f"/media/{key}", headers={"If-None-Match": if_none_match})

    assert response.status_code == 304
    assert response.content == b""
    assert response.headers["etag"] == ETAG
    assert response.headers["cache-control"] == IMMUTABLE


def test_if_none_match_wins_over_range(anon: TestClient, key: str) -> None:
    headers = {"If-None-Match": ETAG, "Range": "bytes=0-9"}

    assert anon.get(f"/media/{key}", headers=headers).status_code == 304


def test_another_etag_gets_the_file(anon: TestClient, key: str) -> None:
    response = anon.get(f"/media/{key}", headers={"If-None-Match": f'"{"0" * 64}"'})

    assert response.status_code == 200
    assert response.content == DATA


# Ranges


@pytest.mark.parametrize(
    ("asked", "first", "last"),
    [
        ("bytes=0-0", 0, 0),
        ("bytes=2-5", 2, 5),
        ("bytes=65530-65545", 65530, 65545),  # across a chunk boundary
        ("bytes=1000-", 1000, SIZE - 1),
        ("bytes=-4", SIZE - 4, SIZE - 1),
        (f"bytes=-{SIZE * 2}", 0, SIZE - 1),
        ("bytes=10-99999999999999999999999", 10, SIZE - 1),
        ("BYTES = 7 - 8", 7, 8),
    ],
)
def test_a_range_is_206(anon: TestClient, key: str, asked: str, first: int, last: int) -> None:
    response = anon.get(f"/media/{key}", headers={"Range": asked})

    assert response.status_code == 206
    assert response.content == DATA[first : last + 1]
    assert response.headers["content-range"] == f"bytes {first}-{last}/{SIZE}"
    assert response.headers["content-length"] == str(last - first + 1)
    assert response.headers["etag"] == ETAG
    assert response.headers["cache-control"] == IMMUTABLE


def test_head_with_a_range(anon: TestClient, key: str) -> None:
    response = anon.head(f"/media/{key}", headers={"Range": "bytes=0-99"})

    assert response.status_code == 206
    assert response.content == b""
    assert response.headers["content-range"] == f"bytes 0-99/{SIZE}"


@pytest.mark.parametrize("asked", [f"bytes={SIZE}-", f"bytes={SIZE + 5}-{SIZE + 9}", "bytes=-0"])
def test_an_unsatisfiable_range_is_416_problem(anon: TestClient, key: str, asked: str) -> None:
    response = anon.get(f"/media/{key}", headers={"Range": asked})

    body = assert_problem(response, 416)
    assert response.headers["content-range"] == f"bytes */{SIZE}"
    assert body["instance"] == f"/media/{key}"


@pytest.mark.parametrize(
    "asked",
    [
        "bytes=0-1,5-9",  # several ranges: the whole file (a choice RFC 9110 allows)
        "bytes=0-1, -5",
        "bytes=5-3",
        "bytes=abc",
        "bytes=-",
        "bytes=1-2-3",
        "items=0-10",
        "bytes 0-10",
        "",
        "bytes=²-³",  # digits to str.isdigit, not to HTTP
    ],
)
def test_other_range_headers_get_the_whole_file(anon: TestClient, key: str, asked: str) -> None:
    response = anon.get(f"/media/{key}", headers={b"Range": asked.encode("latin-1")})

    assert response.status_code == 200
    assert response.content == DATA
    assert "content-range" not in response.headers


def test_if_range_with_the_etag_honours_the_range(anon: TestClient, key: str) -> None:
    response = anon.get(f"/media/{key}", headers={"Range": "bytes=0-9", "If-Range": ETAG})

    assert response.status_code == 206
    assert response.content == DATA[:10]


@pytest.mark.parametrize("if_range", [f"W/{ETAG}", '"other"', "Wed, 21 Oct 2015 07:28:00 GMT"])
def test_if_range_with_another_validator_gets_the_whole_file(
    anon: TestClient, key: str, if_range: str
) -> None:
    response = anon.get(f"/media/{key}", headers={"Range": "bytes=0-9", "If-Range": if_range})

    assert response.status_code == 200
    assert response.content == DATA


def test_byte_range_of_an_empty_file_is_unsatisfiable() -> None:
    for asked in ("bytes=0-", "bytes=-1"):
        with pytest.raises(RangeNotSatisfiable):
            byte_range(asked, 0)


# Unknown and hostile names


def test_an_unknown_key_is_404_problem(anon: TestClient) -> None:
    other = hashlib.sha256(b"nothing").hexdigest()
    path = f"/media/{other[:2]}/{other[2:4]}/{other}.jpg"

    body = assert_problem(anon.get(path), 404)
    assert body["instance"] == path
    head = anon.head(path)
    assert head.status_code == 404
    assert head.headers["content-type"] == "application/problem+json"


def test_a_stored_csv_is_not_media(anon: TestClient, store: LocalStorage) -> None:
    key = store.put(b"title\nGolf\n", suffix=".csv")

    assert_problem(anon.get(f"/media/{key}"), 404)


def test_a_deleted_file_is_404(anon: TestClient, store: LocalStorage, key: str) -> None:
    store.delete(key)

    assert_problem(anon.get(f"/media/{key}"), 404)


def test_only_get_and_head(anon: TestClient, key: str) -> None:
    response = anon.post(f"/media/{key}")

    assert_problem(response, 405)
    assert response.headers["allow"] == "GET, HEAD"


@pytest.fixture
def secret(tmp_path: Path, settings: Settings, key: str) -> str:
    """A file beside the root, with a key-shaped name, that no request may reach."""
    (tmp_path / "secret.jpg").write_bytes(SECRET)
    return key


HOSTILE = [
    "/media/",
    "/media",
    "/media/../secret.jpg",
    "/media/%2e%2e/secret.jpg",
    "/media/%2E%2E%2Fsecret.jpg",
    "/media/..%2fsecret.jpg",
    "/media/..%5csecret.jpg",
    "/media/..\\secret.jpg",
    "/media//etc/passwd",
    "/media/%2fetc%2fpasswd",
    "/media/C:%5cWindows%5cwin.ini",
    "/media/secret.jpg%00.jpg",
    "/media/%00",
    "/media/ab/cd/" + "0" * 64 + ".jpg/..",
]


@pytest.mark.parametrize("path", HOSTILE)
def test_hostile_paths_are_404_problems(anon: TestClient, secret: str, path: str) -> None:
    response = anon.get(path)

    assert_problem(response, 404)
    assert SECRET not in response.content


def call(app: FastAPI, path: str, raw: bytes) -> tuple[int, dict[bytes, bytes], bytes]:
    """One request straight into the ASGI app, with exactly this path (a client would
    normalise `..` away before sending)."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": raw,
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 5000),
        "server": ("testserver", 80),
        "state": {},
    }
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    start = sent[0]
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return start["status"], dict(start["headers"]), body


@pytest.mark.parametrize(
    "path",
    [
        "/media/../secret.jpg",
        "/media/ab/../../secret.jpg",
        "/media/./secret.jpg",
        "/media/..\\secret.jpg",
        "/media//tmp/secret.jpg",
        "/media/\x00",
        "/media/ab/cd/" + "a" * 64 + ".jpg\x00",
    ],
)
def test_raw_traversal_never_leaves_the_root(app: FastAPI, secret: str, path: str) -> None:
    status, headers, body = call(app, path, path.encode("utf-8", "surrogateescape"))

    assert status == 404
    assert headers[b"content-type"] == b"application/problem+json"
    assert SECRET not in body


def test_raw_call_serves_a_real_key(app: FastAPI, key: str) -> None:
    status, headers, body = call(app, f"/media/{key}", f"/media/{key}".encode())

    assert status == 200
    assert headers[b"etag"] == ETAG.encode()
    assert body == DATA
