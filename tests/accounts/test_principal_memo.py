"""A token is looked up once while the accounts generation stands, for the API's reads with
the response cache off too, and every change to users or tokens is seen by the next request,
read or write."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import Engine, event, update
from starlette.testclient import TestClient

from tests.conftest import UserFactory, auth
from wharf.accounts.models import ApiToken, User
from wharf.app import create_app
from wharf.core.config import Settings
from wharf.core.data.db import utcnow
from wharf.core.protect.principals import PrincipalMemo
from wharf.core.security import Principal

COMPANIES = "/api/v1/companies"
USERS = "/api/v1/users"


@pytest.fixture
def uncached(settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings.model_copy(update={"cache": "off"}))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def _token_lookups(engine: Engine) -> list[str]:
    seen: list[str] = []

    @event.listens_for(engine, "before_cursor_execute")
    def count(_c: Any, _cur: Any, statement: str, *_: Any) -> None:
        if "FROM api_tokens" in statement:
            seen.append(statement)

    return seen


def test_a_known_token_costs_no_second_lookup(uncached: TestClient, make_user: UserFactory) -> None:
    app: FastAPI = uncached.app  # type: ignore[assignment]
    lookups = _token_lookups(app.state.engine)
    _, token = make_user()
    for _ in range(3):
        assert uncached.get(COMPANIES, headers=auth(token)).status_code == 200
    assert len(lookups) == 1
    # A write looks its token up itself, inside its own transaction, after its body came.
    created = uncached.post(COMPANIES, json={"name": "Memo Ltd"}, headers=auth(token))
    assert created.status_code == 201, created.text
    assert len(lookups) == 2


def test_a_revoked_token_is_refused_at_once_for_reads_and_writes(
    uncached: TestClient, make_user: UserFactory
) -> None:
    app: FastAPI = uncached.app  # type: ignore[assignment]
    _, token = make_user()
    assert uncached.get(COMPANIES, headers=auth(token)).status_code == 200
    # Behind the API's back, as an operator's SQL would: the trigger moves the generation.
    with app.state.engine.begin() as conn:
        conn.execute(update(ApiToken).values(revoked_at=utcnow()))
    assert uncached.get(COMPANIES, headers=auth(token)).status_code == 401
    refused = uncached.post(COMPANIES, json={"name": "Too Late"}, headers=auth(token))
    assert refused.status_code == 401


def test_a_demoted_admin_loses_admin_powers_on_the_next_request(
    uncached: TestClient, make_user: UserFactory
) -> None:
    app: FastAPI = uncached.app  # type: ignore[assignment]
    admin_id, token = make_user(role="admin")
    assert uncached.get(USERS, headers=auth(token)).status_code == 200
    with app.state.engine.begin() as conn:
        conn.execute(update(User).where(User.id == admin_id).values(role="user"))
    assert uncached.get(USERS, headers=auth(token)).status_code == 403


def test_the_memo_forgets_an_expired_token_and_keys_on_the_generation() -> None:
    memo = PrincipalMemo(max_size=2)
    now = datetime.now(UTC)
    live = Principal(1, "user", 1, frozenset({"read"}), expires_at=now + timedelta(hours=1))
    gone = Principal(2, "user", 2, frozenset({"read"}), expires_at=now - timedelta(seconds=1))
    naive = Principal(
        3, "user", 3, frozenset({"read"}), (now + timedelta(hours=1)).replace(tzinfo=None)
    )
    memo.put("live", 7, live)
    memo.put("gone", 7, gone)
    assert memo.get("live", 7) is live
    assert memo.get("live", 8) is None  # users or tokens changed since
    assert memo.get("gone", 7) is None  # expired: the database decides again
    memo.put("naive", 7, naive)  # SQLite's naive UTC; the least recently used ("gone") leaves
    assert memo.get("naive", 7) is naive
    assert list(memo.known) == ["live", "naive"]
    memo.put("naive", 7, None)  # looked up again and unknown now
    assert memo.get("naive", 7) is None
    memo.put("gone", 8, gone)
    memo.put("live", 8, live)  # seen again after a change: the most recent now
    memo.put("naive", 8, naive)
    assert list(memo.known) == ["live", "naive"]
