"""The naive chart-data endpoint issue 9 compares with: it loads the window's readings and
sums them into buckets in Python, on the same serving stack (FastAPI, uvicorn, SQLAlchemy Core
on the same database), with no auth, cache or rollups. Served by bench/factories.py.

    WHARF_DATABASE_URL=... uvicorn bench.naive_chart:app
"""

from __future__ import annotations

import os
from typing import Any

from fastapi import FastAPI
from sqlalchemy import text

from wharf.core.data.db import create_db_engine
from wharf.factories.chart import BUCKETS, bucket_start

app = FastAPI()
_engine = create_db_engine(os.environ["WHARF_DATABASE_URL"])
_READINGS = text(
    "SELECT time, actual, goal FROM factory_readings "
    "WHERE factory_id = :f AND time >= :lo AND time < :hi ORDER BY time"
)


@app.get("/")
def ready() -> dict[str, bool]:
    return {"ready": True}  # what bench/sales_query.server waits for


@app.get("/naive/{factory_id}")
def naive(factory_id: int, start: int, end: int, bucket: str) -> dict[str, Any]:
    seconds = BUCKETS[bucket]
    sums: dict[int, list[int]] = {}
    with _engine.connect() as conn:
        for time, actual, goal in conn.execute(
            _READINGS, {"f": factory_id, "lo": start, "hi": end}
        ):
            into = sums.setdefault(bucket_start(seconds, time), [0, 0])
            into[0] += actual
            into[1] += goal
    times = sorted(sums)
    return {
        "sprocket_production_actual": [sums[t][0] for t in times],
        "sprocket_production_goal": [sums[t][1] for t in times],
        "time": times,
        "points": len(times),
    }
