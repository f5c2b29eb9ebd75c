"""Customers over HTTP: fields, validation, filters, search, ordering, pagination, locking."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, update
from starlette.testclient import TestClient

from tests.conftest import ids, if_match
from tests.crm.conftest import CompanyFactory, CustomerFactory, Json, NoteFactory, split
from wharf.crm.models import Customer

CUSTOMERS = "/api/v1/customers"


def customer_url(customer_id: int) -> str:
    return f"{CUSTOMERS}/{customer_id}"


def read(client: TestClient, customer_id: int) -> Json:
    response = client.get(customer_url(customer_id))
    assert response.status_code == 200, response.text
    body: Json = response.json()
    return body


def listed(client: TestClient, **params: Any) -> list[int]:
    response = client.get(CUSTOMERS, params=params)
    assert response.status_code == 200, response.text
    return ids(response.json())


@dataclass
class Crm:
    """Two companies with a mix of customers, like the seed's own examples."""

    acme: Json
    globex: Json
    customers: list[Json]

    def where(self, **wanted: Any) -> list[Json]:
        return [c for c in self.customers if all(c[k] == v for k, v in wanted.items())]


@pytest.fixture
def crm(new_company: CompanyFactory, new_customer: CustomerFactory) -> Crm:
    acme = new_company("Acme")
    globex = new_company("Globex")
    people = [
        (acme, "Ada", "Lovelace", "active"),
        (acme, "Alan", "Turing", "prospective"),
        (acme, "Grace", "Hopper", "active"),
        (acme, "Linus", "Torvalds", "inactive"),
        (acme, "Ada", "Byron", "prospective"),
        (globex, "Barbara", "Liskov", "active"),
        (globex, "Ken", "Thompson", "prospective"),
        (globex, "Dennis", "Ritchie", "prospective"),
        (globex, "Margaret", "Hamilton", "inactive"),
        (globex, "Edsger", "Dijkstra", "active"),
    ]
    customers = [
        new_customer(company["id"], first_name=first, last_name=last, status=status)
        for company, first, last, status in people
    ]
    return Crm(acme=acme, globex=globex, customers=customers)


def expected(rows: list[Json], *keys: str) -> list[int]:
    """Ids sorted as the API promises: by the keys (`-` descending), then by id ascending."""
    result = sorted(rows, key=lambda r: r["id"])
    for key in reversed(keys):
        name = key.removeprefix("-")
        result = sorted(result, key=lambda r: r[name], reverse=key.startswith("-"))
    return [r["id"] for r in result]


# Create and read


def test_create_returns_every_field(client: TestClient, new_company: CompanyFactory) -> None:
    company = new_company()

    response = client.post(
        CUSTOMERS,
        json={
            "first_name": "Ada",
            "last_name": "Lovelace",
            "status": "prospective",
            "company_id": company["id"],
        },
    )

    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {
        "id",
        "url",
        "company_id",
        "first_name",
        "last_name",
        "status",
        "version",
        "created_at",
        "updated_at",
    }
    assert body["url"] == f"http://testserver/api/v1/customers/{body['id']}"
    assert response.headers["Location"] == body["url"]
    assert response.headers["ETag"] == '"1"'
    assert body["company_id"] == company["id"]
    assert (body["first_name"], body["last_name"], body["status"]) == (
        "Ada",
        "Lovelace",
        "prospective",
    )
    assert body["version"] == 1
    assert body["created_at"].endswith("Z")
    assert body["updated_at"] == body["created_at"]
    assert read(client, body["id"]) == body


def test_first_customer_url_is_absolute(client: TestClient, new_customer: CustomerFactory) -> None:
    customer = new_customer()

    assert customer["id"] == 1
    assert customer["url"] == "http://testserver/api/v1/customers/1"


@pytest.mark.parametrize("status", ["prospective", "active", "inactive"])
def test_every_known_status_is_accepted(new_customer: CustomerFactory, status: str) -> None:
    assert new_customer(status=status)["status"] == status


@pytest.mark.parametrize("status", ["ACTIVE", "deleted", "", None, 1])
def test_unknown_status_in_body_is_422(
    client: TestClient, new_company: CompanyFactory, status: object
) -> None:
    company = new_company()

    response = client.post(
        CUSTOMERS,
        json={"first_name": "A", "last_name": "B", "status": status, "company_id": company["id"]},
    )

    assert response.status_code == 422
    assert [e["loc"] for e in response.json()["errors"]] == [["body", "status"]]
    assert client.get(CUSTOMERS).json()["total"] == 0


def test_unknown_status_filter_is_422(client: TestClient) -> None:
    response = client.get(CUSTOMERS, params={"status": "deleted"})

    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["query", "status"]


@pytest.mark.parametrize("field", ["first_name", "last_name", "status", "company_id"])
def test_required_fields(client: TestClient, new_company: CompanyFactory, field: str) -> None:
    body: Json = {
        "first_name": "Ada",
        "last_name": "Lovelace",
        "status": "active",
        "company_id": new_company()["id"],
    }
    del body[field]

    response = client.post(CUSTOMERS, json=body)

    assert response.status_code == 422
    assert [e["loc"] for e in response.json()["errors"]] == [["body", field]]


def test_nonexistent_company_is_422_naming_company_id(client: TestClient) -> None:
    response = client.post(
        CUSTOMERS,
        json={"first_name": "Ada", "last_name": "Lovelace", "status": "active", "company_id": 77},
    )

    assert response.status_code == 422
    problem = response.json()
    assert problem["errors"][0]["loc"] == ["body", "company_id"]
    assert "77" in problem["detail"]
    assert client.get(CUSTOMERS).json()["total"] == 0


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
def test_moving_to_a_nonexistent_company_is_422(
    client: TestClient, new_customer: CustomerFactory, method: str
) -> None:
    customer = new_customer()
    body = {
        "first_name": "Ada",
        "last_name": "Lovelace",
        "status": "active",
        "company_id": 77,
        "version": 1,
    }

    response = client.request(method, customer_url(customer["id"]), json=body)

    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["body", "company_id"]
    assert read(client, customer["id"]) == customer


@pytest.mark.parametrize("field", ["id", "url", "version", "created_at", "updated_at", "email"])
def test_create_rejects_read_only_and_unknown_fields(
    client: TestClient, new_company: CompanyFactory, field: str
) -> None:
    body: Json = {
        "first_name": "Ada",
        "last_name": "Lovelace",
        "status": "active",
        "company_id": new_company()["id"],
        field: 1,
    }

    assert client.post(CUSTOMERS, json=body).status_code == 422
    assert client.get(CUSTOMERS).json()["total"] == 0


def test_get_with_matching_if_none_match_is_304(
    client: TestClient, new_customer: CustomerFactory
) -> None:
    customer = new_customer()

    response = client.get(customer_url(customer["id"]), headers={"If-None-Match": '"1"'})
    changed = client.get(customer_url(customer["id"]), headers={"If-None-Match": '"7"'})

    assert response.status_code == 304
    assert changed.status_code == 200


# Filters (the seed's own examples first)


def test_seed_customers_of_company_1(client: TestClient, crm: Crm) -> None:
    response = client.get(f"/api/v1/companies/{crm.acme['id']}/customers")

    assert response.json()["items"] == crm.where(company_id=crm.acme["id"])
    assert response.json()["total"] == 5


def test_seed_filter_by_company_2(client: TestClient, crm: Crm) -> None:
    page = client.get(CUSTOMERS, params={"company_id": crm.globex["id"]}).json()

    assert page["items"] == crm.where(company_id=crm.globex["id"])


def test_seed_company_1_ordered_by_last_name_descending(client: TestClient, crm: Crm) -> None:
    got = listed(client, company_id=crm.acme["id"], ordering="-last_name")

    assert got == expected(crm.where(company_id=crm.acme["id"]), "-last_name")
    names = [read(client, i)["last_name"] for i in got]
    assert names == ["Turing", "Torvalds", "Lovelace", "Hopper", "Byron"]


def test_seed_status_active(client: TestClient, crm: Crm) -> None:
    assert listed(client, status="active") == expected(crm.where(status="active"))


def test_seed_company_2_prospective(client: TestClient, crm: Crm) -> None:
    got = listed(client, company_id=crm.globex["id"], status="prospective")

    assert got == expected(crm.where(company_id=crm.globex["id"], status="prospective"))
    assert len(got) == 2


def test_filter_by_first_and_last_name_is_exact(client: TestClient, crm: Crm) -> None:
    assert listed(client, first_name="Ada") == expected(crm.where(first_name="Ada"))
    assert listed(client, last_name="Hopper") == expected(crm.where(last_name="Hopper"))
    assert listed(client, first_name="Ada", last_name="Byron") == expected(
        crm.where(first_name="Ada", last_name="Byron")
    )
    assert listed(client, first_name="Ad") == []


def test_filter_by_a_company_without_customers_is_empty(
    client: TestClient, crm: Crm, new_company: CompanyFactory
) -> None:
    empty = new_company()

    assert listed(client, company_id=empty["id"]) == []
    assert listed(client, company_id=999) == []


def test_filters_combine_with_search_and_ordering(client: TestClient, crm: Crm) -> None:
    got = listed(client, company_id=crm.acme["id"], status="prospective", ordering="first_name")

    assert got == expected(crm.where(company_id=crm.acme["id"], status="prospective"), "first_name")


# Search


def test_search_matches_first_and_last_names_case_insensitively(
    client: TestClient, crm: Crm
) -> None:
    lovelace = crm.where(last_name="Lovelace")
    alan = crm.where(first_name="Alan")

    assert listed(client, search="LOVE") == expected(lovelace)
    assert listed(client, search="alan") == expected(alan)
    # "ra" is in Grace, Barbara, Margaret and Dijkstra.
    assert listed(client, search="RA") == expected(
        [c for c in crm.customers if "ra" in (c["first_name"] + " " + c["last_name"]).lower()]
    )
    assert listed(client, search="nobody") == []


@pytest.mark.parametrize(
    ("text", "match"),
    [("%", "Hundred%"), ("_", "Under_Score"), ("\\", "Back\\Slash"), ("d%", "Hundred%")],
)
def test_search_matches_wildcards_literally(
    client: TestClient, new_customer: CustomerFactory, text: str, match: str
) -> None:
    hit = new_customer(last_name=match)
    for name in ["Hundred%", "Under_Score", "Back\\Slash", "Plain", "Underscore", "Hundred"]:
        if name != match:
            new_customer(last_name=name)

    page = client.get(CUSTOMERS, params={"search": text}).json()

    assert ids(page) == [hit["id"]]


def test_search_on_company_customers(client: TestClient, crm: Crm) -> None:
    response = client.get(
        f"/api/v1/companies/{crm.globex['id']}/customers", params={"search": "EDS"}
    )

    assert ids(response.json()) == expected(crm.where(first_name="Edsger"))


# Ordering


@pytest.mark.parametrize("field", ["id", "first_name", "last_name", "status", "company_id"])
@pytest.mark.parametrize("descending", [False, True])
def test_ordering_by_each_field(client: TestClient, crm: Crm, field: str, descending: bool) -> None:
    key = f"-{field}" if descending else field

    assert listed(client, ordering=key) == expected(crm.customers, key)


def test_ordering_by_created_at_breaks_ties_by_id(
    client: TestClient, crm: Crm, engine: Engine
) -> None:
    base = datetime(2024, 1, 1, tzinfo=UTC)
    # Newest first in insertion order, with pairs that share a timestamp.
    stamps = {c["id"]: base - timedelta(hours=i // 2) for i, c in enumerate(crm.customers)}
    with engine.begin() as conn:
        for customer_id, stamp in stamps.items():
            conn.execute(
                update(Customer).where(Customer.id == customer_id).values(created_at=stamp)
            )

    ascending = listed(client, ordering="created_at")
    descending = listed(client, ordering="-created_at")

    by_stamp = [{"id": i, "created_at": s} for i, s in stamps.items()]
    assert ascending == expected(by_stamp, "created_at")
    assert descending == expected(by_stamp, "-created_at")
    first, second = crm.customers[0]["id"], crm.customers[1]["id"]
    assert descending[:2] == [first, second]  # same stamp: lower id first, both directions
    assert ascending[-2:] == [first, second]


def test_ordering_by_several_fields(client: TestClient, crm: Crm) -> None:
    got = listed(client, ordering="status,-first_name")

    assert got == expected(crm.customers, "status", "-first_name")
    assert listed(client, ordering="company_id,-status,last_name") == expected(
        crm.customers, "company_id", "-status", "last_name"
    )


def test_ties_are_broken_by_id(client: TestClient, new_customer: CustomerFactory) -> None:
    company = new_customer(last_name="Same")["company_id"]
    made = [new_customer(company, last_name="Same")["id"] for _ in range(4)]
    everyone = listed(client, company_id=company)

    assert listed(client, ordering="last_name") == everyone
    assert listed(client, ordering="-last_name") == everyone
    assert listed(client, ordering="-status") == everyone
    assert everyone == sorted(everyone)
    assert everyone[1:] == made


def test_explicit_id_descending_wins_over_the_tiebreak(client: TestClient, crm: Crm) -> None:
    assert listed(client, ordering="status,-id") == expected(crm.customers, "status", "-id")


def test_ordering_ignores_blank_parts_and_spaces(client: TestClient, crm: Crm) -> None:
    assert listed(client, ordering=" last_name , ,") == expected(crm.customers, "last_name")


@pytest.mark.parametrize("ordering", ["salary", "-salary", "last_name,nope", "url", "--id"])
def test_unknown_ordering_field_is_422(client: TestClient, crm: Crm, ordering: str) -> None:
    response = client.get(CUSTOMERS, params={"ordering": ordering})

    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["query", "ordering"]


# Pagination


def test_pagination_walks_every_customer_once(client: TestClient, crm: Crm) -> None:
    url: str | None = f"http://testserver{CUSTOMERS}?status=prospective&ordering=-last_name&limit=2"
    seen: list[int] = []
    pages = 0
    while url:
        response = client.get(url)
        page = response.json()
        assert page["total"] == 4
        assert page["limit"] == 2
        assert len(page["items"]) <= 2
        if page["next"]:
            assert f'<{page["next"]}>; rel="next"' in response.headers["Link"]
        seen += ids(page)
        url = page["next"]
        pages += 1

    assert pages == 2
    assert seen == expected(crm.where(status="prospective"), "-last_name")


def test_pagination_envelope_and_link_header(client: TestClient, crm: Crm) -> None:
    response = client.get(CUSTOMERS, params={"limit": 3, "offset": 3, "status": "active"})
    page = response.json()

    assert page["total"] == 4
    assert page["limit"] == 3
    assert page["offset"] == 3
    assert ids(page) == expected(crm.where(status="active"))[3:]
    assert page["next"] is None
    assert split(page["previous"]) == (CUSTOMERS, {"limit": "3", "offset": "0", "status": "active"})
    assert response.headers["Link"] == f'<{page["previous"]}>; rel="prev"'

    middle = client.get(CUSTOMERS, params={"limit": 3, "offset": 3})
    assert split(middle.json()["next"]) == (CUSTOMERS, {"limit": "3", "offset": "6"})
    assert split(middle.json()["previous"]) == (CUSTOMERS, {"limit": "3", "offset": "0"})
    assert middle.headers["Link"] == (
        f'<{middle.json()["next"]}>; rel="next", <{middle.json()["previous"]}>; rel="prev"'
    )


def test_offset_past_the_end_is_an_empty_page(client: TestClient, crm: Crm) -> None:
    page = client.get(CUSTOMERS, params={"offset": 100}).json()

    assert page["items"] == []
    assert page["total"] == 10
    assert page["next"] is None
    assert split(page["previous"]) == (CUSTOMERS, {"offset": "50"})


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 501}, {"offset": -1}, {"limit": "x"}])
def test_bad_page_parameters_are_422(client: TestClient, params: dict[str, int | str]) -> None:
    assert client.get(CUSTOMERS, params=params).status_code == 422


def test_limit_500_is_allowed(client: TestClient, crm: Crm) -> None:
    assert client.get(CUSTOMERS, params={"limit": 500}).json()["limit"] == 500


# Changes and optimistic locking


def full(customer: Json, **changes: Any) -> Json:
    body = {k: customer[k] for k in ("first_name", "last_name", "status", "company_id")}
    return body | changes


def test_put_replaces_every_field(
    client: TestClient, new_customer: CustomerFactory, new_company: CompanyFactory
) -> None:
    customer = new_customer()
    other = new_company()
    body = {"first_name": "Grace", "last_name": "Hopper", "status": "inactive"}

    response = client.put(
        customer_url(customer["id"]),
        json=body | {"company_id": other["id"]},
        headers=if_match(1),
    )

    assert response.status_code == 200, response.text
    changed = response.json()
    assert {k: changed[k] for k in body} == body
    assert changed["company_id"] == other["id"]
    assert changed["version"] == 2
    assert response.headers["ETag"] == '"2"'
    assert changed["created_at"] == customer["created_at"]
    assert changed["updated_at"] >= customer["updated_at"]
    assert read(client, customer["id"]) == changed


def test_put_needs_every_field(client: TestClient, new_customer: CustomerFactory) -> None:
    customer = new_customer()

    response = client.put(
        customer_url(customer["id"]), json={"first_name": "Grace"}, headers=if_match(1)
    )

    assert response.status_code == 422
    assert read(client, customer["id"]) == customer


def test_patch_merges(client: TestClient, new_customer: CustomerFactory) -> None:
    customer = new_customer(first_name="Ada", last_name="Lovelace", status="prospective")

    response = client.patch(customer_url(customer["id"]), json={"status": "active", "version": 1})

    assert response.status_code == 200, response.text
    changed = response.json()
    assert changed == customer | {
        "status": "active",
        "version": 2,
        "updated_at": changed["updated_at"],
    }


def test_each_success_increments_the_version(
    client: TestClient, new_customer: CustomerFactory
) -> None:
    customer = new_customer()
    url = customer_url(customer["id"])

    for version in range(1, 4):
        response = client.patch(url, json={"last_name": f"L{version}"}, headers=if_match(version))
        assert response.status_code == 200
        assert response.json()["version"] == version + 1
        assert response.headers["ETag"] == f'"{version + 1}"'
    assert client.get(url).headers["ETag"] == '"4"'


@pytest.mark.parametrize("field", ["first_name", "last_name", "status", "company_id"])
def test_patch_to_null_is_422(
    client: TestClient, new_customer: CustomerFactory, field: str
) -> None:
    customer = new_customer()

    response = client.patch(customer_url(customer["id"]), json={field: None}, headers=if_match(1))

    assert response.status_code == 422
    assert field in response.json()["detail"]
    assert read(client, customer["id"]) == customer


def test_patch_with_unknown_status_is_422(
    client: TestClient, new_customer: CustomerFactory
) -> None:
    customer = new_customer()

    response = client.patch(
        customer_url(customer["id"]), json={"status": "gone"}, headers=if_match(1)
    )

    assert response.status_code == 422
    assert read(client, customer["id"]) == customer


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
def test_stale_if_match_is_412_and_changes_nothing(
    client: TestClient, new_customer: CustomerFactory, method: str
) -> None:
    customer = new_customer()
    client.patch(customer_url(customer["id"]), json={"status": "inactive"}, headers=if_match(1))
    before = read(client, customer["id"])

    response = client.request(
        method,
        customer_url(customer["id"]),
        json=full(customer, first_name="Lost"),
        headers=if_match(1),
    )

    assert response.status_code == 412
    assert response.headers["Content-Type"] == "application/problem+json"
    assert read(client, customer["id"]) == before


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
def test_stale_body_version_is_409_and_changes_nothing(
    client: TestClient, new_customer: CustomerFactory, method: str
) -> None:
    customer = new_customer()
    client.patch(customer_url(customer["id"]), json={"status": "inactive", "version": 1})
    before = read(client, customer["id"])

    response = client.request(
        method, customer_url(customer["id"]), json=full(customer, first_name="Lost", version=1)
    )

    assert response.status_code == 409
    assert read(client, customer["id"]) == before


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
def test_write_without_a_version_is_428_and_changes_nothing(
    client: TestClient, new_customer: CustomerFactory, method: str
) -> None:
    customer = new_customer()

    response = client.request(
        method, customer_url(customer["id"]), json=full(customer, first_name="Lost")
    )

    assert response.status_code == 428
    assert read(client, customer["id"]) == customer


@pytest.mark.parametrize("header", ['"abc"', 'W/"x"', "", '"-1"'])
def test_malformed_if_match_is_400(
    client: TestClient, new_customer: CustomerFactory, header: str
) -> None:
    customer = new_customer()

    response = client.patch(
        customer_url(customer["id"]), json={"first_name": "X"}, headers={"If-Match": header}
    )

    assert response.status_code == 400
    assert read(client, customer["id"]) == customer


@pytest.mark.parametrize("field", ["id", "url", "created_at", "updated_at"])
def test_put_with_read_only_field_is_422(
    client: TestClient, new_customer: CustomerFactory, field: str
) -> None:
    customer = new_customer()

    response = client.put(
        customer_url(customer["id"]),
        json=full(customer, first_name="Changed", version=1) | {field: customer[field]},
    )

    assert response.status_code == 422
    assert any(e["loc"] == ["body", field] for e in response.json()["errors"])
    assert read(client, customer["id"]) == customer


@pytest.mark.parametrize(
    ("method", "body"),
    [
        ("GET", None),
        ("PUT", {"first_name": "A", "last_name": "B", "status": "active", "company_id": 1}),
        ("PATCH", {"first_name": "A"}),
        ("DELETE", None),
    ],
)
def test_missing_customer_is_404(
    client: TestClient, new_company: CompanyFactory, method: str, body: Json | None
) -> None:
    new_company()

    response = client.request(method, customer_url(999), json=body, headers=if_match(1))

    assert response.status_code == 404
    assert response.json()["detail"] == "No customer 999."


@pytest.mark.parametrize(
    ("method", "path", "body", "headers"),
    [
        ("GET", "/api/v1/customers/99999999999999999999", None, {}),
        ("GET", "/api/v1/customers/3000000000", None, {}),
        ("DELETE", "/api/v1/customers/3000000000", None, {}),
        ("GET", "/api/v1/customers?company_id=3000000000", None, {}),
        ("GET", "/api/v1/customers?company_id=99999999999999999999", None, {}),
        ("GET", "/api/v1/customers?offset=99999999999999999999", None, {}),
        ("PATCH", "/api/v1/customers/{id}", {"first_name": "X"}, {"If-Match": '"3000000000"'}),
        ("PATCH", "/api/v1/customers/{id}", {"first_name": "X", "version": 3000000000}, {}),
        (
            "PATCH",
            "/api/v1/customers/{id}",
            {"first_name": "X", "version": 99999999999999999999},
            {},
        ),
        ("PATCH", "/api/v1/customers/{id}", {"company_id": 3000000000, "version": 1}, {}),
        ("DELETE", "/api/v1/customers/{id}", None, {"If-Match": '"99999999999999999999"'}),
        (
            "POST",
            "/api/v1/customers",
            {"first_name": "A", "last_name": "B", "status": "active", "company_id": 2**63},
            {},
        ),
    ],
)
def test_out_of_range_numbers_are_never_a_500(
    client: TestClient,
    new_customer: CustomerFactory,
    method: str,
    path: str,
    body: Json | None,
    headers: dict[str, str],
) -> None:
    customer = new_customer()

    response = client.request(method, path.format(id=customer["id"]), json=body, headers=headers)

    # 400 when the database cannot even compare the number, else the usual answers.
    assert response.status_code in {200, 400, 404, 409, 412, 422}, response.text
    if response.status_code >= 400:
        assert response.headers["Content-Type"] == "application/problem+json"
    assert read(client, customer["id"]) == customer


# Deletion


def test_delete_without_if_match(client: TestClient, new_customer: CustomerFactory) -> None:
    customer = new_customer()

    response = client.delete(customer_url(customer["id"]))

    assert response.status_code == 204
    assert client.get(customer_url(customer["id"])).status_code == 404
    assert client.delete(customer_url(customer["id"])).status_code == 404


def test_delete_with_current_if_match(client: TestClient, new_customer: CustomerFactory) -> None:
    customer = new_customer()
    client.patch(customer_url(customer["id"]), json={"status": "inactive"}, headers=if_match(1))

    response = client.delete(customer_url(customer["id"]), headers=if_match(2))

    assert response.status_code == 204
    assert client.get(customer_url(customer["id"])).status_code == 404


def test_delete_with_stale_if_match_is_412_and_keeps_it(
    client: TestClient, new_customer: CustomerFactory, new_note: NoteFactory
) -> None:
    customer = new_customer()
    note = new_note(customer["id"])
    client.patch(customer_url(customer["id"]), json={"status": "inactive"}, headers=if_match(1))
    before = read(client, customer["id"])

    response = client.delete(customer_url(customer["id"]), headers=if_match(1))

    assert response.status_code == 412
    assert read(client, customer["id"]) == before
    assert client.get(f"/api/v1/notes/{note['id']}").json() == note


def test_deleting_a_customer_leaves_the_others(client: TestClient, crm: Crm) -> None:
    gone = crm.customers[2]

    assert client.delete(customer_url(gone["id"])).status_code == 204

    assert listed(client, limit=500) == [c["id"] for c in crm.customers if c is not gone]


# Auth


def test_read_only_token_can_read_but_not_write(
    client: TestClient, new_customer: CustomerFactory, read_only: dict[str, str]
) -> None:
    customer = new_customer()
    url = customer_url(customer["id"])

    assert client.get(CUSTOMERS, headers=read_only).status_code == 200
    assert client.get(url, headers=read_only).json() == customer
    writes = [
        client.post(CUSTOMERS, json=full(customer), headers=read_only),
        client.put(url, json=full(customer, first_name="X", version=1), headers=read_only),
        client.patch(url, json={"first_name": "X", "version": 1}, headers=read_only),
        client.delete(url, headers=read_only),
    ]

    assert [r.status_code for r in writes] == [403, 403, 403, 403]
    assert all(r.json()["status"] == 403 for r in writes)
    assert client.get(CUSTOMERS).json()["items"] == [customer]


def test_no_token_is_401(anon: TestClient) -> None:
    for method, path in [
        ("GET", CUSTOMERS),
        ("POST", CUSTOMERS),
        ("GET", customer_url(1)),
        ("PUT", customer_url(1)),
        ("PATCH", customer_url(1)),
        ("DELETE", customer_url(1)),
    ]:
        response = anon.request(method, path)
        assert response.status_code == 401, (method, path)
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_garbage_token_is_401(anon: TestClient) -> None:
    response = anon.get(CUSTOMERS, headers={"Authorization": "Bearer wharf_not-a-real-token"})

    assert response.status_code == 401


# Which error wins: a missing row (404), then a stale version, then the body's own problems.


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
def test_missing_customer_is_404_even_with_a_nonexistent_company(
    client: TestClient, method: str
) -> None:
    body = {"first_name": "A", "last_name": "B", "status": "active", "company_id": 77}

    response = client.request(method, customer_url(999), json=body, headers=if_match(1))

    assert response.status_code == 404
    assert response.json()["detail"] == "No customer 999."


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
def test_stale_if_match_wins_over_a_nonexistent_company(
    client: TestClient, new_customer: CustomerFactory, method: str
) -> None:
    customer = new_customer()
    client.patch(customer_url(customer["id"]), json={"status": "inactive"}, headers=if_match(1))
    before = read(client, customer["id"])

    response = client.request(
        method,
        customer_url(customer["id"]),
        json=full(customer, company_id=77),
        headers=if_match(1),
    )

    assert response.status_code == 412
    assert read(client, customer["id"]) == before
