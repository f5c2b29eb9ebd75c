"""Companies over HTTP: CRUD, unique names, their customers, deletion rules, locking, scopes."""

from __future__ import annotations

from datetime import datetime

import pytest
from starlette.testclient import TestClient

from tests.conftest import ids, if_match
from tests.crm.conftest import CompanyFactory, CustomerFactory, Json

COMPANIES = "/api/v1/companies"


def company_url(company_id: int) -> str:
    return f"{COMPANIES}/{company_id}"


def read(client: TestClient, company_id: int) -> Json:
    response = client.get(company_url(company_id))
    assert response.status_code == 200, response.text
    body: Json = response.json()
    return body


# Create and read


def test_create_returns_the_company_with_location_and_etag(client: TestClient) -> None:
    response = client.post(COMPANIES, json={"name": "Acme"})

    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"id", "url", "name", "version", "created_at", "updated_at"}
    assert body["name"] == "Acme"
    assert body["version"] == 1
    assert body["url"] == f"http://testserver{COMPANIES}/{body['id']}"
    assert response.headers["Location"] == body["url"]
    assert response.headers["ETag"] == '"1"'
    assert body["created_at"].endswith("Z")
    assert body["created_at"] == body["updated_at"]
    datetime.fromisoformat(body["created_at"])


def test_get_returns_what_create_returned(client: TestClient, new_company: CompanyFactory) -> None:
    created = new_company("Acme")

    response = client.get(company_url(created["id"]))

    assert response.status_code == 200
    assert response.json() == created
    assert response.headers["ETag"] == '"1"'


def test_get_with_and_without_trailing_slash(
    client: TestClient, new_company: CompanyFactory
) -> None:
    created = new_company()

    with_slash = client.get(company_url(created["id"]) + "/", follow_redirects=False)

    assert with_slash.status_code == 200
    assert with_slash.json() == created


def test_get_with_matching_if_none_match_is_304(
    client: TestClient, new_company: CompanyFactory
) -> None:
    created = new_company()

    response = client.get(company_url(created["id"]), headers={"If-None-Match": '"1"'})

    assert response.status_code == 304
    assert response.content == b""


@pytest.mark.parametrize(
    "body",
    [{}, {"name": ""}, {"name": "   "}, {"name": None}, {"name": "x" * 201}],
    ids=["missing", "empty", "blank", "null", "too-long"],
)
def test_name_is_required(client: TestClient, body: Json) -> None:
    response = client.post(COMPANIES, json=body)

    assert response.status_code == 422
    assert response.headers["Content-Type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == 422
    assert any(err["loc"][-1] == "name" for err in problem["errors"])
    assert client.get(COMPANIES).json()["total"] == 0


@pytest.mark.parametrize("field", ["id", "url", "version", "created_at", "updated_at", "owner"])
def test_create_rejects_read_only_and_unknown_fields(client: TestClient, field: str) -> None:
    response = client.post(COMPANIES, json={"name": "Acme", field: 1})

    assert response.status_code == 422
    assert client.get(COMPANIES).json()["total"] == 0


def test_duplicate_name_is_409(client: TestClient, new_company: CompanyFactory) -> None:
    new_company("Acme")

    response = client.post(COMPANIES, json={"name": "Acme"})

    assert response.status_code == 409
    assert "Acme" in response.json()["detail"]
    assert client.get(COMPANIES).json()["total"] == 1


def test_duplicate_name_after_stripping_whitespace_is_409(
    client: TestClient, new_company: CompanyFactory
) -> None:
    new_company("Acme")

    assert client.post(COMPANIES, json={"name": "  Acme "}).status_code == 409


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
def test_renaming_onto_an_existing_name_is_409_and_changes_nothing(
    client: TestClient, new_company: CompanyFactory, method: str
) -> None:
    new_company("Acme")
    other = new_company("Globex")

    response = client.request(
        method, company_url(other["id"]), json={"name": "Acme"}, headers=if_match(1)
    )

    assert response.status_code == 409
    assert read(client, other["id"]) == other


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
def test_keeping_its_own_name_is_not_a_conflict(
    client: TestClient, new_company: CompanyFactory, method: str
) -> None:
    company = new_company("Acme")

    response = client.request(
        method, company_url(company["id"]), json={"name": "Acme"}, headers=if_match(1)
    )

    assert response.status_code == 200, response.text
    assert response.json()["name"] == "Acme"


# Listing, search and ordering


def test_list_envelope(client: TestClient, new_company: CompanyFactory) -> None:
    first = new_company("Acme")
    second = new_company("Globex")

    response = client.get(COMPANIES)

    assert response.status_code == 200
    assert response.json() == {
        "items": [first, second],
        "total": 2,
        "limit": 50,
        "offset": 0,
        "next": None,
        "previous": None,
    }
    assert "Link" not in response.headers


def test_search_matches_name_case_insensitively(
    client: TestClient, new_company: CompanyFactory
) -> None:
    acme = new_company("Acme Corp")
    new_company("Globex")
    acme_labs = new_company("Labs of ACME")

    page = client.get(COMPANIES, params={"search": "acme"}).json()

    assert ids(page) == [acme["id"], acme_labs["id"]]
    assert page["total"] == 2


@pytest.mark.parametrize(("text", "expected"), [("%", "100% Steel"), ("_", "Under_score")])
def test_search_wildcards_match_literally(
    client: TestClient, new_company: CompanyFactory, text: str, expected: str
) -> None:
    new_company("100% Steel")
    new_company("Under_score")
    new_company("Plain")

    page = client.get(COMPANIES, params={"search": text}).json()

    assert [item["name"] for item in page["items"]] == [expected]


def test_ordering_by_name_and_descending(client: TestClient, new_company: CompanyFactory) -> None:
    for name in ["Globex", "Acme", "Initech", "Umbrella"]:
        new_company(name)

    ascending = client.get(COMPANIES, params={"ordering": "name"}).json()
    descending = client.get(COMPANIES, params={"ordering": "-name"}).json()
    by_id_desc = client.get(COMPANIES, params={"ordering": "-id"}).json()

    assert [c["name"] for c in ascending["items"]] == ["Acme", "Globex", "Initech", "Umbrella"]
    assert [c["name"] for c in descending["items"]] == ["Umbrella", "Initech", "Globex", "Acme"]
    assert ids(by_id_desc) == sorted(ids(ascending), reverse=True)


def test_unknown_ordering_field_is_422(client: TestClient) -> None:
    response = client.get(COMPANIES, params={"ordering": "revenue"})

    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["query", "ordering"]


def test_pagination_links(client: TestClient, new_company: CompanyFactory) -> None:
    made = [new_company()["id"] for _ in range(5)]

    first = client.get(COMPANIES, params={"limit": 2})
    page = first.json()

    assert ids(page) == made[:2]
    assert page["total"] == 5
    assert page["next"] == f"http://testserver{COMPANIES}?limit=2&offset=2"
    assert page["previous"] is None
    assert first.headers["Link"] == f'<{page["next"]}>; rel="next"'

    last = client.get(COMPANIES, params={"limit": 2, "offset": 4}).json()
    assert ids(last) == made[4:]
    assert last["next"] is None
    assert last["previous"] == f"http://testserver{COMPANIES}?limit=2&offset=2"


# A company's customers


def test_company_customers_lists_only_that_company(
    client: TestClient, new_company: CompanyFactory, new_customer: CustomerFactory
) -> None:
    acme = new_company("Acme")
    globex = new_company("Globex")
    ada = new_customer(acme["id"], first_name="Ada")
    new_customer(globex["id"], first_name="Alan")
    grace = new_customer(acme["id"], first_name="Grace")

    response = client.get(f"{company_url(acme['id'])}/customers")

    assert response.status_code == 200
    page = response.json()
    assert page["items"] == [ada, grace]
    assert page["total"] == 2


def test_company_customers_with_trailing_slash(
    client: TestClient, new_customer: CustomerFactory
) -> None:
    customer = new_customer()

    response = client.get(f"{company_url(customer['company_id'])}/customers/")

    assert response.status_code == 200
    assert ids(response.json()) == [customer["id"]]


def test_company_customers_filters_and_ordering(
    client: TestClient, new_company: CompanyFactory, new_customer: CustomerFactory
) -> None:
    acme = new_company("Acme")
    globex = new_company("Globex")
    ada = new_customer(acme["id"], first_name="Ada", last_name="Lovelace", status="active")
    alan = new_customer(acme["id"], first_name="Alan", last_name="Turing", status="prospective")
    grace = new_customer(acme["id"], first_name="Grace", last_name="Hopper", status="active")
    # The same names elsewhere must never leak into Acme's list.
    new_customer(globex["id"], first_name="Ada", last_name="Lovelace", status="active")
    url = f"{company_url(acme['id'])}/customers"

    def listed(**params: str) -> list[int]:
        response = client.get(url, params=params)
        assert response.status_code == 200, response.text
        return ids(response.json())

    assert listed(status="active") == [ada["id"], grace["id"]]
    assert listed(first_name="Alan") == [alan["id"]]
    assert listed(last_name="Lovelace") == [ada["id"]]
    assert listed(search="HOP") == [grace["id"]]
    assert listed(search="a", ordering="-last_name") == [alan["id"], ada["id"], grace["id"]]
    assert listed(status="active", ordering="-first_name") == [grace["id"], ada["id"]]


def test_company_customers_ignores_a_company_id_query(
    client: TestClient, new_company: CompanyFactory, new_customer: CustomerFactory
) -> None:
    acme = new_company("Acme")
    globex = new_company("Globex")
    ada = new_customer(acme["id"])
    new_customer(globex["id"])

    page = client.get(
        f"{company_url(acme['id'])}/customers", params={"company_id": globex["id"]}
    ).json()

    assert ids(page) == [ada["id"]]


@pytest.mark.parametrize(
    "params", [{"status": "gone"}, {"ordering": "salary"}, {"limit": "501"}, {"offset": "-1"}]
)
def test_company_customers_rejects_bad_queries(
    client: TestClient, new_company: CompanyFactory, params: dict[str, str]
) -> None:
    company = new_company()

    response = client.get(f"{company_url(company['id'])}/customers", params=params)

    assert response.status_code == 422


def test_company_customers_of_a_missing_company_is_404(client: TestClient) -> None:
    response = client.get(f"{company_url(999)}/customers")

    assert response.status_code == 404
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json()["instance"] == f"{company_url(999)}/customers"


def test_company_customers_of_an_empty_company_is_an_empty_page(
    client: TestClient, new_company: CompanyFactory
) -> None:
    company = new_company()

    page = client.get(f"{company_url(company['id'])}/customers").json()

    assert page["items"] == []
    assert page["total"] == 0


# Changes


def test_put_replaces_and_bumps_version(client: TestClient, new_company: CompanyFactory) -> None:
    company = new_company("Acme")

    response = client.put(company_url(company["id"]), json={"name": "Acme Corp", "version": 1})

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["name"] == "Acme Corp"
    assert body["version"] == 2
    assert response.headers["ETag"] == '"2"'
    assert body["created_at"] == company["created_at"]
    assert body["updated_at"] >= company["updated_at"]
    assert read(client, company["id"]) == body


def test_patch_with_if_match_renames(client: TestClient, new_company: CompanyFactory) -> None:
    company = new_company("Acme")

    response = client.patch(
        company_url(company["id"]), json={"name": "Acme 2"}, headers=if_match(1)
    )

    assert response.status_code == 200, response.text
    assert response.json()["name"] == "Acme 2"
    assert response.headers["ETag"] == '"2"'


def test_empty_patch_changes_nothing(client: TestClient, new_company: CompanyFactory) -> None:
    company = new_company()

    response = client.patch(company_url(company["id"]), json={}, headers=if_match(1))

    assert response.status_code == 200
    assert response.json() == company


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
def test_stale_if_match_is_412_and_changes_nothing(
    client: TestClient, new_company: CompanyFactory, method: str
) -> None:
    company = new_company("Acme")
    client.patch(company_url(company["id"]), json={"name": "Acme v2"}, headers=if_match(1))
    before = read(client, company["id"])

    response = client.request(
        method, company_url(company["id"]), json={"name": "Lost"}, headers=if_match(1)
    )

    assert response.status_code == 412
    assert "version 2" in response.json()["detail"]
    assert read(client, company["id"]) == before


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
def test_stale_body_version_is_409_and_changes_nothing(
    client: TestClient, new_company: CompanyFactory, method: str
) -> None:
    company = new_company("Acme")
    client.patch(company_url(company["id"]), json={"name": "Acme v2", "version": 1})
    before = read(client, company["id"])

    response = client.request(
        method, company_url(company["id"]), json={"name": "Lost", "version": 1}
    )

    assert response.status_code == 409
    assert read(client, company["id"]) == before


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
def test_write_without_a_version_is_428_and_changes_nothing(
    client: TestClient, new_company: CompanyFactory, method: str
) -> None:
    company = new_company("Acme")

    response = client.request(method, company_url(company["id"]), json={"name": "Lost"})

    assert response.status_code == 428
    assert read(client, company["id"]) == company


def test_if_match_and_body_version_must_agree(
    client: TestClient, new_company: CompanyFactory
) -> None:
    company = new_company("Acme")

    response = client.put(
        company_url(company["id"]), json={"name": "Lost", "version": 2}, headers=if_match(1)
    )

    assert response.status_code == 400
    assert read(client, company["id"]) == company


@pytest.mark.parametrize("field", ["id", "url", "created_at", "updated_at"])
def test_put_with_read_only_field_is_422(
    client: TestClient, new_company: CompanyFactory, field: str
) -> None:
    company = new_company("Acme")

    response = client.put(
        company_url(company["id"]),
        json={"name": "Renamed", field: company[field], "version": 1},
    )

    assert response.status_code == 422
    assert read(client, company["id"]) == company


def test_patch_name_to_null_is_422(client: TestClient, new_company: CompanyFactory) -> None:
    company = new_company("Acme")

    response = client.patch(company_url(company["id"]), json={"name": None}, headers=if_match(1))

    assert response.status_code == 422
    assert read(client, company["id"]) == company


@pytest.mark.parametrize(
    ("method", "body"),
    [
        ("GET", None),
        ("PUT", {"name": "X", "version": 1}),
        ("PATCH", {"version": 1}),
        ("DELETE", None),
    ],
)
def test_missing_company_is_404(client: TestClient, method: str, body: Json | None) -> None:
    response = client.request(method, company_url(4242), json=body)

    assert response.status_code == 404
    assert response.json()["status"] == 404


# Deletion


def test_delete_empty_company(client: TestClient, new_company: CompanyFactory) -> None:
    company = new_company()

    response = client.delete(company_url(company["id"]))

    assert response.status_code == 204
    assert response.content == b""
    assert client.get(company_url(company["id"])).status_code == 404


def test_delete_with_current_if_match(client: TestClient, new_company: CompanyFactory) -> None:
    company = new_company()

    response = client.delete(company_url(company["id"]), headers=if_match(1))

    assert response.status_code == 204
    assert client.get(company_url(company["id"])).status_code == 404


def test_delete_with_stale_if_match_is_412_and_keeps_it(
    client: TestClient, new_company: CompanyFactory
) -> None:
    company = new_company()
    client.patch(company_url(company["id"]), json={"name": "Renamed"}, headers=if_match(1))
    before = read(client, company["id"])

    response = client.delete(company_url(company["id"]), headers=if_match(1))

    assert response.status_code == 412
    assert read(client, company["id"]) == before


def test_delete_company_with_customers_is_409_with_a_count(
    client: TestClient, new_company: CompanyFactory, new_customer: CustomerFactory
) -> None:
    company = new_company()
    new_customer(company["id"])
    new_customer(company["id"])

    response = client.delete(company_url(company["id"]))

    assert response.status_code == 409
    assert "2 customers" in response.json()["detail"]
    assert read(client, company["id"]) == company
    assert client.get(f"{company_url(company['id'])}/customers").json()["total"] == 2


def test_delete_company_with_one_customer_says_one(
    client: TestClient, new_company: CompanyFactory, new_customer: CustomerFactory
) -> None:
    company = new_company()
    customer = new_customer(company["id"])

    response = client.delete(company_url(company["id"]))

    assert response.status_code == 409
    assert "1 customer;" in response.json()["detail"]

    assert client.delete(f"/api/v1/customers/{customer['id']}").status_code == 204
    assert client.delete(company_url(company["id"])).status_code == 204


# Auth


def test_read_only_token_can_read_but_not_write(
    client: TestClient, new_company: CompanyFactory, read_only: dict[str, str]
) -> None:
    company = new_company("Acme")
    url = company_url(company["id"])

    assert client.get(COMPANIES, headers=read_only).status_code == 200
    assert client.get(url, headers=read_only).status_code == 200
    assert client.get(f"{url}/customers", headers=read_only).status_code == 200
    writes = [
        client.post(COMPANIES, json={"name": "New"}, headers=read_only),
        client.put(url, json={"name": "X", "version": 1}, headers=read_only),
        client.patch(url, json={"name": "X", "version": 1}, headers=read_only),
        client.delete(url, headers=read_only),
    ]
    assert [r.status_code for r in writes] == [403, 403, 403, 403]
    assert client.get(COMPANIES).json()["items"] == [company]


def test_no_token_is_401(anon: TestClient) -> None:
    for method in ["GET", "POST"]:
        response = anon.request(method, COMPANIES, json={"name": "Acme"})
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    for method in ["GET", "PUT", "PATCH", "DELETE"]:
        assert anon.request(method, company_url(1)).status_code == 401


# Which error wins: a missing row (404), then a stale version (412/409), then the body's own
# problems (RFC 9110 13.2.1: preconditions are evaluated before the request content is).


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
def test_missing_company_is_404_even_when_the_new_name_is_taken(
    client: TestClient, new_company: CompanyFactory, method: str
) -> None:
    new_company("Acme")

    response = client.request(method, company_url(4242), json={"name": "Acme"}, headers=if_match(1))

    assert response.status_code == 404


@pytest.mark.parametrize(("headers", "version", "status"), [(if_match(1), None, 412), ({}, 1, 409)])
def test_stale_version_wins_over_a_taken_name(
    client: TestClient,
    new_company: CompanyFactory,
    headers: dict[str, str],
    version: int | None,
    status: int,
) -> None:
    new_company("Acme")
    other = new_company("Globex")
    client.patch(company_url(other["id"]), json={"name": "Globex 2"}, headers=if_match(1))
    before = read(client, other["id"])
    body: Json = {"name": "Acme"} | ({"version": version} if version else {})

    response = client.patch(company_url(other["id"]), json=body, headers=headers)

    assert response.status_code == status
    assert "version 2" in response.json()["detail"]
    assert read(client, other["id"]) == before


def test_stale_if_match_wins_over_remaining_customers_on_delete(
    client: TestClient, new_company: CompanyFactory, new_customer: CustomerFactory
) -> None:
    company = new_company("Acme")
    new_customer(company["id"])
    client.patch(company_url(company["id"]), json={"name": "Acme 2"}, headers=if_match(1))

    response = client.delete(company_url(company["id"]), headers=if_match(1))

    assert response.status_code == 412
    assert client.delete(company_url(company["id"]), headers=if_match(2)).status_code == 409
