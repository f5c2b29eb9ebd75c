"""`wharf sales ingest`: days from names, idempotency, replacing, and a kill -9 at any moment."""

from __future__ import annotations

import gzip
import os
import random
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from typer.testing import CliRunner

from tests.sales.data import Transaction, counts, write
from wharf.cli import app
from wharf.core.data.db import create_db_engine
from wharf.sales.models import SalesDaily, SalesFile

runner = CliRunner()
WHARF = str(Path(sys.executable).parent / "wharf")


@pytest.fixture
def env(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("WHARF_DATABASE_URL", database_url)
    monkeypatch.setenv("WHARF_VAR_DIR", str(tmp_path / "var"))
    return {
        **os.environ,
        "WHARF_DATABASE_URL": database_url,
        "WHARF_VAR_DIR": str(tmp_path / "var"),
    }


@pytest.fixture
def db(database_url: str, env: dict[str, str]) -> Engine:
    return create_db_engine(database_url)


def day_counts(db: Engine, day: str) -> dict[int, int]:
    with db.connect() as conn:
        rows = conn.execute(
            select(SalesDaily.product_id, SalesDaily.units).where(
                SalesDaily.day == date.fromisoformat(day)
            )
        )
        return {int(p): int(n) for p, n in rows}


def ledger(db: Engine) -> list[tuple[str, str, bool]]:
    with db.connect() as conn:
        rows = conn.execute(
            select(SalesFile.day, SalesFile.sha256, SalesFile.replaced_at).order_by(SalesFile.id)
        )
        return [(str(d), s, r is None) for d, s, r in rows]


def ingest(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["sales", "ingest", *args])
    return result.exit_code, result.output


def transactions(seed: int, n: int, products: int) -> list[Transaction]:
    rng = random.Random(seed)
    return [
        (rng.randint(1, 10**6), rng.choices(range(products), k=rng.randint(1, 5))) for _ in range(n)
    ]


def test_days_come_from_seed_style_names(tmp_path: Path, db: Engine) -> None:
    day1 = transactions(1, 50, 20)
    day2 = transactions(2, 50, 20)
    write(tmp_path, "20261129_transactions.json", day1)
    write(tmp_path, "20261130_transactions.json.gz", day2, zipped=True)
    (tmp_path / ".hidden.json").write_text("{}")
    (tmp_path / "20261201_transactions.json.tmp").write_text("{}")
    code, out = ingest(str(tmp_path))
    assert code == 0, out
    assert "2026-11-29" in out
    assert "2026-11-30" in out
    assert "ingested" in out
    assert day_counts(db, "2026-11-29") == counts(day1)
    assert day_counts(db, "2026-11-30") == counts(day2)
    assert len(ledger(db)) == 2


def test_a_name_without_a_date_needs_one(tmp_path: Path, db: Engine) -> None:
    path = write(tmp_path, "sales.json", transactions(1, 10, 5))
    code, out = ingest(str(path))
    assert code == 1
    assert "holds no date" in out
    assert "--date" in out
    assert ledger(db) == []
    code, out = ingest(str(path), "--date", "2026-11-01")
    assert code == 0, out
    assert [row[0] for row in ledger(db)] == ["2026-11-01"]


def test_date_gives_the_day_of_one_file_only(tmp_path: Path, db: Engine) -> None:
    write(tmp_path, "a.json", transactions(1, 10, 5))
    write(tmp_path, "b.json", transactions(2, 10, 5))
    code, out = ingest(str(tmp_path), "--date", "2026-11-01")
    assert code != 0
    assert "one file" in out


def test_twice_and_in_shuffled_order_gives_the_same_totals(tmp_path: Path, db: Engine) -> None:
    days = {f"202611{d:02d}": transactions(d, 40, 30) for d in range(1, 11)}
    paths = [str(write(tmp_path, f"{name}_transactions.json", tx)) for name, tx in days.items()]
    random.Random(7).shuffle(paths)
    assert ingest(*paths[:5])[0] == 0
    code, out = ingest(*reversed(paths))
    assert code == 0, out
    assert out.count("already ingested") == 5
    code, out = ingest(*paths)
    assert out.count("already ingested") == 10
    for name, tx in days.items():
        assert day_counts(db, f"{name[:4]}-{name[4:6]}-{name[6:]}") == counts(tx)
    assert len(ledger(db)) == 10


def test_another_file_for_a_day_needs_replace(tmp_path: Path, db: Engine) -> None:
    old, new = transactions(1, 30, 10), transactions(2, 30, 10)
    (tmp_path / "old").mkdir()
    (tmp_path / "new").mkdir()
    write(tmp_path / "old", "20261130_transactions.json", old)
    write(tmp_path / "new", "20261130_transactions.json", new)
    assert ingest(str(tmp_path / "old"))[0] == 0
    code, out = ingest(str(tmp_path / "new"))
    assert code == 1
    assert "--replace" in out
    assert day_counts(db, "2026-11-30") == counts(old)
    assert ingest(str(tmp_path / "new"), "--replace")[0] == 0
    assert day_counts(db, "2026-11-30") == counts(new)
    assert [current for _, _, current in ledger(db)] == [False, True]


def test_a_bad_file_is_refused_whole(tmp_path: Path, db: Engine) -> None:
    path = tmp_path / "20261130_transactions.json"
    path.write_bytes(b'{"id": 1, "products": [1]}\nnot json\n')
    code, out = ingest(str(path))
    assert code == 1
    assert "1 of 2 lines are bad" in out
    assert ledger(db) == []
    code, out = ingest(str(path), "--max-bad-ratio", "0.5")
    assert code == 0, out
    assert day_counts(db, "2026-11-30") == {1: 1}


def test_a_truncated_gzip_is_refused(tmp_path: Path, db: Engine) -> None:
    data = gzip.compress(b'{"id": 1, "products": [1]}\n' * 1000)
    path = tmp_path / "20261130_transactions.json.gz"
    path.write_bytes(data[: len(data) // 2])
    code, out = ingest(str(path))
    assert code == 1
    assert "incomplete" in out
    assert ledger(db) == []


# kill -9


def test_kill_9_at_any_moment_leaves_old_or_new_never_a_mix(
    tmp_path: Path, db: Engine, env: dict[str, str]
) -> None:
    # The old file counts products 0-99; the new one ~150,000 others, so that writing its
    # counts is a long part of the run and the kills land in it as well as before it.
    old = transactions(1, 500, 100)
    new = [(c, [p + 1000 for p in products]) for c, products in transactions(2, 60_000, 150_000)]
    (tmp_path / "old").mkdir()
    (tmp_path / "new").mkdir()
    old_path = write(tmp_path / "old", "20261130_transactions.json", old)
    new_path = write(tmp_path / "new", "20261130_transactions.json", new)
    assert ingest(str(old_path))[0] == 0
    old_counts, new_counts = counts(old), counts(new)

    def run(kill_after: float | None) -> int | None:
        proc = subprocess.Popen(
            [WHARF, "sales", "ingest", str(new_path), "--replace"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        if kill_after is None:
            return proc.wait(120)
        time.sleep(kill_after)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        return None

    started = time.monotonic()
    # A full run, to learn how long one takes; then the day goes back to the old file.
    assert run(None) == 0
    duration = time.monotonic() - started
    assert day_counts(db, "2026-11-30") == new_counts
    assert ingest(str(old_path), "--replace")[0] == 0

    outcomes = set()
    for step in range(10):
        run(duration * (0.3 + 0.75 * step / 10))  # from mid-start-up to past the end
        found = day_counts(db, "2026-11-30")
        current = [row for row in ledger(db) if row[0] == "2026-11-30" and row[2]]
        assert len(current) == 1  # one current file, always
        if found == new_counts:
            outcomes.add("new")
            assert ingest(str(old_path), "--replace")[0] == 0
        else:
            assert found == old_counts  # never a mix, never a double count
            outcomes.add("old")
    assert "old" in outcomes  # at least one kill landed before the commit
    assert run(None) == 0
    assert day_counts(db, "2026-11-30") == new_counts
    code, out = ingest(str(new_path), "--replace")
    assert code == 0
    assert "already ingested" in out
