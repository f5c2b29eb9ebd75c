"""CRM fixtures: small factories that create rows through the API and check they were made."""

from __future__ import annotations

from collections.abc import Callable
from itertools import count
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from starlette.testclient import TestClient

Json = dict[str, Any]
CompanyFactory = Callable[..., Json]
CustomerFactory = Callable[..., Json]
NoteFactory = Callable[..., Json]


@pytest.fixture
def new_company(client: TestClient) -> CompanyFactory:
    """POST a company (a unique name unless one is given) and return its body."""
    numbers = count(1)

    def make(name: str | None = None) -> Json:
        response = client.post(
            "/api/v1/companies", json={"name": name or f"Company {next(numbers)}"}
        )
        assert response.status_code == 201, response.text
        body: Json = response.json()
        return body

    return make


@pytest.fixture
def new_customer(client: TestClient, new_company: CompanyFactory) -> CustomerFactory:
    """POST a customer; without a company_id it gets a fresh company of its own."""

    def make(
        company_id: int | None = None,
        *,
        first_name: str = "Ada",
        last_name: str = "Lovelace",
        status: str = "active",
    ) -> Json:
        if company_id is None:
            company_id = new_company()["id"]
        response = client.post(
            "/api/v1/customers",
            json={
                "first_name": first_name,
                "last_name": last_name,
                "status": status,
                "company_id": company_id,
            },
        )
        assert response.status_code == 201, response.text
        body: Json = response.json()
        return body

    return make


@pytest.fixture
def new_note(client: TestClient) -> NoteFactory:
    """POST a note for a customer through /api/v1/notes."""

    def make(customer_id: int, text: str = "Called about renewal.") -> Json:
        response = client.post("/api/v1/notes", json={"customer_id": customer_id, "text": text})
        assert response.status_code == 201, response.text
        body: Json = response.json()
        return body

    return make


def split(url: str) -> tuple[str, dict[str, str]]:
    """An absolute link from the API as (path, query), checking it points at this server."""
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc) == ("http", "testserver"), url
    return parts.path, dict(parse_qsl(parts.query))
