"""Users: admin-only creation and listing, self-service changes, and the last admin."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from httpx2 import Response
from sqlalchemy import Connection, Engine, func, select
from starlette.testclient import TestClient

from tests.conftest import UserFactory, auth
from wharf.accounts import service as accounts
from wharf.accounts.models import ApiToken, User
from wharf.core.errors import Conflict
from wharf.core.http.concurrency import Precondition
from wharf.core.security import ROLE_SCOPES, Principal

USERS = "/api/v1/users"
COMPANIES = "/api/v1/companies"
PASSWORD = "correct horse battery"  # what make_user gives every user
USER_FIELDS = {"id", "url", "email", "name", "role", "version", "created_at", "updated_at"}


def assert_problem(response: Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


def new_user(client: TestClient, **fields: str) -> dict[str, Any]:
    body = {"name": "Ada Lovelace", "email": "ada@example.com", "password": "analytical engine"}
    response = client.post(USERS, json={**body, **fields})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def login(client: TestClient, email: str, password: str) -> Response:
    return client.post("/api/v1/auth/token", data={"username": email, "password": password})


def stored_user(engine: Engine, user_id: int) -> Any:
    with engine.connect() as conn:
        return conn.execute(select(User.__table__).where(User.id == user_id)).one()


# Creating


def test_admin_creates_a_user(client: TestClient) -> None:
    response = client.post(
        USERS,
        json={"name": "Ada Lovelace", "email": "ada@example.com", "password": "analytical engine"},
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == USER_FIELDS
    assert body["email"] == "ada@example.com"
    assert body["role"] == "user"
    assert body["version"] == 1
    assert response.headers["location"] == body["url"] == f"http://testserver{USERS}/{body['id']}"
    assert response.headers["etag"] == '"1"'
    assert "password" not in response.text
    assert "argon2" not in response.text


def test_created_user_can_log_in(client: TestClient) -> None:
    new_user(client)
    response = login(client, "ada@example.com", "analytical engine")
    assert response.status_code == 200, response.text
    assert response.json()["scope"] == "read write"


def test_admin_creates_an_admin(client: TestClient) -> None:
    created = new_user(client, role="admin")
    assert created["role"] == "admin"
    assert login(client, "ada@example.com", "analytical engine").json()["scope"] == (
        "admin read write"
    )


def test_normal_user_cannot_create_users(anon: TestClient, make_user: UserFactory) -> None:
    _, token = make_user()
    response = anon.post(
        USERS,
        json={"name": "Eve", "email": "eve@example.com", "password": "let me in please"},
        headers=auth(token),
    )
    assert_problem(response, 403)
    assert_problem(login(anon, "eve@example.com", "let me in please"), 401)


def test_email_is_stored_lower_case(client: TestClient, engine: Engine) -> None:
    created = new_user(client, email="  Ada.Lovelace@Example.COM ")
    assert created["email"] == "ada.lovelace@example.com"
    assert stored_user(engine, created["id"]).email == "ada.lovelace@example.com"
    assert login(client, "ADA.LOVELACE@example.com", "analytical engine").status_code == 200


@pytest.mark.parametrize("email", ["ada@example.com", "ADA@Example.com"])
def test_duplicate_email_is_409(client: TestClient, engine: Engine, email: str) -> None:
    new_user(client)
    response = client.post(
        USERS, json={"name": "Other Ada", "email": email, "password": "different password"}
    )
    assert_problem(response, 409)
    with engine.connect() as conn:
        count = conn.execute(
            select(func.count()).select_from(User).where(User.email == "ada@example.com")
        ).scalar_one()
    assert count == 1


def test_password_is_stored_as_argon2id(client: TestClient, engine: Engine) -> None:
    created = new_user(client)
    stored = stored_user(engine, created["id"]).password_hash
    assert stored.startswith("$argon2id$")
    assert "$m=19456,t=2,p=1$" in stored
    assert "analytical engine" not in stored


@pytest.mark.parametrize(
    "body",
    [
        {"name": "Ada", "email": "not-an-email", "password": "long enough"},
        {"name": "Ada", "email": "ada@example.com", "password": "short"},
        {"name": "", "email": "ada@example.com", "password": "long enough"},
        {"name": "Ada", "email": "ada@example.com", "password": "long enough", "role": "god"},
        {"name": "Ada", "email": "ada@example.com", "password_hash": "$argon2id$..."},
        {"name": "Ada", "email": "ada@example.com", "password": "long enough", "id": 5},
        {"name": "Ada", "email": "ada@example.com", "password": "long enough", "version": 3},
    ],
)
def test_invalid_user_is_422(client: TestClient, body: dict[str, Any]) -> None:
    problem = assert_problem(client.post(USERS, json=body), 422)
    assert problem["errors"]


# Reading


def test_admin_lists_users(client: TestClient) -> None:
    new_user(client)
    response = client.get(USERS)
    assert response.status_code == 200
    body = response.json()
    assert body["total"] == 2
    assert [u["email"] for u in body["items"]][1] == "ada@example.com"
    for item in body["items"]:
        assert set(item) == USER_FIELDS
    assert "password" not in response.text


def test_normal_user_cannot_list_users(anon: TestClient, make_user: UserFactory) -> None:
    _, token = make_user()
    assert_problem(anon.get(USERS, headers=auth(token)), 403)


def test_user_reads_themself(anon: TestClient, make_user: UserFactory) -> None:
    user_id, token = make_user(email="me@example.com")
    response = anon.get(f"{USERS}/{user_id}", headers=auth(token))
    assert response.status_code == 200
    assert response.json()["email"] == "me@example.com"
    assert set(response.json()) == USER_FIELDS
    assert response.headers["etag"] == '"1"'


def test_admin_reads_anyone(anon: TestClient, make_user: UserFactory) -> None:
    _, admin = make_user(role="admin")
    user_id, _ = make_user(email="me@example.com")
    response = anon.get(f"{USERS}/{user_id}", headers=auth(admin))
    assert response.status_code == 200
    assert response.json()["email"] == "me@example.com"


def test_another_user_is_404_to_a_non_admin(anon: TestClient, make_user: UserFactory) -> None:
    _, token = make_user()
    other_id, _ = make_user()
    hidden = assert_problem(anon.get(f"{USERS}/{other_id}", headers=auth(token)), 404)
    missing = assert_problem(anon.get(f"{USERS}/999999", headers=auth(token)), 404)
    assert hidden["title"] == missing["title"]


def test_missing_user_is_404_to_an_admin(client: TestClient) -> None:
    assert_problem(client.get(f"{USERS}/999999"), 404)


def test_user_if_none_match_is_304(anon: TestClient, make_user: UserFactory) -> None:
    user_id, token = make_user()
    response = anon.get(f"{USERS}/{user_id}", headers={**auth(token), "If-None-Match": '"1"'})
    assert response.status_code == 304
    assert response.content == b""


# Changing


def test_user_renames_themself_with_if_match(anon: TestClient, make_user: UserFactory) -> None:
    user_id, token = make_user()
    response = anon.patch(
        f"{USERS}/{user_id}", json={"name": "New Name"}, headers={**auth(token), "If-Match": '"1"'}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["name"] == "New Name"
    assert body["version"] == 2
    assert response.headers["etag"] == '"2"'
    assert anon.get(f"{USERS}/{user_id}", headers=auth(token)).json() == body


def test_patch_with_body_version(anon: TestClient, make_user: UserFactory) -> None:
    user_id, token = make_user()
    response = anon.patch(
        f"{USERS}/{user_id}", json={"name": "New Name", "version": 1}, headers=auth(token)
    )
    assert response.status_code == 200, response.text
    assert response.json()["version"] == 2


def test_patch_without_a_version_is_428(anon: TestClient, make_user: UserFactory) -> None:
    user_id, token = make_user()
    assert_problem(anon.patch(f"{USERS}/{user_id}", json={"name": "X"}, headers=auth(token)), 428)
    unchanged = anon.get(f"{USERS}/{user_id}", headers=auth(token)).json()
    assert unchanged["version"] == 1
    assert unchanged["name"] != "X"


def test_stale_if_match_is_412(anon: TestClient, make_user: UserFactory) -> None:
    user_id, token = make_user()
    url = f"{USERS}/{user_id}"
    first = anon.patch(url, json={"name": "First"}, headers={**auth(token), "If-Match": '"1"'})
    assert first.status_code == 200
    stale = anon.patch(url, json={"name": "Second"}, headers={**auth(token), "If-Match": '"1"'})
    assert_problem(stale, 412)
    current = anon.get(url, headers=auth(token)).json()
    assert current["name"] == "First"
    assert current["version"] == 2


def test_stale_body_version_is_409(anon: TestClient, make_user: UserFactory) -> None:
    user_id, token = make_user()
    url = f"{USERS}/{user_id}"
    assert anon.patch(url, json={"name": "First", "version": 1}, headers=auth(token)).is_success
    stale = anon.patch(url, json={"name": "Second", "version": 1}, headers=auth(token))
    assert_problem(stale, 409)
    assert anon.get(url, headers=auth(token)).json()["name"] == "First"


def test_another_non_admin_cannot_patch_or_delete(anon: TestClient, make_user: UserFactory) -> None:
    _, token = make_user()
    other_id, other = make_user()
    url = f"{USERS}/{other_id}"
    assert_problem(anon.patch(url, json={"name": "Pwned", "version": 1}, headers=auth(token)), 404)
    assert_problem(anon.delete(url, headers=auth(token)), 404)
    still = anon.get(url, headers=auth(other))
    assert still.status_code == 200
    assert still.json()["name"] != "Pwned"
    assert still.json()["version"] == 1


def test_admin_patches_anyone(anon: TestClient, make_user: UserFactory) -> None:
    _, admin = make_user(role="admin")
    user_id, _ = make_user()
    response = anon.patch(
        f"{USERS}/{user_id}", json={"name": "Renamed", "version": 1}, headers=auth(admin)
    )
    assert response.status_code == 200, response.text
    assert response.json()["name"] == "Renamed"


def test_non_admin_cannot_change_their_role(anon: TestClient, make_user: UserFactory) -> None:
    user_id, token = make_user()
    url = f"{USERS}/{user_id}"
    assert_problem(anon.patch(url, json={"role": "admin", "version": 1}, headers=auth(token)), 403)
    current = anon.get(url, headers=auth(token)).json()
    assert current["role"] == "user"
    assert current["version"] == 1
    assert_problem(anon.get(USERS, headers=auth(token)), 403)


def test_admin_promotes_a_user(anon: TestClient, make_user: UserFactory) -> None:
    _, admin = make_user(role="admin")
    user_id, _ = make_user(email="promoted@example.com")
    response = anon.patch(
        f"{USERS}/{user_id}", json={"role": "admin", "version": 1}, headers=auth(admin)
    )
    assert response.status_code == 200, response.text
    assert response.json()["role"] == "admin"
    assert login(anon, "promoted@example.com", PASSWORD).json()["scope"] == "admin read write"


def test_email_change_is_lower_cased(
    anon: TestClient, make_user: UserFactory, engine: Engine
) -> None:
    user_id, token = make_user()
    response = anon.patch(
        f"{USERS}/{user_id}", json={"email": "New@Example.COM", "version": 1}, headers=auth(token)
    )
    assert response.status_code == 200, response.text
    assert response.json()["email"] == "new@example.com"
    assert stored_user(engine, user_id).email == "new@example.com"


def test_email_change_to_a_taken_email_is_409(anon: TestClient, make_user: UserFactory) -> None:
    user_id, token = make_user()
    make_user(email="taken@example.com")
    response = anon.patch(
        f"{USERS}/{user_id}", json={"email": "Taken@example.com", "version": 1}, headers=auth(token)
    )
    assert_problem(response, 409)


def test_password_change(anon: TestClient, make_user: UserFactory, engine: Engine) -> None:
    user_id, token = make_user(email="me@example.com")
    before = stored_user(engine, user_id).password_hash
    response = anon.patch(
        f"{USERS}/{user_id}",
        json={"password": "a brand new secret", "version": 1},
        headers=auth(token),
    )
    assert response.status_code == 200, response.text
    assert "password" not in response.json()
    assert login(anon, "me@example.com", "a brand new secret").status_code == 200
    assert_problem(login(anon, "me@example.com", PASSWORD), 401)
    after = stored_user(engine, user_id).password_hash
    assert after != before
    assert after.startswith("$argon2id$v=19$m=19456,t=2,p=1$")


@pytest.mark.parametrize(
    "body",
    [
        {"name": None, "version": 1},
        {"email": "nope", "version": 1},
        {"password": "short", "version": 1},
        {"password_hash": "x", "version": 1},
        {"id": 3, "version": 1},
        {"created_at": "2020-01-01T00:00:00Z", "version": 1},
        {"name": "X", "version": 0},
    ],
)
def test_invalid_patch_is_422(
    anon: TestClient, make_user: UserFactory, body: dict[str, Any]
) -> None:
    user_id, token = make_user()
    assert_problem(anon.patch(f"{USERS}/{user_id}", json=body, headers=auth(token)), 422)
    assert anon.get(f"{USERS}/{user_id}", headers=auth(token)).json()["version"] == 1


def test_empty_patch_changes_nothing(anon: TestClient, make_user: UserFactory) -> None:
    user_id, token = make_user()
    response = anon.patch(f"{USERS}/{user_id}", json={"version": 1}, headers=auth(token))
    assert response.status_code == 200, response.text
    assert response.json()["version"] == 1


# Deleting


def test_user_deletes_themself(anon: TestClient, make_user: UserFactory) -> None:
    user_id, token = make_user(email="me@example.com")
    response = anon.delete(f"{USERS}/{user_id}", headers=auth(token))
    assert response.status_code == 204
    assert response.content == b""
    assert anon.get(COMPANIES, headers=auth(token)).status_code == 401
    assert_problem(login(anon, "me@example.com", PASSWORD), 401)


def test_deleting_a_user_revokes_their_tokens(
    anon: TestClient, make_user: UserFactory, engine: Engine
) -> None:
    _, admin = make_user(role="admin")
    user_id, token = make_user()
    minted = anon.post(
        "/api/v1/auth/tokens", json={"name": "script", "scopes": ["read"]}, headers=auth(token)
    ).json()["token"]
    assert anon.get(COMPANIES, headers=auth(minted)).status_code == 200

    assert anon.delete(f"{USERS}/{user_id}", headers=auth(admin)).status_code == 204
    for secret in (token, minted):
        refused = anon.get(COMPANIES, headers=auth(secret))
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].lower().startswith("bearer")
    assert_problem(anon.get(f"{USERS}/{user_id}", headers=auth(admin)), 404)
    with engine.connect() as conn:
        left = conn.execute(
            select(func.count()).select_from(ApiToken).where(ApiToken.user_id == user_id)
        ).scalar_one()
    assert left == 0


def test_delete_honours_if_match(anon: TestClient, make_user: UserFactory) -> None:
    _, admin = make_user(role="admin")
    user_id, _ = make_user()
    url = f"{USERS}/{user_id}"
    assert_problem(anon.delete(url, headers={**auth(admin), "If-Match": '"7"'}), 412)
    assert anon.get(url, headers=auth(admin)).status_code == 200
    assert anon.delete(url, headers={**auth(admin), "If-Match": '"1"'}).status_code == 204


def test_deleting_a_missing_user_is_404(client: TestClient) -> None:
    assert_problem(client.delete(f"{USERS}/999999"), 404)


# The last admin


def test_last_admin_cannot_be_deleted(anon: TestClient, make_user: UserFactory) -> None:
    admin_id, admin = make_user(role="admin")
    make_user()  # a normal user does not count
    body = assert_problem(anon.delete(f"{USERS}/{admin_id}", headers=auth(admin)), 409)
    assert "admin" in body["detail"]
    assert anon.get(f"{USERS}/{admin_id}", headers=auth(admin)).status_code == 200


def test_last_admin_cannot_be_demoted(anon: TestClient, make_user: UserFactory) -> None:
    admin_id, admin = make_user(role="admin")
    url = f"{USERS}/{admin_id}"
    assert_problem(anon.patch(url, json={"role": "user", "version": 1}, headers=auth(admin)), 409)
    current = anon.get(url, headers=auth(admin)).json()
    assert current["role"] == "admin"
    assert current["version"] == 1


def test_an_admin_may_go_when_another_remains(anon: TestClient, make_user: UserFactory) -> None:
    first_id, _ = make_user(role="admin")
    second_id, second = make_user(role="admin")
    demoted = anon.patch(
        f"{USERS}/{first_id}", json={"role": "user", "version": 1}, headers=auth(second)
    )
    assert demoted.status_code == 200, demoted.text
    assert demoted.json()["role"] == "user"
    # Now the second is the last admin and must stay.
    assert_problem(anon.delete(f"{USERS}/{second_id}", headers=auth(second)), 409)
    assert anon.delete(f"{USERS}/{first_id}", headers=auth(second)).status_code == 204


def writing(conn: Connection) -> Connection:
    # As a request's write transaction is (core.db.get_db): on SQLite, BEGIN IMMEDIATE.
    return conn.execution_options(wharf_write=True)


def test_two_admins_demoting_each_other_at_once_leave_one(
    engine: Engine, make_user: UserFactory
) -> None:
    """The last-admin check locks the admins' rows: the second demotion waits for the first
    and then sees it, instead of both reading 'another admin remains'."""
    a, _ = make_user(role="admin")
    b, _ = make_user(role="admin")
    with engine.connect() as conn:
        version = {row.id: row.version for row in conn.execute(select(User.id, User.version))}

    def demote(conn: Connection, user_id: int, by: int) -> None:
        accounts.update_user(
            conn,
            user_id=user_id,
            viewer=Principal(user_id=by, role="admin", token_id=0, scopes=ROLE_SCOPES["admin"]),
            changes={"role": "user"},
            expected=Precondition(version=version[user_id], from_header=True),
        )

    outcome: list[BaseException | None] = []

    def second() -> None:
        try:
            with engine.connect() as conn, writing(conn).begin():
                demote(conn, b, by=a)
            outcome.append(None)
        except Exception as exc:
            outcome.append(exc)

    with engine.connect() as first, writing(first).begin():
        demote(first, a, by=b)
        racer = threading.Thread(target=second)
        racer.start()
        racer.join(timeout=1.0)
        assert racer.is_alive(), "the second demotion did not wait for the first"
    racer.join(timeout=30)
    assert len(outcome) == 1
    assert isinstance(outcome[0], Conflict)
    with engine.connect() as conn:
        admins = conn.execute(select(User.id).where(User.role == "admin")).scalars().all()
    assert admins == [b]
