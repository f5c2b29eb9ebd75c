"""The inbox: a directory whose new sales files are ingested as they arrive.

Files are noticed with watchfiles (inotify on Linux, from a well-kept Rust library; a
rescan every few seconds catches anything an event missed, such as files that were still
being written). A file counts as complete once its size and modification time have not
changed for `settle_seconds`; writers that can should write `NAME.tmp` and rename it, which
is complete at once. Each file ends in `done/` or `failed/` with `NAME.report.json` beside it.

`wharf serve` runs one inbox per deployment, not one per worker: `LeasedInbox` holds the
named lease `sales-inbox` (core.work.leases) while it watches, and another worker takes
over when the holder dies.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import watchfiles
from sqlalchemy import Engine

from wharf.core.errors import WharfError
from wharf.core.work import acquire_lease, release_lease
from wharf.core.work.worker import worker_name
from wharf.sales.ingest import ingest
from wharf.sales.lines import Engine as Counter

log = logging.getLogger("wharf.sales.inbox")
LEASE = "sales-inbox"
IGNORED_SUFFIXES = (".tmp", ".part", ".report.json")


def is_candidate(path: Path) -> bool:
    """A file the inbox should ingest (not a dot-file, a temporary or a report)."""
    name = path.name
    return path.is_file() and not name.startswith(".") and not name.endswith(IGNORED_SUFFIXES)


class Inbox:
    def __init__(
        self,
        directory: Path,
        *,
        db: Engine,
        counter: Counter,
        max_bad_ratio: float,
        settle_seconds: float = 1.0,
        rescan_seconds: float = 2.0,
    ) -> None:
        self.directory = directory
        self.db = db
        self.counter = counter
        self.max_bad_ratio = max_bad_ratio
        self.settle = settle_seconds
        self.rescan = rescan_seconds
        self.stopping = threading.Event()
        self.seen: dict[Path, tuple[int, int, float]] = {}  # size, mtime_ns, first seen so

    def run(self, keep_going: Any = None) -> None:
        """Watch until `stop()` (or until `keep_going()` turns false)."""
        for sub in ("done", "failed"):
            (self.directory / sub).mkdir(parents=True, exist_ok=True)
        self.scan()
        for _ in watchfiles.watch(
            self.directory,
            stop_event=self.stopping,
            rust_timeout=int(self.rescan * 1000),
            yield_on_timeout=True,
            recursive=False,
            raise_interrupt=True,
        ):
            if keep_going is not None and not keep_going():
                return
            self.scan()

    def stop(self) -> None:
        self.stopping.set()

    def scan(self) -> int:
        """Ingest every complete file now in the inbox; how many were handled."""
        handled = 0
        now = time.monotonic()
        present = {p for p in self.directory.iterdir() if is_candidate(p)}
        for path in list(self.seen):
            if path not in present:
                del self.seen[path]
        for path in sorted(present):
            if self.stopping.is_set():
                break
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            state = (stat.st_size, stat.st_mtime_ns)
            before = self.seen.get(path)
            if before is None or before[:2] != state:
                self.seen[path] = (*state, now)  # new or still growing: wait for it to settle
                continue
            if now - before[2] < self.settle:
                continue
            del self.seen[path]
            self.handle(path)
            handled += 1
        return handled

    def handle(self, path: Path) -> None:
        try:
            recorded = ingest(self.db, path, counter=self.counter, max_bad_ratio=self.max_bad_ratio)
        except WharfError as exc:
            report: dict[str, Any] = {
                "status": "failed",
                "file": path.name,
                "title": exc.title,
                "detail": exc.detail,
                **exc.extra,
            }
            self._move(path, "failed", report)
            log.warning("sales file refused", extra={"file": path.name, "detail": exc.detail})
            return
        except Exception:  # a bug or the database away: keep the file where it is, retry
            log.exception("sales file %s could not be ingested; will retry", path.name)
            return
        report = {
            **recorded.file,
            "status": "ingested" if recorded.created else "already ingested",
        }
        self._move(path, "done", report)

    def _move(self, path: Path, where: str, report: dict[str, Any]) -> None:
        (self.directory / where).mkdir(exist_ok=True)
        target = self.directory / where / path.name
        n = 1
        while target.exists():  # a file of the same name came before: keep both
            target = self.directory / where / f"{path.stem}.{n}{path.suffix}"
            n += 1
        shutil.move(path, target)
        report_path = target.with_name(target.name + ".report.json")
        report_path.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2, default=str))


class LeasedInbox:
    """An inbox inside `wharf serve`: watches only while this process holds the lease."""

    def __init__(self, inbox: Inbox, *, db: Engine, ttl_seconds: float = 30.0) -> None:
        self.inbox = inbox
        self.db = db
        self.ttl = timedelta(seconds=ttl_seconds)
        self.holder = worker_name()
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None
        self.renewed_at = 0.0

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="wharf-sales-inbox", daemon=True)
        self.thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self.stopping.set()
        self.inbox.stop()
        if self.thread is not None:
            self.thread.join(timeout)
        try:
            with self.db.begin() as conn:
                release_lease(conn, LEASE, holder=self.holder)
        except Exception:  # the lease runs out by itself
            log.exception("could not release the sales inbox lease")

    def _acquire(self) -> bool:
        try:
            with self.db.connect() as conn:
                conn.execution_options(wharf_write=True)
                with conn.begin():
                    held = acquire_lease(conn, LEASE, holder=self.holder, ttl=self.ttl)
        except Exception:
            log.exception("could not take the sales inbox lease")
            return False
        if held:
            self.renewed_at = time.monotonic()
        return held

    def _keep_going(self) -> bool:
        # Renewed at a third of its life; a holder that cannot renew stops watching.
        if self.stopping.is_set():
            return False
        if time.monotonic() - self.renewed_at < self.ttl.total_seconds() / 3:
            return True
        return self._acquire()

    def _run(self) -> None:
        while not self.stopping.is_set():
            if self._acquire():
                log.info("watching the sales inbox", extra={"directory": str(self.inbox.directory)})
                try:
                    self.inbox.run(keep_going=self._keep_going)
                except Exception:
                    log.exception("the sales inbox stopped")
                self.inbox.stopping.clear()
            self.stopping.wait(self.ttl.total_seconds() / 3)
