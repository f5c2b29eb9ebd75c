"""Scale-out: two `wharf serve` processes on their own ports, as on two hosts, sharing only
PostgreSQL and Redis. Every guarantee a client relies on holds across them: a write through
one is never answered stale by the other's cache, the rate limit is one budget, an
idempotency key replays through either, a webhook is delivered once, and one sales inbox is
watched by one of them.

PostgreSQL and Redis only: SQLite is one machine's file, not a scale-out path."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx2
import pytest
from sqlalchemy import func, select

from tests.certificates.pki import encode_key, make_certificate
from tests.conftest import _truncate_pg
from tests.receiver import Receiver
from tests.sales.data import counts, write
from tests.servers import Server, free_port, seed, serve
from wharf.accounts import service as accounts
from wharf.core.data.db import create_db_engine
from wharf.core.security import ROLE_SCOPES
from wharf.core.work.models import Lease
from wharf.sales.inbox import LEASE
from wharf.sales.models import SalesFile

LIMIT = 40  # per token per minute, shared by both processes through Redis
SALES_DAY = [(1, [7, 7, 8]), (2, [7])]


@dataclass(frozen=True)
class Pair:
    one: Server
    two: Server
    database_url: str
    inbox: Path
    receiver: Receiver

    def token(self) -> str:
        """A fresh admin token: its own rate-limit budget."""
        engine = create_db_engine(self.database_url)
        with engine.begin() as conn:
            token = accounts.issue_token(
                conn,
                user_id=1,
                name=f"scale-{uuid.uuid4().hex[:8]}",
                scopes=ROLE_SCOPES["admin"],
                lifetime=timedelta(hours=1),
            )
        engine.dispose()
        return token

    def clients(self, token: str | None = None) -> tuple[httpx2.Client, httpx2.Client]:
        headers = {"Authorization": f"Bearer {token or self.one.token}"}
        return tuple(  # type: ignore[return-value]
            httpx2.Client(base_url=f"{s.base_url}/api/v1", headers=headers, timeout=10)
            for s in (self.one, self.two)
        )


@pytest.fixture(scope="module")
def pair(pg_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    _truncate_pg(pg_url)
    receiver = Receiver(free_port())
    receiver.up()
    inbox = tmp_path_factory.mktemp("inbox")
    env = {
        "WHARF_REDIS_URL": redis_url,
        "WHARF_REDIS_KEY_PREFIX": f"scale-{uuid.uuid4().hex}",
        "WHARF_RATE_LIMITS_ENABLED": "true",
        "WHARF_RATE_LIMIT_API": f"{LIMIT}/minute",
        "WHARF_OUTBOUND_ALLOW": receiver.allow,
        "WHARF_JOB_POLL_SECONDS": "0.1",
        "WHARF_SALES_INBOX": str(inbox),
    }
    seeded = seed(pg_url)
    with (
        serve(pg_url, tmp_path_factory.mktemp("one"), env=env, workers=1, seeded=seeded) as one,
        serve(pg_url, tmp_path_factory.mktemp("two"), env=env, workers=1, seeded=seeded) as two,
    ):
        yield Pair(one, two, pg_url, inbox, receiver)
    receiver.down()


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_a_write_through_one_is_read_fresh_through_the_other(pair: Pair) -> None:
    one, two = pair.clients(pair.token())
    path = f"/customers/{pair.one.customer_id}"
    listing = f"/customers?company_id={one.get(path).json()['company_id']}"
    for client in (one, two):  # both caches hold the customer and the list
        assert client.get(path).status_code == 200
        assert client.get(listing).status_code == 200
    for n in range(5):
        version = two.get(path).json()["version"]
        changed = two.patch(
            path, json={"last_name": f"Moved {n}"}, headers={"If-Match": f'"{version}"'}
        )
        assert changed.status_code == 200, changed.text
        assert one.get(path).json()["last_name"] == f"Moved {n}"
        assert [c["last_name"] for c in one.get(listing).json()["items"]] == [f"Moved {n}"]


def test_the_rate_limit_is_one_budget_across_both(pair: Pair) -> None:
    one, two = pair.clients(pair.token())
    # The sliding window weighs the last minute's count by how much of it still overlaps: a
    # run across a minute's end may let one more through. Start well inside a minute.
    while 60 - time.time() % 60 < 15:
        time.sleep(0.5)
    answers = [(one if n % 2 else two).get("/companies").status_code for n in range(LIMIT + 10)]
    assert answers.count(200) == LIMIT
    assert answers.count(429) == 10
    assert answers[:LIMIT] == [200] * LIMIT  # no process let more through than its share


def test_an_idempotency_key_replays_through_the_other(pair: Pair) -> None:
    one, two = pair.clients(pair.token())
    key = {"Idempotency-Key": uuid.uuid4().hex}
    first = one.post("/companies", json={"name": "Made once"}, headers=key)
    again = two.post("/companies", json={"name": "Made once"}, headers=key)
    assert first.status_code == again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    names = [c["name"] for c in one.get("/companies?limit=100").json()["items"]]
    assert names.count("Made once") == 1


def test_a_webhook_is_delivered_once(pair: Pair) -> None:
    one, two = pair.clients(pair.token())
    hook = one.post("/webhooks", json={"url": pair.receiver.url})
    assert hook.status_code == 201, hook.text
    body, key = make_certificate("ec")
    made = two.post(
        "/users/1/certificates", json={"private_key": encode_key(key, "pkcs8-pem"), "body": body}
    )
    assert made.status_code == 201, made.text
    for n, client in enumerate((one, two, one, two)):  # four changes, through both
        changed = client.patch(
            f"/users/1/certificates/{made.json()['id']}/active",
            json={"active": n % 2 == 0, "notify": True},
        )
        assert changed.status_code == 202, changed.text
    wait_for(lambda: len(pair.receiver.received) >= 4)
    time.sleep(1.0)  # both workers poll every 0.1 s: a second delivery would be here by now
    ids = pair.receiver.ids()
    assert len(ids) == len(set(ids)) == 4


def test_one_sales_inbox_is_ingested_once(pair: Pair) -> None:
    one, _ = pair.clients(pair.token())
    write(pair.inbox, "20261130_transactions.json", SALES_DAY)
    wait_for(lambda: (pair.inbox / "done" / "20261130_transactions.json.report.json").exists())
    time.sleep(1.0)  # the other process, had it watched too, would have taken it by now
    engine = create_db_engine(pair.database_url)
    with engine.connect() as conn:
        files = conn.execute(select(func.count()).select_from(SalesFile)).scalar_one()
        holder = conn.execute(select(Lease.holder).where(Lease.name == LEASE)).scalar()
    engine.dispose()
    assert files == 1
    assert holder is not None  # the one process that watches holds the inbox's lease
    assert not list(pair.inbox.glob("*.json")), "the file was left behind"
    sold = one.get("/sales/products/7?from=2026-11-30&to=2026-11-30").json()
    assert sold["total"] == counts(SALES_DAY)[7]
