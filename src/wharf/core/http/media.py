"""`GET` and `HEAD /media/{key}`: stored images, served as a CDN would serve them.

Public, without auth, like the seed's /media and like a CDN in front of S3: the names are
unguessable content hashes (sha256) of public catalog images, so holding a name is holding a
link a catalog answer gave out. Only image suffixes are served: the store also keeps
uploaded import CSVs (`.csv`), which are admins' input, not public media, so they are a 404
here like any unknown name.

A name is the hash of its content, so a file never changes under its name: responses are
cacheable forever (`immutable`), the ETag is the hash itself (strong, and the same on every
host, unlike one made from mtime and size), and `If-None-Match` answers 304 without touching
the file.

Starlette's FileResponse streams the file and serves byte ranges; this module decides what
it serves first, because FileResponse answers a malformed Range with a text/plain 400 and an
unsatisfiable one with a text/plain 416 (every error here is problem+json), and it has no
`If-None-Match` handling of its own. A Range asking for several ranges gets the whole file
(200), which RFC 9110 allows: no image viewer asks for several, and it spares the server
multipart bodies built from up to 100 ranges of one request.

Not behind the rate limit or the response cache, both of which cover /api/ only: files are
served from disk with no database work, and in production a CDN or web server in front
answers most of these requests.
"""

from __future__ import annotations

import os
import re
import stat
from typing import Any

from fastapi import Request
from starlette.responses import FileResponse, Response
from starlette.types import Receive, Scope, Send

from wharf.core.errors import NotFound, WharfError
from wharf.core.http.routing import Router
from wharf.core.storage import LocalStorage, digest_of, is_key, media_type

router = Router(tags=["media"])

IMMUTABLE = "public, max-age=31536000, immutable"  # a year, the customary maximum
# What is public: images. Not `.csv`, the imports' uploads (see the module docstring).
SERVED = (".jpg", ".webp", ".avif", ".png", ".gif")
_RANGE = re.compile(r"bytes\s*=\s*([0-9]*)\s*-\s*([0-9]*)\s*", re.IGNORECASE)
# Anything with more digits exceeds any file; also keeps int() far from its digit limit.
_MAX_DIGITS = 18


class RangeNotSatisfiable(WharfError):
    status, title = 416, "Range not satisfiable"


@router.api_route("/media/{key:path}", methods=["GET", "HEAD"], include_in_schema=False)
async def get_media(key: str, request: Request) -> Response:
    """A stored image, by its content-hashed key."""
    # Out of the OpenAPI document: it is not part of the JSON API, and its answers (206,
    # 416, image bodies) follow HTTP's file-serving rules, not the API contract the document
    # tells and tests/test_openapi.py fuzzes.
    # `media_dir`: `media_root` resolved the way the writers of these files (imports, the
    # CLI, the demo) resolve it, so the server reads exactly where they wrote.
    storage = LocalStorage(request.app.state.settings.media_dir)
    if not is_key(key) or not key.endswith(SERVED):
        raise _missing(request)
    path = storage.path(key)
    try:
        # A stat on a local disk takes microseconds: not worth a thread hop (ARCHITECTURE 6).
        found = os.stat(path)
    except OSError:  # not there, or a directory in the way: the same answer
        raise _missing(request) from None
    if not stat.S_ISREG(found.st_mode):
        raise _missing(request)

    etag = f'"{digest_of(key)}"'
    headers = {"Cache-Control": IMMUTABLE, "ETag": etag, "X-Content-Type-Options": "nosniff"}
    if _none_match(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)

    span: tuple[int, int] | None = None
    asked = request.headers.get("range")
    if_range = request.headers.get("if-range")
    # If-Range with another validator (a date, another ETag): the client's copy is not this
    # file, so it gets the whole file (RFC 9110 13.1.5). A weak ETag never matches there.
    if asked is not None and (if_range is None or if_range.strip() == etag):
        span = byte_range(asked, found.st_size)
    return _MediaFile(path, found, headers=headers, media_type=media_type(key), span=span)


def _missing(request: Request) -> NotFound:
    # Unknown, malformed and not-served names answer alike: nothing tells which it was.
    return NotFound(f"No media at {request.url.path}.")


def _none_match(header: str | None, etag: str) -> bool:
    """RFC 9110 13.1.2: `*` or any listed tag, compared weakly (a `W/` prefix is ignored)."""
    if header is None:
        return False
    tags = [tag.strip() for tag in header.split(",")]
    return "*" in tags or any(tag.removeprefix("W/") == etag for tag in tags)


def byte_range(header: str, size: int) -> tuple[int, int] | None:
    """The one range (first, last; inclusive) that `header` asks of a `size`-byte file.

    None means "serve the whole file": a header that is not one well-formed bytes range (a
    list of ranges, another unit, garbage) is ignored, as RFC 9110 14.2 allows, rather than
    refused. RangeNotSatisfiable (416) when the range is well-formed but lies past the end.
    """
    found = _RANGE.fullmatch(header.strip())
    if found is None:
        return None
    first_text, last_text = found.groups()
    if not first_text and not last_text:
        return None  # `bytes=-`
    first, last = _number(first_text), _number(last_text)
    if not first_text:  # `-n`: the last n bytes
        if last == 0 or size == 0:
            raise _unsatisfiable(size)
        return max(size - last, 0), size - 1
    if last_text and last < first:
        return None  # `5-3` is not a valid range: ignored like any malformed one
    if first >= size:
        raise _unsatisfiable(size)
    return first, size - 1 if not last_text else min(last, size - 1)


def _number(text: str) -> int:
    if not text:
        return 0
    return int(text) if len(text) <= _MAX_DIGITS else 10**_MAX_DIGITS


def _unsatisfiable(size: int) -> RangeNotSatisfiable:
    return RangeNotSatisfiable(
        f"The range lies outside the file, which has {size} bytes.",
        headers={"Content-Range": f"bytes */{size}"},
    )


class _MediaFile(FileResponse):
    """FileResponse serving exactly the range decided above (or the whole file)."""

    def __init__(
        self,
        path: os.PathLike[str],
        found: os.stat_result,
        *,
        headers: dict[str, str],
        media_type: str,
        span: tuple[int, int] | None,
    ) -> None:
        super().__init__(path, headers=headers, media_type=media_type, stat_result=found)
        # FileResponse adds Last-Modified from the file's mtime: when this disk got the file,
        # not a property of its content, and different on each host. The ETag says it all.
        del self.headers["last-modified"]
        self.span = span

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # FileResponse reads Range from the request itself: hand it only the range decided
        # here, in a form it parses to the same bytes, or none for the whole file.
        headers: list[Any] = [
            (name, value) for name, value in scope["headers"] if name not in _RANGE_HEADERS
        ]
        if self.span is not None:
            first, last = self.span
            headers.append((b"range", f"bytes={first}-{last}".encode()))
        await super().__call__({**scope, "headers": headers}, receive, send)


_RANGE_HEADERS = frozenset({b"range", b"if-range"})
