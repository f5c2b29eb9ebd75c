"""Factories over HTTP: CRUD, versions and preconditions, the list's summaries, the detail's
chart data, scopes, and a cache that never serves an answer older than the last write."""

from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import Engine, func, select
from starlette.testclient import TestClient

from tests.conftest import UserFactory, auth, if_match
from tests.factories.conftest import FACTORIES, Append, FactoryFactory
from wharf.app import create_app
from wharf.core.config import Settings
from wharf.core.metrics import CACHE
from wharf.factories.models import DailyRollup, HourlyRollup, Reading

SUMMARY = {"readings", "first_time", "last_time", "actual_total", "goal_total", "attainment"}
BASE = {"id", "url", "name", "version", "created_at", "updated_at"}


def hits() -> float:
    return float(CACHE.labels("hit")._value.get())


def url(factory_id: int) -> str:
    return f"{FACTORIES}/{factory_id}"


def test_create_returns_the_factory_with_an_empty_summary(client: TestClient) -> None:
    response = client.post(FACTORIES, json={"name": "Sprocket Works"})

    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == BASE | SUMMARY
    assert body["url"] == f"http://testserver{FACTORIES}/{body['id']}"
    assert response.headers["Location"] == body["url"]
    assert response.headers["ETag"] == '"1"'
    assert body["readings"] == 0
    assert body["attainment"] is None
    assert body["first_time"] is None
    assert body["last_time"] is None
    datetime.fromisoformat(body["created_at"])


@pytest.mark.parametrize(
    "body",
    [{}, {"name": ""}, {"name": "  "}, {"name": None}, {"name": "x" * 201}, {"name": "A", "id": 3}],
    ids=["missing", "empty", "blank", "null", "too-long", "read-only-field"],
)
def test_a_bad_body_is_422_and_creates_nothing(client: TestClient, body: dict[str, object]) -> None:
    response = client.post(FACTORIES, json=body)

    assert response.status_code == 422
    assert response.headers["Content-Type"] == "application/problem+json"
    assert client.get(FACTORIES).json()["total"] == 0


def test_names_are_unique(client: TestClient, new_factory: FactoryFactory) -> None:
    new_factory("Works")

    response = client.post(FACTORIES, json={"name": " Works "})

    assert response.status_code == 409
    assert "Works" in response.json()["detail"]


def test_list_gives_each_factory_its_summary(
    client: TestClient, new_factory: FactoryFactory, append: Append
) -> None:
    busy, idle = new_factory("Busy"), new_factory("Idle")
    append(busy["id"], [(86_400 * 3 + 30 * n, 10 + n % 3, 12) for n in range(5000)])
    append(busy["id"], [(86_400 * 20, 7, 0)])

    page = client.get(FACTORIES, params={"ordering": "name"}).json()

    assert [item["name"] for item in page["items"]] == ["Busy", "Idle"]
    summary = page["items"][0]
    actual = sum(10 + n % 3 for n in range(5000)) + 7
    assert {k: summary[k] for k in SUMMARY} == {
        "readings": 5001,
        "first_time": 86_400 * 3,
        "last_time": 86_400 * 20,
        "actual_total": actual,
        "goal_total": 60_000,
        "attainment": actual / 60_000,
    }
    assert page["items"][1]["readings"] == 0
    assert page["items"][1]["attainment"] is None
    assert idle["id"] == page["items"][1]["id"]


def test_list_searches_and_pages(client: TestClient, new_factory: FactoryFactory) -> None:
    for name in ("North Plant", "South Plant", "Depot"):
        new_factory(name)

    found = client.get(FACTORIES, params={"search": "plant", "limit": 1}).json()

    assert found["total"] == 2
    assert len(found["items"]) == 1
    assert found["next"] is not None
    assert client.get(FACTORIES, params={"ordering": "colour"}).status_code == 422


def test_detail_has_the_seeds_chart_data_shape(
    client: TestClient, new_factory: FactoryFactory, append: Append
) -> None:
    factory = new_factory()
    # The seed's example response: 20 readings, one a minute.
    times = [1611204818 + 60 * n for n in range(20)]
    append(factory["id"], [(t, 30 + n % 3, 31) for n, t in enumerate(times)])

    body = client.get(url(factory["id"])).json()

    chart = body["chart_data"]
    assert chart["time"] == times
    assert chart["sprocket_production_actual"] == [30 + n % 3 for n in range(20)]
    assert chart["sprocket_production_goal"] == [31] * 20
    assert (chart["bucket"], chart["points"]) == (None, 20)
    assert (chart["from"], chart["to"]) == (times[0], times[-1] + 1)
    assert body["readings"] == 20


def test_a_detail_past_max_points_gives_the_smallest_bucket_that_fits(
    client: TestClient, new_factory: FactoryFactory, append: Append
) -> None:
    # 1,500 readings a minute apart: more than the detail's default 1,000 points, so the
    # smallest bucket that fits (5m: 300 buckets) is chosen, and the answer names it.
    factory = new_factory()
    start = 1_700_000_100  # a multiple of 300: every 5-minute bucket holds 5 readings
    append(factory["id"], [(start + 60 * n, n % 7, 5) for n in range(1500)])

    chart = client.get(url(factory["id"])).json()["chart_data"]

    assert (chart["bucket"], chart["points"]) == ("5m", 300)
    assert chart["time"] == [start + 300 * n for n in range(300)]
    assert chart["sprocket_production_goal"] == [25] * 300
    assert chart["sprocket_production_actual"][:2] == [0 + 1 + 2 + 3 + 4, 5 + 6 + 0 + 1 + 2]
    assert sum(chart["sprocket_production_actual"]) == sum(n % 7 for n in range(1500))


def test_replace_and_patch_need_the_current_version(
    client: TestClient, new_factory: FactoryFactory
) -> None:
    factory = new_factory("Old")
    path = url(factory["id"])

    assert client.put(path, json={"name": "New"}).status_code == 428
    assert client.put(path, json={"name": "New"}, headers=if_match(7)).status_code == 412
    assert client.patch(path, json={"name": "New", "version": 7}).status_code == 409
    assert client.get(path).json()["name"] == "Old"

    replaced = client.put(path, json={"name": "New"}, headers=if_match(1))
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["version"] == 2
    assert replaced.headers["ETag"] == '"2"'
    patched = client.patch(path, json={"name": "Newer", "version": 2})
    assert patched.status_code == 200
    assert patched.json()["version"] == 3
    assert set(patched.json()) == BASE | SUMMARY


def test_renaming_onto_another_name_is_409(client: TestClient, new_factory: FactoryFactory) -> None:
    new_factory("Taken")
    other = new_factory("Mine")

    response = client.patch(url(other["id"]), json={"name": "Taken"}, headers=if_match(1))

    assert response.status_code == 409
    assert client.get(url(other["id"])).json()["name"] == "Mine"


def test_appended_readings_are_located_by_their_chart_data_window(
    client: TestClient, new_factory: FactoryFactory
) -> None:
    factory_id = new_factory()["id"]
    batch = [{"time": t, "actual": 3, "goal": 4} for t in (500, 100, 300)]

    response = client.post(f"/api/v1/factories/{factory_id}/readings", json=batch)

    assert response.status_code == 201
    location = response.headers["Location"]
    assert location.endswith(f"/api/v1/factories/{factory_id}/chart-data?from=100&to=501")
    window = client.get(location).json()
    assert window["time"] == [100, 300, 500]
    assert window["sprocket_production_actual"] == [3, 3, 3]


def test_appending_readings_changes_the_version_and_etag(
    client: TestClient, new_factory: FactoryFactory, append: Append
) -> None:
    factory = new_factory()
    path = url(factory["id"])
    assert client.get(path, headers={"If-None-Match": '"1"'}).status_code == 304

    report = append(factory["id"], [(100, 1, 1)])

    assert report["factory"]["version"] == 2
    response = client.get(path, headers={"If-None-Match": '"1"'})
    assert response.status_code == 200
    assert response.headers["ETag"] == '"2"'
    assert client.put(path, json={"name": "X"}, headers=if_match(1)).status_code == 412


def test_delete_takes_the_readings_and_rollups_with_it(
    client: TestClient, engine: Engine, new_factory: FactoryFactory, append: Append
) -> None:
    factory, kept = new_factory(), new_factory()
    append(factory["id"], [(3600 * n, 1, 1) for n in range(50)])
    append(kept["id"], [(5, 1, 1)])

    assert client.delete(url(factory["id"]), headers=if_match(1)).status_code == 412
    assert client.delete(url(factory["id"])).status_code == 204

    assert client.get(url(factory["id"])).status_code == 404
    assert client.delete(url(factory["id"])).status_code == 404
    with engine.connect() as conn:
        for table in (Reading, HourlyRollup, DailyRollup):
            assert conn.execute(select(func.count()).select_from(table)).scalar_one() == 1


def test_unknown_factories_are_404(client: TestClient) -> None:
    assert client.get(url(99)).status_code == 404
    assert client.get(f"{url(99)}/chart-data").status_code == 404
    assert (
        client.post(f"{url(99)}/readings", json=[{"time": 1, "actual": 1, "goal": 1}]).status_code
        == 404
    )
    assert client.patch(url(99), json={"name": "X"}, headers=if_match(1)).status_code == 404


def test_scopes(client: TestClient, make_user: UserFactory, new_factory: FactoryFactory) -> None:
    factory = new_factory()
    path = url(factory["id"])
    reader = auth(make_user(scopes=frozenset({"read"}))[1])
    writer = auth(make_user(scopes=frozenset({"read", "write"}))[1])
    readings = [{"time": 1, "actual": 1, "goal": 1}]

    for get in (FACTORIES, path, f"{path}/chart-data"):
        assert client.get(get, headers=reader).status_code == 200
    refused = [
        client.post(FACTORIES, json={"name": "R"}, headers=reader),
        client.put(path, json={"name": "R", "version": 1}, headers=reader),
        client.patch(path, json={"name": "R", "version": 1}, headers=reader),
        client.delete(path, headers=reader),
        client.post(f"{path}/readings", json=readings, headers=reader),
        client.post(f"{FACTORIES}/imports", json={"sprockets": []}, headers=writer),
    ]
    assert [r.status_code for r in refused] == [403] * len(refused)
    assert client.post(f"{path}/readings", json=readings, headers=writer).status_code == 201
    assert client.get(FACTORIES, headers={"Authorization": "Bearer nope"}).status_code == 401


def test_cached_reads_are_fresh_after_every_write(
    client: TestClient, new_factory: FactoryFactory, append: Append
) -> None:
    factory = new_factory("Cached")
    chart = f"{url(factory['id'])}/chart-data"
    append(factory["id"], [(60, 1, 2)])
    reads = (FACTORIES, url(factory["id"]), chart, f"{chart}?bucket=1h")
    for path in reads:
        client.get(path)
    before = hits()
    first = [client.get(path).json() for path in reads]
    assert hits() == before + len(reads)  # each was served from the cache

    append(factory["id"], [(120, 3, 4)])

    listed, detail, raw, hourly = (client.get(path).json() for path in reads)
    assert listed["items"][0]["readings"] == 2
    assert first[0]["items"][0]["readings"] == 1
    assert detail["chart_data"]["time"] == [60, 120]
    assert detail["version"] == 3
    assert raw["sprocket_production_actual"] == [1, 3]
    assert hourly["sprocket_production_goal"] == [6]

    renamed = client.patch(url(factory["id"]), json={"name": "Renamed"}, headers=if_match(3))
    assert renamed.status_code == 200
    assert client.get(FACTORIES).json()["items"][0]["name"] == "Renamed"
    assert client.get(url(factory["id"])).json()["name"] == "Renamed"

    assert client.delete(url(factory["id"])).status_code == 204
    assert client.get(FACTORIES).json()["total"] == 0
    assert client.get(chart).status_code == 404


def test_a_write_on_one_worker_is_seen_by_the_others_cache(
    settings: Settings, make_user: UserFactory
) -> None:
    # Two app instances on one database, each with its own memory cache (think: two worker
    # processes without Redis): only the database's generation links them.
    apps = [create_app(settings) for _ in "ab"]
    _, token = make_user(role="admin")
    with TestClient(apps[0]) as a, TestClient(apps[1]) as b:
        for client in (a, b):
            client.headers["Authorization"] = f"Bearer {token}"
        factory = a.post(FACTORIES, json={"name": "Shared"}).json()
        chart = f"{url(factory['id'])}/chart-data?bucket=1h"
        reads = (FACTORIES, url(factory["id"]), chart)
        for path in reads:  # b caches each answer: a miss, then a hit
            b.get(path)
        before = hits()
        assert [b.get(path).status_code for path in reads] == [200] * 3
        assert hits() == before + len(reads)

        appended = a.post(
            f"{url(factory['id'])}/readings", json=[{"time": 60, "actual": 4, "goal": 5}]
        )
        assert appended.status_code == 201, appended.text

        listed, detail, hourly = (b.get(path).json() for path in reads)
        assert listed["items"][0]["readings"] == 1
        assert detail["chart_data"]["time"] == [60]
        assert (hourly["sprocket_production_actual"], hourly["sprocket_production_goal"]) == (
            [4],
            [5],
        )
