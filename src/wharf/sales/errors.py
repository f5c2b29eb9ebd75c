"""Sales errors, each with its HTTP status (core.errors)."""

from __future__ import annotations

from typing import Any

from wharf.core.errors import Conflict, InvalidInput


class FileRefused(InvalidInput):
    """The file as a whole cannot be ingested: not text, empty, too many bad lines, no day.
    Over HTTP the file is the body, hence its `loc`."""

    def __init__(self, detail: str, *, extra: dict[str, Any] | None = None) -> None:
        super().__init__(detail, loc=["body"])
        self.extra.update(extra or {})


class DayTaken(Conflict):
    """Another file is already ingested for the day, and no replace was asked for."""
