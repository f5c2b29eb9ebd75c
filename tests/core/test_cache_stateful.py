"""Hypothesis drives random interleavings of writes and reads through two app instances that
share one Redis cache; every read must equal what an uncached instance reads from the
database right after it (the state after the last completed write)."""

from __future__ import annotations

from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    rule,
    run_state_machine_as_test,
)
from starlette.testclient import TestClient

from tests.conftest import UserFactory
from wharf.app import create_app
from wharf.core.config import Settings

STATUSES = ("prospective", "active", "inactive")
NAMES = ("Lovelace", "Turing", "Hopper", "Knuth")
LISTS = (
    "/api/v1/customers",
    "/api/v1/customers?status=active",
    "/api/v1/customers?ordering=-last_name",
    "/api/v1/customers?search=o&limit=2",
    "/api/v1/notes",
    "/api/v1/companies",
)


def test_cached_reads_always_equal_the_database(
    database_url: str, tmp_path: Path, redis_url: str, make_user: UserFactory
) -> None:
    def app(**extra: str) -> TestClient:
        base = Settings(_env_file=None, database_url=database_url, var_dir=tmp_path)
        return TestClient(create_app(base.model_copy(update=extra)))

    _, token = make_user(role="admin")
    header = {"Authorization": f"Bearer {token}"}
    with (
        app(redis_url=redis_url) as first,
        app(redis_url=redis_url) as second,
        app(cache="off") as truth,
    ):
        instances = (first, second)
        company = truth.post("/api/v1/companies", json={"name": "Acme"}, headers=header).json()

        class CacheMachine(RuleBasedStateMachine):
            customers = Bundle("customers")

            @initialize(target=customers)
            def first_customer(self) -> int:
                return self._create(0, "Lovelace", "active")

            def _create(self, via: int, last_name: str, status: str) -> int:
                body = {
                    "first_name": "A",
                    "last_name": last_name,
                    "status": status,
                    "company_id": company["id"],
                }
                created = instances[via].post("/api/v1/customers", json=body, headers=header)
                assert created.status_code == 201, created.text
                return int(created.json()["id"])

            @rule(
                target=customers,
                via=st.integers(0, 1),
                name=st.sampled_from(NAMES),
                status=st.sampled_from(STATUSES),
            )
            def create(self, via: int, name: str, status: str) -> int:
                return self._create(via, name, status)

            @rule(
                via=st.integers(0, 1),
                customer=customers,
                name=st.sampled_from(NAMES),
                status=st.sampled_from(STATUSES),
            )
            def change(self, via: int, customer: int, name: str, status: str) -> None:
                current = truth.get(f"/api/v1/customers/{customer}", headers=header)
                if current.status_code == 404:
                    return
                changed = instances[via].patch(
                    f"/api/v1/customers/{customer}",
                    json={"last_name": name, "status": status},
                    headers={**header, "If-Match": current.headers["etag"]},
                )
                assert changed.status_code == 200, changed.text

            @rule(via=st.integers(0, 1), customer=customers, text=st.sampled_from(("hi", "yo")))
            def note(self, via: int, customer: int, text: str) -> None:
                instances[via].post(
                    f"/api/v1/customers/{customer}/notes", json={"text": text}, headers=header
                )

            @rule(via=st.integers(0, 1), customer=consumes(customers))
            def delete(self, via: int, customer: int) -> None:
                gone = instances[via].delete(f"/api/v1/customers/{customer}", headers=header)
                assert gone.status_code in (204, 404)

            @rule(via=st.integers(0, 1), path=st.sampled_from(LISTS))
            def read_list(self, via: int, path: str) -> None:
                self._same(via, path)

            @rule(via=st.integers(0, 1), customer=customers)
            def read_one(self, via: int, customer: int) -> None:
                self._same(via, f"/api/v1/customers/{customer}")
                self._same(via, f"/api/v1/customers/{customer}/notes")

            def _same(self, via: int, path: str) -> None:
                seen = instances[via].get(path, headers=header)
                expected = truth.get(path, headers=header)
                assert seen.status_code == expected.status_code, path
                if expected.status_code == 200:
                    assert seen.content == expected.content, path

        run_state_machine_as_test(
            CacheMachine,
            settings=settings(
                max_examples=15, stateful_step_count=25, deadline=None, derandomize=True
            ),
        )
