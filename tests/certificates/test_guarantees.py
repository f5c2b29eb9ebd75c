"""What issue 7 promises beyond the happy path, on both databases: scopes guard every
certificate operation, no private key reaches /metrics and no key-encryption key reaches a
log line, and a certificate change that rolls back sends nothing."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, func, select
from starlette.testclient import TestClient

from tests.accounts.test_tokens import mint
from tests.certificates.pki import KeyType, encode_key, make_certificate, make_key
from tests.certificates.test_certificates import SEED, certs, create, events, logs, problem
from tests.certificates.test_certificates import secrets_of as key_material
from tests.certificates.test_keys_at_rest import invoke, key_settings, ok, post
from tests.conftest import TEST_KEYS, UserFactory, auth
from tests.core.test_webhooks import certificate, drain, endpoint, receiver, settings, worker
from tests.receiver import Receiver
from wharf.app import create_app, job_handlers
from wharf.certificates import service
from wharf.core.config import Settings
from wharf.core.keys import Keyring, key_file
from wharf.core.security import ROLE_SCOPES, Principal
from wharf.core.webhooks.models import WebhookDelivery, WebhookEvent
from wharf.core.work import Worker
from wharf.core.work.models import Job

# Fixtures shared with test_certificates, test_keys_at_rest and test_webhooks.
__all__ = ["key_settings", "logs", "receiver", "settings", "worker"]

# Scopes: GETs need `read`, changes need `write`


def test_a_token_without_write_changes_nothing(
    client: TestClient, make_user: UserFactory, engine: Engine
) -> None:
    uid, token = make_user()
    reader = auth(mint(client, token, scopes=["read"])["token"])
    cid = create(client, uid, SEED | {"active": False}, headers=auth(token))["id"]
    item = f"{certs(uid)}/{cid}"
    before = client.get(item, headers=reader)
    assert before.status_code == 200, before.text  # the control: the token is valid and reads
    body, key = make_certificate("ec")
    new = {"private_key": encode_key(key, "pkcs8-pem"), "body": body}
    for response in (
        client.post(certs(uid), json=new, headers=reader),
        client.patch(f"{item}/active", json={"active": True, "notify": True}, headers=reader),
        client.delete(item, headers=reader),
        client.delete(item, headers=reader | {"If-Match": '"1"'}),
    ):
        assert "write" in problem(response, 403)["detail"]
    assert client.get(item, headers=reader).json() == before.json()
    assert client.get(certs(uid), headers=reader).json()["total"] == 1
    assert events(engine) == 0
    # The control: the owner's read-write token does each of these.
    assert client.post(certs(uid), json=new, headers=auth(token)).status_code == 201
    activated = client.patch(f"{item}/active", json={"active": True, "notify": True},
                             headers=auth(token))  # fmt: skip
    assert activated.status_code in (200, 202), activated.text  # 202 only with an endpoint
    assert activated.json()["active"] is True
    assert events(engine) == 1
    assert client.delete(item, headers=auth(token)).status_code == 204


def test_a_token_without_read_reads_nothing_not_even_from_the_cache(
    client: TestClient, make_user: UserFactory
) -> None:
    uid, token = make_user()
    writer = auth(mint(client, token, scopes=["write"])["token"])
    cid = create(client, uid, SEED, headers=writer)["id"]  # the control: the token writes
    item = f"{certs(uid)}/{cid}"
    paths: list[tuple[str, dict[str, str]]] = [
        (certs(uid), {}),
        (certs(uid), {"active": "true"}),
        (item, {}),
    ]
    for path, params in paths:
        for _ in range(2):  # the same user's full token reads twice: the answer is cached
            assert client.get(path, params=params, headers=auth(token)).status_code == 200
        refused = problem(client.get(path, params=params, headers=writer), 403)
        assert "read" in refused["detail"]
    problem(client.get(item, headers=writer | {"If-None-Match": '"1"'}), 403)  # not a 304


# The private key is in no metric


def test_no_private_key_is_in_any_metric(client: TestClient, make_user: UserFactory) -> None:
    uid, _ = make_user()
    secrets: list[str] = []
    kinds: list[KeyType] = ["rsa", "ec", "ed25519"]
    for index, key_type in enumerate(kinds):
        key = make_key(key_type, 20 + index)
        body, _ = make_certificate(key_type, key=key)
        sent = encode_key(key, "pkcs8-pem" if index % 2 else "pkcs8-der")
        create(client, uid, {"private_key": sent, "body": body, "active": False})
        wrong = encode_key(make_key(key_type, 30 + index), "pkcs8-pem")  # another real key
        refused = problem(client.post(certs(uid), json={"private_key": wrong, "body": body}), 422)
        assert refused["detail"] == "private key does not match the certificate"
        secrets += key_material(sent, body) + key_material(wrong, body)
    scraped = client.get("/metrics")
    assert scraped.status_code == 200
    # The control: the scrape counts these very requests, by route template.
    route = "/api/v1/users/{user_id}/certificates"
    assert f'method="POST",route="{route}",status="201"' in scraped.text
    assert f'method="POST",route="{route}",status="422"' in scraped.text
    leaked = [needle[:20] for needle in secrets if needle in scraped.text]
    assert leaked == [], f"private key material in /metrics: {leaked}"


# No key-encryption key in any log line


def kek_forms(text: str) -> list[str]:
    """Every key of a keyring text (`id:base64` a line, `#` comments) as it could leak:
    its base64, padded or not, URL-safe, its raw bytes in hex, and 16-character slices of
    the base64 and the hex (a truncated leak)."""
    found = []
    lines = text.splitlines()
    for entry in (e.strip() for ln in lines for e in ln.partition("#")[0].split(",")):
        if entry:
            raw = base64.b64decode(entry.partition(":")[2].strip(), validate=True)
            assert len(raw) == 32, entry.partition(":")[0]
            padded, urlsafe = base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()
            hexed = raw.hex()
            found += [padded, padded.rstrip("="), urlsafe.rstrip("="), hexed, hexed.upper()]
            found += [
                text[i : i + 16] for text in (padded, hexed) for i in range(0, len(text) - 15, 8)
            ]
    return found


def test_no_key_encryption_key_is_in_any_log_line(
    key_settings: Settings,
    make_user: UserFactory,
    receiver: Receiver,
    logs: Callable[[], str],
) -> None:
    ok(invoke("keys", "generate"))
    # At DEBUG, as `logs` captures: create_app sets the `wharf` logger's level from these.
    settings = key_settings.model_copy(
        update={"outbound_allow": receiver.allow, "jobs_in_server": False, "log_level": "DEBUG"}
    )
    admin = auth(make_user(role="admin")[1])
    owner, token = make_user()
    seen: list[str] = []
    app = create_app(settings)
    with TestClient(app, raise_server_exceptions=False) as api:
        made = api.post("/api/v1/webhooks", json={"url": receiver.url}, headers=admin)
        assert made.status_code == 201, made.text  # its signing secret is sealed under a KEK
        ids = []
        kinds: tuple[KeyType, ...] = ("rsa", "ec", "ed25519")
        for index, key_type in enumerate(kinds):
            key = make_key(key_type, 40 + index)
            body, _ = make_certificate(key_type, key=key)
            created = post(api, owner, encode_key(key, "pkcs8-pem"), body, headers=auth(token))
            assert created.status_code == 201, created.text
            ids.append(created.json()["id"])
        seen.append(ok(invoke("keys", "rotate")).output)
        rewrapped = ok(invoke("keys", "rewrap", "--batch", "2")).output
        assert "Re-encrypted 4 values" in rewrapped  # three keys and one secret moved
        seen.append(rewrapped)
        later = post(api, owner, encode_key(make_key("ec", 43), "sec1-der"), headers=auth(token))
        assert later.status_code == 201, later.text
        for cid in ids:
            item = f"{certs(owner)}/{cid}"
            for active in (True, False):
                changed = api.patch(f"{item}/active", json={"active": active, "notify": True},
                                    headers=auth(token))  # fmt: skip
                assert changed.status_code == 202, changed.text
            assert api.get(item, headers=auth(token)).status_code == 200
        assert api.get(certs(owner), headers=auth(token)).json()["total"] == 4
        handlers = job_handlers(
            settings, engine=app.state.engine, keys=app.state.keys, outbound=app.state.outbound
        )
        drain(Worker(app.state.engine, handlers, poll_seconds=0.01, lease_seconds=30))
    assert len(receiver.received) == 6  # delivered, so the secret was opened with a KEK
    keyfile = key_file(settings).read_text(encoding="utf-8")
    keys = kek_forms(keyfile)
    # The control: the parser found both keys of the key file, as the keyring reads them.
    assert len(keys) == 16 * len(Keyring.load(settings).ids()) == 32
    logged = logs()
    assert f'"path":"{certs(owner)}"' in logged
    haystack = "\n".join([logged, *seen])
    leaked = [needle[:8] for needle in keys + kek_forms(TEST_KEYS) if needle in haystack]
    assert leaked == [], f"a key-encryption key in the logs: {leaked}"


# A change that rolls back sends nothing


def count_rows(conn: Connection) -> dict[str, int]:
    tables = {"events": WebhookEvent, "deliveries": WebhookDelivery, "jobs": Job}
    return {
        name: int(conn.execute(select(func.count()).select_from(table)).scalar_one())
        for name, table in tables.items()
    }


class Failed(Exception):
    """Whatever fails after the event is written, before the commit."""


@pytest.mark.parametrize("ending", ["rollback", "error"])
def test_a_rolled_back_certificate_change_sends_nothing(
    client: TestClient,
    make_user: UserFactory,
    receiver: Receiver,
    worker: Worker,
    engine: Engine,
    ending: str,
) -> None:
    secret = endpoint(client, receiver)["secret"]
    uid, token = make_user()
    cid = certificate(client, uid, token)
    viewer = Principal(user_id=uid, role="user", token_id=0, scopes=ROLE_SCOPES["user"])
    nothing = {"events": 0, "deliveries": 0, "jobs": 0}

    def activate(conn: Connection) -> dict[str, Any]:
        row, queued = service.set_active(
            conn, viewer=viewer, user_id=uid, certificate_id=cid, active=True, notify=True,
            expected=None,
        )  # fmt: skip
        assert queued
        # Written, in this transaction: an event, its delivery and the job that sends it.
        assert count_rows(conn) == {"events": 1, "deliveries": 1, "jobs": 1}
        return row

    def activate_then_fail(conn: Connection) -> None:
        with conn.begin():
            activate(conn)
            raise Failed

    with engine.connect() as conn:
        if ending == "rollback":
            with conn.begin() as tx:
                assert activate(conn)["active"] is True
                tx.rollback()
        else:
            with pytest.raises(Failed):
                activate_then_fail(conn)
        assert count_rows(conn) == nothing
    assert drain(worker) == 0
    assert receiver.received == []
    with engine.connect() as conn:
        assert count_rows(conn) == nothing
    assert client.get(f"{certs(uid)}/{cid}").json()["active"] is False

    # The control: the same change committed is sent, signed.
    with engine.begin() as conn:
        activate(conn)
    assert drain(worker) == 1
    [got] = receiver.received
    assert got.verifies(secret)
    assert got.json()["data"] == {"id": cid, "user_id": uid, "active": True}
