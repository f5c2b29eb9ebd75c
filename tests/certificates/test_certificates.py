"""Certificates over HTTP (issue 7): create, list, get, delete and activate; ownership; a
private key that never comes back out; and a response cache that is never stale. Both
databases (the `client` and `make_user` fixtures are parametrized over them)."""

from __future__ import annotations

import base64
import hashlib
import logging
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from fastapi import FastAPI
from httpx2 import Response
from sqlalchemy import Engine, func, select
from starlette.testclient import TestClient

from tests.certificates.pki import (
    MATRIX,
    KeyFormat,
    KeyType,
    b64,
    encode_key,
    make_certificate,
    make_key,
)
from tests.conftest import UserFactory, auth
from wharf.certificates.models import Certificate
from wharf.core.logging import JsonFormatter
from wharf.core.metrics import CACHE
from wharf.core.webhooks.models import WebhookEvent

KEY_LOC = ["body", "private_key"]
BODY_LOC = ["body", "body"]
# The seed's own request body, as its README shows it.
SEED = {"private_key": b64(b"seed private key bytes"), "body": "test body", "active": True}
PARSED = ("subject", "issuer", "serial_number", "not_before", "not_after", "fingerprint_sha256")
FIELDS = {"id", "url", "user_id", "active", "body", "key_matches", "version", "created_at",
          "updated_at", *PARSED}  # fmt: skip


def certs(user_id: int) -> str:
    return f"/api/v1/users/{user_id}/certificates"


def pem(days: int = 365, index: int = 0) -> dict[str, str]:
    """A PEM certificate body and its own EC key (PKCS#8 PEM), as a client sends them."""
    body, key = make_certificate("ec", days, key=make_key("ec", index))
    return {"body": body, "private_key": encode_key(key, "pkcs8-pem")}


def create(client: TestClient, user_id: int, fields: dict[str, Any], **kw: Any) -> dict[str, Any]:
    response = client.post(certs(user_id), json=fields, **kw)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def problem(response: Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


def utc(text: str) -> datetime:
    assert text.endswith("Z"), text  # API.md: UTC with Z
    return datetime.fromisoformat(text)


@pytest.fixture
def uid(make_user: UserFactory) -> int:
    """A user (not an admin) whose certificates the test works with."""
    return make_user()[0]


def ids(response: Response) -> list[int]:
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


def listing(client: TestClient, user_id: int, **params: str | int) -> list[int]:
    return ids(client.get(certs(user_id), params=params))


# Creating


def test_the_seeds_own_body_creates_an_opaque_certificate(client: TestClient, uid: int) -> None:
    response = client.post(certs(uid), json=SEED)
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == FIELDS
    assert response.headers["location"] == body["url"]
    assert body["url"].endswith(f"{certs(uid)}/{body['id']}")
    assert response.headers["etag"] == '"1"'
    assert (body["user_id"], body["active"], body["body"], body["version"]) == (
        uid, True, "test body", 1
    )  # fmt: skip
    # An opaque body has nothing to parse and nothing to match the key against.
    assert all(body[field] is None for field in PARSED)
    assert body["key_matches"] is None
    assert utc(body["created_at"]) == utc(body["updated_at"])
    # `active` defaults to false.
    assert create(client, uid, {"private_key": SEED["private_key"], "body": "x"})["active"] is False


@pytest.mark.parametrize(("key_type", "fmt"), MATRIX)
def test_a_pem_certificate_is_parsed_for_every_key_type_and_format(
    client: TestClient, uid: int, key_type: KeyType, fmt: KeyFormat
) -> None:
    key = make_key(key_type)
    body, _ = make_certificate(
        key_type, 90, f"{key_type}.example.com", key=key, serial_number=0xABC123
    )
    created = create(client, uid, {"private_key": encode_key(key, fmt), "body": body})
    certificate = x509.load_pem_x509_certificate(body.encode())
    assert created["subject"] == created["issuer"] == f"CN={key_type}.example.com"
    assert created["serial_number"] == "abc123"
    assert utc(created["not_before"]) == certificate.not_valid_before_utc
    assert utc(created["not_after"]) == certificate.not_valid_after_utc
    der = certificate.public_bytes(Encoding.DER)
    assert created["fingerprint_sha256"] == hashlib.sha256(der).hexdigest()
    assert created["key_matches"] is True


_EC = pem()
_BAD_PEM = "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n"
_BAD_KEY = b64(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
_OTHER_EC = encode_key(make_key("ec", 1), "pkcs8-pem")
_ED25519 = encode_key(make_key("ed25519"), "pkcs8-der")
_ENCRYPTED = encode_key(make_key("ec"), "pkcs8-pem", password=b"secret")
MISMATCH = "private key does not match the certificate"
K, B = KEY_LOC, BODY_LOC
# Case: (body sent, errors[0].loc, words the detail must hold).
REFUSED: dict[str, tuple[dict[str, Any], list[str], str]] = {
    "bad base64": ({"private_key": "not base64!", "body": "x"}, K, "base64"),
    "stray padding": ({"private_key": "QUJD=", "body": "x"}, K, "base64"),
    "empty key": ({"private_key": "", "body": "x"}, K, ""),
    "blank key": ({"private_key": " \n ", "body": "x"}, K, "blank"),
    "key over 16 KiB": ({"private_key": b64(bytes(16 * 1024 + 1)), "body": "x"}, K, "16 KiB"),
    "body over 64 KiB": ({**SEED, "body": "x" * (64 * 1024 + 1)}, B, ""),
    # 32769 characters, 65538 bytes: the limit is on the bytes, not the characters.
    "body over 64 KiB in UTF-8": ({**SEED, "body": "é" * (32 * 1024 + 1)}, B, "64 KiB"),
    "empty body": ({**SEED, "body": ""}, B, ""),
    "garbage PEM body": ({**SEED, "body": _BAD_PEM}, B, "X.509"),
    "mismatched key": ({**_EC, "private_key": _OTHER_EC}, K, MISMATCH),
    "key of another type": ({**_EC, "private_key": _ED25519}, K, MISMATCH),
    "encrypted key": ({**_EC, "private_key": _ENCRYPTED}, K, "encrypted"),
    "opaque key for a PEM body": ({**_EC, "private_key": SEED["private_key"]}, K, "PEM or DER"),
    "garbage PEM key": ({**SEED, "private_key": _BAD_KEY}, K, "PEM private key"),
    # No mass assignment: unknown and read-only fields are refused, not ignored.
    "unknown field": ({**SEED, "owner_id": 1}, ["body", "owner_id"], ""),
    "read-only field": ({**SEED, "key_matches": True}, ["body", "key_matches"], ""),
}


@pytest.mark.parametrize("case", REFUSED)
def test_refused_input_is_422_naming_the_field_and_stores_nothing(
    client: TestClient, uid: int, case: str
) -> None:
    fields, loc, detail = REFUSED[case]
    body = problem(client.post(certs(uid), json=fields), 422)
    assert body["errors"][0]["loc"] == loc, body
    assert detail in body["detail"], body
    if detail == MISMATCH:
        assert body["detail"] == MISMATCH  # the exact wording
    assert client.get(certs(uid)).json()["total"] == 0


def test_a_key_of_exactly_16_kib_is_accepted(client: TestClient, uid: int) -> None:
    create(client, uid, {"private_key": b64(bytes(16 * 1024)), "body": "x" * (64 * 1024)})


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
def test_a_body_that_is_not_json_is_415(client: TestClient, uid: int, content_type: str) -> None:
    sent = client.post(certs(uid), content=b'{"private_key": "QUJD", "body": "x"}',
                       headers={"Content-Type": content_type})  # fmt: skip
    problem(sent, 415)
    problem(client.post(certs(uid), json=SEED, headers={"Accept": "text/html"}), 406)


# Ownership: someone else's user path does not exist


def test_another_users_path_is_404_never_403(client: TestClient, make_user: UserFactory) -> None:
    problem(client.post(certs(999_999), json=SEED), 404)  # no such user, even for an admin
    problem(client.get(certs(999_999)), 404)
    owner, owner_token = make_user()
    _, stranger = make_user()
    mine = create(client, owner, SEED, headers=auth(owner_token))  # owners create their own
    item = f"{certs(owner)}/{mine['id']}"
    as_stranger = auth(stranger)
    for response in (
        client.post(certs(owner), json=SEED, headers=as_stranger),
        client.get(certs(owner), headers=as_stranger),
        client.get(item, headers=as_stranger),
        client.patch(f"{item}/active", json={"active": False}, headers=as_stranger),
        client.delete(item, headers=as_stranger),
    ):
        problem(response, 404)
    # Nothing the stranger sent took effect; the admin (`client`) sees everyone's.
    create(client, owner, pem())
    listed = client.get(certs(owner)).json()
    assert listed["total"] == 2
    assert client.get(item).json()["active"] is True
    mine_listed = ids(client.get(certs(owner), headers=auth(owner_token)))
    assert mine_listed == [i["id"] for i in listed["items"]]


# Listing


def test_the_active_filter_takes_only_true_or_false(client: TestClient, uid: int) -> None:
    on = [create(client, uid, {**SEED, "active": True})["id"] for _ in range(2)]
    off = create(client, uid, {**SEED, "active": False})["id"]
    everything = client.get(certs(uid)).json()
    assert set(everything) == {"items", "total", "limit", "offset", "next", "previous"}
    assert (everything["total"], everything["limit"], everything["offset"]) == (3, 50, 0)
    assert listing(client, uid, active="true") == on
    assert listing(client, uid, active="false") == [off]
    for word in ("yes", "1", "True", ""):
        body = problem(client.get(certs(uid), params={"active": word}), 422)
        assert body["errors"][0]["loc"] == ["query", "active"]


def test_ordering_over_id_created_at_and_not_after(client: TestClient, uid: int) -> None:
    # Created in an order that is not the order of expiry.
    made = [create(client, uid, pem(days, i))["id"] for i, days in enumerate((300, 10, 100))]
    by_expiry = [made[1], made[2], made[0]]
    assert listing(client, uid, ordering="not_after") == by_expiry
    assert listing(client, uid, ordering="-not_after") == by_expiry[::-1]
    assert listing(client, uid, ordering="id") == made
    assert listing(client, uid, ordering="-id") == made[::-1]
    assert listing(client, uid, ordering="created_at,id") == made
    for bad in ("body", "private_key", "-key_id"):
        body = problem(client.get(certs(uid), params={"ordering": bad}), 422)
        assert body["errors"][0]["loc"] == ["query", "ordering"]


def test_expiring_within_days_excludes_later_expired_and_opaque(
    client: TestClient, uid: int
) -> None:
    soon = create(client, uid, pem(days=10, index=0))["id"]
    create(client, uid, pem(days=365, index=1))
    create(client, uid, pem(days=-5, index=2))  # its not_after is already in the past
    create(client, uid, SEED)  # opaque: no not_after at all
    assert listing(client, uid, expiring_within_days=30) == [soon]
    assert client.get(certs(uid), params={"expiring_within_days": 400}).json()["total"] == 2
    problem(client.get(certs(uid), params={"expiring_within_days": -1}), 422)


def test_opaque_certificates_sort_the_same_on_both_databases(client: TestClient, uid: int) -> None:
    # An opaque body has no not_after. It sorts as "never expires", after every date going up
    # and before them going down: PostgreSQL's default. SQLite's is the opposite, so without
    # an explicit NULLS LAST/FIRST the same request answers in another order by database.
    dated = create(client, uid, pem(30))["id"]
    opaque = create(client, uid, SEED)["id"]
    assert listing(client, uid, ordering="not_after") == [dated, opaque]
    assert listing(client, uid, ordering="-not_after") == [opaque, dated]


def test_search_is_not_silently_ignored(client: TestClient, uid: int) -> None:
    # API.md: `search=` matches a resource's text fields, and this list documents `search`.
    # Implemented or refused (422), a search that matches nothing must not list everything.
    create(client, uid, pem())
    create(client, uid, SEED)
    response = client.get(certs(uid), params={"search": "no certificate says this"})
    total = response.json().get("total")
    assert response.status_code == 422 or total == 0, f"{total} listed for a search of nothing"


def test_pagination(client: TestClient, uid: int) -> None:
    made = [create(client, uid, SEED)["id"] for _ in range(5)]
    first = client.get(certs(uid), params={"limit": 2})
    assert ids(first) == made[:2]
    assert first.json()["next"] is not None
    assert first.json()["previous"] is None
    assert 'rel="next"' in first.headers["link"]
    last = client.get(certs(uid), params={"limit": 2, "offset": 4}).json()
    assert [i["id"] for i in last["items"]] == made[4:]
    assert (last["total"], last["next"]) == (5, None)
    assert last["previous"] is not None
    assert client.get(certs(uid), params={"offset": 9}).json()["items"] == []
    problem(client.get(certs(uid), params={"limit": 501}), 422)


# One certificate


def test_get_then_delete(client: TestClient, uid: int) -> None:
    created = create(client, uid, SEED)
    item = f"{certs(uid)}/{created['id']}"
    got = client.get(item)
    assert got.status_code == 200
    assert got.json() == created
    assert got.headers["etag"] == '"1"'
    assert client.get(item, headers={"If-None-Match": '"1"'}).status_code == 304
    problem(client.delete(item, headers={"If-Match": '"7"'}), 412)  # stale: nothing deleted
    assert client.get(item).status_code == 200
    assert client.delete(item, headers={"If-Match": '"1"'}).status_code == 204
    problem(client.get(item), 404)
    problem(client.delete(item), 404)
    other = create(client, uid, SEED)["id"]
    assert client.delete(f"{certs(uid)}/{other}").status_code == 204  # If-Match is optional


def events(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(WebhookEvent)).scalar_one())


def test_activation(client: TestClient, uid: int, engine: Engine) -> None:
    created = create(client, uid, SEED | {"active": False})
    active = f"{certs(uid)}/{created['id']}/active"

    def patch(body: dict[str, bool], status: int, **headers: str) -> dict[str, Any]:
        response = client.patch(active, json=body, headers=headers)
        assert response.status_code == status, response.text
        result: dict[str, Any] = response.json()
        if status < 400:
            assert response.headers["etag"] == f'"{result["version"]}"'
        return result

    first = patch({"active": True}, 200)  # no version needed: the target state is absolute
    assert (first["active"], first["version"]) == (True, 2)
    # The same state again is a safe retry: nothing changes, nothing is queued, even with notify.
    assert patch({"active": True, "notify": True}, 200) == first
    assert events(engine) == 0
    # No endpoint subscribes: the event is written, but no delivery is queued, so not 202.
    changed = patch({"active": False, "notify": True}, 200)
    assert (changed["active"], changed["version"]) == (False, 3)
    assert events(engine) == 1
    patch({"active": True, "notify": True}, 412, **{"If-Match": '"2"'})  # stale
    assert client.get(active.removesuffix("/active")).json() == changed
    assert events(engine) == 1
    assert patch({"active": True}, 200, **{"If-Match": '"3"'})["version"] == 4
    problem(client.patch(active, json={"active": "maybe"}), 422)
    problem(client.patch(active, json={"active": True, "version": 4}), 422)  # unknown field


def test_deleting_a_user_deletes_their_certificates(
    client: TestClient, make_user: UserFactory, engine: Engine, uid: int
) -> None:
    gone, kept = uid, make_user()[0]
    for _ in range(2):
        create(client, gone, SEED)
    create(client, kept, SEED)
    assert client.delete(f"/api/v1/users/{gone}").status_code == 204

    def count(user_id: int) -> int:
        query = select(func.count()).select_from(Certificate).where(Certificate.user_id == user_id)
        with engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    assert (count(gone), count(kept)) == (0, 1)
    problem(client.get(certs(gone)), 404)


# The private key goes in and never comes out


def secrets_of(sent: str, public: str) -> list[str]:
    """What would betray the key: the base64 sent, each PEM line, base64 and hex of the DER,
    and 64-character slices of both base64 texts (a truncated leak). Slices that also occur in
    the public certificate are dropped: they are the public key (RSA modulus, EC point) that
    the private key contains too, and finding them proves nothing."""
    raw = base64.b64decode(sent)
    lines = [line for line in raw.decode(errors="replace").splitlines() if "-----" not in line]
    der = base64.b64decode("".join(lines)) if raw.startswith(b"-----BEGIN") else raw
    texts = [sent, b64(der)]
    slices = [text[i : i + 64] for text in texts for i in range(0, len(text) - 63, 64)]
    flat = "".join(public.split())
    found = [*texts, der.hex(), *[line for line in lines if len(line) >= 16], *slices]
    return [s for s in found if s not in public and s not in flat]


@pytest.fixture
def logs(
    app: FastAPI, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> Iterator[Callable[[], str]]:
    """Everything logged, at DEBUG: caplog's records and the JSON lines the stderr handler
    writes. The `wharf` logger does not propagate, so caplog is attached to it; its handler
    holds whatever sys.stderr was when the run's first app was made (pytest swaps it per
    phase), so it is pointed at the process's real stderr, which capfd reads at fd 2."""
    wharf = logging.getLogger("wharf")
    json_handlers = (h for h in wharf.handlers if isinstance(h.formatter, JsonFormatter))
    handlers = [h for h in json_handlers if isinstance(h, logging.StreamHandler)]
    assert handlers, "create_app installs the JSON stderr handler"
    # Assigned, not setStream(): that flushes the old stream, which may be closed by now.
    streams, stderr = [h.stream for h in handlers], sys.__stderr__
    assert stderr is not None
    for handler in handlers:
        handler.stream = stderr
    wharf.addHandler(caplog.handler)
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="wharf")

    def read() -> str:
        stderr.flush()
        out = capfd.readouterr()
        # A control: the JSON handler wrote here, so an empty haystack cannot pass the test.
        assert '"logger":"wharf.access"' in out.err, "the JSON stderr handler was not captured"
        records = [repr(vars(record)) for record in caplog.records]
        return "\n".join([caplog.text, *records, out.out, out.err])

    yield read
    wharf.removeHandler(caplog.handler)
    for handler, stream in zip(handlers, streams, strict=True):
        handler.stream = stream


@pytest.mark.parametrize(
    ("key_type", "fmt"), [("rsa", "pkcs1-pem"), ("ec", "sec1-der"), ("ed25519", "pkcs8-pem")]
)
def test_the_private_key_is_in_no_response_error_or_log_line(
    client: TestClient,
    uid: int,
    logs: Callable[[], str],
    key_type: KeyType,
    fmt: KeyFormat,
) -> None:
    key = make_key(key_type)
    body, _ = make_certificate(key_type, key=key)
    sent = encode_key(key, fmt)
    wrong = encode_key(make_key(key_type, 1), fmt)  # a real key too: it must not leak either
    responses = [
        client.post(certs(uid), json={"private_key": sent, "body": body, "active": False}),
        client.post(certs(uid), json={"private_key": wrong, "body": body}),  # 422, mismatched
        client.post(certs(uid), json={"private_key": sent, "body": body, "bogus": 1}),  # 422
    ]
    assert [r.status_code for r in responses] == [201, 422, 422]
    item = f"{certs(uid)}/{responses[0].json()['id']}"
    responses += [
        client.get(item),
        client.get(certs(uid)),
        client.patch(f"{item}/active", json={"active": True}),
        client.patch(f"{item}/active", json={"active": False, "notify": True}),
        client.get(certs(uid), params={"active": "false"}),
    ]
    logged = logs()
    assert f'"path":"{certs(uid)}"' in logged  # the requests' own access log lines
    seen = "\n".join(f"{r.headers}\n{r.text}" for r in responses)
    for needle in secrets_of(sent, body) + secrets_of(wrong, body):
        assert needle not in seen, f"key material in a response: {needle[:20]}..."
        assert needle not in logged, f"key material in the logs: {needle[:20]}..."


# The response cache is never stale


def hits() -> float:
    return float(CACHE.labels("hit")._value.get())


def test_a_cached_expiry_window_moves_with_the_clock(
    client: TestClient, uid: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `expiring_within_days` depends on the clock, not only on the data: an answer cached
    # today must not be served eleven days later. The service's clock is moved (no sleeping).
    later = create(client, uid, pem(40))["id"]
    assert listing(client, uid, expiring_within_days=30) == []
    moved = datetime.now(UTC) + timedelta(days=11)
    monkeypatch.setattr("wharf.certificates.service.utcnow", lambda: moved)
    # The control: a query the cache has not seen sees the moved clock (29 days left).
    assert listing(client, uid, expiring_within_days=30, limit=49) == [later]
    assert listing(client, uid, expiring_within_days=30) == [later], "served from the cache"


def test_a_cached_list_shows_every_change(client: TestClient, make_user: UserFactory) -> None:
    uid, token = make_user()
    first = create(client, uid, SEED | {"active": False})
    for reader in ({}, auth(token)):  # the admin's entries and the owner's own

        def listed(reader: dict[str, str] = reader, **params: str) -> list[tuple[int, bool]]:
            response = client.get(certs(uid), params=params, headers=reader)
            assert response.status_code == 200, response.text
            return [(i["id"], i["active"]) for i in response.json()["items"]]

        before = listed()
        now = hits()
        assert listed() == before
        assert hits() == now + 1, "the second read was not served from the cache"
        assert listed(active="true") == []
        active = client.patch(f"{certs(uid)}/{first['id']}/active", json={"active": True})
        assert active.status_code == 200
        assert listed()[0] == (first["id"], True)
        assert listed(active="true") == [(first["id"], True)]
        second = create(client, uid, SEED)["id"]
        assert [i for i, _ in listed()] == [first["id"], second]
        assert client.delete(f"{certs(uid)}/{second}").status_code == 204
        assert [i for i, _ in listed()] == [first["id"]]
        off = client.patch(f"{certs(uid)}/{first['id']}/active", json={"active": False})
        assert off.status_code == 200
        assert listed() == [(first["id"], False)]
