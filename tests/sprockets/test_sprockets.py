"""Sprocket types over HTTP: CRUD with real verbs, bounds, one type per four dimensions (409
naming it), versioned writes and scopes."""

from __future__ import annotations

from datetime import datetime

import pytest
from starlette.testclient import TestClient

from tests.conftest import if_match
from tests.sprockets.conftest import (
    SEED,
    SPROCKETS,
    Json,
    SprocketFactory,
    dims,
    read,
    sprocket_url,
)
from wharf.sprockets.schemas import SIZE_MAX, TEETH_MAX

FIELDS = ("teeth", "pitch_diameter", "outside_diameter", "pitch")
MAXIMA = {"teeth": TEETH_MAX, "pitch_diameter": SIZE_MAX, "outside_diameter": SIZE_MAX}
MAXIMA |= {"pitch": SIZE_MAX}


def total(client: TestClient) -> int:
    count: int = client.get(SPROCKETS).json()["total"]
    return count


# Create and read


def test_the_seeds_create_url_is_a_post_with_json(client: TestClient) -> None:
    """/api/sprocket/create/5/6/4/7/ of the seed, as POST /api/v1/sprockets."""
    response = client.post(SPROCKETS, json=SEED)

    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"id", "url", *FIELDS, "version", "created_at", "updated_at"}
    assert {f: body[f] for f in FIELDS} == SEED
    assert body["version"] == 1
    assert body["url"] == f"http://testserver{SPROCKETS}/{body['id']}"
    assert response.headers["Location"] == body["url"]
    assert response.headers["ETag"] == '"1"'
    assert body["created_at"].endswith("Z")
    assert body["created_at"] == body["updated_at"]
    datetime.fromisoformat(body["created_at"])


@pytest.mark.parametrize(
    "path",
    [
        "/api/sprocket/create/5/6/4/7/",
        "/api/sprocket/1/update/5/6/4/7/",
        "/api/v1/sprocket/create/5/6/4/7/",
        f"{SPROCKETS}/create/5/6/4/7/",
        f"{SPROCKETS}/1/update/5/6/4/7/",
    ],
)
def test_the_seeds_get_urls_that_wrote_are_gone(
    client: TestClient, new_sprocket: SprocketFactory, path: str
) -> None:
    # A GET never writes: the seed's mutation URLs are 404 problems and change nothing.
    sprocket = new_sprocket()

    response = client.get(path)

    assert response.status_code == 404
    assert response.headers["Content-Type"] == "application/problem+json"
    assert client.get(SPROCKETS).json()["items"] == [sprocket]


def test_get_returns_what_create_returned(
    client: TestClient, new_sprocket: SprocketFactory
) -> None:
    created = new_sprocket()

    response = client.get(sprocket_url(created["id"]))

    assert response.status_code == 200
    assert response.json() == created
    assert response.headers["ETag"] == '"1"'
    assert client.get(sprocket_url(created["id"]) + "/").json() == created
    assert client.get(SPROCKETS + "/").json()["items"] == [created]


@pytest.mark.parametrize("field", FIELDS)
def test_each_bound_is_inclusive(client: TestClient, field: str) -> None:
    for value in (1, MAXIMA[field]):
        response = client.post(SPROCKETS, json={**SEED, field: value})
        assert response.status_code == 201, (field, value, response.text)


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize(
    "bad", ["zero", "negative", "above", "string", "bool", "fraction", "null", "missing"]
)
def test_each_field_is_a_bounded_positive_integer(client: TestClient, field: str, bad: str) -> None:
    values = {
        "zero": 0,
        "negative": -1,
        "above": MAXIMA[field] + 1,
        "string": "5",
        "bool": True,
        "fraction": 5.5,
        "null": None,
    }
    body: Json = {**SEED, field: values.get(bad)}
    if bad == "missing":
        del body[field]

    response = client.post(SPROCKETS, json=body)

    assert response.status_code == 422
    assert response.headers["Content-Type"] == "application/problem+json"
    assert any(err["loc"][-1] == field for err in response.json()["errors"])
    assert total(client) == 0


def test_a_number_without_a_fraction_is_an_integer(client: TestClient) -> None:
    """JSON Schema's `integer`, as the document says: 7.0 is one."""
    response = client.post(SPROCKETS, json={**SEED, "pitch": 7.0})

    assert response.status_code == 201, response.text
    assert response.json()["pitch"] == 7
    assert isinstance(response.json()["pitch"], int)


@pytest.mark.parametrize("field", ["id", "url", "version", "created_at", "updated_at", "colour"])
def test_create_rejects_read_only_and_unknown_fields(client: TestClient, field: str) -> None:
    assert client.post(SPROCKETS, json={**SEED, field: 1}).status_code == 422
    assert total(client) == 0


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE"])
def test_missing_type_is_404(client: TestClient, method: str) -> None:
    body = None if method in {"GET", "DELETE"} else SEED
    response = client.request(method, sprocket_url(99), json=body, headers=if_match(1))

    assert response.status_code == 404
    assert response.json()["detail"] == "No sprocket type 99."


# One type per four dimensions


def test_duplicate_create_is_409_naming_the_existing_type(
    client: TestClient, new_sprocket: SprocketFactory
) -> None:
    existing = new_sprocket()

    response = client.post(SPROCKETS, json=SEED)

    assert response.status_code == 409
    problem = response.json()
    assert f"Sprocket type {existing['id']} " in problem["detail"]
    assert f"{SPROCKETS}/{existing['id']}" in problem["detail"]
    assert problem["existing_id"] == existing["id"]
    assert total(client) == 1


def test_types_differing_in_one_dimension_are_distinct(
    client: TestClient, new_sprocket: SprocketFactory
) -> None:
    new_sprocket()
    for field in FIELDS:
        assert client.post(SPROCKETS, json={**SEED, field: 99}).status_code == 201
    assert total(client) == 5


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
def test_changing_onto_another_types_dimensions_is_409_and_changes_nothing(
    client: TestClient, new_sprocket: SprocketFactory, method: str
) -> None:
    existing = new_sprocket(5, 6, 4, 7)
    other = new_sprocket(5, 6, 4, 8)
    body = SEED if method == "PUT" else {"pitch": 7}

    response = client.request(method, sprocket_url(other["id"]), json=body, headers=if_match(1))

    assert response.status_code == 409
    assert response.json()["existing_id"] == existing["id"]
    assert read(client, other["id"]) == other


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
def test_keeping_its_own_dimensions_is_not_a_conflict(
    client: TestClient, new_sprocket: SprocketFactory, method: str
) -> None:
    sprocket = new_sprocket()

    response = client.request(method, sprocket_url(sprocket["id"]), json=SEED, headers=if_match(1))

    assert response.status_code == 200, response.text
    assert response.json()["version"] == 2


# Changes and versions


def test_the_seeds_update_url_is_a_put(client: TestClient, new_sprocket: SprocketFactory) -> None:
    """/api/sprocket/3/update/... of the seed, as PUT /api/v1/sprockets/3."""
    sprocket = new_sprocket()

    response = client.put(sprocket_url(sprocket["id"]), json={**dims(8, 9, 10, 11), "version": 1})

    assert response.status_code == 200, response.text
    body = response.json()
    assert {f: body[f] for f in FIELDS} == dims(8, 9, 10, 11)
    assert body["version"] == 2
    assert response.headers["ETag"] == '"2"'
    assert body["created_at"] == sprocket["created_at"]
    assert body["updated_at"] >= sprocket["updated_at"]
    assert read(client, sprocket["id"]) == body


def test_put_needs_every_field(client: TestClient, new_sprocket: SprocketFactory) -> None:
    sprocket = new_sprocket()
    body = {"teeth": 9, "version": 1}

    assert client.put(sprocket_url(sprocket["id"]), json=body).status_code == 422
    assert read(client, sprocket["id"]) == sprocket


def test_patch_merges(client: TestClient, new_sprocket: SprocketFactory) -> None:
    sprocket = new_sprocket()

    response = client.patch(sprocket_url(sprocket["id"]), json={"teeth": 12}, headers=if_match(1))

    assert response.status_code == 200, response.text
    body = response.json()
    assert {f: body[f] for f in FIELDS} == {**SEED, "teeth": 12}
    assert (body["id"], body["version"]) == (sprocket["id"], 2)


def test_empty_patch_changes_nothing(client: TestClient, new_sprocket: SprocketFactory) -> None:
    sprocket = new_sprocket()

    response = client.patch(sprocket_url(sprocket["id"]), json={}, headers=if_match(1))

    assert response.status_code == 200
    assert response.json() == sprocket


@pytest.mark.parametrize("body", [{"teeth": None}, {"teeth": 0}, {"pitch": SIZE_MAX + 1}])
def test_patch_to_an_invalid_value_is_422(
    client: TestClient, new_sprocket: SprocketFactory, body: Json
) -> None:
    sprocket = new_sprocket()

    response = client.patch(sprocket_url(sprocket["id"]), json=body, headers=if_match(1))

    assert response.status_code == 422
    assert read(client, sprocket["id"]) == sprocket


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
def test_write_without_a_version_is_428_and_changes_nothing(
    client: TestClient, new_sprocket: SprocketFactory, method: str
) -> None:
    sprocket = new_sprocket()

    response = client.request(method, sprocket_url(sprocket["id"]), json=dims(1, 2, 3, 4))

    assert response.status_code == 428
    assert read(client, sprocket["id"]) == sprocket


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
def test_stale_if_match_is_412_and_stale_body_version_409(
    client: TestClient, new_sprocket: SprocketFactory, method: str
) -> None:
    sprocket = new_sprocket()
    url = sprocket_url(sprocket["id"])
    assert client.patch(url, json={"teeth": 9}, headers=if_match(1)).status_code == 200
    before = read(client, sprocket["id"])

    by_header = client.request(method, url, json=dims(1, 2, 3, 4), headers=if_match(1))
    by_body = client.request(method, url, json={**dims(1, 2, 3, 4), "version": 1})

    assert by_header.status_code == 412
    assert "version 2" in by_header.json()["detail"]
    assert by_body.status_code == 409
    assert read(client, sprocket["id"]) == before


def test_stale_version_wins_over_taken_dimensions(
    client: TestClient, new_sprocket: SprocketFactory
) -> None:
    new_sprocket(5, 6, 4, 7)
    other = new_sprocket(5, 6, 4, 8)
    response = client.patch(sprocket_url(other["id"]), json={"pitch": 7}, headers=if_match(3))

    assert response.status_code == 412


def test_delete_is_204_then_404(client: TestClient, new_sprocket: SprocketFactory) -> None:
    sprocket = new_sprocket()
    url = sprocket_url(sprocket["id"])

    assert client.delete(url, headers=if_match(2)).status_code == 412
    assert client.delete(url, headers=if_match(1)).status_code == 204
    assert client.get(url).status_code == 404
    assert client.delete(url).status_code == 404
    # Its dimensions are free again.
    assert client.post(SPROCKETS, json=SEED).status_code == 201


# Auth


def test_read_only_token_can_read_but_not_write(
    client: TestClient, new_sprocket: SprocketFactory, read_only: dict[str, str]
) -> None:
    sprocket = new_sprocket()
    url = sprocket_url(sprocket["id"])

    assert client.get(SPROCKETS, headers=read_only).status_code == 200
    assert client.get(url, headers=read_only).status_code == 200
    writes = [
        client.post(SPROCKETS, json=dims(1, 2, 3, 4), headers=read_only),
        client.put(url, json={**dims(1, 2, 3, 4), "version": 1}, headers=read_only),
        client.patch(url, json={"teeth": 1, "version": 1}, headers=read_only),
        client.delete(url, headers=read_only),
    ]
    assert [r.status_code for r in writes] == [403, 403, 403, 403]
    assert client.get(SPROCKETS).json()["items"] == [sprocket]


def test_no_token_is_401(anon: TestClient) -> None:
    assert anon.get(SPROCKETS).status_code == 401
    assert anon.post(SPROCKETS, json=SEED).status_code == 401
    for method in ["GET", "PUT", "PATCH", "DELETE"]:
        assert anon.request(method, sprocket_url(1)).status_code == 401
