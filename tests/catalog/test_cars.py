"""Cars over HTTP: CRUD with versions, listing, the seed's /web and /mobile routes, and an
image fetched in the background through the outbound client."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine, update

from tests.catalog.conftest import drain
from tests.catalog.imagefixtures import jpeg
from tests.catalog.webserver import WebServer
from tests.conftest import ids, if_match
from wharf.catalog.models import Car
from wharf.core.data.db import writing
from wharf.core.work import Worker

CARS = "/api/v1/cars"


def _create(client: TestClient, **body: Any) -> dict[str, Any]:
    response = client.post(CARS, json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def test_a_car_without_an_image(client: TestClient) -> None:
    car = _create(client, title="Item 1", description="Description 1")
    assert car["image_url"] is None
    assert car["images"] is None
    assert car["image_status"] == "none"
    assert car["image_error"] is None
    got = client.get(f"{CARS}/{car['id']}")
    assert got.json() == car
    assert got.headers["etag"] == '"1"'
    assert client.get(f"{CARS}/web").json()["items"][0]["image"] is None


def test_an_image_is_fetched_in_the_background(
    client: TestClient, web: WebServer, worker: Worker
) -> None:
    url = web.image("/car.jpg", jpeg(2000, 1000))
    car = _create(client, title="Item 2", image_url=url)
    assert car["image_status"] == "pending"
    assert car["images"] is None
    drain(worker)
    ready = client.get(f"{CARS}/{car['id']}").json()
    assert ready["image_status"] == "ready", ready
    images = ready["images"]
    assert (images["width"], images["height"]) == (2000, 1000)
    assert (images["web"]["width"], images["web"]["height"]) == (1024, 512)
    assert (images["mobile"]["width"], images["mobile"]["height"]) == (320, 160)
    for variant in ("web", "mobile"):
        assert images[variant]["jpeg"].startswith("http://testserver/media/")
        assert images[variant]["jpeg"].endswith(".jpg")
        assert images[variant]["webp"].endswith(".webp")
        assert images[variant]["avif"].endswith(".avif")  # the AVIF job ran in `drain`
    assert ready["version"] > car["version"]  # the representation changed: so did its ETag
    web_list = client.get(f"{CARS}/web").json()["items"]
    mobile_list = client.get(f"{CARS}/mobile").json()["items"]
    assert web_list[0]["image"] == images["web"]["jpeg"]
    assert mobile_list[0]["image"] == images["mobile"]["jpeg"]
    assert (
        client.get(CARS, params={"platform": "mobile"}).json()["items"][0]["image"]
        == (images["mobile"]["jpeg"])
    )
    assert web.hits["/car.jpg"] == 1


def test_an_unknown_platform_is_refused(client: TestClient) -> None:
    response = client.get(CARS, params={"platform": "tablet"})
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"


def test_a_failed_image_keeps_its_car_and_says_why(
    client: TestClient, web: WebServer, worker: Worker
) -> None:
    car = _create(client, title="Broken", image_url=web.url("/missing.jpg"))
    drain(worker)
    failed = client.get(f"{CARS}/{car['id']}").json()
    assert failed["image_status"] == "failed"
    assert failed["images"] is None
    assert "HTTP 404" in failed["image_error"]
    # The same URL again is a retry; now the server has it.
    web.image("/missing.jpg", jpeg(400, 300))
    again = client.put(
        f"{CARS}/{car['id']}",
        json={"title": "Broken", "image_url": web.url("/missing.jpg")},
        headers=if_match(failed["version"]),
    )
    assert again.json()["image_status"] == "pending"
    drain(worker)
    assert client.get(f"{CARS}/{car['id']}").json()["image_status"] == "ready"


def test_versions_titles_and_deletes(client: TestClient) -> None:
    car = _create(client, title="Alpha")
    other = _create(client, title="Beta")
    clash = client.patch(f"{CARS}/{other['id']}", json={"title": "Alpha"}, headers=if_match(1))
    assert clash.status_code == 409
    assert clash.json()["existing_id"] == car["id"]
    assert client.post(CARS, json={"title": "Alpha"}).status_code == 409
    stale = client.patch(f"{CARS}/{car['id']}", json={"description": "x"}, headers=if_match(7))
    assert stale.status_code == 412
    assert client.patch(f"{CARS}/{car['id']}", json={"description": "x"}).status_code == 428
    changed = client.patch(f"{CARS}/{car['id']}", json={"description": "x"}, headers=if_match(1))
    assert changed.status_code == 200
    assert changed.json()["version"] == 2
    null_title = client.patch(f"{CARS}/{car['id']}", json={"title": None}, headers=if_match(2))
    assert null_title.status_code == 422
    assert client.delete(f"{CARS}/{car['id']}").status_code == 204
    assert client.get(f"{CARS}/{car['id']}").status_code == 404
    assert client.get(f"{CARS}/999").status_code == 404
    assert client.put(f"{CARS}/imports", json={}).status_code == 405


def test_listing_filters_search_and_order(
    client: TestClient, web: WebServer, worker: Worker
) -> None:
    with_image = _create(client, title="Zephyr", image_url=web.image("/z.jpg", jpeg(64, 48)))
    plain = _create(client, title="Apex", description="a red roadster")
    drain(worker)
    assert ids(client.get(CARS, params={"ordering": "title"}).json()) == [
        plain["id"],
        with_image["id"],
    ]
    assert ids(client.get(CARS, params={"search": "roadster"}).json()) == [plain["id"]]
    assert ids(client.get(CARS, params={"has_image": "true"}).json()) == [with_image["id"]]
    assert ids(client.get(CARS, params={"has_image": "false"}).json()) == [plain["id"]]
    assert client.get(CARS, params={"ordering": "colour"}).status_code == 422


def test_ordering_by_id_and_created_at(client: TestClient, engine: Engine) -> None:
    first, second, third, fourth = (_create(client, title=t)["id"] for t in "DCBA")
    # Creation times out of id order (as after a restore), two of them equal.
    made = {
        first: datetime(2024, 3, 1, 9, 0, tzinfo=UTC),
        second: datetime(2024, 1, 1, 9, 0, tzinfo=UTC),
        third: datetime(2024, 2, 1, 9, 0, tzinfo=UTC),
        fourth: datetime(2024, 1, 1, 9, 0, tzinfo=UTC),
    }
    with writing(engine) as conn:
        for car_id, at in made.items():
            conn.execute(update(Car).where(Car.id == car_id).values(created_at=at))

    def order(ordering: str) -> list[int]:
        page = client.get(CARS, params={"ordering": ordering}).json()
        return ids(page)

    assert order("id") == [first, second, third, fourth]
    assert order("-id") == [fourth, third, second, first]
    # Ties (second and fourth) go by id, ascending, whichever way the time sorts.
    assert order("created_at") == [second, fourth, third, first]
    assert order("-created_at") == [first, third, second, fourth]
    assert order("-created_at,-id") == [first, third, fourth, second]
    listed = client.get(CARS, params={"ordering": "created_at"}).json()["items"]
    times = [datetime.fromisoformat(c["created_at"].replace("Z", "+00:00")) for c in listed]
    assert times == sorted(made.values())
    assert order("title") == [fourth, third, second, first]  # A, B, C, D: neither of the above


def test_scopes(client: TestClient, read_only: dict[str, str]) -> None:
    _create(client, title="Seen")
    assert client.get(CARS, headers=read_only).status_code == 200
    assert client.post(CARS, json={"title": "No"}, headers=read_only).status_code == 403
    refused = client.post(
        f"{CARS}/imports", content=b"title\nX\n", headers={**read_only, "Content-Type": "text/csv"}
    )
    assert refused.status_code == 403
    assert client.get(f"{CARS}/imports", headers=read_only).status_code == 403
    client.headers.pop("Authorization")
    assert client.get(CARS).status_code == 401


def test_an_image_url_to_an_internal_address_is_refused_at_once(client: TestClient) -> None:
    response = client.post(CARS, json={"title": "Sneaky", "image_url": "http://10.0.0.1/a.jpg"})
    assert response.status_code == 422
    assert "private address" in response.json()["detail"]
    assert client.get(CARS).json()["total"] == 0


def test_a_new_image_url_replaces_the_image_and_its_files_go(
    client: TestClient, web: WebServer, worker: Worker, settings: Any
) -> None:
    first = web.image("/first.jpg", jpeg(900, 600))
    car = _create(client, title="Changing", image_url=first)
    drain(worker)
    before = client.get(f"{CARS}/{car['id']}").json()
    media = settings.media_dir
    old_files = {p for p in media.rglob("*") if p.is_file()}
    second = web.image("/second.jpg", jpeg(600, 900, seed=5))
    changed = client.patch(
        f"{CARS}/{car['id']}", json={"image_url": second}, headers=if_match(before["version"])
    )
    assert changed.json()["image_status"] == "pending"
    assert changed.json()["images"] is None
    drain(worker)
    after = client.get(f"{CARS}/{car['id']}").json()
    assert (after["images"]["width"], after["images"]["height"]) == (600, 900)
    new_files = {p for p in media.rglob("*") if p.is_file()}
    assert not old_files & new_files  # the first picture's files are gone
    dropped = client.patch(
        f"{CARS}/{car['id']}", json={"image_url": None}, headers=if_match(after["version"])
    )
    assert dropped.json()["image_status"] == "none"
    assert dropped.json()["image_url"] is None
    drain(worker)
    assert [p for p in media.rglob("*") if p.is_file()] == []
    assert web.hits["/first.jpg"] == 1
    assert web.hits["/second.jpg"] == 1
