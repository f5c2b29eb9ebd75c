"""The demo loader: 5 companies, 1,000 customers, a few thousand notes, loaded only once."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, func, select
from starlette.testclient import TestClient

from wharf.core.data.db import create_db_engine
from wharf.core.data.migrate import upgrade
from wharf.crm import demo, service
from wharf.crm.models import CUSTOMER_STATUSES, Company, Customer, Note

Snapshot = dict[str, list[tuple[Any, ...]]]


def snapshot(conn: Connection) -> Snapshot:
    """Every CRM row, ids and timestamps included, in a fixed order."""
    return {
        table.__tablename__: [tuple(row) for row in conn.execute(select(table).order_by(table.id))]
        for table in (Company, Customer, Note)
    }


def content(conn: Connection) -> list[list[tuple[Any, ...]]]:
    """The data without ids or timestamps, which differ between databases and runs."""
    queries = [
        select(Company.name).order_by(Company.id),
        select(
            Customer.company_id, Customer.first_name, Customer.last_name, Customer.status
        ).order_by(Customer.id),
        select(Note.customer_id, Note.text).order_by(Note.id),
    ]
    return [[tuple(row) for row in conn.execute(query)] for query in queries]


def count(conn: Connection, table: type[Company | Customer | Note]) -> int:
    counted: int = conn.execute(select(func.count()).select_from(table)).scalar_one()
    return counted


def test_load_fills_an_empty_crm(engine: Engine) -> None:
    with engine.begin() as conn:
        assert demo.load(conn) is True

    with engine.connect() as conn:
        assert count(conn, Company) == 5
        assert count(conn, Customer) == 1000
        notes = count(conn, Note)
        names = conn.execute(select(Company.name).order_by(Company.id)).scalars().all()
        statuses = Counter(conn.execute(select(Customer.status)).scalars())
        per_company = Counter(conn.execute(select(Customer.company_id)).scalars())
        per_customer = Counter(conn.execute(select(Note.customer_id)).scalars())
        customer_ids = set(conn.execute(select(Customer.id)).scalars())
        versions = set(conn.execute(select(Customer.version)).scalars())

    assert 2000 <= notes <= 5000  # "a few thousand": 1 to 5 per customer
    assert names == demo.COMPANIES
    assert set(statuses) == set(CUSTOMER_STATUSES)
    assert sorted(per_company.values()) == [200] * 5
    assert set(per_customer) == customer_ids  # every customer has notes
    assert set(per_customer.values()) <= {1, 2, 3, 4, 5}
    assert versions == {1}


def test_second_load_changes_nothing(engine: Engine) -> None:
    with engine.begin() as conn:
        assert demo.load(conn) is True
    with engine.connect() as conn:
        before = snapshot(conn)

    with engine.begin() as conn:
        assert demo.load(conn) is False

    with engine.connect() as conn:
        assert snapshot(conn) == before


def test_load_leaves_an_existing_crm_alone(engine: Engine) -> None:
    with engine.begin() as conn:
        mine = service.create_company(conn, name="My own company")

    with engine.begin() as conn:
        assert demo.load(conn) is False

    with engine.connect() as conn:
        assert count(conn, Company) == 1
        assert count(conn, Customer) == 0
        assert count(conn, Note) == 0
        assert service.get_company(conn, company_id=mine["id"]) == mine


def test_load_is_the_same_every_time(engine: Engine, tmp_path: Path) -> None:
    other = create_db_engine(f"sqlite:///{tmp_path / 'other.db'}")
    upgrade(other)
    try:
        for target in (engine, other):
            with target.begin() as conn:
                assert demo.load(conn) is True
        with engine.connect() as a, other.connect() as b:
            assert content(a) == content(b)
    finally:
        other.dispose()


def test_a_different_seed_gives_different_people(engine: Engine, tmp_path: Path) -> None:
    other = create_db_engine(f"sqlite:///{tmp_path / 'other.db'}")
    upgrade(other)
    try:
        with engine.begin() as conn:
            demo.load(conn, customers=50)
        with other.begin() as conn:
            demo.load(conn, customers=50, seed=1)
        with engine.connect() as a, other.connect() as b:
            assert content(a)[1] != content(b)[1]
            assert count(a, Customer) == count(b, Customer) == 50
    finally:
        other.dispose()


def test_demo_data_through_the_api(client: TestClient, engine: Engine) -> None:
    with engine.begin() as conn:
        demo.load(conn)

    companies = client.get("/api/v1/companies").json()
    first = companies["items"][0]
    customers = client.get(f"/api/v1/companies/{first['id']}/customers").json()
    seed_query = client.get(
        "/api/v1/customers",
        params={
            "company_id": companies["items"][1]["id"],
            "status": "active",
            "ordering": "-last_name",
        },
    ).json()
    customer = customers["items"][0]
    notes = client.get(f"/api/v1/customers/{customer['id']}/notes").json()

    assert companies["total"] == 5
    assert first["name"] == "Acme Corp"
    assert customers["total"] == 200
    assert len(customers["items"]) == 50
    assert customers["next"] is not None
    assert 0 < seed_query["total"] < 200
    last_names = [c["last_name"] for c in seed_query["items"]]
    assert last_names == sorted(last_names, reverse=True)
    assert {c["status"] for c in seed_query["items"]} == {"active"}
    assert 1 <= notes["total"] <= 5
