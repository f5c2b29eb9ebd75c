"""Unit tests of the pure helpers in core: no app, no database."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Column, ColumnElement, Integer, MetaData, String, Table
from sqlalchemy.dialects import sqlite
from starlette.requests import Request

from wharf.core.data.db import sqlalchemy_url
from wharf.core.data.pagination import order_by
from wharf.core.errors import (
    BadRequest,
    Conflict,
    InvalidInput,
    PreconditionFailed,
    PreconditionRequired,
)
from wharf.core.http.concurrency import (
    Precondition,
    body_etag,
    not_modified,
    precondition,
    version_etag,
)
from wharf.core.http.middleware import _accepts_json
from wharf.core.security import hash_password, verify_password


def request_with(**headers: str) -> Request:
    """A bare Starlette request carrying the given headers (underscores become dashes)."""
    raw = [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]
    return Request({"type": "http", "method": "PATCH", "path": "/", "headers": raw})


# concurrency.precondition


def test_precondition_from_if_match() -> None:
    expected = precondition(request_with(if_match='"3"'), None)
    assert expected == Precondition(3, from_header=True)


def test_precondition_accepts_weak_if_match() -> None:
    assert precondition(request_with(if_match='W/"7"'), None) == Precondition(7, from_header=True)


def test_precondition_from_body_version() -> None:
    assert precondition(request_with(), 4) == Precondition(4, from_header=False)


def test_precondition_header_and_equal_body_version_agree() -> None:
    assert precondition(request_with(if_match='"5"'), 5) == Precondition(5, from_header=True)


def test_precondition_header_and_body_disagree_is_bad_request() -> None:
    with pytest.raises(BadRequest):
        precondition(request_with(if_match='"5"'), 6)


def test_precondition_missing_is_428() -> None:
    with pytest.raises(PreconditionRequired) as caught:
        precondition(request_with(), None)
    assert caught.value.status == 428
    assert "If-Match" in caught.value.detail


@pytest.mark.parametrize("header", ["abc", '"abc"', '"-1"', '"1.5"', '""', "*"])
def test_precondition_rejects_non_version_if_match(header: str) -> None:
    with pytest.raises(BadRequest) as caught:
        precondition(request_with(if_match=header), None)
    assert caught.value.status == 400


def test_stale_header_precondition_is_412() -> None:
    error = Precondition(1, from_header=True).stale(2, "Company 9")
    assert isinstance(error, PreconditionFailed)
    assert error.status == 412
    assert "2" in error.detail


def test_stale_body_version_is_409() -> None:
    error = Precondition(1, from_header=False).stale(2, "Company 9")
    assert isinstance(error, Conflict)
    assert error.status == 409


# concurrency.not_modified and the ETag helpers


def test_version_etag_is_quoted_version() -> None:
    assert version_etag(12) == '"12"'


def test_body_etag_is_weak_and_depends_on_body() -> None:
    assert body_etag(b"{}").startswith('W/"')
    assert body_etag(b"{}") == body_etag(b"{}")
    assert body_etag(b"{}") != body_etag(b"[]")


@pytest.mark.parametrize(
    ("header", "etag", "expected"),
    [
        (None, '"1"', False),
        ('"1"', '"1"', True),
        ('"2"', '"1"', False),
        ("*", '"1"', True),
        (" * ", '"1"', True),
        ('W/"1"', '"1"', True),
        ('"1"', 'W/"1"', True),
        ('W/"abc"', 'W/"abc"', True),
        ('"0", "1"', '"1"', True),
        ('"0","2"', '"1"', False),
        ('"11"', '"1"', False),
    ],
)
def test_not_modified(header: str | None, etag: str, expected: bool) -> None:
    request = request_with(if_none_match=header) if header is not None else request_with()
    assert not_modified(request, etag) is expected


# pagination.order_by

items = Table(
    "items",
    MetaData(),
    Column("id", Integer, primary_key=True),
    Column("name", String, nullable=False),
    Column("rank", Integer, nullable=False),
    Column("expires", Integer, nullable=True),
)
COLUMNS: dict[str, Any] = {
    "id": items.c.id,
    "name": items.c.name,
    "rank": items.c.rank,
    "expires": items.c.expires,
}


def sql(clauses: list[ColumnElement[Any]]) -> list[str]:
    return [str(c.compile(dialect=sqlite.dialect())) for c in clauses]


@pytest.mark.parametrize("raw", [None, "", " ", ",", " , "])
def test_order_by_defaults_to_id(raw: str | None) -> None:
    assert sql(order_by(raw, COLUMNS, tiebreak=items.c.id)) == ["items.id ASC"]


def test_order_by_ascending_then_id_tiebreak() -> None:
    assert sql(order_by("name", COLUMNS, tiebreak=items.c.id)) == ["items.name ASC", "items.id ASC"]


def test_order_by_descending_prefix() -> None:
    clauses = order_by("-rank,name", COLUMNS, tiebreak=items.c.id)
    assert sql(clauses) == ["items.rank DESC", "items.name ASC", "items.id ASC"]


def test_order_by_explicit_id_is_not_repeated() -> None:
    assert sql(order_by("-id", COLUMNS, tiebreak=items.c.id)) == ["items.id DESC"]


def test_order_by_puts_nulls_last_ascending_and_first_descending() -> None:
    # Null sorts as the largest value on both databases (SQLite alone would put it first).
    assert sql(order_by("expires", COLUMNS, tiebreak=items.c.id)) == [
        "items.expires ASC NULLS LAST",
        "items.id ASC",
    ]
    assert sql(order_by("-expires", COLUMNS, tiebreak=items.c.id))[0] == (
        "items.expires DESC NULLS FIRST"
    )
    assert sql(order_by("id,name", COLUMNS, tiebreak=items.c.id)) == [
        "items.id ASC",
        "items.name ASC",
    ]


def test_order_by_ignores_repeated_field_and_spaces() -> None:
    clauses = order_by(" name , -name ,rank", COLUMNS, tiebreak=items.c.id)
    assert sql(clauses) == ["items.name ASC", "items.rank ASC", "items.id ASC"]


@pytest.mark.parametrize("raw", ["colour", "-colour", "name,password", "--name"])
def test_order_by_unknown_field_is_422(raw: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        order_by(raw, COLUMNS, tiebreak=items.c.id)
    assert caught.value.status == 422
    errors = caught.value.extra["errors"]
    assert errors[0]["loc"] == ["query", "ordering"]
    assert "name" in errors[0]["msg"]  # the message lists the fields one may use


# middleware._accepts_json


@pytest.mark.parametrize(
    "accept",
    [
        "application/json",
        "APPLICATION/JSON",
        "*/*",
        "application/*",
        "application/problem+json",
        "text/html, application/json",
        "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        "application/json; q=0.5",
        "application/json;q=1",
        "application/json;charset=utf-8",
    ],
)
def test_accepts_json(accept: str) -> None:
    assert _accepts_json(accept) is True


@pytest.mark.parametrize(
    "accept",
    [
        "text/html",
        "text/*",
        "application/xml",
        "image/png, text/plain",
        "application/json;q=0",
        "application/json; q=0.0",
        "*/*;q=0",
        "",
    ],
)
def test_does_not_accept_json(accept: str) -> None:
    assert _accepts_json(accept) is False


@pytest.mark.parametrize("accept", ["application/json;q=.", "application/json;q=1.2.3"])
def test_accepts_json_survives_malformed_quality(accept: str) -> None:
    # A garbled q-value must not raise (that would be a 500); it reads as the default q=1.
    assert _accepts_json(accept) is True


# security: password hashing


def test_hash_password_is_argon2id_with_owasp_parameters() -> None:
    hashed = hash_password("correct horse battery")
    assert hashed.startswith("$argon2id$v=19$m=19456,t=2,p=1$")


def test_hash_password_is_salted() -> None:
    assert hash_password("same password") != hash_password("same password")


def test_verify_password_accepts_the_right_password() -> None:
    assert verify_password(hash_password("s3cret-pass"), "s3cret-pass") is True


def test_verify_password_rejects_a_wrong_password() -> None:
    assert verify_password(hash_password("s3cret-pass"), "s3cret-pasS") is False


@pytest.mark.parametrize("stored", [None, "", "not-a-hash", "$argon2id$v=19$garbage"])
def test_verify_password_rejects_missing_or_invalid_hash(stored: str | None) -> None:
    assert verify_password(stored, "anything at all") is False


# db.sqlalchemy_url


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://u:p@db:5432/wharf", "postgresql+psycopg://u:p@db:5432/wharf"),
        ("postgres://u@db/wharf", "postgresql+psycopg://u@db/wharf"),
        ("postgresql+psycopg://u@db/wharf", "postgresql+psycopg://u@db/wharf"),
        ("postgresql+asyncpg://u@db/wharf", "postgresql+asyncpg://u@db/wharf"),
        ("sqlite:///var/wharf.db", "sqlite:///var/wharf.db"),
        ("sqlite://", "sqlite://"),
    ],
)
def test_sqlalchemy_url(given: str, expected: str) -> None:
    assert sqlalchemy_url(given) == expected
