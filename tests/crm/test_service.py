"""The CRM services called directly, each on a connection from `engine.begin()`."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from wharf.core.data.pagination import Page
from wharf.core.errors import Conflict, InvalidInput, NotFound, PreconditionFailed
from wharf.core.http.concurrency import Precondition
from wharf.crm import service
from wharf.crm.models import Note
from wharf.crm.service import CustomerFilter

ALL = Page(limit=500, offset=0)


def header(version: int) -> Precondition:
    return Precondition(version, from_header=True)


def body(version: int) -> Precondition:
    return Precondition(version, from_header=False)


@pytest.fixture
def acme(engine: Engine) -> dict[str, Any]:
    with engine.begin() as conn:
        return service.create_company(conn, name="Acme")


def add_customer(
    engine: Engine, company_id: int, first: str, last: str, status: str = "active"
) -> dict[str, Any]:
    with engine.begin() as conn:
        return service.create_customer(
            conn,
            values={
                "company_id": company_id,
                "first_name": first,
                "last_name": last,
                "status": status,
            },
        )


def listed(engine: Engine, *, ordering: str | None = None, **filters: Any) -> list[int]:
    with engine.begin() as conn:
        rows, total = service.list_customers(
            conn, filters=CustomerFilter(**filters), ordering=ordering, page=ALL
        )
    assert total == len(rows)
    return [row["id"] for row in rows]


# Companies


def test_create_and_get_company(engine: Engine) -> None:
    with engine.begin() as conn:
        created = service.create_company(conn, name="Acme")
    with engine.begin() as conn:
        fetched = service.get_company(conn, company_id=created["id"])

    assert fetched == created
    assert created["version"] == 1
    assert created["created_at"] == created["updated_at"]


def test_services_do_not_commit(engine: Engine) -> None:
    with engine.connect() as conn:
        transaction = conn.begin()
        service.create_company(conn, name="Rolled back")
        transaction.rollback()
    with engine.begin() as conn:
        rows, total = service.list_companies(conn, search=None, ordering=None, page=ALL)

    assert (rows, total) == ([], 0)


def test_duplicate_company_name_is_a_conflict(engine: Engine, acme: dict[str, Any]) -> None:
    with engine.begin() as conn, pytest.raises(Conflict, match="Acme"):
        service.create_company(conn, name="Acme")


def test_change_company_bumps_the_version(engine: Engine, acme: dict[str, Any]) -> None:
    with engine.begin() as conn:
        changed = service.change_company(
            conn, company_id=acme["id"], values={"name": "Acme Corp"}, expected=header(1)
        )

    assert changed["name"] == "Acme Corp"
    assert changed["version"] == 2
    assert changed["created_at"] == acme["created_at"]
    assert changed["updated_at"] >= acme["updated_at"]


@pytest.mark.parametrize(
    ("expected", "error"), [(header(1), PreconditionFailed), (body(1), Conflict)]
)
def test_change_company_with_a_stale_version_raises_and_changes_nothing(
    engine: Engine, acme: dict[str, Any], expected: Precondition, error: type[Exception]
) -> None:
    with engine.begin() as conn:
        service.change_company(
            conn, company_id=acme["id"], values={"name": "V2"}, expected=header(1)
        )
    with engine.begin() as conn:
        before = service.get_company(conn, company_id=acme["id"])

    with engine.begin() as conn, pytest.raises(error, match="version 2"):
        service.change_company(
            conn, company_id=acme["id"], values={"name": "Lost"}, expected=expected
        )

    with engine.begin() as conn:
        assert service.get_company(conn, company_id=acme["id"]) == before


def test_renaming_onto_another_company_is_a_conflict(engine: Engine, acme: dict[str, Any]) -> None:
    with engine.begin() as conn:
        globex = service.create_company(conn, name="Globex")

    with engine.begin() as conn, pytest.raises(Conflict):
        service.change_company(
            conn, company_id=globex["id"], values={"name": "Acme"}, expected=header(1)
        )

    with engine.begin() as conn:
        assert service.get_company(conn, company_id=globex["id"]) == globex


def test_empty_change_does_not_bump_the_version(engine: Engine, acme: dict[str, Any]) -> None:
    with engine.begin() as conn:
        same = service.change_company(conn, company_id=acme["id"], values={}, expected=header(1))
        assert same == acme
        with pytest.raises(PreconditionFailed):
            service.change_company(conn, company_id=acme["id"], values={}, expected=header(7))


def test_missing_company_is_not_found(engine: Engine) -> None:
    with engine.begin() as conn:
        with pytest.raises(NotFound):
            service.get_company(conn, company_id=42)
        with pytest.raises(NotFound):
            service.change_company(conn, company_id=42, values={"name": "X"}, expected=header(1))
        with pytest.raises(NotFound):
            service.delete_company(conn, company_id=42, expected=None)


def test_delete_company_with_customers_is_a_conflict_with_a_count(
    engine: Engine, acme: dict[str, Any]
) -> None:
    for last in ["Lovelace", "Turing", "Hopper"]:
        add_customer(engine, acme["id"], "A", last)

    with engine.begin() as conn, pytest.raises(Conflict, match="3 customers"):
        service.delete_company(conn, company_id=acme["id"], expected=None)

    with engine.begin() as conn:
        assert service.get_company(conn, company_id=acme["id"]) == acme


def test_delete_company_with_stale_version_keeps_it(engine: Engine, acme: dict[str, Any]) -> None:
    with engine.begin() as conn, pytest.raises(PreconditionFailed):
        service.delete_company(conn, company_id=acme["id"], expected=header(2))
    with engine.begin() as conn:
        service.delete_company(conn, company_id=acme["id"], expected=header(1))
    with engine.begin() as conn, pytest.raises(NotFound):
        service.get_company(conn, company_id=acme["id"])


# Customers


def test_create_customer_of_a_missing_company_names_company_id(engine: Engine) -> None:
    with engine.begin() as conn, pytest.raises(InvalidInput) as raised:
        service.create_customer(
            conn,
            values={"company_id": 9, "first_name": "A", "last_name": "B", "status": "active"},
        )

    assert raised.value.status == 422
    assert raised.value.extra["errors"][0]["loc"] == ["body", "company_id"]


@pytest.mark.parametrize(
    ("expected", "error"), [(header(1), PreconditionFailed), (body(1), Conflict)]
)
def test_change_customer_with_a_stale_version_raises_and_changes_nothing(
    engine: Engine, acme: dict[str, Any], expected: Precondition, error: type[Exception]
) -> None:
    customer = add_customer(engine, acme["id"], "Ada", "Lovelace")
    with engine.begin() as conn:
        service.change_customer(
            conn, customer_id=customer["id"], values={"status": "inactive"}, expected=header(1)
        )
        before = service.get_customer(conn, customer_id=customer["id"])

    with engine.begin() as conn, pytest.raises(error):
        service.change_customer(
            conn, customer_id=customer["id"], values={"first_name": "Lost"}, expected=expected
        )

    with engine.begin() as conn:
        assert service.get_customer(conn, customer_id=customer["id"]) == before


def test_change_customer_merges(engine: Engine, acme: dict[str, Any]) -> None:
    customer = add_customer(engine, acme["id"], "Ada", "Lovelace", "prospective")

    with engine.begin() as conn:
        changed = service.change_customer(
            conn, customer_id=customer["id"], values={"status": "active"}, expected=body(1)
        )

    assert changed == customer | {
        "status": "active",
        "version": 2,
        "updated_at": changed["updated_at"],
    }


def test_two_writers_from_the_same_version_only_one_wins(
    engine: Engine, acme: dict[str, Any]
) -> None:
    customer = add_customer(engine, acme["id"], "Ada", "Lovelace")

    with engine.begin() as conn:
        service.change_customer(
            conn, customer_id=customer["id"], values={"last_name": "First"}, expected=header(1)
        )
    with engine.begin() as conn, pytest.raises(PreconditionFailed):
        service.change_customer(
            conn, customer_id=customer["id"], values={"last_name": "Second"}, expected=header(1)
        )

    with engine.begin() as conn:
        final = service.get_customer(conn, customer_id=customer["id"])
    assert (final["last_name"], final["version"]) == ("First", 2)


def test_delete_customer_with_stale_version_keeps_it_and_its_notes(
    engine: Engine, acme: dict[str, Any]
) -> None:
    customer = add_customer(engine, acme["id"], "Ada", "Lovelace")
    with engine.begin() as conn:
        service.create_note(conn, customer_id=customer["id"], text="Kept")

    with engine.begin() as conn, pytest.raises(PreconditionFailed):
        service.delete_customer(conn, customer_id=customer["id"], expected=header(3))

    with engine.begin() as conn:
        assert service.get_customer(conn, customer_id=customer["id"]) == customer
        assert conn.execute(select(func.count()).select_from(Note)).scalar_one() == 1


def test_delete_customer_cascades_to_notes(engine: Engine, acme: dict[str, Any]) -> None:
    customer = add_customer(engine, acme["id"], "Ada", "Lovelace")
    other = add_customer(engine, acme["id"], "Alan", "Turing")
    with engine.begin() as conn:
        for text in ["One", "Two"]:
            service.create_note(conn, customer_id=customer["id"], text=text)
        kept = service.create_note(conn, customer_id=other["id"], text="Kept")

    with engine.begin() as conn:
        service.delete_customer(conn, customer_id=customer["id"], expected=None)

    with engine.begin() as conn:
        remaining = conn.execute(select(Note.id)).scalars().all()
        with pytest.raises(NotFound):
            service.get_customer(conn, customer_id=customer["id"])
    assert remaining == [kept["id"]]


def test_delete_missing_customer_is_not_found(engine: Engine) -> None:
    with engine.begin() as conn, pytest.raises(NotFound):
        service.delete_customer(conn, customer_id=5, expected=None)


# list_customers: filters and ordering


@pytest.fixture
def people(engine: Engine) -> dict[str, int]:
    """Customers of two companies, keyed by first name; companies under `acme`/`globex`."""
    with engine.begin() as conn:
        acme = service.create_company(conn, name="Acme")["id"]
        globex = service.create_company(conn, name="Globex")["id"]
    rows = [
        (acme, "Ada", "Lovelace", "active"),
        (acme, "Alan", "Turing", "prospective"),
        (acme, "Grace", "Hopper", "active"),
        (globex, "Barbara", "Liskov", "active"),
        (globex, "Ken", "Thompson", "prospective"),
        (globex, "Dennis", "Ritchie", "inactive"),
        (globex, "Linus", "Hopper", "prospective"),
    ]
    made = {first: add_customer(engine, c, first, last, s)["id"] for c, first, last, s in rows}
    return made | {"acme": acme, "globex": globex}


def test_list_customers_filters(engine: Engine, people: dict[str, int]) -> None:
    p = people
    assert listed(engine, company_id=p["acme"]) == [p["Ada"], p["Alan"], p["Grace"]]
    assert listed(engine, status="active") == [p["Ada"], p["Grace"], p["Barbara"]]
    assert listed(engine, company_id=p["globex"], status="prospective") == [p["Ken"], p["Linus"]]
    assert listed(engine, first_name="Dennis") == [p["Dennis"]]
    assert listed(engine, last_name="Hopper") == [p["Grace"], p["Linus"]]
    assert listed(engine, last_name="hopper") == []
    assert listed(engine, company_id=p["acme"], last_name="Hopper") == [p["Grace"]]


def test_list_customers_search(engine: Engine, people: dict[str, int]) -> None:
    p = people
    assert listed(engine, search="HOP") == [p["Grace"], p["Linus"]]
    assert listed(engine, search="en") == [p["Ken"], p["Dennis"]]
    assert listed(engine, search="%") == []
    assert listed(engine, search="_") == []
    assert listed(engine, search="") == listed(engine)


def test_list_customers_ordering(engine: Engine, people: dict[str, int]) -> None:
    p = people
    assert listed(engine, company_id=p["acme"], ordering="-last_name") == [
        p["Alan"],
        p["Ada"],
        p["Grace"],
    ]
    # Equal last names fall back to id, ascending, whichever way the name sorts.
    assert listed(engine, ordering="last_name")[:2] == [p["Grace"], p["Linus"]]
    assert listed(engine, ordering="-last_name")[-2:] == [p["Grace"], p["Linus"]]
    assert listed(engine, ordering="status,-first_name") == [
        p["Grace"],
        p["Barbara"],
        p["Ada"],
        p["Dennis"],
        p["Linus"],
        p["Ken"],
        p["Alan"],
    ]
    assert listed(engine, ordering="-company_id,-id") == [
        p[n] for n in ["Linus", "Dennis", "Ken", "Barbara", "Grace", "Alan", "Ada"]
    ]


def test_list_customers_unknown_ordering_is_invalid(engine: Engine, people: dict[str, int]) -> None:
    with engine.begin() as conn, pytest.raises(InvalidInput, match="salary"):
        service.list_customers(conn, filters=CustomerFilter(), ordering="salary", page=ALL)


def test_list_customers_pages_and_total(engine: Engine, people: dict[str, int]) -> None:
    with engine.begin() as conn:
        rows, total = service.list_customers(
            conn, filters=CustomerFilter(), ordering="id", page=Page(limit=3, offset=3)
        )
        past, past_total = service.list_customers(
            conn, filters=CustomerFilter(), ordering=None, page=Page(limit=3, offset=30)
        )

    assert total == 7
    assert [r["id"] for r in rows] == [people["Barbara"], people["Ken"], people["Dennis"]]
    assert (past, past_total) == ([], 7)


def test_list_company_customers_of_a_missing_company(engine: Engine) -> None:
    with engine.begin() as conn, pytest.raises(NotFound):
        service.list_company_customers(
            conn, company_id=3, filters=CustomerFilter(company_id=3), ordering=None, page=ALL
        )


# Notes


def test_create_note_for_a_missing_customer(engine: Engine) -> None:
    with engine.begin() as conn:
        with pytest.raises(InvalidInput) as in_body:
            service.create_note(conn, customer_id=8, text="x")
        with pytest.raises(NotFound):
            service.create_note(conn, customer_id=8, text="x", in_path=True)

    assert in_body.value.extra["errors"][0]["loc"] == ["body", "customer_id"]


@pytest.mark.parametrize(
    ("expected", "error"), [(header(1), PreconditionFailed), (body(1), Conflict)]
)
def test_change_note_with_a_stale_version_raises_and_changes_nothing(
    engine: Engine, acme: dict[str, Any], expected: Precondition, error: type[Exception]
) -> None:
    customer = add_customer(engine, acme["id"], "Ada", "Lovelace")
    with engine.begin() as conn:
        note = service.create_note(conn, customer_id=customer["id"], text="Old")
        service.change_note(conn, note_id=note["id"], values={"text": "New"}, expected=header(1))
        before = service.get_note(conn, note_id=note["id"])

    with engine.begin() as conn, pytest.raises(error):
        service.change_note(conn, note_id=note["id"], values={"text": "Lost"}, expected=expected)
    with engine.begin() as conn, pytest.raises(PreconditionFailed):
        service.delete_note(conn, note_id=note["id"], expected=header(1))

    with engine.begin() as conn:
        assert service.get_note(conn, note_id=note["id"]) == before


def test_a_stale_version_is_reported_before_the_body_is_checked(
    engine: Engine, acme: dict[str, Any]
) -> None:
    customer = add_customer(engine, acme["id"], "Ada", "Lovelace")
    with engine.begin() as conn:
        service.create_company(conn, name="Globex")

    with engine.begin() as conn:
        with pytest.raises(PreconditionFailed):
            service.delete_company(conn, company_id=acme["id"], expected=header(2))
        with pytest.raises(Conflict, match="version 1, not 2"):
            service.change_company(
                conn, company_id=acme["id"], values={"name": "Globex"}, expected=body(2)
            )
        with pytest.raises(PreconditionFailed):
            service.change_customer(
                conn, customer_id=customer["id"], values={"company_id": 99}, expected=header(2)
            )
        with pytest.raises(NotFound):
            service.change_customer(
                conn, customer_id=99, values={"company_id": 99}, expected=header(1)
            )
