"""Rules and queries for companies, customers and notes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, select

from wharf.core.data import crud, listing
from wharf.core.data.pagination import Page
from wharf.core.errors import Conflict, InvalidInput
from wharf.core.http.concurrency import Precondition
from wharf.crm.models import Company, Customer, Note

COMPANIES = crud.Resource(
    Company,
    "Company",
    "/api/v1/companies",
    (Company.id, Company.name, Company.version, Company.created_at, Company.updated_at),
    ordering={"id": Company.id, "name": Company.name, "created_at": Company.created_at},
    search=(Company.name,),
)
CUSTOMERS = crud.Resource(
    Customer,
    "Customer",
    "/api/v1/customers",
    (
        Customer.id,
        Customer.company_id,
        Customer.first_name,
        Customer.last_name,
        Customer.status,
        Customer.version,
        Customer.created_at,
        Customer.updated_at,
    ),
    ordering={
        "id": Customer.id,
        "first_name": Customer.first_name,
        "last_name": Customer.last_name,
        "status": Customer.status,
        "created_at": Customer.created_at,
        "company_id": Customer.company_id,
    },
    search=(Customer.first_name, Customer.last_name),
)
NOTES = crud.Resource(
    Note,
    "Note",
    "/api/v1/notes",
    (Note.id, Note.customer_id, Note.text, Note.version, Note.created_at, Note.updated_at),
    ordering={"id": Note.id, "created_at": Note.created_at, "customer_id": Note.customer_id},
    search=(Note.text,),
)

Rows = tuple[list[dict[str, Any]], int]


# Companies


def list_companies(
    conn: Connection, *, search: str | None, ordering: str | None, page: Page
) -> Rows:
    return listing.page(conn, COMPANIES, equals={}, search=search, ordering=ordering, page=page)


def get_company(conn: Connection, *, company_id: int) -> dict[str, Any]:
    return crud.fetch(conn, COMPANIES, company_id)


def _current(
    conn: Connection, res: crud.Resource, item_id: int, expected: Precondition | None
) -> dict[str, Any]:
    """The row, or 404; then a stale version, before any check of the body's values, so a
    missing row is 404 and a stale write 412/409 whatever else is wrong (RFC 9110 13.2.1)."""
    current = crud.fetch(conn, res, item_id)
    if expected is not None and current["version"] != expected.version:
        raise expected.stale(current["version"], f"{res.label} {item_id}")
    return current


def create_company(conn: Connection, *, name: str) -> dict[str, Any]:
    return crud.create_unique(
        conn,
        COMPANIES,
        {"name": name},
        key=("name",),
        refuse=lambda: crud.name_free(conn, COMPANIES, name),
    )


def change_company(
    conn: Connection, *, company_id: int, values: dict[str, Any], expected: Precondition
) -> dict[str, Any]:
    if "name" in values:
        _current(conn, COMPANIES, company_id, expected)
        crud.name_free(conn, COMPANIES, values["name"], other_than=company_id)
    return crud.change(conn, COMPANIES, company_id, values, expected)


def delete_company(conn: Connection, *, company_id: int, expected: Precondition | None) -> None:
    _current(conn, COMPANIES, company_id, expected)
    count = conn.execute(
        select(func.count()).select_from(Customer).where(Customer.company_id == company_id)
    ).scalar_one()
    if count:
        raise Conflict(
            f"Company {company_id} still has {count} customer{'s' if count != 1 else ''}; "
            "delete or move them first."
        )
    crud.remove(conn, COMPANIES, company_id, expected)


# Customers


@dataclass(frozen=True)
class CustomerFilter:
    company_id: int | None = None
    status: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    search: str | None = None

    def equals(self) -> dict[str, Any]:
        """The exact-match filters that were given."""
        given = {
            "company_id": self.company_id,
            "status": self.status,
            "first_name": self.first_name,
            "last_name": self.last_name,
        }
        return {name: value for name, value in given.items() if value is not None}


def list_customers(
    conn: Connection, *, filters: CustomerFilter, ordering: str | None, page: Page
) -> Rows:
    return listing.page(
        conn,
        CUSTOMERS,
        equals=filters.equals(),
        search=filters.search,
        ordering=ordering,
        page=page,
    )


def list_company_customers(
    conn: Connection, *, company_id: int, filters: CustomerFilter, ordering: str | None, page: Page
) -> Rows:
    crud.fetch(conn, COMPANIES, company_id)  # 404 for a company that does not exist
    return list_customers(conn, filters=filters, ordering=ordering, page=page)


def _company_exists(conn: Connection, company_id: int) -> None:
    if not crud.exists(conn, COMPANIES, company_id):
        raise InvalidInput(f"There is no company {company_id}.", loc=["body", "company_id"])


def get_customer(conn: Connection, *, customer_id: int) -> dict[str, Any]:
    return crud.fetch(conn, CUSTOMERS, customer_id)


def create_customer(conn: Connection, *, values: dict[str, Any]) -> dict[str, Any]:
    _company_exists(conn, values["company_id"])
    return crud.create(conn, CUSTOMERS, values)


def change_customer(
    conn: Connection, *, customer_id: int, values: dict[str, Any], expected: Precondition
) -> dict[str, Any]:
    if "company_id" in values:
        _current(conn, CUSTOMERS, customer_id, expected)
        _company_exists(conn, values["company_id"])
    return crud.change(conn, CUSTOMERS, customer_id, values, expected)


def delete_customer(conn: Connection, *, customer_id: int, expected: Precondition | None) -> None:
    """Deletes the customer's notes with it (ON DELETE CASCADE)."""
    crud.remove(conn, CUSTOMERS, customer_id, expected)


# Notes


def list_notes(
    conn: Connection,
    *,
    customer_id: int | None,
    search: str | None,
    ordering: str | None,
    page: Page,
) -> Rows:
    equals = {} if customer_id is None else {"customer_id": customer_id}
    return listing.page(conn, NOTES, equals=equals, search=search, ordering=ordering, page=page)


def list_customer_notes(
    conn: Connection, *, customer_id: int, search: str | None, ordering: str | None, page: Page
) -> Rows:
    crud.fetch(conn, CUSTOMERS, customer_id)
    return list_notes(conn, customer_id=customer_id, search=search, ordering=ordering, page=page)


def _customer_exists(conn: Connection, customer_id: int, *, in_path: bool = False) -> None:
    if in_path:
        crud.fetch(conn, CUSTOMERS, customer_id)
    elif not crud.exists(conn, CUSTOMERS, customer_id):
        raise InvalidInput(f"There is no customer {customer_id}.", loc=["body", "customer_id"])


def get_note(conn: Connection, *, note_id: int) -> dict[str, Any]:
    return crud.fetch(conn, NOTES, note_id)


def create_note(
    conn: Connection, *, customer_id: int, text: str, in_path: bool = False
) -> dict[str, Any]:
    _customer_exists(conn, customer_id, in_path=in_path)
    return crud.create(conn, NOTES, {"customer_id": customer_id, "text": text})


def change_note(
    conn: Connection, *, note_id: int, values: dict[str, Any], expected: Precondition
) -> dict[str, Any]:
    if "customer_id" in values:
        _current(conn, NOTES, note_id, expected)
        _customer_exists(conn, values["customer_id"])
    return crud.change(conn, NOTES, note_id, values, expected)


def delete_note(conn: Connection, *, note_id: int, expected: Precondition | None) -> None:
    crud.remove(conn, NOTES, note_id, expected)
