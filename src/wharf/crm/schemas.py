"""Request and response shapes for companies, customers and notes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from wharf.core.data.pagination import ListParams, ordering_field
from wharf.core.http.schemas import MAX_INT, MIN_INT, Patch, Strict, Versioned

Status = Literal["prospective", "active", "inactive"]
CompanyName = Annotated[str, Field(min_length=1, max_length=200)]
PersonName = Annotated[str, Field(min_length=1, max_length=100)]
NoteText = Annotated[str, Field(min_length=1, max_length=10_000)]
Id = Annotated[int, Field(ge=1)]


class CompanyCreate(Strict):
    name: CompanyName


class CompanyReplace(Versioned):
    name: CompanyName


class CompanyPatch(Patch):
    name: CompanyName | None = None


class CompanyRead(BaseModel):
    id: int
    url: str
    name: str
    version: int
    created_at: datetime
    updated_at: datetime


class CustomerCreate(Strict):
    first_name: PersonName
    last_name: PersonName
    status: Status
    company_id: Id


class CustomerReplace(Versioned):
    first_name: PersonName
    last_name: PersonName
    status: Status
    company_id: Id


class CustomerPatch(Patch):
    first_name: PersonName | None = None
    last_name: PersonName | None = None
    status: Status | None = None
    company_id: Id | None = None


class CustomerRead(BaseModel):
    id: int
    url: str
    company_id: int
    first_name: str
    last_name: str
    status: Status
    version: int
    created_at: datetime
    updated_at: datetime


class CustomerNoteCreate(Strict):
    text: NoteText


class NoteCreate(CustomerNoteCreate):
    customer_id: Id


class NoteReplace(Versioned):
    text: NoteText
    customer_id: Id


class NotePatch(Patch):
    text: NoteText | None = None
    customer_id: Id | None = None


class NoteRead(BaseModel):
    id: int
    url: str
    customer_id: int
    text: str
    version: int
    created_at: datetime
    updated_at: datetime


CUSTOMER_ORDERING = ("id", "first_name", "last_name", "status", "created_at", "company_id")
NOTE_ORDERING = ("id", "created_at", "customer_id")


class CompanyList(ListParams):
    """`search` matches the name; `ordering` over id, name, created_at."""

    ordering: str | None = ordering_field("id", "name", "created_at")


class CustomerList(ListParams):
    """`search` matches first and last names; `ordering` over id, first_name, last_name,
    status, created_at, company_id."""

    ordering: str | None = ordering_field(*CUSTOMER_ORDERING)
    company_id: int | None = Field(default=None, ge=MIN_INT, le=MAX_INT)
    status: Status | None = Field(default=None, description="prospective, active or inactive")
    first_name: str | None = Field(default=None, max_length=100)
    last_name: str | None = Field(default=None, max_length=100)


class CompanyCustomerList(ListParams):
    """A company's customers: the /customers filters but company_id, which is the path's."""

    ordering: str | None = ordering_field(*CUSTOMER_ORDERING)
    status: Status | None = Field(default=None, description="prospective, active or inactive")
    first_name: str | None = Field(default=None, max_length=100)
    last_name: str | None = Field(default=None, max_length=100)


class NoteList(ListParams):
    """`search` matches the text; `ordering` over id, created_at, customer_id."""

    ordering: str | None = ordering_field(*NOTE_ORDERING)
    customer_id: int | None = Field(default=None, ge=MIN_INT, le=MAX_INT)


class CustomerNoteList(ListParams):
    """A customer's notes."""

    ordering: str | None = ordering_field(*NOTE_ORDERING)
