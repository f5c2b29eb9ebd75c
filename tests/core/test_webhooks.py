"""Webhook endpoints, the outbox and deliveries, against a real receiver on 127.0.0.1."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY
from pydantic import SecretStr
from sqlalchemy import Engine, func, select, text
from starlette.testclient import TestClient

from tests.certificates.pki import encode_key, make_certificate
from tests.conftest import UserFactory, auth
from tests.receiver import Receiver
from tests.servers import free_port
from wharf.app import create_app, job_handlers
from wharf.core.config import Settings
from wharf.core.webhooks import publish
from wharf.core.work import Worker
from wharf.core.work.models import Job

API = "/api/v1"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver(free_port())
    receiver.up()
    yield receiver
    receiver.down()


@pytest.fixture
def settings(settings: Settings, receiver: Receiver) -> Settings:
    # Retries due at once, so a test drives every attempt itself with `drain`.
    return settings.model_copy(
        update={"outbound_allow": receiver.allow, "webhook_retry_schedule": "0,0,0"}
    )


@pytest.fixture
def worker(app: FastAPI, client: TestClient, engine: Engine, settings: Settings) -> Worker:
    handlers = job_handlers(
        settings, engine=engine, keys=app.state.keys, outbound=app.state.outbound
    )
    return Worker(engine, handlers, poll_seconds=0.01, lease_seconds=30)


def drain(worker: Worker) -> int:
    """Run jobs until none is due; how many runs that took."""
    total = 0
    while ran := worker.run_once():
        total += ran
    return total


def endpoint(client: TestClient, receiver: Receiver, **extra: Any) -> dict[str, Any]:
    response = client.post(f"{API}/webhooks", json={"url": receiver.url, **extra})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def certificate(client: TestClient, user_id: int, token: str) -> int:
    body, key = make_certificate("ec")
    response = client.post(
        f"{API}/users/{user_id}/certificates",
        json={"private_key": encode_key(key, "sec1-pem"), "body": body},
        headers=auth(token),
    )
    assert response.status_code == 201, response.text
    certificate_id: int = response.json()["id"]
    return certificate_id


def toggle(client: TestClient, user_id: int, token: str, cid: int, active: bool) -> int:
    response = client.patch(
        f"{API}/users/{user_id}/certificates/{cid}/active",
        json={"active": active, "notify": True},
        headers=auth(token),
    )
    assert response.status_code in (200, 202), response.text
    return response.status_code


def deliveries(client: TestClient, endpoint_id: int) -> list[dict[str, Any]]:
    response = client.get(f"{API}/webhooks/{endpoint_id}/deliveries")
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def test_an_endpoint_shows_its_secret_once(client: TestClient, receiver: Receiver) -> None:
    created = endpoint(client, receiver, events=["certificate.activated"], description="ops")
    assert created["secret"].startswith("whsec_")
    assert created["events"] == ["certificate.activated"]
    assert created["active"] is True
    assert created["source"] == "api"
    shown = client.get(f"{API}/webhooks/{created['id']}")
    assert shown.status_code == 200
    assert "secret" not in shown.json()
    assert created["secret"] not in shown.text
    listed = client.get(f"{API}/webhooks")
    assert listed.json()["total"] == 1
    assert created["secret"] not in listed.text


def test_an_endpoint_changes_with_its_version_and_is_deleted(
    client: TestClient, receiver: Receiver
) -> None:
    created = endpoint(client, receiver)
    path = f"{API}/webhooks/{created['id']}"
    assert client.patch(path, json={"active": False}).status_code == 428
    changed = client.patch(path, json={"active": False, "version": 1})
    assert changed.status_code == 200, changed.text
    assert changed.json()["active"] is False
    assert changed.json()["version"] == 2
    assert client.patch(path, json={"events": ["nope.event"], "version": 2}).status_code == 422
    assert client.delete(path, headers={"If-Match": '"1"'}).status_code == 412
    assert client.delete(path).status_code == 204
    assert client.get(path).status_code == 404


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::ffff:127.0.0.1]/hook",
        "http://2130706433/hook",
        "ftp://example.com/hook",
    ],
)
def test_an_internal_url_is_refused_when_the_endpoint_is_created(
    client: TestClient, url: str
) -> None:
    response = client.post(f"{API}/webhooks", json={"url": url})
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["loc"] == ["body", "url"]
    assert response.json()["detail"]


def test_a_loopback_port_that_is_not_allowed_is_refused(
    client: TestClient, receiver: Receiver
) -> None:
    response = client.post(f"{API}/webhooks", json={"url": f"http://127.0.0.1:{free_port()}/"})
    assert response.status_code == 422
    assert "loopback" in response.json()["detail"]


def test_an_unknown_event_type_is_refused(client: TestClient, receiver: Receiver) -> None:
    response = client.post(f"{API}/webhooks", json={"url": receiver.url, "events": ["x.y"]})
    assert response.status_code == 422
    assert "certificate.activated" in response.json()["detail"]


def test_a_state_change_is_delivered_signed(
    client: TestClient, make_user: UserFactory, receiver: Receiver, worker: Worker
) -> None:
    created = endpoint(client, receiver)
    user_id, token = make_user()
    cid = certificate(client, user_id, token)
    assert toggle(client, user_id, token, cid, True) == 202
    assert drain(worker) == 1
    [got] = receiver.received
    assert got.verifies(created["secret"])
    assert not got.verifies("whsec_" + "A" * 43)  # the check can fail
    event = got.json()
    assert event["type"] == "certificate.activated"
    assert event["data"] == {"id": cid, "user_id": user_id, "active": True}
    assert event["timestamp"].endswith("Z")
    assert got.headers["content-type"] == "application/json"
    [delivery] = deliveries(client, created["id"])
    assert delivery["status"] == "delivered"
    assert delivery["attempts"] == 1
    assert delivery["last_status_code"] == 200
    assert delivery["event_id"] == got.message_id
    assert delivery["next_attempt_at"] is None


def test_the_same_state_again_queues_nothing(
    client: TestClient, make_user: UserFactory, receiver: Receiver, worker: Worker, engine: Engine
) -> None:
    endpoint(client, receiver)
    user_id, token = make_user()
    cid = certificate(client, user_id, token)
    assert toggle(client, user_id, token, cid, False) == 200  # already inactive
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Job)).scalar_one() == 0
    assert drain(worker) == 0
    assert receiver.received == []


def test_a_rolled_back_change_sends_nothing(
    client: TestClient, receiver: Receiver, worker: Worker, engine: Engine
) -> None:
    endpoint(client, receiver)
    with engine.connect() as conn, conn.begin() as tx:
        assert publish(conn, "certificate.activated", {"id": 1}) == 1
        tx.rollback()
    assert drain(worker) == 0
    assert receiver.received == []


def test_only_subscribed_active_endpoints_get_an_event(
    client: TestClient, make_user: UserFactory, receiver: Receiver, worker: Worker
) -> None:
    other = Receiver(free_port())
    other.up()
    try:
        endpoint(client, receiver, events=["certificate.deactivated"])
        off = endpoint(client, receiver, active=False)
        user_id, token = make_user()
        cid = certificate(client, user_id, token)
        toggle(client, user_id, token, cid, True)
        drain(worker)
        assert receiver.received == []
        assert deliveries(client, off["id"]) == []
        toggle(client, user_id, token, cid, False)
        drain(worker)
        assert [r.json()["type"] for r in receiver.received] == ["certificate.deactivated"]
    finally:
        other.down()


def test_a_500_is_retried_and_a_410_fails_the_delivery(
    client: TestClient, make_user: UserFactory, receiver: Receiver, worker: Worker
) -> None:
    created = endpoint(client, receiver)
    user_id, token = make_user()
    cid = certificate(client, user_id, token)
    receiver.answer(500, 410)
    toggle(client, user_id, token, cid, True)
    assert worker.run_once() == 1
    [pending] = deliveries(client, created["id"])
    assert pending["status"] == "pending"
    assert pending["last_status_code"] == 500
    assert "500" in pending["last_error"]
    assert pending["next_attempt_at"] is not None
    drain(worker)
    [failed] = deliveries(client, created["id"])
    assert failed["status"] == "failed"
    assert failed["attempts"] == 2
    assert failed["last_status_code"] == 410
    assert "410" in failed["last_error"]
    ids = receiver.ids()
    assert len(ids) == 2
    assert ids[0] == ids[1]  # the retry kept its webhook-id
    # A failed delivery can be sent again by hand, with the same webhook-id.
    retried = client.post(f"{API}/webhooks/deliveries/{failed['id']}/retry")
    assert retried.status_code == 200, retried.text
    assert retried.json()["status"] == "pending"
    drain(worker)
    assert deliveries(client, created["id"])[0]["status"] == "delivered"
    assert receiver.ids() == [ids[0]] * 3
    again = client.post(f"{API}/webhooks/deliveries/{failed['id']}/retry")
    assert again.status_code == 409  # only a failed one
    detail = client.get(f"{API}/webhooks/deliveries/{failed['id']}").json()
    assert [(a["attempt"], a["status_code"]) for a in detail["history"]] == [
        (1, 500),
        (2, 410),
        (1, 200),  # the manual retry started a fresh schedule
    ]
    assert all(a["duration_ms"] >= 0 for a in detail["history"])


def test_a_schedule_that_runs_out_fails_the_delivery(
    client: TestClient, make_user: UserFactory, receiver: Receiver, worker: Worker
) -> None:
    created = endpoint(client, receiver)
    user_id, token = make_user()
    receiver.default = 503
    toggle(client, user_id, token, certificate(client, user_id, token), True)
    drain(worker)
    [failed] = deliveries(client, created["id"])
    assert failed["status"] == "failed"
    assert failed["attempts"] == 4  # the first try and the schedule's three retries
    assert "gave up after 4 attempts" in failed["last_error"]
    assert len(receiver.received) == 4


def test_a_429_waits_as_long_as_retry_after_says(
    client: TestClient, make_user: UserFactory, receiver: Receiver, worker: Worker
) -> None:
    created = endpoint(client, receiver)
    user_id, token = make_user()
    receiver.answer(429, headers={"Retry-After": "120"})
    toggle(client, user_id, token, certificate(client, user_id, token), True)
    before = time.time()
    assert worker.run_once() == 1
    assert worker.run_once() == 0  # not due yet: it waits for the receiver
    [pending] = deliveries(client, created["id"])
    assert pending["last_status_code"] == 429
    due = pending["next_attempt_at"]
    waited = datetime.fromisoformat(due.replace("Z", "+00:00")).timestamp() - before
    assert 110 < waited < 130


def test_a_receiver_that_is_down_gets_every_event_once_it_is_up(
    client: TestClient, make_user: UserFactory, receiver: Receiver, worker: Worker, engine: Engine
) -> None:
    created = endpoint(client, receiver)
    receiver.down()
    user_id, token = make_user()
    cids = [certificate(client, user_id, token) for _ in range(5)]
    for cid in cids:
        toggle(client, user_id, token, cid, True)
    toggle(client, user_id, token, cids[0], False)
    assert worker.run_once() == 4  # all attempted (concurrency 4), all refused
    assert receiver.received == []
    assert {d["status"] for d in deliveries(client, created["id"])} == {"pending"}
    receiver.up()
    drain(worker)
    with engine.connect() as conn:
        committed = set(conn.execute(text("SELECT message_id FROM webhook_events")).scalars())
    assert len(committed) == 6
    assert set(receiver.ids()) == committed
    assert all(r.verifies(created["secret"]) for r in receiver.received)
    assert {d["status"] for d in deliveries(client, created["id"])} == {"delivered"}


def test_a_rotated_secret_signs_beside_the_old_one(
    client: TestClient, make_user: UserFactory, receiver: Receiver, worker: Worker
) -> None:
    created = endpoint(client, receiver)
    rotated = client.post(f"{API}/webhooks/{created['id']}/rotate-secret")
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["secret"]
    assert new != created["secret"]
    assert rotated.json()["secret_rotation_ends_at"] is not None
    user_id, token = make_user()
    toggle(client, user_id, token, certificate(client, user_id, token), True)
    drain(worker)
    [got] = receiver.received
    assert len(got.headers["webhook-signature"].split()) == 2
    assert got.verifies(created["secret"])
    assert got.verifies(new)


def test_the_settings_endpoint_is_kept_and_read_only(
    app: FastAPI, settings: Settings, receiver: Receiver, make_user: UserFactory
) -> None:
    secret = "whsec_" + "c2VjcmV0LWZyb20tc2V0dGluZ3MtMzItYnl0ZXMhIQ=="
    configured = settings.model_copy(
        update={
            "certificate_webhook_url": receiver.url,
            "certificate_webhook_secret": SecretStr(secret),
        }
    )
    other = create_app(configured)
    _, admin = make_user(role="admin")
    with TestClient(other, headers=auth(admin)) as client:
        [row] = client.get(f"{API}/webhooks").json()["items"]
        assert row["source"] == "settings"
        assert row["url"] == receiver.url
        path = f"{API}/webhooks/{row['id']}"
        assert client.patch(path, json={"active": False, "version": 1}).status_code == 409
        assert client.delete(path).status_code == 409
        assert client.post(path + "/rotate-secret").status_code == 409
        engine = other.state.engine
        user_id, token = make_user()
        toggle(client, user_id, token, certificate(client, user_id, token), True)
        handlers = job_handlers(
            configured, engine=engine, keys=other.state.keys, outbound=other.state.outbound
        )
        drain(Worker(engine, handlers, poll_seconds=0.01, lease_seconds=30))
    [got] = receiver.received
    assert got.verifies(secret)


def test_deliveries_are_counted_in_the_metrics(
    client: TestClient, make_user: UserFactory, receiver: Receiver, worker: Worker
) -> None:
    def count(state: str) -> float:
        labels = {"kind": "webhook.deliver", "state": state}
        return REGISTRY.get_sample_value("wharf_jobs_total", labels) or 0.0

    endpoint(client, receiver)
    user_id, token = make_user()
    receiver.answer(503)
    done, retried = count("done"), count("pending")
    toggle(client, user_id, token, certificate(client, user_id, token), True)
    drain(worker)
    assert (count("done"), count("pending")) == (done + 1, retried + 1)
    scraped = client.get("/metrics").text
    assert 'wharf_jobs_total{kind="webhook.deliver",state="done"}' in scraped
    assert "wharf_job_duration_seconds_bucket" in scraped
