"""Logging in and out of the dashboard, sessions that end, and the headers that keep the
page's credentials out of reach of any script (issue 11)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import httpx2
from playwright.sync_api import Page, expect

from tests.dashboard.conftest import Site, login, snapshot
from wharf.dashboard.routes import CSP, STATIC


def test_a_wrong_password_is_said_in_words_and_the_right_one_logs_in(
    page: Page, site: Site
) -> None:
    page.goto("/")
    expect(page.get_by_role("heading", name="Log in to Wharf")).to_be_visible()
    snapshot(page, "login")
    page.get_by_label("Email").fill(site.email)
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_have_text("The email or password is wrong.")
    page.get_by_label("Password").fill(site.password)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_text(f"({site.email})")).to_be_visible()
    expect(page.get_by_role("link", name="CRM", exact=True)).to_have_attribute(
        "aria-current", "page"
    )


def test_log_out_ends_the_session_on_the_server(page: Page, site: Site) -> None:
    login(page, site)
    cookie = next(c for c in page.context.cookies() if c["name"] == "wharf_session")
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("heading", name="Log in to Wharf")).to_be_visible()
    expect(page.get_by_text("You are logged out.")).to_be_visible()
    assert not [c for c in page.context.cookies() if c["name"] == "wharf_session"]
    # The token behind the cookie is revoked, not only forgotten by this browser.
    answer = httpx2.get(
        f"{site.base_url}/api/v1/auth/session",
        headers={"Authorization": f"Bearer {cookie['value']}"},
    )
    assert answer.status_code == 401


def test_a_revoked_session_lands_on_the_login_page_with_a_message(page: Page, site: Site) -> None:
    login(page, site)
    page.wait_for_load_state("networkidle")  # the CRM's first page has loaded: nothing in flight
    cookie = next(c for c in page.context.cookies() if c["name"] == "wharf_session")
    # Ended elsewhere (another tab logging out, or the token revoked through the API).
    ended = httpx2.delete(
        f"{site.base_url}/api/v1/auth/session",
        headers={"Authorization": f"Bearer {cookie['value']}"},
    )
    assert ended.status_code == 204
    # The sales lookup renders a form without calling the API: the page change itself notices.
    page.get_by_role("link", name="Sales", exact=True).click()
    expect(page.get_by_role("heading", name="Log in to Wharf")).to_be_visible()
    expect(page.get_by_text("Your session has expired or was ended")).to_be_visible()
    expect(page.get_by_role("button", name="Log out")).to_be_hidden()
    # And a reload after it still lands on the login page.
    page.reload()
    expect(page.get_by_role("heading", name="Log in to Wharf")).to_be_visible()


def test_the_page_never_holds_the_token(page: Page, site: Site) -> None:
    with page.expect_response(
        lambda r: r.url.endswith("/api/v1/auth/session") and r.request.method == "POST"
    ) as answer:
        login(page, site)
    response = answer.value
    cookie_header = response.header_value("set-cookie") or ""
    assert "HttpOnly" in cookie_header
    assert "SameSite=Strict" in cookie_header
    assert "Secure" not in cookie_header  # plain http here; over TLS it is set
    token = re.search(r"wharf_session=([^;]+)", cookie_header)
    assert token is not None
    assert token.group(1) not in response.text()  # the body has the CSRF value, not the token
    assert page.evaluate("document.cookie") == ""  # HttpOnly: invisible to scripts
    assert page.evaluate("JSON.stringify(localStorage) + JSON.stringify(sessionStorage)") == "{}{}"


def test_the_page_is_sent_with_a_strict_content_security_policy(site: Site) -> None:
    answer = httpx2.get(f"{site.base_url}/")
    assert answer.status_code == 200
    assert answer.headers["content-security-policy"] == CSP
    assert "unsafe-inline" not in CSP
    assert "unsafe-eval" not in CSP
    assert "frame-ancestors 'none'" in CSP
    assert "script-src 'self'" in CSP
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["x-frame-options"] == "DENY"
    assert "<script>" not in answer.text  # no inline script to allow
    assert httpx2.get(f"{site.base_url}/ui/../pyproject.toml").status_code == 404
    assert (
        httpx2.get(f"{site.base_url}/ui/nothing.js")
        .headers["content-type"]
        .startswith("application/problem+json")
    )


def test_changes_with_the_cookie_need_the_csrf_header_and_our_origin(site: Site) -> None:
    with httpx2.Client(base_url=site.base_url) as client:
        answer = client.post(
            "/api/v1/auth/session", data={"username": site.email, "password": site.password}
        )
        assert answer.status_code == 200
        csrf = answer.json()["csrf_token"]
        body = {"name": "Forged Ltd"}
        refused = client.post("/api/v1/companies", json=body)
        assert refused.status_code == 403
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert "X-CSRF-Token" in refused.json()["detail"]
        wrong = client.post("/api/v1/companies", json=body, headers={"X-CSRF-Token": "0" * 64})
        assert wrong.status_code == 403
        foreign = client.post(
            "/api/v1/companies",
            json=body,
            headers={"X-CSRF-Token": csrf, "Origin": "https://evil.example"},
        )
        assert foreign.status_code == 403
        assert "another site" in foreign.json()["detail"]
        made = client.post(
            "/api/v1/companies",
            json={"name": "Cookie Co"},
            headers={"X-CSRF-Token": csrf, "Origin": site.base_url},
        )
        assert made.status_code == 201, made.text
        assert client.get("/api/v1/auth/session").json()["user"]["email"] == site.email
        assert client.delete("/api/v1/auth/session").status_code == 403  # CSRF here too
        assert (
            client.delete("/api/v1/auth/session", headers={"X-CSRF-Token": csrf}).status_code == 204
        )
        assert client.get("/api/v1/auth/session").status_code == 401


def test_the_vendored_chart_library_is_the_one_recorded() -> None:
    vendored = STATIC / "vendor" / "chart.umd.min.js"
    digest = hashlib.sha256(vendored.read_bytes()).hexdigest()
    assert digest in (STATIC / "vendor" / "VENDOR.md").read_text()
    assert Path(STATIC / "vendor" / "chart.js-LICENSE.md").exists()
