"""Readings and chart data: appends and their 409s, the rollups kept with every write, and
every bucket checked against sums computed here in Python, over windows with edges on and
off the buckets' boundaries."""

from __future__ import annotations

import random
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, select
from starlette.testclient import TestClient

from tests.factories.conftest import FACTORIES, Append, FactoryFactory, Json, chart
from wharf.core.errors import Conflict
from wharf.factories import service
from wharf.factories.models import DailyRollup, HourlyRollup, Reading

SECONDS = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600, "6h": 21600, "1d": 86400}
# A Wednesday, 13:37:11 UTC: nothing about it is aligned to any bucket.
BASE = int(datetime(2026, 3, 4, 13, 37, 11, tzinfo=UTC).timestamp())
Rows = list[tuple[int, int, int]]


def start_of(bucket: str, time: int) -> int:
    """The reference's bucket start, computed another way than the service does."""
    if bucket == "1w":
        moment = datetime.fromtimestamp(time, UTC)
        return time - moment.weekday() * 86400 - time % 86400
    return time // SECONDS[bucket] * SECONDS[bucket]


def reference(rows: Rows, low: int, high: int, bucket: str | None) -> Json:
    inside = sorted(r for r in rows if low <= r[0] < high)
    if bucket is None:
        sums = [(t, a, g) for t, a, g in inside]
    else:
        grouped: dict[int, list[int]] = defaultdict(lambda: [0, 0])
        for t, a, g in inside:
            grouped[start_of(bucket, t)][0] += a
            grouped[start_of(bucket, t)][1] += g
        sums = [(t, a, g) for t, (a, g) in sorted(grouped.items())]
    return {
        "time": [t for t, _, _ in sums],
        "sprocket_production_actual": [a for _, a, _ in sums],
        "sprocket_production_goal": [g for _, _, g in sums],
    }


def arrays(body: Json) -> Json:
    return {k: body[k] for k in ("time", "sprocket_production_actual", "sprocket_production_goal")}


@pytest.fixture
def random_factory(new_factory: FactoryFactory, append: Append) -> tuple[int, Rows]:
    """6,000 readings at random seconds over 26 days, appended out of order in three
    batches, so rollup rows are written, then added to."""
    rng = random.Random(9)
    times = rng.sample(range(BASE, BASE + 26 * 86400), 6000)
    rows = [(t, rng.randint(0, 50), rng.randint(0, 60)) for t in times]
    factory = new_factory()
    for part in (rows[:2000], rows[2000:4000], rows[4000:]):
        append(factory["id"], part)
    return factory["id"], rows


def test_rollups_equal_the_sums_of_the_readings(
    engine: Engine, random_factory: tuple[int, Rows]
) -> None:
    factory_id, rows = random_factory
    for model, width in ((HourlyRollup, 3600), (DailyRollup, 86400)):
        expected: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0])
        for t, a, g in rows:
            sums = expected[t // width * width]
            sums[0], sums[1], sums[2] = sums[0] + 1, sums[1] + a, sums[2] + g
        with engine.connect() as conn:
            stored = conn.execute(
                select(model.start, model.readings, model.actual, model.goal).where(
                    model.factory_id == factory_id
                )
            )
            assert {s: [n, a, g] for s, n, a, g in stored} == dict(expected)


def windows() -> list[tuple[int, int]]:
    rng = random.Random(4)
    day = BASE - BASE % 86400
    monday = day - datetime.fromtimestamp(day, UTC).weekday() * 86400
    fixed = [
        (BASE, BASE + 26 * 86400),  # everything
        (day + 86400, day + 15 * 86400),  # whole days
        (monday + 7 * 86400, monday + 21 * 86400),  # whole weeks
        (day + 3 * 86400 + 3600 * 5, day + 9 * 86400 + 3600 * 7),  # whole hours
        (BASE + 3 * 86400 + 1234, BASE + 3 * 86400 + 4321),  # within an hour
        (BASE + 5 * 86400 + 17, BASE + 5 * 86400 + 86400 + 3),  # just over a day
        (0, BASE + 86400 * 2 + 7),  # from long before the first reading
    ]
    rand = []
    for _ in range(6):
        low = rng.randrange(BASE - 86400, BASE + 26 * 86400)
        rand.append((low, low + rng.randrange(1, 12 * 86400)))
    return fixed + rand


@pytest.mark.parametrize("bucket", ["1m", "5m", "15m", "1h", "6h", "1d", "1w"])
def test_every_bucket_equals_the_reference(
    client: TestClient, random_factory: tuple[int, Rows], bucket: str
) -> None:
    factory_id, rows = random_factory
    for low, high in windows():
        params: dict[str, str | int] = {
            "from": low,
            "to": high,
            "bucket": bucket,
            "max_points": 10_000,
        }
        response = client.get(f"{FACTORIES}/{factory_id}/chart-data", params=params)
        inside = [t for t, _, _ in rows if low <= t < high]
        width = 604800 if bucket == "1w" else SECONDS[bucket]
        if (
            inside
            and (start_of(bucket, max(inside)) - start_of(bucket, min(inside))) // width + 1
            > 10_000
        ):
            assert response.status_code == 422, (low, high)
            assert response.json()["errors"][0]["loc"] == ["query", "bucket"]
            continue
        assert response.status_code == 200, (low, high, response.text)
        body = response.json()
        assert arrays(body) == reference(rows, low, high, bucket), (low, high)
        assert (body["from"], body["to"], body["bucket"]) == (low, high, bucket)
        assert body["points"] == len(body["time"])


def test_raw_readings_when_they_fit_else_the_smallest_bucket_that_does(
    client: TestClient, random_factory: tuple[int, Rows]
) -> None:
    factory_id, rows = random_factory
    low, high = BASE + 86400, BASE + 86400 + 6 * 3600  # ~60 readings
    raw = chart(client, factory_id, **{"from": low, "to": high})
    assert raw["bucket"] is None
    assert arrays(raw) == reference(rows, low, high, None)

    everything = chart(client, factory_id)  # 6,000 readings over 26 days
    assert everything["bucket"] == "1h"  # 1m, 5m, 15m span too many buckets; 625 hours fit
    assert arrays(everything) == reference(rows, BASE, BASE + 26 * 86400, "1h")
    assert (everything["from"], everything["to"]) == (min(rows)[0], max(rows)[0] + 1)

    assert chart(client, factory_id, max_points=6000)["bucket"] is None
    assert chart(client, factory_id, max_points=5999)["bucket"] == "15m"  # 2,497 quarters
    assert chart(client, factory_id, max_points=30)["bucket"] == "1d"
    assert chart(client, factory_id, max_points=5)["bucket"] == "1w"
    # Nothing fits 4 points (26 days touch 5 weeks): the coarsest bucket, 1w, answers.
    assert chart(client, factory_id, max_points=4)["points"] == 5


def test_an_explicit_bucket_is_capped_only_by_the_hard_limit(
    client: TestClient, random_factory: tuple[int, Rows]
) -> None:
    factory_id, rows = random_factory
    # 1m over 26 days is 37,000 buckets, past any cap; 15m is 2,497: past the default 1,000
    # that the automatic choice uses, within the 10,000 an explicit bucket may ask for.
    quarters = chart(client, factory_id, bucket="15m")
    assert quarters["bucket"] == "15m"
    assert arrays(quarters) == reference(rows, BASE, BASE + 26 * 86400, "15m")
    assert quarters["points"] > 1_000
    refused = client.get(
        f"/api/v1/factories/{factory_id}/chart-data", params={"bucket": "15m", "max_points": 2000}
    )
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["loc"] == ["query", "bucket"]
    too_many = client.get(f"/api/v1/factories/{factory_id}/chart-data", params={"bucket": "1m"})
    assert too_many.status_code == 422


def test_from_and_to_take_iso_8601_and_unix_seconds(
    client: TestClient, random_factory: tuple[int, Rows]
) -> None:
    factory_id, _ = random_factory
    low = BASE + 86400 - BASE % 3600
    iso = datetime.fromtimestamp(low, UTC)
    as_unix = chart(client, factory_id, **{"from": low, "to": low + 7200})
    for text in (
        iso.isoformat(),
        iso.strftime("%Y-%m-%dT%H:%M:%SZ"),
        iso.strftime("%Y-%m-%dT%H:%M:%S"),
    ):
        assert chart(client, factory_id, **{"from": text, "to": low + 7200}) == as_unix
    # A fraction rounds up: readings are whole seconds in the half-open window.
    fraction = chart(
        client, factory_id, **{"from": f"{low - 1}", "to": iso.strftime("%Y-%m-%dT%H:%M:%S.5Z")}
    )
    assert fraction["to"] == low + 1
    assert chart(client, factory_id, **{"from": "2026-03-05", "to": "2026-03-06", "bucket": "1d"})[
        "from"
    ] == int(datetime(2026, 3, 5, tzinfo=UTC).timestamp())


@pytest.mark.parametrize(
    ("params", "loc"),
    [
        ({"from": 100, "to": 100}, ["query", "from"]),
        ({"from": "2026-03-06", "to": "2026-03-05"}, ["query", "from"]),
        ({"from": "yesterday"}, ["query", "from"]),
        ({"to": "2026-13-01"}, ["query", "to"]),
        ({"from": 10**14}, ["query", "from"]),
        ({"bucket": "2h"}, ["query", "bucket"]),
        ({"max_points": 0}, ["query", "max_points"]),
        ({"max_points": 10_001}, ["query", "max_points"]),
        ({"bucket": "1m", "max_points": 10}, ["query", "bucket"]),
    ],
)
def test_bad_chart_parameters_are_422(
    client: TestClient, new_factory: FactoryFactory, append: Append, params: Json, loc: list[str]
) -> None:
    factory_id = new_factory()["id"]
    append(factory_id, [(BASE + 60 * n, 1, 1) for n in range(100)])
    response = client.get(f"{FACTORIES}/{factory_id}/chart-data", params=params)

    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["loc"] == loc


def test_an_empty_factory_has_empty_chart_data(
    client: TestClient, new_factory: FactoryFactory
) -> None:
    factory = new_factory()
    body = chart(client, factory["id"])
    assert body == {
        "sprocket_production_actual": [],
        "sprocket_production_goal": [],
        "time": [],
        "from": None,
        "to": None,
        "bucket": None,
        "points": 0,
    }
    assert chart(client, factory["id"], bucket="1d", **{"from": 0, "to": 10})["points"] == 0


# Appending


def test_a_time_already_present_is_409_naming_it_and_nothing_is_written(
    client: TestClient, new_factory: FactoryFactory, append: Append
) -> None:
    factory = new_factory()
    append(factory["id"], [(100, 1, 1), (200, 2, 2), (300, 3, 3)])
    path = f"{FACTORIES}/{factory['id']}/readings"

    response = client.post(
        path,
        json=[{"time": t, "actual": 9, "goal": 9} for t in (400, 300, 50, 100)],
    )

    assert response.status_code == 409
    problem = response.json()
    assert problem["times"] == [100, 300]
    assert "100, 300" in problem["detail"]
    after = client.get(f"{FACTORIES}/{factory['id']}").json()
    assert after["version"] == 2
    assert after["readings"] == 3
    assert after["chart_data"]["time"] == [100, 200, 300]


def test_a_time_twice_in_one_batch_is_422(client: TestClient, new_factory: FactoryFactory) -> None:
    factory = new_factory()
    batch = [{"time": t, "actual": 1, "goal": 1} for t in (5, 6, 7, 6)]

    response = client.post(f"{FACTORIES}/{factory['id']}/readings", json=batch)

    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["body", 3, "time"]
    assert client.get(f"{FACTORIES}/{factory['id']}").json()["readings"] == 0


@pytest.mark.parametrize(
    "item",
    [
        {"time": 1, "actual": -1, "goal": 1},
        {"time": 1, "actual": 1, "goal": -5},
        {"time": -1, "actual": 1, "goal": 1},
        {"time": 1, "actual": 1.5, "goal": 1},
        {"time": "1", "actual": 1, "goal": 1},
        {"time": 1, "actual": 1},
        {"time": 1, "actual": 1, "goal": 1, "note": "x"},
        {"time": 1, "actual": 2**31, "goal": 1},
    ],
    ids=[
        "negative-actual",
        "negative-goal",
        "negative-time",
        "float",
        "string",
        "missing",
        "unknown",
        "huge",
    ],
)
def test_bad_readings_are_422(client: TestClient, new_factory: FactoryFactory, item: Json) -> None:
    factory = new_factory()

    response = client.post(f"{FACTORIES}/{factory['id']}/readings", json=[item])

    assert response.status_code == 422


def test_a_batch_holds_1_to_10000_readings(client: TestClient, new_factory: FactoryFactory) -> None:
    factory = new_factory()
    path = f"{FACTORIES}/{factory['id']}/readings"
    full = [{"time": t, "actual": 1, "goal": 2} for t in range(10_001)]

    assert client.post(path, json=[]).status_code == 422
    assert client.post(path, json=full).status_code == 422
    response = client.post(path, json=full[:10_000])
    assert response.status_code == 201
    assert response.json()["appended"] == 10_000
    assert response.json()["factory"]["goal_total"] == 20_000


def test_concurrent_appends_of_one_time_give_one_reading_and_one_409(
    engine: Engine, new_factory: FactoryFactory
) -> None:
    factory_id = new_factory()["id"]
    first_holds = threading.Event()
    outcomes: list[str] = []

    def second() -> None:
        first_holds.wait()
        try:
            with engine.connect() as conn:
                conn.execution_options(wharf_write=True)
                with conn.begin():
                    service.append_readings(conn, factory_id=factory_id, rows=[(50, 2, 2)])
            outcomes.append("appended")
        except Conflict:
            outcomes.append("409")

    racer = threading.Thread(target=second)
    racer.start()
    with engine.connect() as conn:
        conn.execution_options(wharf_write=True)
        with conn.begin():
            service.append_readings(conn, factory_id=factory_id, rows=[(50, 1, 1)])
            first_holds.set()
            time.sleep(0.3)  # the second writer waits on the factory's row (or SQLite's lock)
    racer.join()

    assert outcomes == ["409"]
    with engine.connect() as conn:
        stored = conn.execute(
            select(Reading.time, Reading.actual).where(Reading.factory_id == factory_id)
        )
        assert [tuple(r) for r in stored] == [(50, 1)]
