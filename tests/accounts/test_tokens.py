"""Named API tokens: minting, listing, revoking, and who may see which."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

import pytest
from httpx2 import Response
from sqlalchemy import Engine, select
from starlette.testclient import TestClient

from tests.conftest import UserFactory, auth
from wharf.accounts.models import ApiToken

TOKENS = "/api/v1/auth/tokens"
COMPANIES = "/api/v1/companies"
TOKEN_FIELDS = {"id", "url", "user_id", "name", "scopes", "created_at", "expires_at", "revoked_at"}


def assert_problem(response: Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


def mint(
    client: TestClient,
    token: str,
    *,
    name: str = "script",
    scopes: list[str] | None = None,
    days: int = 30,
) -> dict[str, Any]:
    response = client.post(
        TOKENS,
        json={"name": name, "scopes": scopes or ["read"], "expires_in_days": days},
        headers=auth(token),
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def own_token_id(client: TestClient, token: str) -> int:
    """The id of the token the fixture made (named "test") for its user."""
    items = client.get(TOKENS, headers=auth(token)).json()["items"]
    ids: list[int] = [t["id"] for t in items if t["name"] == "test"]
    assert len(ids) == 1
    return ids[0]


# Minting


def test_mint_shows_the_secret_once(anon: TestClient, make_user: UserFactory) -> None:
    user_id, token = make_user()
    response = anon.post(
        TOKENS,
        json={"name": "nightly export", "scopes": ["read"], "expires_in_days": 7},
        headers=auth(token),
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == TOKEN_FIELDS | {"token"}
    assert body["token"].startswith("wharf_")
    assert body["name"] == "nightly export"
    assert body["scopes"] == ["read"]
    assert body["user_id"] == user_id
    assert body["revoked_at"] is None
    assert body["url"] == f"http://testserver{TOKENS}/{body['id']}"
    assert response.headers["location"] == body["url"]

    shown = anon.get(body["url"], headers=auth(token))
    assert shown.status_code == 200
    assert "token" not in shown.json()
    assert "token_hash" not in shown.json()


def test_minted_token_carries_its_scopes(anon: TestClient, make_user: UserFactory) -> None:
    _, token = make_user()
    reader = mint(anon, token, scopes=["read"])["token"]
    writer = mint(anon, token, scopes=["read", "write"])["token"]
    assert anon.get(COMPANIES, headers=auth(reader)).status_code == 200
    assert_problem(anon.post(COMPANIES, json={"name": "Acme"}, headers=auth(reader)), 403)
    assert anon.post(COMPANIES, json={"name": "Acme"}, headers=auth(writer)).status_code == 201


def test_expiry_is_the_asked_number_of_days(anon: TestClient, make_user: UserFactory) -> None:
    _, token = make_user()
    body = mint(anon, token, days=10)
    created = body["created_at"]
    expires = body["expires_at"]
    assert created.endswith("Z")
    assert expires.endswith("Z")
    lifetime = datetime.fromisoformat(expires) - datetime.fromisoformat(created)
    assert lifetime.days == 10


def test_plain_secret_is_never_stored(
    anon: TestClient, make_user: UserFactory, engine: Engine
) -> None:
    _, token = make_user()
    secret = mint(anon, token)["token"]
    with engine.connect() as conn:
        rows = conn.execute(select(ApiToken.__table__)).all()
    stored = [str(value) for row in rows for value in row]
    assert all(secret not in value for value in stored)
    assert all(token not in value for value in stored)
    digests = [row.token_hash for row in rows]
    assert hashlib.sha256(secret.encode()).hexdigest() in digests


def test_cannot_mint_scopes_you_lack(anon: TestClient, make_user: UserFactory) -> None:
    _, token = make_user()
    body = assert_problem(
        anon.post(TOKENS, json={"name": "x", "scopes": ["read", "admin"]}, headers=auth(token)),
        403,
    )
    assert "admin" in body["detail"]
    assert [t["name"] for t in anon.get(TOKENS, headers=auth(token)).json()["items"]] == ["test"]


def test_cannot_mint_more_than_the_minting_token_has(
    anon: TestClient, make_user: UserFactory
) -> None:
    # The role allows read too, but this token is write-only: it cannot widen itself.
    _, token = make_user(scopes=frozenset({"write"}))
    response = anon.post(TOKENS, json={"name": "x", "scopes": ["read"]}, headers=auth(token))
    assert_problem(response, 403)


def test_admin_may_mint_admin_tokens(anon: TestClient, make_user: UserFactory) -> None:
    _, token = make_user(role="admin")
    admin_token = mint(anon, token, scopes=["read", "admin"])["token"]
    assert anon.get("/api/v1/users", headers=auth(admin_token)).status_code == 200


def test_read_only_token_cannot_mint(anon: TestClient, make_user: UserFactory) -> None:
    _, token = make_user(scopes=frozenset({"read"}))
    assert_problem(
        anon.post(TOKENS, json={"name": "x", "scopes": ["read"]}, headers=auth(token)), 403
    )


@pytest.mark.parametrize(
    "body",
    [
        {"name": "x", "scopes": []},
        {"name": "x", "scopes": ["root"]},
        {"name": "", "scopes": ["read"]},
        {"scopes": ["read"]},
        {"name": "x", "scopes": ["read"], "expires_in_days": 0},
        {"name": "x", "scopes": ["read"], "token": "wharf_chosen"},
        {"name": "x", "scopes": ["read"], "user_id": 1},
    ],
)
def test_invalid_token_request_is_422(
    anon: TestClient, make_user: UserFactory, body: dict[str, Any]
) -> None:
    _, token = make_user()
    problem = assert_problem(anon.post(TOKENS, json=body, headers=auth(token)), 422)
    assert problem["errors"]


def test_expiry_beyond_the_configured_maximum_is_refused(
    anon: TestClient, make_user: UserFactory
) -> None:
    _, token = make_user()
    response = anon.post(
        TOKENS, json={"name": "x", "scopes": ["read"], "expires_in_days": 366}, headers=auth(token)
    )
    body = assert_problem(response, 422)
    assert body["errors"][0]["loc"] == ["body", "expires_in_days"]
    assert "365" in body["detail"]
    assert mint(anon, token, days=365)["scopes"] == ["read"]


# Listing


def test_list_shows_own_tokens_without_secrets(anon: TestClient, make_user: UserFactory) -> None:
    user_id, token = make_user()
    _, other = make_user()
    mint(anon, token, name="one")
    mint(anon, token, name="two")
    mint(anon, other, name="not mine")

    response = anon.get(TOKENS, headers=auth(token))
    assert response.status_code == 200
    body = response.json()
    assert body["total"] == 3
    assert [t["name"] for t in body["items"]] == ["test", "one", "two"]
    for item in body["items"]:
        assert set(item) == TOKEN_FIELDS
        assert item["user_id"] == user_id
    assert "wharf_" not in response.text  # no secret, not even the caller's own


def test_non_admin_cannot_list_someone_elses_tokens(
    anon: TestClient, make_user: UserFactory
) -> None:
    user_id, token = make_user()
    other_id, other = make_user()
    mint(anon, other, name="theirs")
    body = anon.get(TOKENS, params={"user_id": other_id}, headers=auth(token)).json()
    assert {t["user_id"] for t in body["items"]} == {user_id}
    assert "theirs" not in [t["name"] for t in body["items"]]


def test_admin_lists_another_users_tokens(anon: TestClient, make_user: UserFactory) -> None:
    _, admin = make_user(role="admin")
    other_id, other = make_user()
    mint(anon, other, name="theirs")
    response = anon.get(TOKENS, params={"user_id": other_id}, headers=auth(admin))
    assert response.status_code == 200
    body = response.json()
    assert [t["name"] for t in body["items"]] == ["test", "theirs"]
    assert {t["user_id"] for t in body["items"]} == {other_id}
    assert other not in response.text


def test_token_list_is_paged(anon: TestClient, make_user: UserFactory) -> None:
    _, token = make_user()
    for n in range(3):
        mint(anon, token, name=f"t{n}")
    response = anon.get(TOKENS, params={"limit": 2}, headers=auth(token))
    body = response.json()
    assert body["total"] == 4
    assert len(body["items"]) == 2
    assert body["next"] is not None
    assert 'rel="next"' in response.headers["link"]


# Reading one


def test_get_own_token(anon: TestClient, make_user: UserFactory) -> None:
    _, token = make_user()
    minted = mint(anon, token)
    response = anon.get(f"{TOKENS}/{minted['id']}", headers=auth(token))
    assert response.status_code == 200
    minted.pop("token")
    assert response.json() == minted


def test_someone_elses_token_is_404(anon: TestClient, make_user: UserFactory) -> None:
    _, token = make_user()
    _, other = make_user()
    theirs = mint(anon, other)
    assert_problem(anon.get(f"{TOKENS}/{theirs['id']}", headers=auth(token)), 404)
    missing = assert_problem(anon.get(f"{TOKENS}/999999", headers=auth(token)), 404)
    hidden = assert_problem(anon.get(f"{TOKENS}/{theirs['id']}", headers=auth(token)), 404)
    # Indistinguishable from a token that does not exist, so ids cannot be probed.
    assert missing["title"] == hidden["title"]


# Revoking


def test_revoke_takes_effect_on_the_next_request(anon: TestClient, make_user: UserFactory) -> None:
    _, token = make_user()
    minted = mint(anon, token)
    secret = minted["token"]
    assert anon.get(COMPANIES, headers=auth(secret)).status_code == 200

    response = anon.delete(f"{TOKENS}/{minted['id']}", headers=auth(token))
    assert response.status_code == 204
    assert response.content == b""

    refused = anon.get(COMPANIES, headers=auth(secret))
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"].lower().startswith("bearer")
    # The revoked token stays listed, marked revoked; the minting token still works.
    shown = anon.get(f"{TOKENS}/{minted['id']}", headers=auth(token)).json()
    assert shown["revoked_at"] is not None


def test_revoking_the_token_in_use(anon: TestClient, make_user: UserFactory) -> None:
    _, token = make_user()
    token_id = own_token_id(anon, token)
    assert anon.delete(f"{TOKENS}/{token_id}", headers=auth(token)).status_code == 204
    assert anon.get(COMPANIES, headers=auth(token)).status_code == 401


def test_revoking_twice_is_harmless(anon: TestClient, make_user: UserFactory) -> None:
    _, token = make_user()
    minted = mint(anon, token)
    url = f"{TOKENS}/{minted['id']}"
    assert anon.delete(url, headers=auth(token)).status_code == 204
    first = anon.get(url, headers=auth(token)).json()["revoked_at"]
    assert anon.delete(url, headers=auth(token)).status_code == 204
    assert anon.get(url, headers=auth(token)).json()["revoked_at"] == first


def test_cannot_revoke_someone_elses_token(anon: TestClient, make_user: UserFactory) -> None:
    _, token = make_user()
    _, other = make_user()
    theirs = mint(anon, other)
    assert_problem(anon.delete(f"{TOKENS}/{theirs['id']}", headers=auth(token)), 404)
    assert anon.get(COMPANIES, headers=auth(theirs["token"])).status_code == 200
    assert_problem(anon.delete(f"{TOKENS}/999999", headers=auth(token)), 404)


def test_read_only_token_cannot_revoke(anon: TestClient, make_user: UserFactory) -> None:
    _, token = make_user(scopes=frozenset({"read"}))
    token_id = own_token_id(anon, token)
    assert_problem(anon.delete(f"{TOKENS}/{token_id}", headers=auth(token)), 403)
    assert anon.get(COMPANIES, headers=auth(token)).status_code == 200


def test_admin_revokes_another_users_token(anon: TestClient, make_user: UserFactory) -> None:
    _, admin = make_user(role="admin")
    _, other = make_user()
    theirs = mint(anon, other)
    assert anon.get(f"{TOKENS}/{theirs['id']}", headers=auth(admin)).status_code == 200
    assert anon.delete(f"{TOKENS}/{theirs['id']}", headers=auth(admin)).status_code == 204
    assert anon.get(COMPANIES, headers=auth(theirs["token"])).status_code == 401
    assert anon.get(COMPANIES, headers=auth(other)).status_code == 200
