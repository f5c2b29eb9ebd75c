"""One error hierarchy; every error leaves the API as RFC 9457 problem+json."""

from __future__ import annotations

from typing import Any


class WharfError(Exception):
    """Base of every domain error. Subclasses set the HTTP status and a title."""

    status: int = 400
    title: str = "Bad request"
    type: str = "about:blank"

    def __init__(
        self,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra or {}


class BadRequest(WharfError):
    status, title = 400, "Bad request"


class Unauthorized(WharfError):
    status, title = 401, "Unauthorized"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": 'Bearer realm="wharf"'})


class Forbidden(WharfError):
    status, title = 403, "Forbidden"


class NotFound(WharfError):
    status, title = 404, "Not found"


class Conflict(WharfError):
    status, title = 409, "Conflict"


class PreconditionFailed(WharfError):
    status, title = 412, "Precondition failed"


class PreconditionRequired(WharfError):
    status, title = 428, "Precondition required"


class InvalidInput(WharfError):
    """A request that parsed but breaks a rule: 422 with the offending field."""

    status, title = 422, "Unprocessable content"

    def __init__(self, detail: str, *, loc: list[str | int], kind: str = "value_error") -> None:
        super().__init__(detail, extra={"errors": [{"loc": loc, "msg": detail, "type": kind}]})


class NotAcceptable(WharfError):
    status, title = 406, "Not acceptable"


class UnsupportedMediaType(WharfError):
    status, title = 415, "Unsupported media type"


class PayloadTooLarge(WharfError):
    status, title = 413, "Content too large"


class ServiceUnavailable(WharfError):
    status, title = 503, "Service unavailable"
