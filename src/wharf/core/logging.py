"""JSON log lines on stderr, one object per event (the access log is `core.observability`)."""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}
# uvicorn repeats each message with ANSI colours for terminals; JSON wants the plain one only.
_DROPPED = _STANDARD | {"color_message"}
# Defence in depth: nothing should log a bearer token, but one that slips into a message or an
# exception text (they carry a fixed prefix and ~43 random characters) is cut out of the line.
_TOKEN = re.compile(r"wharf_[A-Za-z0-9_-]{32,}")
REDACTED = "wharf_[redacted]"


_second: tuple[int, str] = (-1, "")


def _timestamp(created: float) -> str:
    """ISO 8601 in UTC with microseconds; the part up to the second is formatted once a second."""
    global _second
    whole = int(created)
    if _second[0] != whole:
        _second = (whole, datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%dT%H:%M:%S"))
    return f"{_second[1]}.{int((created - whole) * 1_000_000):06d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, every `extra` field, error."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": _timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        out.update({k: v for k, v in record.__dict__.items() if k not in _DROPPED})
        if record.exc_info:
            out["error"] = self.formatException(record.exc_info)
        try:
            line = orjson.dumps(out, default=str).decode()
        except TypeError:  # an int beyond 64 bits, a non-string key: the slow, lenient path
            line = json.dumps(out, default=str)
        return _TOKEN.sub(REDACTED, line)


def configure_logging(level: str) -> None:
    root = logging.getLogger("wharf")
    if not any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        root.addHandler(handler)
    root.setLevel(level.upper())
    root.propagate = False


def server_log_config(level: str) -> dict[str, Any]:
    """uvicorn's own lines (startup, shutdown, protocol errors) as JSON too: a `log_config`.

    uvicorn's access log stays off: Wharf writes one richer line per request itself.
    """
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": f"{__name__}.JsonFormatter"}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": level.upper(), "propagate": False},
            "uvicorn.access": {"handlers": [], "propagate": False},
        },
    }
