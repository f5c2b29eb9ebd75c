"""Logging in (OAuth2 password grant) and bearer authentication on every endpoint."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from httpx2 import Response
from sqlalchemy import Engine, update
from starlette.testclient import TestClient

from tests.conftest import UserFactory, auth
from wharf.accounts import service as accounts
from wharf.accounts.models import ApiToken
from wharf.core.data.db import utcnow

LOGIN = "/api/v1/auth/token"
COMPANIES = "/api/v1/companies"
PASSWORD = "correct horse battery"  # what make_user gives every user


def login(client: TestClient, username: str, password: str, scope: str | None = None) -> Any:
    form = {"username": username, "password": password}
    if scope is not None:
        form["scope"] = scope
    return client.post(LOGIN, data=form)


def assert_problem(response: Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["detail"]
    return body


def assert_unauthorized(response: Response) -> None:
    assert_problem(response, 401)
    assert response.headers["www-authenticate"].lower().startswith("bearer")


# The password grant


def test_login_returns_a_bearer_token(anon: TestClient, make_user: UserFactory) -> None:
    make_user(email="ada@example.com")
    response = login(anon, "ada@example.com", PASSWORD)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "scope"}
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 3600
    assert body["scope"] == "read write"
    assert body["access_token"].startswith("wharf_")
    assert response.headers["cache-control"] == "no-store"


def test_admin_login_gets_every_scope(anon: TestClient, make_user: UserFactory) -> None:
    make_user(role="admin", email="root@example.com")
    assert login(anon, "root@example.com", PASSWORD).json()["scope"] == "admin read write"


def test_login_token_works_on_the_api(anon: TestClient, make_user: UserFactory) -> None:
    make_user(email="ada@example.com")
    token = login(anon, "ada@example.com", PASSWORD).json()["access_token"]
    assert anon.get(COMPANIES, headers=auth(token)).status_code == 200
    assert anon.post(COMPANIES, json={"name": "Acme"}, headers=auth(token)).status_code == 201


def test_login_email_is_case_insensitive(anon: TestClient, make_user: UserFactory) -> None:
    make_user(email="ada@example.com")
    assert login(anon, "  Ada@Example.COM ", PASSWORD).status_code == 200


def test_login_needs_no_bearer_token_and_is_a_form(
    anon: TestClient, make_user: UserFactory
) -> None:
    # The login path is exempt from the JSON-only rule: OAuth2 sends a form.
    make_user(email="ada@example.com")
    response = anon.post(
        LOGIN,
        content=b"username=ada%40example.com&password=correct+horse+battery",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200, response.text


def test_wrong_password_is_401(anon: TestClient, make_user: UserFactory) -> None:
    make_user(email="ada@example.com")
    body = assert_problem(login(anon, "ada@example.com", "not the password"), 401)
    assert "access_token" not in body


def test_unknown_email_is_401_with_the_same_answer(
    anon: TestClient, make_user: UserFactory
) -> None:
    make_user(email="ada@example.com")
    unknown = assert_problem(login(anon, "nobody@example.com", PASSWORD), 401)
    wrong = assert_problem(login(anon, "ada@example.com", "not the password"), 401)
    # The same words either way, so the answer does not reveal which emails exist.
    assert unknown["detail"] == wrong["detail"]


def test_missing_form_fields_are_422(anon: TestClient) -> None:
    body = assert_problem(anon.post(LOGIN, data={"username": "ada@example.com"}), 422)
    assert ["body", "password"] in [e["loc"] for e in body["errors"]]


def test_login_with_a_narrower_scope(anon: TestClient, make_user: UserFactory) -> None:
    make_user(email="ada@example.com")
    response = login(anon, "ada@example.com", PASSWORD, scope="read")
    assert response.status_code == 200, response.text
    assert response.json()["scope"] == "read"
    token = response.json()["access_token"]
    assert anon.get(COMPANIES, headers=auth(token)).status_code == 200
    assert_problem(anon.post(COMPANIES, json={"name": "Acme"}, headers=auth(token)), 403)


@pytest.mark.parametrize("scope", ["admin", "read admin", "superpowers"])
def test_login_asking_for_a_scope_the_role_lacks_is_400(
    anon: TestClient, make_user: UserFactory, scope: str
) -> None:
    make_user(email="ada@example.com")
    body = assert_problem(login(anon, "ada@example.com", PASSWORD, scope=scope), 400)
    assert body["error"] == "invalid_scope"


def test_admin_may_log_in_without_the_admin_scope(anon: TestClient, make_user: UserFactory) -> None:
    make_user(role="admin", email="root@example.com")
    token = login(anon, "root@example.com", PASSWORD, scope="read write").json()["access_token"]
    # Admin powers need the admin scope on the token, not just the admin role.
    assert_problem(anon.get("/api/v1/users", headers=auth(token)), 403)


def test_each_login_is_a_new_token(anon: TestClient, make_user: UserFactory) -> None:
    make_user(email="ada@example.com")
    first = login(anon, "ada@example.com", PASSWORD).json()["access_token"]
    second = login(anon, "ada@example.com", PASSWORD).json()["access_token"]
    assert first != second


# Bearer tokens


def test_missing_bearer_token_is_401(anon: TestClient) -> None:
    assert_unauthorized(anon.get(COMPANIES))


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer",
        "Bearer ",
        "Bearer not-a-wharf-token",
        "Basic YWRhOnBhc3N3b3Jk",
        "wharf_abc",
        "Bearer wharf_" + "x" * 300,
    ],
)
def test_malformed_bearer_token_is_401(anon: TestClient, authorization: str) -> None:
    assert_unauthorized(anon.get(COMPANIES, headers={"Authorization": authorization}))


def test_unknown_bearer_token_is_401(anon: TestClient) -> None:
    token = "wharf_" + "A" * 43
    assert_unauthorized(anon.get(COMPANIES, headers=auth(token)))


def test_expired_token_is_401(anon: TestClient, make_user: UserFactory, engine: Engine) -> None:
    user_id, fresh = make_user()
    with engine.begin() as conn:
        expired = accounts.issue_token(
            conn,
            user_id=user_id,
            name="old",
            scopes=frozenset({"read", "write"}),
            lifetime=timedelta(seconds=-1),
        )
    assert_unauthorized(anon.get(COMPANIES, headers=auth(expired)))
    assert anon.get(COMPANIES, headers=auth(fresh)).status_code == 200


def test_revoked_token_is_401(anon: TestClient, make_user: UserFactory, engine: Engine) -> None:
    _, token = make_user()
    assert anon.get(COMPANIES, headers=auth(token)).status_code == 200
    with engine.begin() as conn:
        conn.execute(update(ApiToken).values(revoked_at=utcnow()))
    assert_unauthorized(anon.get(COMPANIES, headers=auth(token)))


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/companies"),
        ("GET", "/api/v1/customers"),
        ("GET", "/api/v1/users"),
        ("GET", "/api/v1/users/1"),
        ("GET", "/api/v1/auth/tokens"),
        ("POST", "/api/v1/auth/tokens"),
        ("DELETE", "/api/v1/auth/tokens/1"),
    ],
)
def test_api_endpoints_need_a_token(anon: TestClient, method: str, path: str) -> None:
    assert_unauthorized(anon.request(method, path))


def test_read_only_token_cannot_write(anon: TestClient, make_user: UserFactory) -> None:
    _, token = make_user(scopes=frozenset({"read"}))
    assert anon.get(COMPANIES, headers=auth(token)).status_code == 200
    body = assert_problem(anon.post(COMPANIES, json={"name": "Acme"}, headers=auth(token)), 403)
    assert "write" in body["detail"]
    assert anon.get(COMPANIES, headers=auth(token)).json()["total"] == 0


def test_write_only_token_cannot_read(anon: TestClient, make_user: UserFactory) -> None:
    _, token = make_user(scopes=frozenset({"write"}))
    assert anon.post(COMPANIES, json={"name": "Acme"}, headers=auth(token)).status_code == 201
    body = assert_problem(anon.get(COMPANIES, headers=auth(token)), 403)
    assert "read" in body["detail"]


def test_user_token_cannot_use_admin_endpoints(anon: TestClient, make_user: UserFactory) -> None:
    _, token = make_user()
    assert_problem(anon.get("/api/v1/users", headers=auth(token)), 403)


def test_demoted_admin_loses_admin_powers_at_once(anon: TestClient, make_user: UserFactory) -> None:
    _, root = make_user(role="admin")
    demoted_id, demoted = make_user(role="admin")
    assert anon.get("/api/v1/users", headers=auth(demoted)).status_code == 200
    response = anon.patch(
        f"/api/v1/users/{demoted_id}",
        json={"role": "user", "version": 1},
        headers=auth(root),
    )
    assert response.status_code == 200, response.text
    # The same token, minted with the admin scope, no longer carries it.
    assert_problem(anon.get("/api/v1/users", headers=auth(demoted)), 403)
    assert anon.get(COMPANIES, headers=auth(demoted)).status_code == 200
