"""Deliveries survive the server: `kill -9` with deliveries pending and in flight, then a
restart, and every committed event arrives, signed, with any duplicate under its webhook-id.

Real `wharf serve` processes (two workers each, so the delivery worker runs in two processes
that share the jobs through their leases) and a real receiver on 127.0.0.1."""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

import httpx2
from sqlalchemy import text

from tests.certificates.pki import encode_key, make_certificate
from tests.receiver import Receiver
from tests.servers import free_port, seed, serve
from wharf.core.data.db import create_db_engine

EVENTS = 12
DEADLINE = 60.0


def _settings(receiver: Receiver) -> dict[str, str]:
    return {
        "WHARF_OUTBOUND_ALLOW": receiver.allow,
        # Retries a fraction of a second apart, for a minute: the test waits on them.
        "WHARF_WEBHOOK_RETRY_SCHEDULE": ",".join(["0.3"] * 200),
        "WHARF_JOB_LEASE_SECONDS": "2",  # a killed worker's claims come back after 2 s
        "WHARF_JOB_POLL_SECONDS": "0.1",
        "WHARF_OUTBOUND_TIMEOUT_SECONDS": "0.9",  # the lease must outlast a request
    }


def test_kill_9_with_deliveries_pending_loses_nothing(database_url: str, tmp_path: Path) -> None:
    receiver = Receiver(free_port(), delay=0.5)  # slow, so deliveries are in flight
    seeded = seed(database_url)
    port = free_port()
    with serve(database_url, tmp_path, env=_settings(receiver), seeded=seeded, port=port) as one:
        api = httpx2.Client(
            base_url=f"{one.base_url}/api/v1",
            headers={"Authorization": f"Bearer {one.token}"},
            timeout=10,
        )
        hook = api.post("/webhooks", json={"url": receiver.url})
        assert hook.status_code == 201, hook.text
        secret = hook.json()["secret"]
        me = api.get("/users/1").json()["id"]
        for _ in range(EVENTS):
            body, key = make_certificate("ec")
            made = api.post(
                f"/users/{me}/certificates",
                json={"private_key": encode_key(key, "pkcs8-pem"), "body": body},
            )
            assert made.status_code == 201, made.text
            changed = api.patch(
                f"/users/{me}/certificates/{made.json()['id']}/active",
                json={"active": True, "notify": True},
            )
            assert changed.status_code == 202, changed.text
        receiver.up()
        # Kill once the first deliveries are on the wire, so some die mid-flight.
        deadline = time.monotonic() + DEADLINE
        while not receiver.received and time.monotonic() < deadline:
            time.sleep(0.05)
        assert receiver.received, "no delivery started before the kill"
        one.kill()
        api.close()
    sent_before_restart = len(receiver.received)
    assert sent_before_restart < EVENTS, "everything was delivered before the kill"

    receiver.delay = 0.0
    with serve(database_url, tmp_path, env=_settings(receiver), seeded=seeded, port=port) as two:
        api = httpx2.Client(
            base_url=f"{two.base_url}/api/v1",
            headers={"Authorization": f"Bearer {two.token}"},
            timeout=10,
        )
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            items = api.get(f"/webhooks/{hook.json()['id']}/deliveries?limit=500").json()["items"]
            if len(items) == EVENTS and all(d["status"] == "delivered" for d in items):
                break
            time.sleep(0.2)
        api.close()
    receiver.down()

    engine = create_db_engine(database_url)
    with engine.connect() as conn:
        committed = set(conn.execute(text("SELECT message_id FROM webhook_events")).scalars())
    engine.dispose()
    assert len(committed) == EVENTS
    assert set(receiver.ids()) == committed, "an event was lost or invented"
    assert all(r.verifies(secret) for r in receiver.received)
    bodies: defaultdict[str, set[bytes]] = defaultdict(set)
    for r in receiver.received:
        bodies[r.message_id].add(r.body)
    assert all(len(b) == 1 for b in bodies.values()), "a duplicate changed its event"
