"""Optimistic locking and conditional requests: ETag, If-None-Match, If-Match, body versions."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from wharf.core.errors import (
    BadRequest,
    Conflict,
    PreconditionFailed,
    PreconditionRequired,
    WharfError,
)
from wharf.core.http.responses import JSONBytes, dumps


def version_etag(version: int) -> str:
    return f'"{version}"'


def body_etag(body: bytes) -> str:
    # Weak: equal JSON, byte for byte, is all a collection's validator promises.
    return 'W/"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'


def not_modified(request: Request, etag: str) -> bool:
    """True when If-None-Match names this representation (weak comparison, RFC 9110 13.1.2)."""
    header = request.headers.get("if-none-match")
    if not header:
        return False
    if header.strip() == "*":
        return True
    wanted = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == wanted for tag in header.split(","))


@dataclass(frozen=True)
class Precondition:
    """The version a write expects, and where the client said so (that picks 412 or 409)."""

    version: int
    from_header: bool

    def stale(self, current: int, what: str) -> WharfError:
        detail = (
            f"{what} is at version {current}, not {self.version}: someone changed it since you "
            "read it. Fetch it again, reapply your change and retry."
        )
        return PreconditionFailed(detail) if self.from_header else Conflict(detail)


def _parse_if_match(header: str) -> int:
    tag = header.strip().removeprefix("W/").strip('"')
    if not (tag.isascii() and tag.isdigit()):  # "²".isdigit(), but int("²") raises
        raise BadRequest(f'If-Match must be a version ETag such as "3"; got {header!r}.')
    return int(tag)


def precondition(request: Request, body_version: int | None) -> Precondition:
    """The version a PUT or PATCH must match: `If-Match` wins, then the body's `version`."""
    header = request.headers.get("if-match")
    if header is not None:
        version = _parse_if_match(header)
        if body_version is not None and body_version != version:
            raise BadRequest(
                f"If-Match says version {version} but the body says {body_version}; send one."
            )
        return Precondition(version, from_header=True)
    if body_version is not None:
        return Precondition(body_version, from_header=False)
    raise PreconditionRequired(
        'Send the version you last read, as If-Match: "<version>" or "version" in the body, '
        "so a concurrent change is not overwritten."
    )


def optional_precondition(request: Request) -> Precondition | None:
    """DELETE honours If-Match when given and does not require it."""
    header = request.headers.get("if-match")
    return None if header is None else Precondition(_parse_if_match(header), from_header=True)


def versioned_response(
    request: Request, item: dict[str, Any], *, status: int = 200, location: bool = False
) -> Response:
    """A single resource with `ETag: "<version>"`; 304 when the client already has it."""
    headers: dict[str, str] = {}
    if "version" in item:
        headers["ETag"] = version_etag(item["version"])
        # Only a read can be "not modified": a write that succeeded shows its result.
        read = request.method in ("GET", "HEAD")
        if status == 200 and read and not_modified(request, headers["ETag"]):
            return Response(status_code=304, headers=headers)
    if location:
        headers["Location"] = item["url"]
    return JSONBytes(dumps(item), status_code=status, headers=headers)
