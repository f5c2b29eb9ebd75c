"""Where a served request's time goes: py-spy samples of the server process while wrk runs,
summed by layer (the package of the innermost Python frame) and by function.

py-spy (a dev dependency) reads the process from outside, so the server runs unchanged. It
pauses the process for each sample (at 250 Hz, a small cost): without the pause, stacks read
while they change come out torn, which hid a third of them. Native code (SQLite, orjson,
pydantic-core) counts as the Python frame that called it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# The innermost frame's file, by its first path parts, names the layer.
LAYERS = {
    "fastapi": "FastAPI (routing, dependencies, validation calls)",
    "starlette": "Starlette (requests, responses, middleware plumbing)",
    "pydantic": "pydantic",
    "pydantic_core": "pydantic",
    "sqlalchemy": "SQLAlchemy",
    "sqlite3": "database driver",
    "psycopg": "database driver",
    "psycopg_pool": "database driver",
    "uvicorn": "server and HTTP parsing",
    "httptools": "server and HTTP parsing",
    "h11": "server and HTTP parsing",
    "asyncio": "event loop, threads",
    "anyio": "event loop, threads",
    "concurrent": "event loop, threads",
    "threading.py": "event loop, threads",
    "selectors.py": "event loop, threads",
    "queue.py": "event loop, threads",
    "redis": "Redis client",
    "limits": "rate limits (limits)",
    "prometheus_client": "metrics (prometheus_client)",
    "logging": "logging",
    "json": "json (stdlib)",
}


def _py_spy() -> str:
    found = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if not found:
        raise SystemExit(
            "py-spy is not installed: it is in the dev extra (make .venv/.dev-installed)"
        )
    return found


@contextmanager
def sampling(pid: int, seconds: int, out: Path) -> Iterator[None]:
    """Sample `pid` for `seconds` (at 250 Hz) while the body runs; stacks to `out` as
    py-spy's raw (collapsed) format."""
    cmd = [_py_spy(), "record", "-p", str(pid), "-d", str(seconds), "-r", "250"]
    cmd += ["-f", "raw", "-o", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        yield
    finally:
        _, err = proc.communicate(timeout=seconds + 30)
        if proc.returncode:
            raise SystemExit(f"py-spy failed: {err.decode(errors='replace')}")


# Leaves of a thread that waits (the job worker between polls, idle pool threads): with the
# pause, py-spy samples them too, and they are not the request path's time.
IDLE = ("wait (threading.py)", "select (selectors.py)", "_worker (concurrent/futures/thread.py)")


def layer(frame: str) -> str:
    """The layer of one frame, `function (path/file.py:line)`."""
    path = frame.rsplit("(", 1)[-1].split(":", 1)[0]
    parts = path.split("/")
    if parts[0] == "wharf":
        return "wharf." + (parts[1] if len(parts) > 2 else parts[1].removesuffix(".py"))
    if parts[0] == "bench":
        return "bench"
    return LAYERS.get(parts[0], "other (stdlib and the rest)")


def summarize(out: Path, *, top: int = 8) -> list[str]:
    """Markdown lines: the share of samples per layer, and the functions with most samples."""
    layers: Counter[str] = Counter()
    functions: Counter[str] = Counter()
    for line in out.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        leaf = stack.rsplit(";", 1)[-1]
        function = leaf.rsplit(":", 1)[0] + ")"
        if function.endswith(IDLE):
            continue
        layers[layer(leaf)] += int(count)
        functions[function] += int(count)
    total = sum(layers.values()) or 1
    by_layer = ", ".join(
        f"{name} {n / total:.0%}" for name, n in layers.most_common() if n / total >= 0.01
    )
    lines = [f"- {total:,} samples. By layer: {by_layer}"]
    lines += [f"  - {n / total:.1%} `{name}`" for name, n in functions.most_common(top)]
    return lines
