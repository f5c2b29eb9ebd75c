"""Demo sales for `wharf demo`: 30 daily files ending yesterday, ingested from the inbox.

Each day has a few thousand transactions over 250 products, more at weekends, with a few
popular products and three bad lines, so the ledger and the bad-line report have something
to show. Files are made from the day alone, so running the demo again finds them already
ingested and only adds the days since.
"""

from __future__ import annotations

import random
from datetime import date, timedelta
from pathlib import Path

import orjson
from sqlalchemy import Engine

from wharf.sales.duck import DuckDBEngine
from wharf.sales.inbox import Inbox

DAYS = 30
PRODUCTS = 250
WEEKDAY_RHYTHM = (0.8, 0.85, 0.9, 1.0, 1.2, 1.5, 1.3)  # Monday to Sunday
BAD_LINES = (
    '{"id": "guest", "products": [3]}',
    '{"id": 77, "products": [1.5]}',
    "{'id': 78, 'products': [4]}",
)


def day_file(day: date) -> bytes:
    rng = random.Random(day.toordinal())  # noqa: S311 (demo data, the same for a day)
    weights = [1 / (rank + 1) ** 0.8 for rank in range(PRODUCTS)]  # a few sell most
    transactions = int(3000 * WEEKDAY_RHYTHM[day.weekday()] * rng.uniform(0.9, 1.1))
    lines = [
        orjson.dumps(
            {
                "id": rng.randint(1, 20_000),
                "products": rng.choices(range(1, PRODUCTS + 1), weights, k=rng.randint(1, 4)),
            }
        )
        for _ in range(transactions)
    ]
    for n, bad in enumerate(BAD_LINES):
        lines.insert((n + 1) * transactions // 4, bad.encode())
    return b"\n".join(lines) + b"\n"


def load(db: Engine, inbox_dir: Path, *, today: date | None = None) -> int:
    """Write the days' files into `inbox_dir` and ingest them through the inbox; how many
    were new."""
    today = today or date.today()
    inbox_dir.mkdir(parents=True, exist_ok=True)
    box = Inbox(inbox_dir, db=db, counter=DuckDBEngine(), max_bad_ratio=0.01)
    new = 0
    for back in range(DAYS, 0, -1):
        day = today - timedelta(days=back)
        name = f"{day:%Y%m%d}_transactions.json"
        if (inbox_dir / "done" / name).exists():
            continue
        temporary = inbox_dir / f"{name}.tmp"
        temporary.write_bytes(day_file(day))
        path = temporary.rename(inbox_dir / name)  # complete at once, as writers should do
        box.handle(path)
        new += 1
    return new
