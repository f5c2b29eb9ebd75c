"""The response cache: hits skip the app, yet no reader ever sees data older than the last
completed write, on any instance, with memory or Redis, and with Redis gone."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import OperationalError
from starlette.testclient import TestClient

from tests.conftest import UserFactory, auth, front_layer
from wharf.app import create_app
from wharf.core.config import Settings
from wharf.core.metrics import CACHE
from wharf.core.protect.principals import ResolvePrincipal
from wharf.core.security import Principal, TokenResolver

LIST = "/api/v1/customers?company_id=1&ordering=-last_name"


def hits() -> float:
    return float(CACHE.labels("hit")._value.get())


def seed(client: TestClient) -> int:
    company = client.post("/api/v1/companies", json={"name": "Acme"}).json()
    for first in ("Ada", "Alan"):
        client.post(
            "/api/v1/customers",
            json={
                "first_name": first,
                "last_name": "L",
                "status": "active",
                "company_id": company["id"],
            },
        )
    return int(company["id"])


def settings_for(database_url: str, tmp_path: Path, **extra: str) -> Settings:
    base = Settings(_env_file=None, database_url=database_url, var_dir=tmp_path)
    return base.model_copy(update=extra)


@pytest.fixture
def redis_pair(
    database_url: str, tmp_path: Path, redis_url: str
) -> Iterator[tuple[TestClient, TestClient]]:
    """Two app instances (think: two workers) on one database and one Redis."""
    apps = [create_app(settings_for(database_url, tmp_path, redis_url=redis_url)) for _ in "ab"]
    with TestClient(apps[0]) as a, TestClient(apps[1]) as b:
        yield a, b


def test_second_read_is_a_hit_and_identical(client: TestClient) -> None:
    seed(client)
    first = client.get(LIST)
    before = hits()
    second = client.get(LIST)
    assert hits() == before + 1
    assert second.status_code == 200
    assert second.content == first.content
    assert second.headers["etag"] == first.headers["etag"]
    assert second.headers["content-type"] == "application/json"


def test_a_write_through_the_api_is_seen_by_the_next_read(client: TestClient) -> None:
    company = seed(client)
    client.get(LIST)
    customer = client.get(LIST).json()["items"][0]
    changed = client.patch(
        f"/api/v1/customers/{customer['id']}",
        json={"last_name": "Lovelace"},
        headers={"If-Match": f'"{customer["version"]}"'},
    )
    assert changed.status_code == 200
    names = [c["last_name"] for c in client.get(LIST).json()["items"]]
    assert "Lovelace" in names
    assert client.get(f"/api/v1/customers/{customer['id']}").json()["last_name"] == "Lovelace"
    assert client.get(f"/api/v1/companies/{company}/customers").json()["total"] == 2


def test_a_write_outside_the_api_is_seen_too(client: TestClient, engine: Engine) -> None:
    seed(client)
    assert client.get(LIST).json()["total"] == 2
    with engine.begin() as conn:  # the triggers bump the generation for any writer
        conn.execute(text("DELETE FROM customers WHERE first_name = 'Ada'"))
    assert client.get(LIST).json()["total"] == 1


def test_if_none_match_gets_304_from_the_cache(client: TestClient) -> None:
    seed(client)
    etag = client.get(LIST).headers["etag"]
    client.get(LIST)
    before = hits()
    again = client.get(LIST, headers={"If-None-Match": etag})
    assert hits() == before + 1
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag


def test_revoked_and_unknown_tokens_are_refused_on_a_hit(
    client: TestClient, make_user: UserFactory
) -> None:
    seed(client)
    _, token = make_user()
    assert client.get(LIST, headers=auth(token)).status_code == 200
    assert client.get(LIST, headers=auth(token)).status_code == 200  # now cached
    mine = client.get("/api/v1/auth/tokens", headers=auth(token)).json()["items"][0]
    client.delete(f"/api/v1/auth/tokens/{mine['id']}", headers=auth(token))
    refused = client.get(LIST, headers=auth(token))
    assert refused.status_code == 401
    assert refused.headers["content-type"] == "application/problem+json"
    assert client.get(LIST, headers=auth("wharf_" + "x" * 43)).status_code == 401


def test_a_miss_looks_the_token_up_once(
    app: FastAPI, client: TestClient, make_user: UserFactory
) -> None:
    seed(client)
    _, token = make_user()
    lookups: list[str] = []
    resolve: TokenResolver = app.state.token_resolver

    def counted(conn: Connection, digest: str) -> Principal | None:
        lookups.append(digest)
        return resolve(conn, digest)

    front = front_layer(app, ResolvePrincipal)
    front.resolver = app.state.token_resolver = counted
    before = hits()
    first = client.get(LIST, headers=auth(token))
    assert first.status_code == 200
    assert hits() == before  # a miss, answered by the app
    assert len(lookups) == 1  # the lookup in front of the cache, taken over by the route's auth
    # A revocation is still seen at once: the accounts generation moved, so it is looked up.
    mine = client.get("/api/v1/auth/tokens", headers=auth(token)).json()["items"][0]
    client.delete(f"/api/v1/auth/tokens/{mine['id']}", headers=auth(token))
    assert client.get(LIST + "&limit=3", headers=auth(token)).status_code == 401
    # Writes are not the cache's: the route looks the token up itself.
    lookups.clear()
    assert client.post("/api/v1/companies", json={"name": "Own lookup"}).status_code == 201
    assert len(lookups) == 1


def test_a_token_without_read_is_still_forbidden(
    client: TestClient, make_user: UserFactory
) -> None:
    seed(client)
    client.get(LIST)
    _, writer = make_user(scopes=frozenset({"write"}))
    assert client.get(LIST, headers=auth(writer)).status_code == 403


def test_own_resources_are_keyed_per_user(client: TestClient, make_user: UserFactory) -> None:
    ann, ann_token = make_user()
    _, bob_token = make_user()
    path = f"/api/v1/users/{ann}"
    assert client.get(path, headers=auth(ann_token)).status_code == 200
    assert client.get(path, headers=auth(ann_token)).status_code == 200
    assert client.get(path, headers=auth(bob_token)).status_code == 404  # never Ann's entry


def test_the_key_covers_the_host(client: TestClient) -> None:
    seed(client)
    one = client.get(LIST, headers={"Host": "one.example"}).json()
    two = client.get(LIST, headers={"Host": "two.example"}).json()
    assert one["items"][0]["url"].startswith("http://one.example/")
    assert two["items"][0]["url"].startswith("http://two.example/")


def test_cache_off_serves_everything_from_the_app(
    database_url: str, tmp_path: Path, make_user: UserFactory
) -> None:
    app: FastAPI = create_app(settings_for(database_url, tmp_path, cache="off"))
    _, token = make_user(role="admin")
    with TestClient(app) as off:
        off.headers["Authorization"] = f"Bearer {token}"
        seed(off)
        before = hits()
        off.get(LIST)
        off.get(LIST)
        assert hits() == before


def test_redis_is_shared_and_never_stale_across_instances(
    redis_pair: tuple[TestClient, TestClient], make_user: UserFactory
) -> None:
    a, b = redis_pair
    _, token = make_user(role="admin")
    for client in (a, b):
        client.headers["Authorization"] = f"Bearer {token}"
    seed(a)
    a.get(LIST)
    before = hits()
    assert b.get(LIST).json()["total"] == 2  # b's first read is a's entry
    assert hits() == before + 1
    victim = b.get(LIST).json()["items"][0]
    a.delete(f"/api/v1/customers/{victim['id']}")
    assert b.get(LIST).json()["total"] == 1
    assert b.get(f"/api/v1/customers/{victim['id']}").status_code == 404


def test_a_token_revoked_on_one_instance_is_refused_on_the_other(
    redis_pair: tuple[TestClient, TestClient], make_user: UserFactory
) -> None:
    a, b = redis_pair
    _, admin = make_user(role="admin")
    _, token = make_user()
    a.headers["Authorization"] = f"Bearer {admin}"
    seed(a)
    assert b.get(LIST, headers=auth(token)).status_code == 200
    assert b.get(LIST, headers=auth(token)).status_code == 200
    mine = a.get("/api/v1/auth/tokens", headers=auth(token)).json()["items"][0]
    assert a.delete(f"/api/v1/auth/tokens/{mine['id']}", headers=auth(token)).status_code == 204
    assert b.get(LIST, headers=auth(token)).status_code == 401


def test_redis_down_serves_from_the_database(
    database_url: str, tmp_path: Path, make_user: UserFactory
) -> None:
    # Nothing listens on port 1: every Redis call fails fast.
    app = create_app(settings_for(database_url, tmp_path, redis_url="redis://127.0.0.1:1/0"))
    _, token = make_user(role="admin")
    with TestClient(app) as down:
        down.headers["Authorization"] = f"Bearer {token}"
        seed(down)
        for _ in range(5):
            response = down.get(LIST)
            assert response.status_code == 200
            assert response.json()["total"] == 2


def test_revocation_reaches_other_workers_without_redis(
    database_url: str, tmp_path: Path, make_user: UserFactory
) -> None:
    # Two processes' worth of memory caches: only the database generation links them.
    apps = [create_app(settings_for(database_url, tmp_path)) for _ in "ab"]
    _, admin = make_user(role="admin")
    _, token = make_user()
    with TestClient(apps[0]) as a, TestClient(apps[1]) as b:
        a.headers["Authorization"] = f"Bearer {admin}"
        seed(a)
        for client in (a, b):
            assert client.get(LIST, headers=auth(token)).status_code == 200
            assert client.get(LIST, headers=auth(token)).status_code == 200
        mine = a.get("/api/v1/auth/tokens", headers=auth(token)).json()["items"][0]
        assert a.delete(f"/api/v1/auth/tokens/{mine['id']}", headers=auth(token)).status_code == 204
        assert b.get(LIST, headers=auth(token)).status_code == 401
        # and b's cached list is not served stale after a's write either
        victim = a.get(LIST).json()["items"][0]
        a.delete(f"/api/v1/customers/{victim['id']}")
        assert b.get(LIST, headers=auth(admin)).json()["total"] == 1


def test_a_database_error_on_the_hit_path_leaves_the_answer_to_the_app(
    app: FastAPI, client: TestClient
) -> None:
    # The layers in front run outside FastAPI's error handling: a failure of the token lookup
    # must not become a 500, the request goes on to the app (which answers 503 if it fails too).
    def unreachable(*_: object) -> None:
        raise OperationalError("SELECT 1", {}, Exception("server closed the connection"))

    front = front_layer(app, ResolvePrincipal)
    front.memo.clear()
    front.resolver = unreachable
    response = client.get(LIST)
    assert response.status_code == 200, response.text
