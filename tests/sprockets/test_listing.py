"""Listing sprocket types: equality and range filters on every dimension, ordering on every
field, and a cached list that is never stale after a write."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from tests.conftest import ids, if_match
from tests.sprockets.conftest import SPROCKETS, Json, SprocketFactory, sprocket_url
from wharf.core.metrics import CACHE

FIELDS = ("teeth", "pitch_diameter", "outside_diameter", "pitch")
# Four types whose dimensions sort differently on every field.
ROWS = [(10, 40, 30, 2), (20, 10, 40, 4), (30, 30, 10, 1), (40, 20, 20, 3)]


@pytest.fixture
def made(new_sprocket: SprocketFactory) -> list[Json]:
    return [new_sprocket(*row) for row in ROWS]


def listed(client: TestClient, **params: str | int) -> Json:
    response = client.get(SPROCKETS, params=params)
    assert response.status_code == 200, response.text
    body: Json = response.json()
    return body


def test_list_envelope(client: TestClient, made: list[Json]) -> None:
    page = listed(client, limit=3)

    assert page["items"] == made[:3]
    assert (page["total"], page["limit"], page["offset"], page["previous"]) == (4, 3, 0, None)
    assert page["next"] is not None
    assert listed(client, limit=3, offset=3)["items"] == made[3:]


@pytest.mark.parametrize("field", FIELDS)
def test_equality_filter_on_each_dimension(
    client: TestClient, made: list[Json], field: str
) -> None:
    wanted = made[2]

    page = listed(client, **{field: wanted[field]})

    assert ids(page) == [wanted["id"]]
    assert listed(client, **{field: 999})["total"] == 0


@pytest.mark.parametrize("field", FIELDS)
def test_range_filters_on_each_dimension_are_inclusive(
    client: TestClient, made: list[Json], field: str
) -> None:
    values = sorted(m[field] for m in made)
    low, high = values[1], values[2]

    def within(lo: int, hi: int) -> list[int]:
        return sorted(m["id"] for m in made if lo <= m[field] <= hi)

    both = listed(client, **{f"{field}_min": low, f"{field}_max": high})
    only_low = listed(client, **{f"{field}_min": low})
    only_high = listed(client, **{f"{field}_max": high})

    assert ids(both) == within(low, high)
    assert len(ids(both)) == 2
    assert ids(only_low) == within(low, 10**9)
    assert ids(only_high) == within(0, high)
    assert listed(client, **{f"{field}_min": high, f"{field}_max": low})["total"] == 0


def test_filters_combine(client: TestClient, made: list[Json]) -> None:
    page = listed(client, teeth_min=20, pitch_max=3, ordering="-teeth")

    assert ids(page) == [made[3]["id"], made[2]["id"]]


@pytest.mark.parametrize("field", ["id", *FIELDS, "created_at", "updated_at"])
@pytest.mark.parametrize("descending", [False, True])
def test_ordering_by_each_field(
    client: TestClient, made: list[Json], field: str, descending: bool
) -> None:
    expected = sorted(made, key=lambda m: (m[field], m["id"]), reverse=descending)

    page = listed(client, ordering=f"-{field}" if descending else field)

    if field in {"created_at", "updated_at"}:  # equal timestamps may tie: compare values
        assert [m[field] for m in page["items"]] == [m[field] for m in expected]
    else:
        assert page["items"] == expected


def test_ordering_by_several_fields(client: TestClient, new_sprocket: SprocketFactory) -> None:
    a = new_sprocket(1, 2, 3, 9)
    b = new_sprocket(1, 2, 3, 1)
    c = new_sprocket(2, 2, 3, 5)

    assert ids(listed(client, ordering="-teeth,pitch")) == [c["id"], b["id"], a["id"]]


@pytest.mark.parametrize(
    "params",
    [
        {"ordering": "colour"},
        {"ordering": "-search"},
        {"teeth": "many"},
        {"pitch_min": 2**31},
        {"limit": 501},
        {"offset": -1},
    ],
)
def test_bad_queries_are_422(client: TestClient, params: dict[str, str | int]) -> None:
    response = client.get(SPROCKETS, params=params)

    assert response.status_code == 422
    assert response.headers["Content-Type"] == "application/problem+json"


def hits() -> float:
    return float(CACHE.labels("hit")._value.get())


def test_a_cached_list_is_fresh_after_each_write(
    client: TestClient, new_sprocket: SprocketFactory
) -> None:
    first = new_sprocket(1, 2, 3, 4)
    url = sprocket_url(first["id"])
    query = {"ordering": "-teeth"}
    client.get(SPROCKETS, params=query)
    before = hits()
    assert client.get(SPROCKETS, params=query).json()["total"] == 1
    assert hits() == before + 1  # the list is served from the cache
    client.get(url)

    second = new_sprocket(5, 6, 7, 8)
    assert ids(client.get(SPROCKETS, params=query).json()) == [second["id"], first["id"]]

    changed = client.patch(url, json={"teeth": 9}, headers=if_match(1))
    assert changed.status_code == 200
    assert client.get(SPROCKETS, params=query).json()["items"][0]["teeth"] == 9
    assert client.get(url).json()["teeth"] == 9

    assert (
        client.put(
            url,
            json={"teeth": 3, "pitch_diameter": 2, "outside_diameter": 1, "pitch": 1, "version": 2},
        ).status_code
        == 200
    )
    assert client.get(url).json()["version"] == 3

    assert client.delete(url).status_code == 204
    assert ids(client.get(SPROCKETS, params=query).json()) == [second["id"]]
    assert client.get(url).status_code == 404
