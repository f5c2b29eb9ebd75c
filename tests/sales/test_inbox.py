"""The inbox: files that appear are ingested once, and moved with a report beside them."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest
from sqlalchemy import Engine, func, select

from tests.sales.data import counts, ndjson, write
from tests.servers import serve
from wharf.core.data.db import create_db_engine
from wharf.core.work.models import Lease
from wharf.sales.duck import DuckDBEngine
from wharf.sales.inbox import LEASE, Inbox, LeasedInbox
from wharf.sales.models import SalesDaily, SalesFile

DAY = [(1, [1, 2, 2]), (2, [3])]


@pytest.fixture
def db(database_url: str) -> Engine:
    return create_db_engine(database_url)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """The inbox: a folder of its own (the test's folder holds its SQLite database)."""
    folder = tmp_path / "inbox"
    folder.mkdir()
    return folder


def inbox(directory: Path, db: Engine, settle: float = 0.0) -> Inbox:
    return Inbox(
        directory, db=db, counter=DuckDBEngine(), max_bad_ratio=0.01, settle_seconds=settle
    )


def files_ingested(db: Engine) -> int:
    with db.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(SalesFile)).scalar_one())


def wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_file_is_taken_once_it_has_settled(folder: Path, db: Engine) -> None:
    box = inbox(folder, db)
    write(folder, "20261130_transactions.json", DAY)
    assert box.scan() == 0  # first seen: it may still be growing
    assert box.scan() == 1
    done = folder / "done" / "20261130_transactions.json"
    assert done.exists()
    assert not (folder / "20261130_transactions.json").exists()
    report = orjson.loads((folder / "done" / "20261130_transactions.json.report.json").read_bytes())
    assert report["status"] == "ingested"
    assert report["units"] == 4
    assert report["day"] == "2026-11-30"


def test_a_growing_file_waits(folder: Path, db: Engine) -> None:
    box = inbox(folder, db)
    path = folder / "20261130_transactions.json"
    path.write_bytes(ndjson(DAY))
    assert box.scan() == 0
    with path.open("ab") as fh:
        fh.write(ndjson([(3, [4])]))
    assert box.scan() == 0  # it changed since: wait again
    assert box.scan() == 1
    with db.connect() as conn:
        rows = dict(conn.execute(select(SalesDaily.product_id, SalesDaily.units)).all())
    assert rows == counts([*DAY, (3, [4])])


def test_temporaries_dot_files_and_reports_are_left_alone(folder: Path, db: Engine) -> None:
    box = inbox(folder, db)
    for name in ("20261130_transactions.json.tmp", ".20261130.json", "x.part"):
        (folder / name).write_bytes(ndjson(DAY))
    box.scan()
    assert box.scan() == 0
    assert files_ingested(db) == 0


def test_a_refused_file_goes_to_failed_with_the_reason(folder: Path, db: Engine) -> None:
    box = inbox(folder, db)
    (folder / "notes.txt").write_text("hello")
    (folder / "20261130_transactions.json").write_bytes(b"not json\n" * 3)
    box.scan()
    assert box.scan() == 2
    no_date = orjson.loads((folder / "failed" / "notes.txt.report.json").read_bytes())
    assert no_date["status"] == "failed"
    assert "holds no date" in no_date["detail"]
    bad = orjson.loads((folder / "failed" / "20261130_transactions.json.report.json").read_bytes())
    assert "3 of 3 lines are bad" in bad["detail"]
    assert bad["bad_line_sample"][0] == {"line": 1, "reason": "not JSON"}
    assert files_ingested(db) == 0


def test_the_same_file_again_goes_to_done_as_already_ingested(folder: Path, db: Engine) -> None:
    box = inbox(folder, db)
    for _ in range(2):
        write(folder, "20261130_transactions.json", DAY)
        box.scan()
        box.scan()
    second = orjson.loads(
        (folder / "done" / "20261130_transactions.1.json.report.json").read_bytes()
    )
    assert second["status"] == "already ingested"
    assert files_ingested(db) == 1


@pytest.fixture
def running(folder: Path, db: Engine) -> Iterator[Inbox]:
    box = inbox(folder, db, settle=0.2)
    thread = threading.Thread(target=box.run, daemon=True)
    thread.start()
    yield box
    box.stop()
    thread.join(10)


def test_the_watcher_picks_up_a_renamed_file(running: Inbox, folder: Path, db: Engine) -> None:
    tmp = folder / "20261130_transactions.json.tmp"
    tmp.write_bytes(ndjson(DAY))
    os.rename(tmp, folder / "20261130_transactions.json")
    wait_for(lambda: (folder / "done" / "20261130_transactions.json.report.json").exists())
    assert files_ingested(db) == 1


def test_one_leased_inbox_watches_and_another_takes_over(folder: Path, db: Engine) -> None:
    first = LeasedInbox(inbox(folder, db, settle=0.1), db=db, ttl_seconds=1.5)
    second = LeasedInbox(inbox(folder, db, settle=0.1), db=db, ttl_seconds=1.5)
    first.start()
    wait_for(lambda: holder(db) == first.holder)
    second.start()
    for day in range(1, 6):
        write(folder, f"202611{day:02d}_transactions.json", [(day, [1, 2])])
    wait_for(lambda: files_ingested(db) == 5)
    assert holder(db) == first.holder
    first.stop()  # gives the lease up: the second takes it within its retry interval
    wait_for(lambda: holder(db) == second.holder)
    write(folder, "20261106_transactions.json", DAY)
    wait_for(lambda: files_ingested(db) == 6)
    second.stop()
    assert len(list((folder / "done").glob("*.report.json"))) == 6


def holder(db: Engine) -> str | None:
    with db.connect() as conn:
        found = conn.execute(select(Lease.holder).where(Lease.name == LEASE)).scalar()
    return None if found is None else str(found)


def test_serve_with_an_inbox_ingests_each_file_once(database_url: str, folder: Path) -> None:
    box = folder
    db = create_db_engine(database_url)
    env = {"WHARF_SALES_INBOX": str(box), "WHARF_LOG_LEVEL": "INFO"}
    with serve(database_url, folder.parent, env=env, workers=2):
        wait_for(lambda: holder(db) is not None)
        for day in range(1, 9):
            write(box, f"202611{day:02d}_transactions.json", [(day, [1, 2])])
        wait_for(lambda: len(list((box / "done").glob("*.report.json"))) == 8, timeout=60)
    assert files_ingested(db) == 8
    reports = [orjson.loads(p.read_bytes()) for p in (box / "done").glob("*.report.json")]
    assert {r["status"] for r in reports} == {"ingested"}
