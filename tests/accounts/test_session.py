"""Browser sessions (`/api/v1/auth/session` and `core.http.session`) without a browser: the
cookie's flags, CSRF and Origin on every change, and one kind of caller for every other layer
(the response cache, revocation, scopes). The dashboard's own tests drive the same in Chromium."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from starlette.testclient import TestClient

from tests.conftest import UserFactory
from wharf.core.http.session import COOKIE, csrf_token

PASSWORD = "correct horse battery"  # make_user's
SESSION = "/api/v1/auth/session"


def log_in(client: TestClient, email: str) -> dict[str, Any]:
    answer = client.post(SESSION, data={"username": email, "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def test_the_cookie_is_httponly_strict_and_the_body_holds_no_token(
    anon: TestClient, make_user: UserFactory
) -> None:
    make_user(email="ada@example.com")
    answer = anon.post(SESSION, data={"username": "ada@example.com", "password": PASSWORD})
    assert answer.status_code == 200
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=wharf_")
    for flag in ("HttpOnly", "SameSite=Strict", "Path=/"):
        assert flag in cookie
    assert "Secure" not in cookie  # plain http here; over https it is set
    token = cookie.split(";", 1)[0].split("=", 1)[1]
    assert token not in answer.text
    assert answer.json()["csrf_token"] == csrf_token(token)
    assert answer.headers["cache-control"] == "no-store"
    assert anon.get(SESSION).json()["user"]["email"] == "ada@example.com"


def test_a_wrong_password_sets_no_cookie(anon: TestClient, make_user: UserFactory) -> None:
    make_user(email="bob@example.com")
    answer = anon.post(SESSION, data={"username": "bob@example.com", "password": "nope"})
    assert answer.status_code == 401
    assert answer.headers["content-type"] == "application/problem+json"
    assert "set-cookie" not in answer.headers
    assert anon.get(SESSION).status_code == 401


def test_every_change_needs_the_csrf_value_and_our_origin(
    anon: TestClient, make_user: UserFactory
) -> None:
    make_user(role="admin", email="root@example.com")
    csrf = log_in(anon, "root@example.com")["csrf_token"]
    body = {"name": "Forged Ltd"}
    missing = anon.post("/api/v1/companies", json=body)
    assert missing.status_code == 403
    assert missing.headers["content-type"] == "application/problem+json"
    assert "X-CSRF-Token" in missing.json()["detail"]
    assert (
        anon.post("/api/v1/companies", json=body, headers={"X-CSRF-Token": "0" * 64}).status_code
        == 403
    )
    foreign = anon.post(
        "/api/v1/companies",
        json=body,
        headers={"X-CSRF-Token": csrf, "Origin": "https://evil.example"},
    )
    assert foreign.status_code == 403
    assert "another site" in foreign.json()["detail"]
    assert anon.get("/api/v1/companies").json()["total"] == 0  # nothing was made
    made = anon.post(
        "/api/v1/companies",
        json={"name": "Cookie Co"},
        headers={"X-CSRF-Token": csrf, "Origin": "http://testserver"},
    )
    assert made.status_code == 201, made.text


def test_the_cookie_carries_its_users_scopes_and_owners(
    anon: TestClient, make_user: UserFactory
) -> None:
    # A plain user's session may not do an admin's work, nor see another user's things.
    other, _ = make_user(email="other@example.com")
    make_user(email="plain@example.com")
    csrf = log_in(anon, "plain@example.com")["csrf_token"]
    refused = anon.post(
        "/api/v1/users",
        json={"email": "x@example.com", "name": "X", "password": "long enough pass"},
        headers={"X-CSRF-Token": csrf},
    )
    assert refused.status_code == 403
    assert anon.get(f"/api/v1/users/{other}/certificates").status_code == 404


def test_a_cached_list_is_not_served_to_a_revoked_session(
    anon: TestClient, make_user: UserFactory
) -> None:
    make_user(email="carol@example.com")
    csrf = log_in(anon, "carol@example.com")["csrf_token"]
    first = anon.get("/api/v1/companies")
    assert first.status_code == 200
    assert anon.get("/api/v1/companies").status_code == 200  # now a cache hit
    assert anon.delete(SESSION, headers={"X-CSRF-Token": csrf}).status_code == 204
    assert COOKIE not in anon.cookies  # cleared by the answer
    # The old cookie, sent again by hand, is refused at once: its token was revoked.
    token = first.request.headers["cookie"].split(f"{COOKIE}=", 1)[1].split(";", 1)[0]
    replay = anon.get("/api/v1/companies", headers={"Cookie": f"{COOKIE}={token}"})
    assert replay.status_code == 401
    assert replay.headers["content-type"] == "application/problem+json"


def test_a_bearer_header_wins_over_the_cookie(anon: TestClient, make_user: UserFactory) -> None:
    _, token = make_user(role="admin", email="admin2@example.com")
    make_user(email="dave@example.com")
    log_in(anon, "dave@example.com")
    # A script's own credentials need no CSRF value (no browser sends them by itself).
    made = anon.post(
        "/api/v1/companies", json={"name": "Scripted"}, headers={"Authorization": f"Bearer {token}"}
    )
    assert made.status_code == 201, made.text
    assert anon.get(SESSION).json()["user"]["email"] == "dave@example.com"


def test_over_https_the_cookie_is_secure(app: FastAPI, make_user: UserFactory) -> None:
    make_user(email="erin@example.com")
    with TestClient(app, base_url="https://testserver") as tls:
        answer = tls.post(SESSION, data={"username": "erin@example.com", "password": PASSWORD})
        assert answer.status_code == 200
        assert "; Secure" in answer.headers["set-cookie"]
        csrf = answer.json()["csrf_token"]
        # Our own origin is the https one: the http page of the same host is another site.
        headers = {"X-CSRF-Token": csrf, "Origin": "http://testserver"}
        assert tls.delete(SESSION, headers=headers).status_code == 403
        headers["Origin"] = "https://testserver"
        ended = tls.delete(SESSION, headers=headers)
        assert ended.status_code == 204
        assert "; Secure" in ended.headers["set-cookie"]
