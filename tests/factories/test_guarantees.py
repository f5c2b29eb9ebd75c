"""What the factories must guarantee beyond the happy path, on both databases: readings
that no writer can change behind the cache's back, imports that fail whole, retried batches
that append once, long ranges answered by the rollups, a cache that sees the loader's writes,
a seed that loads twice without touching a version, and windows with one end given."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError
from starlette.testclient import TestClient
from typer.testing import CliRunner

from tests.factories.conftest import FACTORIES, Append, FactoryFactory, Json, chart
from wharf.cli import app as cli
from wharf.core.data.db import create_db_engine
from wharf.core.metrics import CACHE
from wharf.factories import imports
from wharf.factories.demo import seed_files

IMPORTS = f"{FACTORIES}/imports"
DAY, HOUR = 86_400, 3_600
# 2026-03-02 00:00 UTC, a Monday: aligned to every bucket up to a day.
MIDNIGHT = 1_772_409_600
runner = CliRunner()
SEED, SPROCKETS = (json.loads(data) for data in seed_files())


def hits() -> float:
    return float(CACHE.labels("hit")._value.get())


def generation(conn: Connection) -> int:
    found = conn.execute(text("SELECT n FROM cache_generations WHERE name = 'factories'"))
    return int(found.scalar_one())


def snapshot(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row the loader could touch: readings, both rollups, the factories' versions
    and timestamps, and the sprocket types."""
    queries = {
        "readings": "SELECT factory_id, time, actual, goal FROM factory_readings "
        "ORDER BY factory_id, time",
        "hourly": "SELECT factory_id, start, readings, actual, goal FROM factory_rollups_hourly "
        "ORDER BY factory_id, start",
        "daily": "SELECT factory_id, start, readings, actual, goal FROM factory_rollups_daily "
        "ORDER BY factory_id, start",
        "factories": "SELECT id, name, version, created_at, updated_at FROM factories ORDER BY id",
        "sprocket_types": "SELECT id, teeth, pitch_diameter, outside_diameter, pitch, version, "
        "updated_at FROM sprocket_types ORDER BY id",
    }
    with engine.connect() as conn:
        return {name: [tuple(r) for r in conn.execute(text(sql))] for name, sql in queries.items()}


def post_file(client: TestClient, document: Any) -> Any:
    return client.post(
        IMPORTS, content=json.dumps(document), headers={"Content-Type": "application/json"}
    )


def chart_of(document: Json, index: int) -> Json:
    data: Json = document["factories"][index]["factory"]["chart_data"]
    return data


def with_new_reading(document: Json, index: int) -> Json:
    """The file with one more reading for factories[index], a minute after its last."""
    grown: Json = copy.deepcopy(document)
    data = chart_of(grown, index)
    data["time"].append(data["time"][-1] + 60)
    data["sprocket_production_actual"].append(7)
    data["sprocket_production_goal"].append(8)
    return grown


def conflicting(document: Json) -> Json:
    """The file with factories[2]'s fifth reading changed: a conflict with the stored one."""
    changed: Json = copy.deepcopy(document)
    chart_of(changed, 2)["sprocket_production_actual"][4] += 1
    return changed


# A. The readings cannot change behind the cache


def test_a_raw_update_of_a_reading_bumps_the_generation_or_is_refused(
    client: TestClient, engine: Engine, new_factory: FactoryFactory, append: Append
) -> None:
    factory_id = new_factory()["id"]
    append(factory_id, [(MIDNIGHT + 60 * n, 5, 6) for n in range(10)])
    path = f"{FACTORIES}/{factory_id}/chart-data"
    client.get(path)
    before_hits = hits()
    assert client.get(path).json()["sprocket_production_actual"] == [5] * 10
    assert hits() == before_hits + 1  # cached
    update = text("UPDATE factory_readings SET actual = 9 WHERE factory_id = :f AND time = :t")

    with engine.connect() as conn:
        before = generation(conn)
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(update, {"f": factory_id, "t": MIDNIGHT})
            assert generation(conn) == before + 1  # one statement, one bump
        assert client.get(path).json()["sprocket_production_actual"] == [9] + [5] * 9
    else:
        refused = pytest.raises(DBAPIError, match="factory readings are append-only")
        with refused, engine.begin() as conn:
            conn.execute(update, {"f": factory_id, "t": MIDNIGHT})
        with engine.connect() as conn:
            assert generation(conn) == before
        assert client.get(path).json()["sprocket_production_actual"] == [5] * 10
    # Deleting stays possible on both: the factory's readings go with it (a cascade).
    assert client.delete(f"{FACTORIES}/{factory_id}").status_code == 204
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM factory_readings")).scalar_one() == 0


# B1. A failed import leaves nothing


def test_an_import_that_fails_after_writing_leaves_nothing(
    client: TestClient, engine: Engine
) -> None:
    assert post_file(client, SEED).status_code == 200
    before = snapshot(engine)
    # factories[0] is loaded (a new reading written) before factories[2] is found to conflict.
    document = conflicting(with_new_reading(SEED, 0))

    response = post_file(client, document)

    assert response.status_code == 409, response.text
    assert response.json()["detail"].startswith("factories[2].factory.chart_data.time[4]: ")
    assert snapshot(engine) == before
    # The same file without the conflict does load that reading: the failure undid a write.
    assert post_file(client, with_new_reading(SEED, 0)).json()["readings"]["created"] == 1
    assert len(snapshot(engine)["readings"]) == len(before["readings"]) + 1


@pytest.fixture
def cli_database(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str) -> Path:
    """The CLI pointed at the test's database, run in a folder of its own."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WHARF_DATABASE_URL", database_url)
    return tmp_path


def test_the_cli_loads_nothing_when_a_later_file_conflicts(
    client: TestClient, engine: Engine, cli_database: Path
) -> None:
    assert post_file(client, SEED).status_code == 200
    before = snapshot(engine)
    good, bad = cli_database / "good.json", cli_database / "bad.json"
    grown = with_new_reading(SEED, 0)
    grown["factories"].append(
        {"factory": {"name": "Fresh", "chart_data": {k: [1] for k in imports.ARRAYS}}}
    )
    good.write_text(json.dumps(grown))
    bad.write_text(json.dumps(conflicting(SEED)))

    result = runner.invoke(cli, ["factories", "load", str(good), str(bad)])

    assert result.exit_code == 1, result.output
    assert "factories[2].factory.chart_data.time[4]: " in result.output
    assert snapshot(engine) == before
    alone = runner.invoke(cli, ["factories", "load", str(good)])
    assert alone.exit_code == 0, alone.output
    assert len(snapshot(engine)["factories"]) == len(before["factories"]) + 1


# B2. A retried batch appends once


def test_an_idempotency_key_replays_a_batch_and_a_new_key_is_409(
    client: TestClient, engine: Engine, new_factory: FactoryFactory
) -> None:
    factory_id = new_factory()["id"]
    path = f"{FACTORIES}/{factory_id}/readings"
    batch = [{"time": MIDNIGHT + 60 * n, "actual": n, "goal": 10} for n in range(50)]

    first = client.post(path, json=batch, headers={"Idempotency-Key": "batch-1"})
    assert first.status_code == 201, first.text
    assert "Idempotent-Replayed" not in first.headers
    with engine.connect() as conn:
        version = conn.execute(text("SELECT version FROM factories")).scalar_one()

    again = client.post(path, json=batch, headers={"Idempotency-Key": "batch-1"})

    assert again.status_code == 201, again.text
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.content == first.content
    assert len(snapshot(engine)["readings"]) == 50
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version FROM factories")).scalar_one() == version

    other = client.post(path, json=batch, headers={"Idempotency-Key": "batch-2"})

    assert other.status_code == 409, other.text
    assert "Idempotent-Replayed" not in other.headers
    assert other.json()["times"][:3] == [MIDNIGHT, MIDNIGHT + 60, MIDNIGHT + 120]
    assert len(snapshot(engine)["readings"]) == 50


# B3. Long ranges come from the rollups


def test_daily_buckets_are_answered_by_the_daily_rollups(
    client: TestClient, engine: Engine, new_factory: FactoryFactory, append: Append
) -> None:
    factory_id = new_factory()["id"]
    append(factory_id, [(MIDNIGHT + 600 * n, 1, 2) for n in range(3 * 144)])  # 3 days
    window = {"from": MIDNIGHT, "to": MIDNIGHT + 3 * DAY, "bucket": "1d"}
    assert chart(client, factory_id, **window)["sprocket_production_actual"] == [144] * 3

    with engine.begin() as conn:  # the rollup's own trigger bumps the cache's generation
        conn.execute(
            text(
                "UPDATE factory_rollups_daily SET actual = 99999 "
                "WHERE factory_id = :f AND start = :s"
            ),
            {"f": factory_id, "s": MIDNIGHT + DAY},
        )

    body = chart(client, factory_id, **window)
    assert body["sprocket_production_actual"] == [144, 99999, 144]
    assert body["sprocket_production_goal"] == [288] * 3
    # The readings were not changed: the minute buckets still sum them.
    minutes = chart(client, factory_id, **{**window, "bucket": "15m", "max_points": 10_000})
    assert sum(minutes["sprocket_production_actual"]) == 3 * 144


def test_hourly_buckets_are_answered_by_the_hourly_rollups(
    client: TestClient, engine: Engine, new_factory: FactoryFactory, append: Append
) -> None:
    factory_id = new_factory()["id"]
    append(factory_id, [(MIDNIGHT + 600 * n, 1, 2) for n in range(144)])  # a day
    window = {"from": MIDNIGHT, "to": MIDNIGHT + DAY, "bucket": "1h"}
    assert chart(client, factory_id, **window)["sprocket_production_actual"] == [6] * 24

    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE factory_rollups_hourly SET actual = 777 "
                "WHERE factory_id = :f AND start = :s"
            ),
            {"f": factory_id, "s": MIDNIGHT + 5 * HOUR},
        )

    actual = chart(client, factory_id, **window)["sprocket_production_actual"]
    assert actual == [6] * 5 + [777] + [6] * 18
    # 6h buckets read the hourly rollups too; 15m ones read the readings, which are unchanged.
    six = chart(client, factory_id, **{**window, "bucket": "6h"})
    assert six["sprocket_production_actual"] == [36 - 6 + 777, 36, 36, 36]
    quarters = chart(client, factory_id, **{**window, "bucket": "15m"})
    assert sum(quarters["sprocket_production_actual"]) == 144


# B4. The cache sees writers other than the API


def test_the_cache_is_fresh_after_the_loader_and_the_cli_write(
    client: TestClient, cli_database: Path, database_url: str
) -> None:
    assert post_file(client, SEED).status_code == 200
    first = chart_of(SEED, 0)
    last = first["time"][-1]
    window = f"{FACTORIES}/1/chart-data?from={first['time'][0]}&to={last + 3600}"
    reads = (FACTORIES, window)
    for path in reads:
        client.get(path)
    before = hits()
    cached = [client.get(path).json() for path in reads]
    assert hits() == before + len(reads)  # both from the cache
    assert cached[0]["items"][0]["readings"] == 20
    assert cached[1]["points"] == 20

    other = create_db_engine(database_url)  # another process's engine, as a script would use
    try:
        with other.connect() as conn:
            conn.execution_options(wharf_write=True)
            with conn.begin():
                report = imports.load(conn, [imports.parse(json.dumps(with_new_reading(SEED, 0)))])
        assert report["readings"]["created"] == 1
    finally:
        other.dispose()

    listed, charted = (client.get(path).json() for path in reads)
    assert listed["items"][0]["readings"] == 21
    assert charted["time"][-1] == last + 60
    assert charted["sprocket_production_actual"][-1] == 7

    for path in reads:  # cached again, then the CLI writes
        client.get(path)
    grown = with_new_reading(with_new_reading(SEED, 0), 0)
    (cli_database / "grown.json").write_text(json.dumps(grown))
    result = runner.invoke(cli, ["factories", "load", str(cli_database / "grown.json")])
    assert result.exit_code == 0, result.output

    listed, charted = (client.get(path).json() for path in reads)
    assert listed["items"][0]["readings"] == 22
    assert charted["time"][-2:] == [last + 60, last + 120]


# B5. The seed twice changes no version


def test_the_seed_loaded_twice_changes_no_version_or_timestamp(
    client: TestClient, engine: Engine
) -> None:
    for document in (SEED, SPROCKETS):
        assert post_file(client, document).status_code == 200
    stored = snapshot(engine)
    listed = client.get(FACTORIES).json()["items"]
    assert [f["version"] for f in listed] == [1, 1, 1]

    for document in (SEED, SPROCKETS):
        assert post_file(client, document).status_code == 200

    assert snapshot(engine) == stored
    again = client.get(FACTORIES).json()["items"]
    keys = ("id", "version", "created_at", "updated_at")
    assert [{k: f[k] for k in keys} for f in again] == [{k: f[k] for k in keys} for f in listed]
    for factory in listed:
        detail = client.get(f"{FACTORIES}/{factory['id']}")
        assert detail.headers["ETag"] == f'"{factory["version"]}"'


# B6. Windows with one end given


def test_windows_with_only_one_end_default_the_other_to_the_readings(
    client: TestClient, new_factory: FactoryFactory, append: Append
) -> None:
    factory_id = new_factory()["id"]
    times = [MIDNIGHT + 60 * n for n in range(30)]
    append(factory_id, [(t, n, 100 + n) for n, t in enumerate(times)])
    first, last = times[0], times[-1]

    since = chart(client, factory_id, **{"from": times[10]})
    assert (since["from"], since["to"]) == (times[10], last + 1)
    assert since["time"] == times[10:]
    assert since["sprocket_production_actual"] == list(range(10, 30))

    until = chart(client, factory_id, to=times[5])
    assert (until["from"], until["to"]) == (first, times[5])
    assert until["time"] == times[:5]
    assert until["sprocket_production_goal"] == [100, 101, 102, 103, 104]

    hourly = chart(client, factory_id, to=last + 1, bucket="1h")
    assert (hourly["from"], hourly["time"]) == (first, [MIDNIGHT])
    assert hourly["sprocket_production_actual"] == [sum(range(30))]

    for start in (last + 1, last + 10 * DAY):
        after = chart(client, factory_id, **{"from": start})
        assert after["points"] == 0
        assert after["time"] == after["sprocket_production_actual"] == []
        assert (after["from"], after["to"]) == (start, start)  # an empty window at `from`

    until_before = chart(client, factory_id, to=first - 60)
    assert until_before["points"] == 0
    assert until_before["time"] == []


def test_a_to_before_the_first_reading_is_answered_as_asked(
    client: TestClient, new_factory: FactoryFactory, append: Append
) -> None:
    factory_id = new_factory()["id"]
    append(factory_id, [(MIDNIGHT + 60 * n, 1, 1) for n in range(5)])

    body = chart(client, factory_id, to=MIDNIGHT - 60)

    assert body["points"] == 0
    assert (body["from"], body["to"]) == (MIDNIGHT - 60, MIDNIGHT - 60)  # the `to` asked for
