"""Idempotency-Key on POST: replays, 422 on another request, 409 in flight, per-caller keys,
nothing kept for failures, expiry and purge, and 20 racing POSTs against a real 2-worker server.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx2
import orjson
import pytest
from fastapi import FastAPI
from sqlalchemy import Engine, delete, func, insert, select, update
from starlette.responses import Response
from starlette.testclient import TestClient
from typer.testing import CliRunner

from tests.conftest import UserFactory, auth
from tests.servers import Server, serve
from wharf.accounts import service as accounts
from wharf.app import create_app
from wharf.cli import app as cli
from wharf.core.config import Settings
from wharf.core.data.db import create_db_engine, utcnow
from wharf.core.protect.idempotency import fingerprint, purge_expired
from wharf.core.protect.idempotency.models import IdempotencyKey
from wharf.core.security import ROLE_SCOPES
from wharf.crm.models import Company, Note

COMPANIES = "/api/v1/companies"
NOTES = "/api/v1/notes"
JSON = {"Content-Type": "application/json"}


def post(
    client: TestClient, path: str, body: bytes, *, token: str, key: str | None
) -> Any:  # an httpx Response; TestClient's own type is not exported
    headers = {**JSON, **auth(token)}
    if key is not None:
        headers["Idempotency-Key"] = key
    return client.post(path, content=body, headers=headers)


def count(engine: Engine, table: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def keys(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(IdempotencyKey.__table__).order_by(IdempotencyKey.id)))


def insert_key(
    engine: Engine,
    *,
    user_id: int,
    key: str,
    body: bytes,
    path: str = COMPANIES,
    age: timedelta = timedelta(0),
    expires_in: timedelta = timedelta(hours=24),
) -> None:
    """An in-flight row, as a worker that is (or was) running the request leaves it."""
    now = utcnow()
    with engine.begin() as conn:
        conn.execute(
            insert(IdempotencyKey).values(
                user_id=user_id,
                key=key,
                fingerprint=fingerprint("POST", path, b"", body),
                lock="0" * 32,
                created_at=now - age,
                locked_at=now - age,
                expires_at=now + expires_in,
            )
        )


def expire_all(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(update(IdempotencyKey).values(expires_at=utcnow() - timedelta(seconds=1)))


def assert_problem(resp: Any, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/problem+json"
    problem: dict[str, Any] = resp.json()
    assert problem["status"] == status
    return problem


# Replays


def test_a_retry_replays_the_first_response_byte_for_byte(
    anon: TestClient, make_user: UserFactory, engine: Engine
) -> None:
    _, token = make_user()
    body = b'{"name": "Acme"}'
    first = post(anon, COMPANIES, body, token=token, key="order-1")
    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in first.headers

    for path in (COMPANIES, COMPANIES + "/"):  # the same resource with or without the slash
        again = post(anon, path, body, token=token, key="order-1")
        assert again.status_code == 201
        assert again.headers["idempotent-replayed"] == "true"
        assert again.content == first.content
        for header in ("content-type", "location", "etag"):
            assert again.headers[header] == first.headers[header]
        assert again.headers["content-length"] == str(len(first.content))

    assert count(engine, Company) == 1
    [row] = keys(engine)
    assert (row.status, row.body, row.lock) == (201, first.content, None)


def test_a_replay_works_from_another_app_instance(
    anon: TestClient, make_user: UserFactory, settings: Settings
) -> None:
    """Another worker, or this one after a restart: the response lives in the database."""
    _, token = make_user()
    body = b'{"name": "Acme"}'
    first = post(anon, COMPANIES, body, token=token, key="restart")
    with TestClient(create_app(settings)) as other:
        again = post(other, COMPANIES, body, token=token, key="restart")
    assert again.headers["idempotent-replayed"] == "true"
    assert again.content == first.content


def test_4xx_results_are_replayed(anon: TestClient, make_user: UserFactory, engine: Engine) -> None:
    _, token = make_user()
    invalid = b'{"name": "Acme", "unknown": 1}'
    first = post(anon, COMPANIES, invalid, token=token, key="bad-1")
    assert_problem(first, 422)
    again = post(anon, COMPANIES, invalid, token=token, key="bad-1")
    assert_problem(again, 422)
    assert again.headers["idempotent-replayed"] == "true"
    assert again.content == first.content

    # A conflict the endpoint answered is a result too, even once the conflict is gone.
    assert post(anon, COMPANIES, b'{"name": "Taken"}', token=token, key=None).status_code == 201
    conflict = post(anon, COMPANIES, b'{"name": "Taken"}', token=token, key="dup-1")
    assert_problem(conflict, 409)
    with engine.begin() as conn:
        conn.execute(delete(Company))
    replayed = post(anon, COMPANIES, b'{"name": "Taken"}', token=token, key="dup-1")
    assert replayed.status_code == 409
    assert replayed.headers["idempotent-replayed"] == "true"
    assert replayed.content == conflict.content
    assert count(engine, Company) == 0


# Another request under the same key, and one still in flight


def test_the_same_key_with_another_body_or_path_is_422(
    anon: TestClient, make_user: UserFactory, engine: Engine
) -> None:
    _, token = make_user()
    assert post(anon, COMPANIES, b'{"name": "Acme"}', token=token, key="k").status_code == 201
    for path, body in [
        (COMPANIES, b'{"name": "Other"}'),
        (COMPANIES, b'{"name":"Acme"}'),  # the bytes are the request: no JSON normalising
        (COMPANIES + "?x=1", b'{"name": "Acme"}'),
        ("/api/v1/customers", b'{"name": "Acme"}'),
    ]:
        problem = assert_problem(post(anon, path, body, token=token, key="k"), 422)
        assert "Idempotency-Key" in problem["detail"]
        assert problem["errors"][0]["loc"] == ["header", "Idempotency-Key"]
        assert problem["instance"] == path.split("?")[0]
    assert count(engine, Company) == 1


def test_a_retry_while_the_first_is_in_flight_is_409(
    anon: TestClient, make_user: UserFactory, engine: Engine
) -> None:
    user_id, token = make_user()
    body = b'{"name": "Acme"}'
    insert_key(engine, user_id=user_id, key="busy", body=body, age=timedelta(seconds=30))
    resp = post(anon, COMPANIES, body, token=token, key="busy")
    problem = assert_problem(resp, 409)
    assert "still being processed" in problem["detail"]
    assert resp.headers["retry-after"] == "1"
    assert "idempotent-replayed" not in resp.headers
    assert count(engine, Company) == 0
    # Another body under the in-flight key is still the wrong request.
    assert_problem(post(anon, COMPANIES, b'{"name": "B"}', token=token, key="busy"), 422)


def test_a_key_left_in_flight_by_a_dead_worker_is_taken_over(
    anon: TestClient, make_user: UserFactory, engine: Engine
) -> None:
    user_id, token = make_user()
    body = b'{"name": "Acme"}'
    insert_key(engine, user_id=user_id, key="orphan", body=body, age=timedelta(seconds=61))
    resp = post(anon, COMPANIES, body, token=token, key="orphan")
    assert resp.status_code == 201, resp.text
    assert "idempotent-replayed" not in resp.headers
    [row] = keys(engine)
    assert (row.status, row.lock) == (201, None)
    again = post(anon, COMPANIES, body, token=token, key="orphan")
    assert again.headers["idempotent-replayed"] == "true"
    assert again.content == resp.content


# Callers


def test_keys_are_scoped_to_the_caller(
    anon: TestClient, make_user: UserFactory, engine: Engine
) -> None:
    alice, alice_token = make_user()
    bob, bob_token = make_user()
    a = post(anon, COMPANIES, b'{"name": "Alice Ltd"}', token=alice_token, key="same")
    b = post(anon, COMPANIES, b'{"name": "Bob Ltd"}', token=bob_token, key="same")
    assert (a.status_code, b.status_code) == (201, 201)
    assert "idempotent-replayed" not in b.headers
    assert count(engine, Company) == 2
    assert sorted(r.user_id for r in keys(engine)) == sorted([alice, bob])
    # A second token of the same user shares that user's keys.
    with engine.begin() as conn:
        other_token = accounts.issue_token(
            conn, user_id=alice, name="2nd", scopes=ROLE_SCOPES["user"], lifetime=timedelta(hours=1)
        )
    replay = post(anon, COMPANIES, b'{"name": "Alice Ltd"}', token=other_token, key="same")
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.content == a.content


def test_a_request_with_a_bad_token_is_answered_401_and_keeps_no_key(
    anon: TestClient, engine: Engine
) -> None:
    for token in ("wharf_unknown", "not-a-wharf-token"):
        resp = post(anon, COMPANIES, b'{"name": "Acme"}', token=token, key="k")
        assert_problem(resp, 401)
        assert resp.headers["www-authenticate"].startswith("Bearer")
    no_auth = anon.post(COMPANIES, content=b"{}", headers={**JSON, "Idempotency-Key": "k"})
    assert_problem(no_auth, 401)
    assert keys(engine) == []


def test_deleting_a_user_deletes_their_keys(
    client: TestClient, make_user: UserFactory, engine: Engine
) -> None:
    user_id, token = make_user()
    assert post(client, COMPANIES, b'{"name": "Acme"}', token=token, key="k").status_code == 201
    assert len(keys(engine)) == 1
    resp = client.delete(f"/api/v1/users/{user_id}")  # `client` is an admin
    assert resp.status_code == 204, resp.text
    assert keys(engine) == []


# What is never stored


@pytest.fixture
def flaky(app: FastAPI) -> dict[str, int]:
    """Endpoints that fail on their first call and succeed on the next."""
    calls = {"status": 0, "raise": 0}

    @app.post("/api/v1/test-flaky-status")
    async def flaky_status() -> Response:
        calls["status"] += 1
        if calls["status"] == 1:
            return Response(b"{}", status_code=503, media_type="application/json")
        return Response(b'{"ok": 1}', status_code=201, media_type="application/json")

    @app.post("/api/v1/test-flaky-raise")
    async def flaky_raise() -> Response:
        calls["raise"] += 1
        if calls["raise"] == 1:
            raise RuntimeError("boom")
        return Response(b'{"ok": 2}', status_code=201, media_type="application/json")

    return calls


@pytest.mark.parametrize(("kind", "first_status"), [("status", 503), ("raise", 500)])
def test_a_5xx_or_an_exception_is_not_stored_and_a_retry_runs_again(
    anon: TestClient,
    make_user: UserFactory,
    engine: Engine,
    flaky: dict[str, int],
    kind: str,
    first_status: int,
) -> None:
    _, token = make_user()
    path = f"/api/v1/test-flaky-{kind}"
    first = post(anon, path, b"{}", token=token, key="retry-me")
    assert first.status_code == first_status
    assert keys(engine) == []  # the in-flight row is gone: nothing to replay, nothing blocks

    second = post(anon, path, b"{}", token=token, key="retry-me")
    assert second.status_code == 201
    assert "idempotent-replayed" not in second.headers
    third = post(anon, path, b"{}", token=token, key="retry-me")
    assert third.headers["idempotent-replayed"] == "true"
    assert third.content == second.content
    assert flaky[kind] == 2


# The header itself


@pytest.mark.parametrize(
    "key",
    ["", "x" * 256, "caf\xe9", "tab\there", "del\x7f", "two words"],
    ids=["empty", "too-long", "latin-1", "tab", "del", "space"],
)
def test_an_invalid_key_is_400(
    anon: TestClient, make_user: UserFactory, engine: Engine, key: str
) -> None:
    _, token = make_user()
    headers = [
        (b"content-type", b"application/json"),
        (b"authorization", f"Bearer {token}".encode()),
        (b"idempotency-key", key.encode("latin-1")),
    ]
    problem = assert_problem(anon.post(COMPANIES, content=b"{}", headers=headers), 400)
    assert "printable" in problem["detail"]
    assert count(engine, Company) == 0


def test_the_longest_valid_key_and_several_keys(
    anon: TestClient, make_user: UserFactory, engine: Engine
) -> None:
    _, token = make_user()
    longest = "k" * 255
    ok = post(anon, COMPANIES, b'{"name": "Acme"}', token=token, key=longest)
    assert ok.status_code == 201
    assert keys(engine)[0].key == longest
    headers = [
        (b"content-type", b"application/json"),
        (b"authorization", f"Bearer {token}".encode()),
        (b"idempotency-key", b"a"),
        (b"idempotency-key", b"b"),
    ]
    problem = assert_problem(anon.post(COMPANIES, content=b"{}", headers=headers), 400)
    assert "one Idempotency-Key" in problem["detail"]


def test_login_and_token_minting_refuse_the_header(
    anon: TestClient, make_user: UserFactory, engine: Engine
) -> None:
    _, token = make_user(email="login@example.com")
    login = anon.post(
        "/api/v1/auth/token",
        data={"username": "login@example.com", "password": "correct horse battery"},
        headers={"Idempotency-Key": "k"},
    )
    assert "never stores" in assert_problem(login, 400)["detail"]
    mint = post(anon, "/api/v1/auth/tokens", b'{"name": "ci"}', token=token, key="k")
    assert "never stores" in assert_problem(mint, 400)["detail"]
    assert keys(engine) == []
    # Without the header both work as always.
    assert (
        anon.post(
            "/api/v1/auth/token",
            data={"username": "login@example.com", "password": "correct horse battery"},
        ).status_code
        == 200
    )


def test_other_methods_ignore_the_header(
    anon: TestClient, make_user: UserFactory, engine: Engine
) -> None:
    _, token = make_user()
    created = post(anon, COMPANIES, b'{"name": "Acme"}', token=token, key=None).json()
    headers = {**JSON, **auth(token), "Idempotency-Key": "k", "If-Match": '"1"'}
    url = f"{COMPANIES}/{created['id']}"
    assert anon.patch(url, content=b'{"name": "B"}', headers=headers).status_code == 200
    got = anon.get(url, headers=headers)
    assert got.status_code == 200
    assert "idempotent-replayed" not in got.headers
    assert keys(engine) == []


# Expiry


def test_expired_keys_are_purged_and_then_reusable(
    anon: TestClient, make_user: UserFactory, engine: Engine
) -> None:
    _, token = make_user()
    first = post(anon, COMPANIES, b'{"name": "Acme"}', token=token, key="daily")
    assert first.status_code == 201
    expire_all(engine)
    assert purge_expired(engine) == 1
    assert keys(engine) == []
    # The key is free: another request under it runs, neither a replay nor a 422.
    second = post(anon, COMPANIES, b'{"name": "Next day"}', token=token, key="daily")
    assert second.status_code == 201
    assert "idempotent-replayed" not in second.headers
    assert count(engine, Company) == 2


def test_an_expired_key_not_yet_purged_is_forgotten(
    anon: TestClient, make_user: UserFactory, engine: Engine
) -> None:
    _, token = make_user()
    body = b'{"name": "Acme"}'
    assert post(anon, COMPANIES, body, token=token, key="k").status_code == 201
    with engine.begin() as conn:
        conn.execute(delete(Company))
    expire_all(engine)
    again = post(anon, COMPANIES, body, token=token, key="k")
    assert again.status_code == 201
    assert "idempotent-replayed" not in again.headers
    assert count(engine, Company) == 1
    [row] = keys(engine)
    assert row.status == 201


def test_each_new_key_purges_a_batch_of_expired_ones(
    anon: TestClient, make_user: UserFactory, engine: Engine
) -> None:
    user_id, token = make_user()
    for n in range(3):
        insert_key(engine, user_id=user_id, key=f"old-{n}", body=b"{}", expires_in=-timedelta(1))
    insert_key(engine, user_id=user_id, key="live", body=b"{}")
    assert post(anon, COMPANIES, b'{"name": "Acme"}', token=token, key="new").status_code == 201
    assert sorted(r.key for r in keys(engine)) == ["live", "new"]


def test_the_purge_command(
    anon: TestClient,
    make_user: UserFactory,
    engine: Engine,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    user_id, _ = make_user()
    insert_key(engine, user_id=user_id, key="old", body=b"{}", expires_in=-timedelta(1))
    insert_key(engine, user_id=user_id, key="live", body=b"{}")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WHARF_DATABASE_URL", database_url)
    result = CliRunner().invoke(cli, ["idempotency", "purge"])
    assert result.exit_code == 0, result.output
    assert "Deleted 1 expired idempotency keys." in result.output
    assert [r.key for r in keys(engine)] == ["live"]


# 20 identical POSTs racing against a real two-worker server. Notes, not companies: a note has
# no unique field, so without idempotency every racer would create one.

RACERS = 20
RACE_TEXT = "written once"
RETRY_409 = 200  # attempts per client, 50 ms apart: 10 s for the first request to finish


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[Server]:
    with serve(database_url, tmp_path, workers=2) as running:
        yield running


@dataclass(frozen=True)
class Answer:
    status: int
    replayed: bool
    body: bytes
    headers: dict[str, str]
    conflicts: int  # 409s (still in flight) before this answer


def _race(server: Server, start: threading.Barrier, answers: list[Answer]) -> None:
    headers = {
        "Authorization": f"Bearer {server.token}",
        "Content-Type": "application/json",
        "Idempotency-Key": "7b0b5c1e-race",
    }
    body = orjson.dumps({"text": RACE_TEXT, "customer_id": server.customer_id})
    with httpx2.Client(base_url=server.base_url, timeout=20.0) as client:
        start.wait(timeout=30)
        conflicts = 0
        for _ in range(RETRY_409):
            resp = client.post(NOTES, content=body, headers=headers)
            if resp.status_code != 409 or "idempotent-replayed" in resp.headers:
                break
            assert resp.headers["content-type"] == "application/problem+json"
            assert "still being processed" in resp.json()["detail"]
            conflicts += 1
            time.sleep(0.05)
        else:
            raise AssertionError(f"still 409 after {RETRY_409} attempts")
    answers.append(
        Answer(
            resp.status_code,
            resp.headers.get("idempotent-replayed") == "true",
            resp.content,
            {h: resp.headers.get(h, "") for h in ("content-type", "location", "etag")},
            conflicts,
        )
    )


def test_concurrent_identical_posts_create_one_row_and_replay_it_exactly(
    server: Server, database_url: str
) -> None:
    answers: list[Answer] = []
    errors: list[str] = []
    start = threading.Barrier(RACERS)

    def run() -> None:
        try:
            _race(server, start, answers)
        except BaseException as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
            start.abort()

    threads = [threading.Thread(target=run, daemon=True) for _ in range(RACERS)]
    began = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    elapsed = time.monotonic() - began
    assert not any(t.is_alive() for t in threads), "client threads hung"
    assert not errors, (errors[:3], server.log.read_text()[-2000:])

    originals = [a for a in answers if not a.replayed]
    replays = [a for a in answers if a.replayed]
    conflicts = sum(a.conflicts for a in answers)
    engine = create_db_engine(database_url)
    try:
        with engine.connect() as conn:
            notes = conn.execute(select(func.count()).where(Note.text == RACE_TEXT)).scalar_one()
        stored = keys(engine)
    finally:
        engine.dispose()
    print(
        f"\n[{database_url.split(':', 1)[0]}] {RACERS} concurrent POSTs, one key: "
        f"{len(originals)} original 201, {len(replays)} replays, {conflicts} 409s retried "
        f"(by {sum(1 for a in answers if a.conflicts)} clients), {notes} "
        f"{RACE_TEXT!r} row(s), "
        f"{elapsed:.2f} s"
    )
    assert len(answers) == RACERS
    assert notes == 1
    assert len(originals) == 1
    [first] = originals
    assert first.status == 201, first.body
    assert len(replays) == RACERS - 1
    for replay in replays:
        assert replay.status == 201
        assert replay.body == first.body  # byte for byte
        assert replay.headers == first.headers
    [row] = stored
    assert (row.status, row.body) == (201, first.body)
