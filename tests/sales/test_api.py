"""Sales over HTTP: uploads, the ledger, and the questions (seed 004)."""

from __future__ import annotations

import gzip

import pytest
from starlette.testclient import TestClient

from tests.conftest import UserFactory, auth
from tests.sales.data import ndjson

FILES = "/api/v1/sales/files"
NDJSON = {"Content-Type": "application/x-ndjson"}
DAY1 = [(1, [10, 11, 11]), (2, [10]), (3, [12])]
DAY2 = [(4, [10, 12]), (5, [])]


def upload(client: TestClient, body: bytes, day: str, **params: str) -> dict[str, object]:
    response = client.post(FILES, params={"date": day, **params}, content=body, headers=NDJSON)
    assert response.status_code in (200, 201), response.text
    return dict(response.json())


def test_an_upload_answers_201_with_the_report(client: TestClient) -> None:
    response = client.post(
        FILES, params={"date": "2026-11-30"}, content=ndjson(DAY1), headers=NDJSON
    )
    assert response.status_code == 201, response.text
    report = response.json()
    assert response.headers["Location"] == report["url"]
    assert report["status"] == "ingested"
    assert report["day"] == "2026-11-30"
    assert (report["lines"], report["transactions"], report["units"]) == (3, 3, 5)
    assert (report["products"], report["bad_lines"], report["engine"]) == (3, 0, "duckdb")
    assert len(report["sha256"]) == 64
    assert report["replaced_at"] is None
    again = client.get(report["url"])
    assert again.status_code == 200
    assert {**again.json(), "status": "ingested"} == report


def test_the_same_file_again_changes_nothing(client: TestClient) -> None:
    first = upload(client, ndjson(DAY1), "2026-11-30")
    response = client.post(
        FILES, params={"date": "2026-11-30"}, content=ndjson(DAY1), headers=NDJSON
    )
    assert response.status_code == 200
    assert response.json()["status"] == "already ingested"
    assert response.json()["id"] == first["id"]
    assert client.get(FILES).json()["total"] == 1
    assert total(client, 10, "2026-11-30") == 2


def test_the_same_file_for_another_day_is_refused(client: TestClient) -> None:
    upload(client, ndjson(DAY1), "2026-11-30")
    response = client.post(
        FILES, params={"date": "2026-11-29"}, content=ndjson(DAY1), headers=NDJSON
    )
    assert response.status_code == 409
    assert "already ingested for 2026-11-30" in response.json()["detail"]


def test_another_file_for_a_day_is_409_unless_replace(client: TestClient) -> None:
    first = upload(client, ndjson(DAY1), "2026-11-30")
    response = client.post(
        FILES, params={"date": "2026-11-30"}, content=ndjson(DAY2), headers=NDJSON
    )
    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    assert "replace=true" in response.json()["detail"]
    assert total(client, 10, "2026-11-30") == 2  # unchanged

    second = upload(client, ndjson(DAY2), "2026-11-30", replace="true")
    assert second["status"] == "ingested"
    assert total(client, 10, "2026-11-30") == 1
    assert total(client, 11, "2026-11-30") == 0  # the old file's counts are gone, not added
    replaced = client.get(f"{FILES}/{first['id']}").json()
    assert replaced["replaced_at"] is not None
    listed = client.get(FILES, params={"current": "false"}).json()
    assert [f["id"] for f in listed["items"]] == [first["id"]]
    assert [f["id"] for f in client.get(FILES, params={"current": "true"}).json()["items"]] == [
        second["id"]
    ]


def test_a_gzipped_upload_is_read(client: TestClient) -> None:
    body = gzip.compress(ndjson(DAY1))
    response = client.post(
        FILES,
        params={"date": "2026-11-30"},
        content=body,
        headers={**NDJSON, "Content-Encoding": "gzip"},
    )
    assert response.status_code == 201, response.text
    assert response.json()["units"] == 5


@pytest.mark.parametrize(
    ("headers", "status", "words"),
    [
        ({"Content-Type": "application/json"}, 415, "application/x-ndjson"),
        ({"Content-Type": "text/csv"}, 415, "application/x-ndjson"),
        ({**NDJSON, "Content-Encoding": "br"}, 415, "not supported"),
        ({**NDJSON, "Content-Encoding": "gzip"}, 422, "not gzip"),
    ],
)
def test_the_wrong_media_is_refused(
    client: TestClient, headers: dict[str, str], status: int, words: str
) -> None:
    response = client.post(
        FILES, params={"date": "2026-11-30"}, content=ndjson(DAY1), headers=headers
    )
    assert response.status_code == status, response.text
    assert words in response.json()["detail"]
    assert client.get(FILES).json()["total"] == 0


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"", "empty"),
        (b"\x00\x01\x02binary", "not text"),
        (b"\xff\xfe{}\n", "not UTF-8"),
        (b"\n\n  \n", "no transactions"),
        (b"not json\n" * 5 + ndjson(DAY1), "more than the 1.0% allowed"),
    ],
)
def test_a_file_that_cannot_be_ingested_changes_nothing(
    client: TestClient, body: bytes, words: str
) -> None:
    upload(client, ndjson(DAY2), "2026-11-29")
    response = client.post(FILES, params={"date": "2026-11-30"}, content=body, headers=NDJSON)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert words in response.json()["detail"]
    assert client.get(FILES).json()["total"] == 1


def test_bad_lines_are_reported_by_number(client: TestClient) -> None:
    body = ndjson(DAY1 * 40, extra=['{"id": "x", "products": [1]}', '{"id": 9, "products": [1'])
    report = upload(client, body, "2026-11-30", max_bad_ratio="0.05")
    assert report["bad_lines"] == 2
    assert report["bad_line_sample"] == [
        {"line": 121, "reason": "id missing or not an integer"},
        {"line": 122, "reason": "truncated last line"},
    ]
    assert report["transactions"] == 120


def test_an_upload_needs_a_day(client: TestClient) -> None:
    response = client.post(FILES, content=ndjson(DAY1), headers=NDJSON)
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["query", "date"]


def test_an_upload_needs_the_write_scope(anon: TestClient, make_user: UserFactory) -> None:
    _, reader = make_user(scopes=frozenset({"read"}))
    body = ndjson(DAY1)
    params = {"date": "2026-11-30"}
    assert anon.post(FILES, params=params, content=body, headers=NDJSON).status_code == 401
    refused = anon.post(FILES, params=params, content=body, headers={**NDJSON, **auth(reader)})
    assert refused.status_code == 403
    assert anon.get(FILES, headers=auth(reader)).status_code == 200


def test_an_idempotency_key_is_refused_on_uploads(client: TestClient) -> None:
    response = client.post(
        FILES,
        params={"date": "2026-11-30"},
        content=ndjson(DAY1),
        headers={**NDJSON, "Idempotency-Key": "k1"},
    )
    assert response.status_code == 400
    assert "recognised by its content" in response.json()["detail"]


def test_the_upload_cap_is_its_own(anon: TestClient, make_user: UserFactory) -> None:
    # 12 MiB passes the 10 MiB cap of every other body: this route has its own (2 GiB).
    _, token = make_user(role="admin")
    line = b'{"id": 1, "products": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]}\n'
    body = line * (12 * 1024 * 1024 // len(line) + 1)
    response = anon.post(
        FILES, params={"date": "2026-11-30"}, content=body, headers={**NDJSON, **auth(token)}
    )
    assert response.status_code == 201, response.text
    assert response.json()["units"] == 15 * (len(body) // len(line))


# The questions


def total(client: TestClient, product: int, day: str) -> int:
    response = client.get(f"/api/v1/sales/products/{product}/days/{day}")
    assert response.status_code == 200, response.text
    return int(response.json()["units"])


@pytest.fixture
def month(client: TestClient) -> TestClient:
    # Three days with data (the 10th, 12th and 13th); product 10 sells 2, 1 and 3 units.
    upload(client, ndjson([(1, [10, 10]), (2, [20])]), "2026-11-10")
    upload(client, ndjson([(1, [10]), (2, [20, 20, 30])]), "2026-11-12")
    upload(client, ndjson([(1, [10, 10, 10]), (3, [30])]), "2026-11-13")
    return client


def test_the_seeds_question_defaults_to_the_last_7_days_of_data(month: TestClient) -> None:
    answer = month.get("/api/v1/sales/products/10").json()
    assert (answer["from"], answer["to"], answer["days"]) == ("2026-11-07", "2026-11-13", 7)
    assert answer["total"] == 6
    assert [d["units"] for d in answer["by_day"]] == [0, 0, 0, 2, 0, 1, 3]
    assert next(d["date"] for d in answer["by_day"]) == "2026-11-07"
    assert "note" not in answer


def test_days_and_explicit_ranges(month: TestClient) -> None:
    two = month.get("/api/v1/sales/products/10", params={"days": 2}).json()
    assert (two["from"], two["to"], two["total"]) == ("2026-11-12", "2026-11-13", 4)
    ranged = month.get(
        "/api/v1/sales/products/20", params={"from": "2026-11-10", "to": "2026-11-12"}
    ).json()
    assert (ranged["days"], ranged["total"]) == (3, 3)
    ending = month.get("/api/v1/sales/products/10", params={"days": 3, "to": "2026-11-12"}).json()
    assert (ending["from"], ending["total"]) == ("2026-11-10", 3)
    starting = month.get(
        "/api/v1/sales/products/10", params={"days": 2, "from": "2026-11-12"}
    ).json()
    assert (starting["to"], starting["total"]) == ("2026-11-13", 4)


def test_a_product_without_sales_answers_zero(month: TestClient) -> None:
    answer = month.get("/api/v1/sales/products/999").json()
    assert answer["total"] == 0
    assert len(answer["by_day"]) == 7
    assert "note" not in answer  # the window has data, just not of this product


def test_a_window_without_data_says_so(month: TestClient, client: TestClient) -> None:
    answer = month.get("/api/v1/sales/products/10", params={"to": "2026-01-31"}).json()
    assert answer["total"] == 0
    assert answer["note"].startswith("No sales file covers")


def test_nothing_ingested_yet(client: TestClient) -> None:
    response = client.get("/api/v1/sales/products/10")
    assert response.status_code == 200
    assert response.json()["note"].startswith("No sales have been ingested")
    top = client.get("/api/v1/sales/top").json()
    assert top["items"] == []
    assert top["note"].startswith("No sales have been ingested")


@pytest.mark.parametrize(
    "params",
    [
        {"days": 0},
        {"days": 3661},
        {"days": "x"},
        {"from": "2026-11-13", "to": "2026-11-10"},
        {"from": "2016-01-01", "to": "2026-11-10"},
        {"from": "2026-11-01", "to": "2026-11-10", "days": 3},
        {"to": "2026-13-01"},
    ],
)
def test_bad_windows_are_422(month: TestClient, params: dict[str, str | int]) -> None:
    response = month.get("/api/v1/sales/products/10", params=params)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"


def test_product_ids_out_of_range_are_422(month: TestClient) -> None:
    assert month.get("/api/v1/sales/products/-1").status_code == 422
    assert month.get(f"/api/v1/sales/products/{2**63}").status_code == 422


def test_top_products_with_ties_by_id(month: TestClient) -> None:
    top = month.get("/api/v1/sales/top", params={"days": 7}).json()
    assert top["items"] == [
        {"product_id": 10, "units": 6},
        {"product_id": 20, "units": 3},
        {"product_id": 30, "units": 2},
    ]
    tied = month.get("/api/v1/sales/top", params={"from": "2026-11-13", "to": "2026-11-13"})
    assert tied.json()["items"] == [
        {"product_id": 10, "units": 3},
        {"product_id": 30, "units": 1},
    ]
    limited = month.get("/api/v1/sales/top", params={"limit": 1, "days": 4}).json()
    assert limited["items"] == [{"product_id": 10, "units": 6}]


def test_days_list_their_files(month: TestClient) -> None:
    days = month.get("/api/v1/sales/days").json()
    assert days["total"] == 3
    assert [d["date"] for d in days["items"]] == ["2026-11-13", "2026-11-12", "2026-11-10"]
    assert days["items"][0]["units"] == 4
    assert days["items"][0]["files"][0]["day"] == "2026-11-13"


def test_the_ledger_filters(month: TestClient) -> None:
    one = month.get(FILES, params={"day": "2026-11-12"}).json()
    assert [f["day"] for f in one["items"]] == ["2026-11-12"]
    ordered = month.get(FILES, params={"ordering": "-day"}).json()
    assert [f["day"] for f in ordered["items"]] == ["2026-11-13", "2026-11-12", "2026-11-10"]
    assert month.get(FILES, params={"ordering": "sha256"}).status_code == 422
    assert month.get(f"{FILES}/999").status_code == 404


def test_answers_are_never_older_than_the_last_ingest(month: TestClient) -> None:
    # Through the response cache: each ingest bumps the `sales` generation.
    before = month.get("/api/v1/sales/products/10")
    assert month.get("/api/v1/sales/products/10").json() == before.json()
    upload(month, ndjson([(9, [10] * 5)]), "2026-11-14")
    after = month.get("/api/v1/sales/products/10").json()
    assert after["to"] == "2026-11-14"
    assert after["total"] == 6 + 5
    upload(month, ndjson([(9, [10])]), "2026-11-14", replace="true")
    assert month.get("/api/v1/sales/products/10").json()["total"] == 6 + 1
