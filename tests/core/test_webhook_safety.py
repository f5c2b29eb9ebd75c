"""What the review of the webhooks found, kept fixed: secrets shown once and never stored in
the clear, writes never answered 304, concurrent starts and requests that agree, rewraps that
skip what they cannot open."""

from __future__ import annotations

import base64
import threading
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import Engine, func, select, update
from starlette.testclient import TestClient

from tests.certificates.test_keys_at_rest import dump
from tests.conftest import TEST_KEYS, UserFactory, auth
from tests.core.test_webhooks import (
    certificate,
    drain,
    endpoint,
    receiver,
    settings,
    toggle,
    worker,
)
from tests.receiver import Receiver
from wharf.core.config import Settings
from wharf.core.keys import Keyring
from wharf.core.rewrap import rewrap_all
from wharf.core.webhooks.models import WebhookEndpoint
from wharf.core.webhooks.service import sync_settings_endpoint
from wharf.core.work import Worker

__all__ = ["receiver", "settings", "worker"]  # fixtures shared with test_webhooks
API = "/api/v1"


def test_a_secret_is_never_stored_in_the_clear(
    client: TestClient, receiver: Receiver, engine: Engine, database_url: str
) -> None:
    created = endpoint(client, receiver)
    rotated = client.post(f"{API}/webhooks/{created['id']}/rotate-secret").json()
    found = dump(engine, database_url)
    assert created["url"].encode() in found  # the control: the dump holds the endpoint
    for secret in (created["secret"], rotated["secret"]):
        assert secret.encode() not in found
        assert secret.removeprefix("whsec_").encode() not in found


@pytest.mark.parametrize("path", ["/webhooks", "/webhooks/{id}/rotate-secret"])
def test_idempotency_keys_are_refused_where_a_secret_is_shown(
    client: TestClient, receiver: Receiver, path: str
) -> None:
    made = endpoint(client, receiver)
    response = client.post(
        API + path.format(id=made["id"]),
        json={"url": receiver.url} if path == "/webhooks" else None,
        headers={"Idempotency-Key": "a-key-1"},
    )
    assert response.status_code == 400, response.text
    assert "secret" in response.json()["detail"]


def test_a_write_is_never_answered_304(
    client: TestClient, make_user: UserFactory, receiver: Receiver
) -> None:
    made = endpoint(client, receiver)
    rotated = client.post(
        f"{API}/webhooks/{made['id']}/rotate-secret", headers={"If-None-Match": "*"}
    )
    assert rotated.status_code == 200
    assert rotated.json()["secret"].startswith("whsec_")
    user_id, token = make_user()
    cid = certificate(client, user_id, token)
    changed = client.patch(
        f"{API}/users/{user_id}/certificates/{cid}/active",
        json={"active": False},
        headers={**auth(token), "If-None-Match": "*"},
    )
    assert changed.status_code == 200
    assert changed.json()["id"] == cid


def test_an_inactive_endpoint_keeps_its_deliveries_pending(
    client: TestClient, make_user: UserFactory, receiver: Receiver, worker: Worker
) -> None:
    made = endpoint(client, receiver)
    user_id, token = make_user()
    cid = certificate(client, user_id, token)
    assert toggle(client, user_id, token, cid, True) == 202
    path = f"{API}/webhooks/{made['id']}"
    assert client.patch(path, json={"active": False, "version": 1}).status_code == 200
    assert worker.run_once() == 1
    [pending] = client.get(f"{path}/deliveries").json()["items"]
    assert pending["status"] == "pending"
    assert pending["last_error"] == "the endpoint is inactive"
    assert client.patch(path, json={"active": True, "version": 2}).status_code == 200
    drain(worker)
    assert client.get(f"{path}/deliveries").json()["items"][0]["status"] == "delivered"
    assert len(receiver.received) == 1


def test_workers_starting_together_keep_one_settings_endpoint(engine: Engine, app: Any) -> None:
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def start() -> None:
        barrier.wait()
        try:
            sync_settings_endpoint(engine, url="https://receiver.example.com/hook")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with engine.connect() as conn:
        count = conn.execute(
            select(func.count())
            .select_from(WebhookEndpoint)
            .where(WebhookEndpoint.source == "settings")
        ).scalar_one()
    assert count == 1


def test_identical_activations_at_once_both_succeed(
    client: TestClient, make_user: UserFactory
) -> None:
    user_id, token = make_user()
    cid = certificate(client, user_id, token)
    barrier = threading.Barrier(4)
    statuses: list[int] = []

    def activate() -> None:
        barrier.wait()
        response = client.patch(
            f"{API}/users/{user_id}/certificates/{cid}/active",
            json={"active": True},
            headers=auth(token),
        )
        statuses.append(response.status_code)

    threads = [threading.Thread(target=activate) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * 4
    shown = client.get(f"{API}/users/{user_id}/certificates/{cid}", headers=auth(token))
    assert shown.json()["version"] == 2  # one change, however many asked for it


def test_a_rewrap_skips_and_names_a_damaged_value(
    client: TestClient, receiver: Receiver, engine: Engine
) -> None:
    made = [endpoint(client, receiver) for _ in range(3)]
    with engine.begin() as conn:  # the second endpoint's ciphertext is damaged
        conn.execute(
            update(WebhookEndpoint)
            .where(WebhookEndpoint.id == made[1]["id"])
            .values(secret_sealed=b"\x00" * 40)
        )
    newer = Keyring.parse(f"knew:{base64.b64encode(bytes(range(32))).decode()},{TEST_KEYS}")
    report = rewrap_all(engine, newer)
    assert report.damaged == [f"webhook_endpoints.secret_sealed id {made[1]['id']}"]
    assert report.rewrapped == 2  # the others were not held up by it
    with engine.connect() as conn:
        keys = dict(conn.execute(select(WebhookEndpoint.id, WebhookEndpoint.secret_key_id)).all())
    assert keys == {made[0]["id"]: "knew", made[1]["id"]: "ktest", made[2]["id"]: "knew"}


@pytest.mark.parametrize("secret", ["my-plain-secret", "whsec_c2hvcnQ="])
def test_a_settings_secret_that_cannot_sign_is_refused(secret: str) -> None:
    with pytest.raises(ValidationError, match="certificate_webhook_secret"):
        Settings(
            _env_file=None,
            certificate_webhook_url="https://receiver.example.com/hook",
            certificate_webhook_secret=secret,
        )


def test_a_lease_shorter_than_a_request_is_refused() -> None:
    with pytest.raises(ValidationError, match="job_lease_seconds"):
        Settings(_env_file=None, job_lease_seconds=5, outbound_timeout_seconds=10)


def test_a_long_answer_from_the_receiver_is_still_a_success(
    client: TestClient, make_user: UserFactory, receiver: Receiver, worker: Worker
) -> None:
    made = endpoint(client, receiver)
    receiver.body = b"x" * (2 * 1024 * 1024)
    user_id, token = make_user()
    cid = certificate(client, user_id, token)
    assert toggle(client, user_id, token, cid, True) == 202
    drain(worker)
    [delivery] = client.get(f"{API}/webhooks/{made['id']}/deliveries").json()["items"]
    assert delivery["status"] == "delivered"
    assert delivery["attempts"] == 1
