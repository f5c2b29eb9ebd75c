"""`wharf webhooks deliver --once`, the real command in its own process, on both databases:
it sends what the outbox holds, signed, and exits."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from starlette.testclient import TestClient

from tests.conftest import TEST_KEYS, UserFactory
from tests.core.test_webhooks import certificate, deliveries, endpoint, receiver, settings, toggle
from tests.receiver import Receiver

__all__ = ["receiver", "settings"]  # fixtures shared with test_webhooks


def deliver_once(database_url: str, allow: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`python -m wharf webhooks deliver --once` with only the environment it is given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WHARF_")}
    env |= {
        "WHARF_DATABASE_URL": database_url,
        "WHARF_KEY_ENCRYPTION_KEYS": TEST_KEYS,  # the key the test's app sealed the secret with
        "WHARF_OUTBOUND_ALLOW": allow,
        "WHARF_VAR_DIR": str(cwd / "var"),
    }
    return subprocess.run(
        [sys.executable, "-m", "wharf", "webhooks", "deliver", "--once"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,  # no stray .env
        env=env,
        check=False,
    )


def test_deliver_once_sends_the_queued_notification_signed(
    client: TestClient,
    make_user: UserFactory,
    receiver: Receiver,
    database_url: str,
    tmp_path: Path,
) -> None:
    created = endpoint(client, receiver)
    user_id, token = make_user()
    cid = certificate(client, user_id, token)
    assert toggle(client, user_id, token, cid, True) == 202
    assert receiver.received == []  # queued, not sent inline
    [pending] = deliveries(client, created["id"])
    assert pending["status"] == "pending"

    done = deliver_once(database_url, receiver.allow, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Ran 1 deliveries." in done.stdout
    [got] = receiver.received
    assert got.verifies(created["secret"])
    assert not got.verifies("whsec_" + "A" * 43)  # the check can fail
    event = got.json()
    assert event["type"] == "certificate.activated"
    assert event["data"] == {"id": cid, "user_id": user_id, "active": True}
    [delivery] = deliveries(client, created["id"])
    assert (delivery["status"], delivery["attempts"], delivery["last_status_code"]) == (
        "delivered", 1, 200
    )  # fmt: skip
    assert delivery["event_id"] == got.message_id

    # Run again: nothing is due, nothing is sent twice.
    again = deliver_once(database_url, receiver.allow, tmp_path)
    assert again.returncode == 0, again.stderr
    assert "Ran 0 deliveries." in again.stdout
    assert len(receiver.received) == 1


def test_deliver_once_sends_nothing_to_a_receiver_that_is_not_allowed(
    client: TestClient,
    make_user: UserFactory,
    receiver: Receiver,
    database_url: str,
    tmp_path: Path,
) -> None:
    # The endpoint was allowed when it was made; the worker's own setting still decides.
    created = endpoint(client, receiver)
    user_id, token = make_user()
    toggle(client, user_id, token, certificate(client, user_id, token), True)
    done = deliver_once(database_url, "", tmp_path)
    assert done.returncode == 0, done.stderr
    assert receiver.received == []
    [delivery] = deliveries(client, created["id"])
    assert delivery["status"] == "failed"  # a refusal is final: retrying cannot help
    assert "a loopback address" in delivery["last_error"]
