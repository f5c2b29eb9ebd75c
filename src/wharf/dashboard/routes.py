"""The dashboard: one page at `/` and its static files at `/ui/...`, served from this package.

Everything the page needs ships in the package (Chart.js included, vendored from npm with
its checksum in static/vendor/VENDOR.md), so a fresh machine with python3 and make serves it
with nothing fetched at run time. The page is only a client of the public /api/v1.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from fastapi import APIRouter, Request, Response

from wharf.core.errors import NotFound

STATIC = Path(__file__).parent / "static"
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
# No inline script or style anywhere, so none is allowed: an injected <script> cannot run.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; font-src 'self'; manifest-src 'self'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",  # frame-ancestors' older twin, for older browsers
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    # Revalidated on every load (cheap: ETag and 304), so a new release is never half-cached.
    "Cache-Control": "no-cache",
}


def _load() -> dict[str, tuple[bytes, str, str]]:
    """Every static file, read once: name -> (bytes, media type, ETag). A request names a key
    of this dict, never a filesystem path, so nothing outside the folder can be reached."""
    files: dict[str, tuple[bytes, str, str]] = {}
    for path in sorted(STATIC.rglob("*")):
        if path.is_file() and path.suffix in _TYPES:
            data = path.read_bytes()
            etag = f'"{hashlib.sha256(data).hexdigest()[:32]}"'
            files[path.relative_to(STATIC).as_posix()] = (data, _TYPES[path.suffix], etag)
    return files


FILES = _load()
router = APIRouter(include_in_schema=False)


def _serve(request: Request, name: str) -> Response:
    found = FILES.get(name)
    if found is None:
        raise NotFound(f"The dashboard has no file {name}.")
    data, media_type, etag = found
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers={**SECURITY_HEADERS, "ETag": etag})
    return Response(data, media_type=media_type, headers={**SECURITY_HEADERS, "ETag": etag})


@router.get("/")
async def index(request: Request) -> Response:
    return _serve(request, "index.html")


@router.get("/ui/{name:path}")
async def static(name: str, request: Request) -> Response:
    return _serve(request, name)
