"""HTTP adapter for companies, customers and notes (seed 000)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query, Request, Response

from wharf.core.data.crud import Resource
from wharf.core.data.db import Db
from wharf.core.data.pagination import Page, PageOf, page_response
from wharf.core.deps import base_url
from wharf.core.http.concurrency import optional_precondition, precondition, versioned_response
from wharf.core.http.routing import Router
from wharf.core.security import Reader, Writer
from wharf.crm import service
from wharf.crm.schemas import (
    CompanyCreate,
    CompanyCustomerList,
    CompanyList,
    CompanyPatch,
    CompanyRead,
    CompanyReplace,
    CustomerCreate,
    CustomerList,
    CustomerNoteCreate,
    CustomerNoteList,
    CustomerPatch,
    CustomerRead,
    CustomerReplace,
    NoteCreate,
    NoteList,
    NotePatch,
    NoteRead,
    NoteReplace,
)
from wharf.crm.service import COMPANIES, CUSTOMERS, NOTES, CustomerFilter

router = Router()


def _one(request: Request, res: Resource, row: dict[str, Any], status: int = 200) -> Response:
    return versioned_response(
        request, res.render(base_url(request), row), status=status, location=status == 201
    )


def _many(request: Request, res: Resource, found: service.Rows, page: Page) -> Response:
    base = base_url(request)
    rows, total = found
    return page_response(request, [res.render(base, r) for r in rows], total, page)


# Companies


@router.get("/companies", response_model=PageOf[CompanyRead], tags=["crm"])
async def list_companies(
    request: Request, db: Db, _: Reader, q: Annotated[CompanyList, Query()]
) -> Response:
    """Companies; `search` matches the name, `ordering` over id, name, created_at."""
    found = service.list_companies(db, search=q.search, ordering=q.ordering, page=q.page)
    return _many(request, COMPANIES, found, q.page)


@router.post("/companies", status_code=201, response_model=CompanyRead, tags=["crm"])
async def create_company(body: CompanyCreate, request: Request, db: Db, _: Writer) -> Response:
    """Create a company; names are unique (409)."""
    return _one(request, COMPANIES, service.create_company(db, name=body.name), 201)


@router.get("/companies/{company_id}", response_model=CompanyRead, tags=["crm"])
async def get_company(company_id: int, request: Request, db: Db, _: Reader) -> Response:
    """One company."""
    return _one(request, COMPANIES, service.get_company(db, company_id=company_id))


@router.put("/companies/{company_id}", response_model=CompanyRead, tags=["crm"])
async def replace_company(
    company_id: int, body: CompanyReplace, request: Request, db: Db, _: Writer
) -> Response:
    """Replace a company. Needs `If-Match` or `version`."""
    expected = precondition(request, body.version)
    values = body.model_dump(exclude={"version"})
    row = service.change_company(db, company_id=company_id, values=values, expected=expected)
    return _one(request, COMPANIES, row)


@router.patch("/companies/{company_id}", response_model=CompanyRead, tags=["crm"])
async def patch_company(
    company_id: int, body: CompanyPatch, request: Request, db: Db, _: Writer
) -> Response:
    """Change some fields of a company. Needs `If-Match` or `version`."""
    expected = precondition(request, body.version)
    row = service.change_company(
        db, company_id=company_id, values=body.changes(), expected=expected
    )
    return _one(request, COMPANIES, row)


@router.delete("/companies/{company_id}", status_code=204, tags=["crm"])
async def delete_company(company_id: int, request: Request, db: Db, _: Writer) -> Response:
    """Delete a company that has no customers left (409 says how many remain)."""
    service.delete_company(db, company_id=company_id, expected=optional_precondition(request))
    return Response(status_code=204)


@router.get("/companies/{company_id}/customers", response_model=PageOf[CustomerRead], tags=["crm"])
async def list_company_customers(
    company_id: int,
    request: Request,
    db: Db,
    _: Reader,
    q: Annotated[CompanyCustomerList, Query()],
) -> Response:
    """A company's customers, with the same filters as /customers."""
    filters = CustomerFilter(
        company_id=company_id,
        status=q.status,
        first_name=q.first_name,
        last_name=q.last_name,
        search=q.search,
    )
    found = service.list_company_customers(
        db, company_id=company_id, filters=filters, ordering=q.ordering, page=q.page
    )
    return _many(request, CUSTOMERS, found, q.page)


# Customers


@router.get("/customers", response_model=PageOf[CustomerRead], tags=["crm"])
async def list_customers(
    request: Request, db: Db, _: Reader, q: Annotated[CustomerList, Query()]
) -> Response:
    """Customers, filtered by company_id, status, first_name, last_name; `search` matches
    names; `ordering` over id, first_name, last_name, status, created_at, company_id."""
    filters = CustomerFilter(
        company_id=q.company_id,
        status=q.status,
        first_name=q.first_name,
        last_name=q.last_name,
        search=q.search,
    )
    found = service.list_customers(db, filters=filters, ordering=q.ordering, page=q.page)
    return _many(request, CUSTOMERS, found, q.page)


@router.post("/customers", status_code=201, response_model=CustomerRead, tags=["crm"])
async def create_customer(body: CustomerCreate, request: Request, db: Db, _: Writer) -> Response:
    """Create a customer of an existing company."""
    return _one(request, CUSTOMERS, service.create_customer(db, values=body.model_dump()), 201)


@router.get("/customers/{customer_id}", response_model=CustomerRead, tags=["crm"])
async def get_customer(customer_id: int, request: Request, db: Db, _: Reader) -> Response:
    """One customer."""
    return _one(request, CUSTOMERS, service.get_customer(db, customer_id=customer_id))


@router.put("/customers/{customer_id}", response_model=CustomerRead, tags=["crm"])
async def replace_customer(
    customer_id: int, body: CustomerReplace, request: Request, db: Db, _: Writer
) -> Response:
    """Replace a customer. Needs `If-Match` or `version`."""
    expected = precondition(request, body.version)
    values = body.model_dump(exclude={"version"})
    row = service.change_customer(db, customer_id=customer_id, values=values, expected=expected)
    return _one(request, CUSTOMERS, row)


@router.patch("/customers/{customer_id}", response_model=CustomerRead, tags=["crm"])
async def patch_customer(
    customer_id: int, body: CustomerPatch, request: Request, db: Db, _: Writer
) -> Response:
    """Change some fields of a customer. Needs `If-Match` or `version`."""
    expected = precondition(request, body.version)
    row = service.change_customer(
        db, customer_id=customer_id, values=body.changes(), expected=expected
    )
    return _one(request, CUSTOMERS, row)


@router.delete("/customers/{customer_id}", status_code=204, tags=["crm"])
async def delete_customer(customer_id: int, request: Request, db: Db, _: Writer) -> Response:
    """Delete a customer and its notes."""
    service.delete_customer(db, customer_id=customer_id, expected=optional_precondition(request))
    return Response(status_code=204)


@router.get("/customers/{customer_id}/notes", response_model=PageOf[NoteRead], tags=["crm"])
async def list_customer_notes(
    customer_id: int,
    request: Request,
    db: Db,
    _: Reader,
    q: Annotated[CustomerNoteList, Query()],
) -> Response:
    """A customer's notes."""
    found = service.list_customer_notes(
        db, customer_id=customer_id, search=q.search, ordering=q.ordering, page=q.page
    )
    return _many(request, NOTES, found, q.page)


@router.post(
    "/customers/{customer_id}/notes", status_code=201, response_model=NoteRead, tags=["crm"]
)
async def create_customer_note(
    customer_id: int, body: CustomerNoteCreate, request: Request, db: Db, _: Writer
) -> Response:
    """Add a note to a customer."""
    row = service.create_note(db, customer_id=customer_id, text=body.text, in_path=True)
    return _one(request, NOTES, row, 201)


# Notes


@router.get("/notes", response_model=PageOf[NoteRead], tags=["crm"])
async def list_notes(
    request: Request, db: Db, _: Reader, q: Annotated[NoteList, Query()]
) -> Response:
    """Notes, filtered by customer_id; `search` matches the text."""
    found = service.list_notes(
        db, customer_id=q.customer_id, search=q.search, ordering=q.ordering, page=q.page
    )
    return _many(request, NOTES, found, q.page)


@router.post("/notes", status_code=201, response_model=NoteRead, tags=["crm"])
async def create_note(body: NoteCreate, request: Request, db: Db, _: Writer) -> Response:
    """Create a note for a customer."""
    row = service.create_note(db, customer_id=body.customer_id, text=body.text)
    return _one(request, NOTES, row, 201)


@router.get("/notes/{note_id}", response_model=NoteRead, tags=["crm"])
async def get_note(note_id: int, request: Request, db: Db, _: Reader) -> Response:
    """One note."""
    return _one(request, NOTES, service.get_note(db, note_id=note_id))


@router.put("/notes/{note_id}", response_model=NoteRead, tags=["crm"])
async def replace_note(
    note_id: int, body: NoteReplace, request: Request, db: Db, _: Writer
) -> Response:
    """Replace a note. Needs `If-Match` or `version`."""
    expected = precondition(request, body.version)
    values = body.model_dump(exclude={"version"})
    return _one(
        request, NOTES, service.change_note(db, note_id=note_id, values=values, expected=expected)
    )


@router.patch("/notes/{note_id}", response_model=NoteRead, tags=["crm"])
async def patch_note(
    note_id: int, body: NotePatch, request: Request, db: Db, _: Writer
) -> Response:
    """Change a note's text or customer. Needs `If-Match` or `version`."""
    expected = precondition(request, body.version)
    row = service.change_note(db, note_id=note_id, values=body.changes(), expected=expected)
    return _one(request, NOTES, row)


@router.delete("/notes/{note_id}", status_code=204, tags=["crm"])
async def delete_note(note_id: int, request: Request, db: Db, _: Writer) -> Response:
    """Delete a note."""
    service.delete_note(db, note_id=note_id, expected=optional_precondition(request))
    return Response(status_code=204)
