"""The dashboard's certificates section (issue 11): a user's certificates with their expiry and
the soon/expired marks, an admin picking a user, uploading a PEM file with its key file,
activating and deactivating with notify, and the admins' webhook endpoints with their delivery
log and retry, against a real receiver on 127.0.0.1."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx2
import pytest
from playwright.sync_api import Locator, Page, expect

from tests.certificates.pki import encode_key, key_bytes, make_certificate, make_key
from tests.dashboard.conftest import Site, Watch, login, snapshot
from tests.receiver import Receiver
from tests.servers import free_port

PASSWORD = "a long password for tests"


def _token(site: Site) -> str:
    answer = httpx2.post(
        f"{site.base_url}/api/v1/auth/token",
        data={"username": site.email, "password": site.password},
    )
    assert answer.status_code == 200, answer.text
    token: str = answer.json()["access_token"]
    return token


@pytest.fixture
def api(site: Site) -> Iterator[httpx2.Client]:
    """The demo admin's API client, for setting up what a test does not do in the page."""
    headers = {"Authorization": f"Bearer {_token(site)}"}
    with httpx2.Client(base_url=f"{site.base_url}/api/v1", headers=headers) as client:
        yield client


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    target = Receiver(free_port())
    target.up()
    yield target
    target.down()


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid4().hex[:8]}.example.com"


def _new_user(api: httpx2.Client, name: str) -> dict[str, Any]:
    email = f"{uuid4().hex[:10]}@example.com"
    made = api.post("/users", json={"name": name, "email": email, "password": PASSWORD})
    assert made.status_code == 201, made.text
    user: dict[str, Any] = made.json()
    return user


def _upload(
    page: Page, tmp_path: Path, common_name: str, days: int, *, other_key: bool = False
) -> None:
    """Choose a PEM certificate and a PEM key file in the form and press Upload."""
    pem, key = make_certificate("ec", days, common_name)
    cert_file = tmp_path / f"{common_name}.pem"
    key_file = tmp_path / f"{common_name}.key"
    cert_file.write_text(pem)
    key_file.write_bytes(key_bytes(make_key("ec", 1) if other_key else key, "pkcs8-pem"))
    page.get_by_label("Certificate (PEM file)").set_input_files(cert_file)
    page.get_by_label("Private key file (PEM or DER)").set_input_files(key_file)
    page.get_by_role("button", name="Upload certificate").click()


def _row(page: Page, text: str) -> Locator:
    return page.get_by_role("row").filter(has_text=text)


def _wait_for(what: str, found: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not found():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.1)


def _events_for(receiver: Receiver, certificate_id: int) -> list[str]:
    with receiver.lock:
        bodies = [r.json() for r in receiver.received]
    return [b["type"] for b in bodies if b["data"]["id"] == certificate_id]


def _certificate_id(api: httpx2.Client, user_id: int, common_name: str) -> int:
    found = api.get(f"/users/{user_id}/certificates", params={"search": common_name}).json()
    assert found["total"] == 1, found
    certificate_id: int = found["items"][0]["id"]
    return certificate_id


def _my_id(api: httpx2.Client) -> int:
    user_id: int = api.get("/auth/session").json()["user"]["id"]
    return user_id


def test_my_certificates_show_their_expiry_and_mark_those_expiring_soon_or_expired(
    page: Page, site: Site, api: httpx2.Client, tmp_path: Path
) -> None:
    user = _new_user(api, "Cert Holder")
    login(page, site, user["email"], PASSWORD)
    page.get_by_role("link", name="Certificates", exact=True).click()
    expect(page.get_by_role("heading", name="My certificates", level=1)).to_be_visible()
    expect(page.get_by_text("You have no certificates yet.")).to_be_visible()
    expect(page.get_by_label("Whose certificates")).to_have_count(0)  # not an admin
    expect(page.get_by_role("link", name="Webhooks", exact=True)).to_have_count(0)
    fine, soon, past = _unique("fine"), _unique("soon"), _unique("past")
    for name, days in ((fine, 200), (soon, 12), (past, -5)):
        _upload(page, tmp_path, name, days)
        expect(page.get_by_text(f"Uploaded CN={name}.")).to_be_visible()
        expect(_row(page, name)).to_be_visible()
    expect(_row(page, fine)).to_contain_text("in 200 days")
    expect(_row(page, fine).locator(".badge.warn, .badge.bad")).to_have_count(0)
    expect(_row(page, soon).locator(".badge.warn")).to_have_text("expires soon")
    expect(_row(page, soon)).to_contain_text("in 12 days")
    expect(_row(page, past).locator(".badge.bad")).to_have_text("expired")
    expect(_row(page, past)).to_contain_text("5 days ago")
    # Soonest expiry first: the expired one, then the one that expires soon.
    rows = page.locator("tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.nth(0)).to_contain_text(past)
    expect(rows.nth(2)).to_contain_text(fine)
    expect(page.locator(".stat").filter(has_text="Expired")).to_contain_text("1")
    expect(page.locator("main")).not_to_contain_text("null")
    snapshot(page, "certificates-list")


def test_an_admin_picks_a_user_and_sees_their_certificates(
    page: Page, site: Site, api: httpx2.Client
) -> None:
    user = _new_user(api, f"Picked {uuid4().hex[:6]}")
    theirs = _unique("theirs")
    pem, key = make_certificate("ec", 90, theirs)
    made = api.post(
        f"/users/{user['id']}/certificates",
        json={"body": pem, "private_key": encode_key(key, "pkcs8-der")},
    )
    assert made.status_code == 201, made.text
    login(page, site)
    page.get_by_role("link", name="Certificates", exact=True).click()
    expect(page.get_by_role("heading", name="My certificates", level=1)).to_be_visible()
    expect(_row(page, "api.example.com")).to_be_visible()  # the demo admin's own
    page.get_by_label("Whose certificates").select_option(label=f"{user['name']} ({user['email']})")
    expect(page.get_by_role("heading", name=f"Certificates of {user['name']}")).to_be_visible()
    expect(_row(page, theirs)).to_contain_text("in 90 days")
    expect(_row(page, "api.example.com")).to_have_count(0)
    expect(
        page.get_by_role("heading", name=f"Upload a certificate for {user['name']}")
    ).to_be_visible()


def test_upload_a_pem_file_and_its_key_file(
    page: Page, site: Site, api: httpx2.Client, tmp_path: Path, watch: Watch
) -> None:
    user = _new_user(api, "Uploader")
    login(page, site, user["email"], PASSWORD)
    page.goto("/#/certificates")
    name = _unique("upload")
    _upload(page, tmp_path, name, 60, other_key=True)  # a key that is not this certificate's
    # The API's detail, said once (its field error says the same words).
    expect(page.get_by_role("alert")).to_have_text("private key does not match the certificate")
    expect(page.get_by_text("You have no certificates yet.")).to_be_visible()
    # Offline: said in words, and nothing is stored.
    watch.expected += ["/certificates", "ERR_INTERNET_DISCONNECTED"]
    page.context.set_offline(True)
    _upload(page, tmp_path, name, 60)
    expect(page.get_by_role("alert")).to_have_text(
        "The server cannot be reached. Check your connection and try again."
    )
    page.context.set_offline(False)
    _upload(page, tmp_path, name, 60)
    expect(page.get_by_text(f"Uploaded CN={name}. It expires")).to_be_visible()
    expect(_row(page, name)).to_contain_text("Matches")
    expect(_row(page, name)).to_contain_text("Inactive")
    stored = api.get(f"/users/{user['id']}/certificates").json()["items"]
    assert [c["subject"] for c in stored] == [f"CN={name}"]
    assert stored[0]["key_matches"] is True
    assert "private_key" not in stored[0]


def test_activate_and_deactivate_with_and_without_notify(
    page: Page, site: Site, api: httpx2.Client, tmp_path: Path, receiver: Receiver
) -> None:
    # Only deactivations: an activation with notify then has no one to tell, and says so.
    # (This file's tests each delete their endpoints, so no other one takes it.)
    events = ["certificate.deactivated"]
    endpoint = api.post("/webhooks", json={"url": receiver.url, "events": events})
    assert endpoint.status_code == 201, endpoint.text
    try:
        login(page, site)
        page.get_by_role("link", name="Certificates", exact=True).click()
        name = _unique("toggle")
        _upload(page, tmp_path, name, 300)
        expect(_row(page, name)).to_contain_text("Inactive")
        me = _my_id(api)
        certificate_id = _certificate_id(api, me, name)

        notify = page.get_by_label("Notify the webhook receivers when I activate or deactivate")
        notify.uncheck()
        page.get_by_role("button", name=f"Activate CN={name}").click()
        expect(page.get_by_role("status").first).to_contain_text(
            f"Activated CN={name}. No notification was sent."
        )
        expect(_row(page, name).locator(".badge.ok")).to_have_text("Active")

        notify.check()
        page.get_by_role("button", name=f"Deactivate CN={name}").click()
        expect(page.get_by_text(f"Deactivated CN={name}. The webhook endpoints")).to_be_visible()
        expect(_row(page, name)).to_contain_text("Inactive")
        _wait_for("the deactivation event", lambda: bool(_events_for(receiver, certificate_id)))
        # Events go out in order, so the activation without notify would have come first.
        assert _events_for(receiver, certificate_id) == ["certificate.deactivated"]
        assert receiver.received[-1].verifies(endpoint.json()["secret"])
        assert api.get(f"/users/{me}/certificates/{certificate_id}").json()["active"] is False

        page.get_by_role("button", name=f"Activate CN={name}").click()
        expect(
            page.get_by_text(
                f"Activated CN={name}. No webhook endpoint takes certificate.activated,"
                " so no one was told."
            )
        ).to_be_visible()
        assert _events_for(receiver, certificate_id) == ["certificate.deactivated"]
    finally:
        api.delete(f"/webhooks/{endpoint.json()['id']}")


def _deliveries_row(page: Page, event_id: str) -> Locator:
    return page.locator("tbody tr").filter(has_text=event_id)


def test_a_webhook_delivery_is_shown_after_the_local_receiver_gets_it(
    page: Page, site: Site, api: httpx2.Client, tmp_path: Path, receiver: Receiver
) -> None:
    login(page, site)
    page.get_by_role("link", name="Certificates", exact=True).click()
    page.get_by_role("link", name="Webhooks", exact=True).click()
    expect(page.get_by_role("heading", name="Webhooks", level=1)).to_be_visible()
    page.get_by_label("Receiver URL").fill(receiver.url)
    page.get_by_label("Description (optional)").fill("Dashboard test receiver")
    page.get_by_label("Every event").uncheck()
    page.get_by_label("certificate.activated").check()
    page.get_by_role("button", name="Add endpoint").click()
    expect(page.get_by_role("heading", name="Signing secret: copy it now")).to_be_visible()
    expect(page.get_by_text("Copy it now: this is the signing secret")).to_be_visible()
    secret = page.get_by_label("Signing secret", exact=True).input_value()
    assert secret.startswith("whsec_")
    endpoint_row = page.locator("tbody tr").filter(has_text=receiver.url)
    expect(endpoint_row).to_contain_text("certificate.activated")
    expect(page.get_by_text("No deliveries yet.")).to_be_visible()
    endpoint_id = next(
        e["id"] for e in api.get("/webhooks").json()["items"] if e["url"] == receiver.url
    )
    try:
        # The event: a certificate activated with notify, in the page.
        page.get_by_role("link", name="Certificates", exact=True).first.click()
        name = _unique("hooked")
        _upload(page, tmp_path, name, 120)
        expect(_row(page, name)).to_be_visible()
        page.get_by_label("Notify the webhook receivers when I activate or deactivate").check()
        page.get_by_role("button", name=f"Activate CN={name}").click()
        expect(_row(page, name).locator(".badge.ok")).to_have_text("Active")
        certificate_id = _certificate_id(api, _my_id(api), name)
        _wait_for(
            "the receiver to get the event", lambda: bool(_events_for(receiver, certificate_id))
        )
        got = next(r for r in receiver.received if r.json()["data"]["id"] == certificate_id)
        assert got.verifies(secret)  # the secret the page showed signs the delivery

        page.get_by_role("link", name="Webhooks", exact=True).click()
        delivery = _deliveries_row(page, got.message_id)
        expect(delivery).to_contain_text("certificate.activated")
        expect(delivery.locator(".badge")).to_have_text("delivered")  # polled while pending
        expect(delivery).to_contain_text("HTTP 200")
        expect(page.get_by_label("Signing secret", exact=True)).to_have_count(0)  # shown only once
        assert secret not in page.content()
        snapshot(page, "certificates-webhooks")
    finally:
        api.delete(f"/webhooks/{endpoint_id}")


def test_a_failed_delivery_is_retried_from_the_page(
    page: Page, site: Site, api: httpx2.Client, receiver: Receiver
) -> None:
    receiver.answer(400)  # refused once (not retried by itself), then 200
    made = api.post(
        "/webhooks",
        json={"url": receiver.url, "events": ["certificate.deactivated"], "description": "retry"},
    )
    assert made.status_code == 201, made.text
    endpoint_id = made.json()["id"]
    try:
        me = _my_id(api)
        name = _unique("retry")
        pem, key = make_certificate("ec", 45, name)
        created = api.post(
            f"/users/{me}/certificates",
            json={"body": pem, "private_key": encode_key(key, "pkcs8-der"), "active": True},
        )
        assert created.status_code == 201, created.text
        changed = api.patch(
            f"/users/{me}/certificates/{created.json()['id']}/active",
            json={"active": False, "notify": True},
        )
        assert changed.status_code == 202, changed.text
        _wait_for("the refused delivery", lambda: len(receiver.ids()) == 1)
        event_id = receiver.ids()[0]

        login(page, site)
        page.goto(f"/#/certificates/webhooks?endpoint={endpoint_id}")
        delivery = _deliveries_row(page, event_id)
        expect(delivery.locator(".badge")).to_have_text("failed")
        expect(delivery).to_contain_text("HTTP 400")
        page.get_by_label("Status").select_option("failed")
        expect(_deliveries_row(page, event_id)).to_be_visible()
        page.get_by_label("Status").select_option("")
        page.get_by_role("button", name="Retry delivery").click()
        expect(page.get_by_text("is queued to be sent again.")).to_be_visible()
        _wait_for("the retried delivery", lambda: len(receiver.ids()) == 2)
        assert receiver.ids() == [event_id, event_id]  # the same webhook-id on a retry
        delivery = _deliveries_row(page, event_id)
        expect(delivery.locator(".badge")).to_have_text("delivered")
        expect(delivery).to_contain_text("HTTP 200")
        expect(delivery.get_by_role("button", name="Retry delivery")).to_have_count(0)
    finally:
        api.delete(f"/webhooks/{endpoint_id}")
