"""Deliveries along their less travelled paths: when a PATCH answers 202, a history row for
every attempt (those that sent nothing included), a receiver that hangs or redirects, the
end of a secret rotation's grace, a signing key gone from the keyring, and a refused URL on
PATCH. Receivers are real, on 127.0.0.1 (tests/receiver.py)."""

from __future__ import annotations

import base64
import secrets
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import Engine, func, select, update
from starlette.testclient import TestClient

from tests.conftest import UserFactory
from tests.core.test_webhooks import (
    certificate,
    deliveries,
    drain,
    endpoint,
    receiver,
    settings,
    toggle,
    worker,
)
from tests.receiver import Receiver
from tests.servers import free_port
from wharf.app import job_handlers
from wharf.core.config import Settings
from wharf.core.data.db import utcnow
from wharf.core.keys import KeySource
from wharf.core.outbound import Outbound
from wharf.core.webhooks.models import WebhookDelivery, WebhookEndpoint, WebhookEvent
from wharf.core.webhooks.service import JOB_KIND
from wharf.core.work import Worker, jobs

__all__ = ["receiver", "settings", "worker"]  # fixtures shared with test_webhooks
API = "/api/v1"
INTERRUPTED = "not finished: the worker stopped"


def history(client: TestClient, delivery_id: int) -> tuple[int, list[tuple[Any, ...]]]:
    """A delivery's attempts counter, and its history as (attempt, status code, error)."""
    found = client.get(f"{API}/webhooks/deliveries/{delivery_id}")
    assert found.status_code == 200, found.text
    body = found.json()
    rows = [(a["attempt"], a["status_code"], a["error"]) for a in body["history"]]
    return body["attempts"], rows


def count(engine: Engine, table: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def a_worker(
    app: FastAPI,
    engine: Engine,
    settings: Settings,
    *,
    keys: KeySource | None = None,
    **changes: Any,
) -> tuple[Worker, Outbound]:
    """A worker whose settings differ from the app's (its own outbound client and keyring)."""
    changed = settings.model_copy(update=changes)
    outbound = Outbound.from_settings(changed)
    handlers = job_handlers(changed, engine=engine, keys=keys or app.state.keys, outbound=outbound)
    return Worker(engine, handlers, poll_seconds=0.01, lease_seconds=30), outbound


def test_202_only_when_a_delivery_was_queued(
    client: TestClient, make_user: UserFactory, receiver: Receiver, engine: Engine
) -> None:
    user_id, token = make_user()
    cid = certificate(client, user_id, token)
    # notify, but no endpoint at all: the event is written, nothing is queued, 200.
    assert toggle(client, user_id, token, cid, True) == 200
    assert (count(engine, WebhookEvent), count(engine, WebhookDelivery)) == (1, 0)
    # An endpoint that takes only the other event type changes nothing.
    made = endpoint(client, receiver, events=["certificate.deactivated"])
    assert toggle(client, user_id, token, cid, False) == 202
    assert len(deliveries(client, made["id"])) == 1
    assert toggle(client, user_id, token, cid, True) == 200  # activated: not subscribed
    assert count(engine, WebhookDelivery) == 1


def test_every_attempt_is_in_the_history_500_then_200(
    client: TestClient, make_user: UserFactory, receiver: Receiver, worker: Worker
) -> None:
    made = endpoint(client, receiver)
    user_id, token = make_user()
    receiver.answer(500)
    toggle(client, user_id, token, certificate(client, user_id, token), True)
    assert drain(worker) == 2
    [delivery] = deliveries(client, made["id"])
    attempts, rows = history(client, delivery["id"])
    assert attempts == len(rows) == 2
    assert rows == [(1, 500, "the receiver answered 500"), (2, 200, None)]


def test_every_attempt_is_in_the_history_inactive_endpoint(
    client: TestClient, make_user: UserFactory, receiver: Receiver, worker: Worker
) -> None:
    made = endpoint(client, receiver)
    path = f"{API}/webhooks/{made['id']}"
    user_id, token = make_user()
    toggle(client, user_id, token, certificate(client, user_id, token), True)
    assert client.patch(path, json={"active": False, "version": 1}).status_code == 200
    assert worker.run_once() == 1
    assert worker.run_once() == 1  # the schedule's delays are 0 here
    [delivery] = deliveries(client, made["id"])
    assert delivery["last_status_code"] is None
    attempts, rows = history(client, delivery["id"])
    assert attempts == len(rows) == 2
    assert rows == [(n, None, "the endpoint is inactive") for n in (1, 2)]
    assert receiver.received == []
    assert client.patch(path, json={"active": True, "version": 2}).status_code == 200
    drain(worker)
    attempts, rows = history(client, delivery["id"])
    assert attempts == len(rows) == 3
    assert rows[-1] == (3, 200, None)
    assert deliveries(client, made["id"])[0]["last_status_code"] == 200


def test_a_handler_error_is_in_the_history(
    app: FastAPI,
    client: TestClient,
    make_user: UserFactory,
    receiver: Receiver,
    worker: Worker,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made = endpoint(client, receiver)
    user_id, token = make_user()
    toggle(client, user_id, token, certificate(client, user_id, token), True)

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug, not the receiver")

    with monkeypatch.context() as patched:
        patched.setattr(app.state.outbound, "request", broken)
        assert worker.run_once() == 1
    drain(worker)
    [delivery] = deliveries(client, made["id"])
    attempts, rows = history(client, delivery["id"])
    assert attempts == len(rows) == 2
    assert rows == [(1, None, "unexpected error: RuntimeError"), (2, 200, None)]


def test_a_claim_taken_over_from_a_stopped_worker_is_in_the_history(
    client: TestClient, make_user: UserFactory, receiver: Receiver, worker: Worker, engine: Engine
) -> None:
    made = endpoint(client, receiver)
    user_id, token = make_user()
    toggle(client, user_id, token, certificate(client, user_id, token), True)
    # A worker claims the delivery and dies before it finishes: its lease runs out at once.
    [dead] = jobs.claim(engine, kinds=[JOB_KIND], owner="dead", lease=timedelta(0), limit=1)
    assert drain(worker) == 1
    [delivery] = deliveries(client, made["id"])
    assert delivery["status"] == "delivered"
    attempts, rows = history(client, delivery["id"])
    assert attempts == len(rows) == 2
    assert rows == [(1, None, INTERRUPTED), (2, 200, None)]
    detail = client.get(f"{API}/webhooks/deliveries/{delivery['id']}").json()
    assert detail["history"][0]["attempted_at"] <= detail["history"][1]["attempted_at"]
    assert dead.attempts == 1


def test_a_receiver_that_hangs_is_retried_then_delivered(
    app: FastAPI,
    client: TestClient,
    make_user: UserFactory,
    receiver: Receiver,
    engine: Engine,
    settings: Settings,
) -> None:
    made = endpoint(client, receiver)
    user_id, token = make_user()
    toggle(client, user_id, token, certificate(client, user_id, token), True)
    hasty, outbound = a_worker(app, engine, settings, outbound_timeout_seconds=0.3)
    try:
        receiver.delay = 6.0  # far past the deadline
        start = time.monotonic()
        assert hasty.run_once() == 1
        # The 0.3 s deadline cut it short, long before the receiver answered (the margin is
        # for a loaded machine: the run also writes to the database).
        assert time.monotonic() - start < 4.0
        [pending] = deliveries(client, made["id"])
        assert pending["status"] == "pending"
        assert "no complete response within 0.3 s" in pending["last_error"]
        receiver.delay = 0.0
        drain(hasty)
    finally:
        outbound.close()
    [delivered] = deliveries(client, made["id"])
    assert delivered["status"] == "delivered"
    attempts, rows = history(client, delivered["id"])
    assert attempts == len(rows) == 2
    assert rows[1] == (2, 200, None)
    deadline = time.monotonic() + 10  # the hung request is recorded once its sleep ends
    while len(receiver.received) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(set(receiver.ids())) == 1  # both carried the same webhook-id


@pytest.fixture
def target() -> Iterator[Receiver]:
    """Where a redirect points: a receiver Wharf is allowed to reach, so following would work."""
    target = Receiver(free_port())
    target.up()
    yield target
    target.down()


@pytest.mark.parametrize("status", [302, 307])
def test_a_redirect_fails_the_delivery_and_is_not_followed(
    app: FastAPI,
    client: TestClient,
    make_user: UserFactory,
    receiver: Receiver,
    target: Receiver,
    engine: Engine,
    settings: Settings,
    status: int,
) -> None:
    allow = f"{receiver.allow},{target.allow}"
    follower, outbound = a_worker(app, engine, settings, outbound_allow=allow)
    made = endpoint(client, receiver)
    receiver.answer(status, headers={"Location": target.url})
    user_id, token = make_user()
    toggle(client, user_id, token, certificate(client, user_id, token), True)
    try:
        drain(follower)
    finally:
        outbound.close()
    [failed] = deliveries(client, made["id"])
    assert failed["status"] == "failed"
    # Followed, the last answer would be the target's (200 for a 307, 501 for a 302's GET).
    assert failed["last_status_code"] == status
    assert failed["last_error"] == f"the receiver answered {status}; redirects are not followed"
    assert len(receiver.received) == 1
    assert target.received == []


def test_after_the_grace_only_the_new_secret_signs(
    client: TestClient,
    make_user: UserFactory,
    receiver: Receiver,
    worker: Worker,
    engine: Engine,
) -> None:
    made = endpoint(client, receiver)
    path = f"{API}/webhooks/{made['id']}"
    new = client.post(f"{path}/rotate-secret").json()["secret"]
    with engine.begin() as conn:  # the grace period has passed
        conn.execute(update(WebhookEndpoint).values(previous_until=utcnow() - timedelta(seconds=1)))
    assert client.get(path).json()["secret_rotation_ends_at"] is None
    user_id, token = make_user()
    toggle(client, user_id, token, certificate(client, user_id, token), True)
    drain(worker)
    [got] = receiver.received
    assert len(got.headers["webhook-signature"].split()) == 1
    assert got.verifies(new)
    assert not got.verifies(made["secret"])


def test_a_second_rotation_within_the_grace_retires_the_oldest(
    client: TestClient, make_user: UserFactory, receiver: Receiver, worker: Worker
) -> None:
    made = endpoint(client, receiver)
    path = f"{API}/webhooks/{made['id']}/rotate-secret"
    second = client.post(path).json()["secret"]
    third = client.post(path).json()["secret"]
    user_id, token = make_user()
    toggle(client, user_id, token, certificate(client, user_id, token), True)
    drain(worker)
    [got] = receiver.received
    assert len(got.headers["webhook-signature"].split()) == 2
    assert got.verifies(third)
    assert got.verifies(second)
    assert not got.verifies(made["secret"])


def test_a_signing_key_missing_from_the_keyring_is_retried_and_nothing_lost(
    app: FastAPI,
    client: TestClient,
    make_user: UserFactory,
    receiver: Receiver,
    worker: Worker,
    engine: Engine,
    settings: Settings,
) -> None:
    made = endpoint(client, receiver)  # its secret sealed under the test key, "ktest"
    other = f"kother:{base64.b64encode(secrets.token_bytes(32)).decode()}"
    keys = KeySource(settings.model_copy(update={"key_encryption_keys": SecretStr(other)}))
    keyless, outbound = a_worker(app, engine, settings, keys=keys)
    user_id, token = make_user()
    toggle(client, user_id, token, certificate(client, user_id, token), True)
    try:
        assert keyless.run_once() == 1
    finally:
        outbound.close()
    [pending] = deliveries(client, made["id"])
    assert pending["status"] == "pending"
    assert "key ktest, which is not in the keyring" in pending["last_error"]
    assert receiver.received == []
    attempts, rows = history(client, pending["id"])
    assert attempts == len(rows) == 1
    drain(worker)  # the key is back
    [got] = receiver.received
    assert got.verifies(made["secret"])
    assert got.message_id == pending["event_id"]
    assert deliveries(client, made["id"])[0]["status"] == "delivered"


@pytest.mark.parametrize(
    "url",
    ["http://10.0.0.1/hook", "http://169.254.169.254/latest/meta-data", "http://0x7f.0.0.1/"],
)
def test_an_internal_url_is_refused_on_patch(
    client: TestClient, receiver: Receiver, url: str
) -> None:
    made = endpoint(client, receiver)
    path = f"{API}/webhooks/{made['id']}"
    response = client.patch(path, json={"url": url, "version": 1})
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["loc"] == ["body", "url"]
    assert response.json()["detail"]
    kept = client.get(path).json()
    assert (kept["url"], kept["version"]) == (receiver.url, 1)
