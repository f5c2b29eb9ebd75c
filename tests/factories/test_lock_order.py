"""Writers that take several factories take them in one order, so an import racing an append
on PostgreSQL never deadlocks. (SQLite writers take turns whole: BEGIN IMMEDIATE.)

The interleaving that deadlocked before the import locked every factory it names up front:
1. an append holds factory 2's row;
2. the import writes factory 1's readings, which bumps the cache generation: it now holds
   that row to its commit, and then waits for factory 2;
3. the append's own write needs the generation row: each waits for the other.
"""

from __future__ import annotations

import json
import threading
import time

import pytest
from sqlalchemy import Engine, text

from wharf.factories import imports, readings, service


def series(name: str, start: int) -> dict[str, object]:
    times = [start + 60 * n for n in range(5)]
    return {
        "factory": {
            "name": name,
            "chart_data": {
                "sprocket_production_actual": [1] * 5,
                "sprocket_production_goal": [2] * 5,
                "time": times,
            },
        }
    }


def waiting_on_a_lock(engine: Engine) -> bool:
    with engine.connect() as conn:
        found = conn.execute(
            text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
        ).scalar_one()
    return bool(found)


def test_an_import_racing_an_append_does_not_deadlock(engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("row locks and deadlocks are PostgreSQL's: SQLite writers take turns")
    with engine.begin() as conn:
        first = service.create_factory(conn, name="Plant A")["id"]
        second = service.create_factory(conn, name="Plant B")["id"]
    document = {"factories": [series("Plant A", 1000), series("Plant B", 5000)]}
    failures: list[BaseException] = []

    def run_import() -> None:
        try:
            with engine.begin() as conn:
                imports.load(conn, [imports.parse(json.dumps(document))])
        except BaseException as exc:
            failures.append(exc)

    with engine.connect() as appender:
        with appender.begin():
            service.lock(appender, second)  # 1. the append holds factory 2
            importer = threading.Thread(target=run_import)
            importer.start()
            deadline = time.monotonic() + 10
            while not waiting_on_a_lock(engine) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert waiting_on_a_lock(engine), "the import never waited for factory 2"
            # 3. the append's write bumps the generation: before the fix, the import held it.
            readings.store(appender, second, [(9000, 1, 1)])
        importer.join(timeout=30)
    assert not importer.is_alive()
    assert failures == []
    with engine.connect() as conn:
        assert readings.extent(conn, first) == (1000, 1240)
        assert readings.extent(conn, second) == (5000, 9000)
