"""The CRM in the dashboard (issue 11): the customers table, a customer's page with notes and
the edit form, the version-conflict message across two browsers, and the companies."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx2
from playwright.sync_api import Browser, Page, expect

from tests.dashboard.conftest import WIDE, Site, Watch, login, snapshot, watched

CONFLICT = "This was changed by someone else since you opened it."


@contextmanager
def api(site: Site) -> Iterator[httpx2.Client]:
    """The public API as the demo admin, to make each test's own data."""
    token = httpx2.post(
        f"{site.base_url}/api/v1/auth/token",
        data={"username": site.email, "password": site.password},
    ).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    with httpx2.Client(base_url=f"{site.base_url}/api/v1", headers=headers) as client:
        yield client


def made(answer: httpx2.Response) -> dict[str, Any]:
    assert answer.status_code in (200, 201), answer.text
    body: dict[str, Any] = answer.json()
    return body


def tag() -> str:
    return uuid.uuid4().hex[:8]


def customer(client: httpx2.Client, company_id: int, first: str, last: str, status: str) -> int:
    body = {"first_name": first, "last_name": last, "status": status, "company_id": company_id}
    return int(made(client.post("/customers", json=body))["id"])


def test_the_customers_table_filters_searches_sorts_and_pages_through_the_api(
    page: Page, site: Site
) -> None:
    t = tag()
    with api(site) as client:
        company = made(client.post("/companies", json={"name": f"Filter Co {t}"}))
        customer(client, company["id"], "Ada", f"Aardvark{t}", "active")
        customer(client, company["id"], "Cy", f"Moose{t}", "active")
        customer(client, company["id"], "Bob", f"Zebra{t}", "prospective")
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if "/api/v1/customers" in r.url else None)
    login(page, site)  # the landing page is the customers table
    expect(page.get_by_role("heading", level=1)).to_have_text("Customers")
    rows = page.locator("table tbody tr")
    expect(rows).to_have_count(25)
    pages = page.locator(".pager-text")
    expect(pages).to_contain_text(re.compile(r"1\u201325 of [\d,]+ customers · page 1 of \d+"))
    expect(page.locator("th[aria-sort=ascending]")).to_have_text(re.compile("Last name"))
    snapshot(page, "crm-customers")

    page.get_by_role("navigation", name="Pages of customers").get_by_role(
        "button", name="Next"
    ).click()
    expect(pages).to_contain_text(re.compile(r"26\u201350 of [\d,]+ customers · page 2 of"))
    expect(page).to_have_url(re.compile(r"#/crm\?offset=25$"))
    # The page is the API's: one page of 25 was asked for, not the whole list.
    assert all("limit=25" in url for url in asked), asked
    assert any("offset=25" in url for url in asked), asked

    page.get_by_label("Company", exact=True).select_option(label=f"Filter Co {t}")
    expect(rows).to_have_count(3)
    expect(pages).to_contain_text("1\u20133 of 3 customers")  # a new filter starts at page 1
    expect(rows.first).to_contain_text(f"Aardvark{t}")
    expect(rows.first).to_contain_text(f"Filter Co {t}")
    page.get_by_label("Status").select_option("active")
    expect(rows).to_have_count(2)
    assert f"company_id={company['id']}" in asked[-1]
    assert "status=active" in asked[-1]

    page.get_by_role("button", name="Last name").click()  # ascending already: now descending
    expect(page.locator("th[aria-sort=descending]")).to_have_text(re.compile("Last name"))
    expect(rows.first).to_contain_text(f"Moose{t}")
    expect(rows.nth(1)).to_contain_text(f"Aardvark{t}")
    assert "ordering=-last_name" in asked[-1]
    expect(page.get_by_role("button", name="Last name")).to_be_focused()
    page.get_by_role("button", name="First name").click()
    expect(rows.first).to_contain_text("Ada")

    page.get_by_role("button", name="Clear").click()
    expect(rows).to_have_count(25)
    page.get_by_label("Search names").fill(f"zebra{t}")
    page.get_by_role("button", name="Search").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(f"Zebra{t}")
    expect(rows.first).to_contain_text("prospective")
    assert f"search=zebra{t}" in asked[-1]
    page.get_by_label("Search names").fill(f"nobody{t}")
    page.get_by_label("Search names").press("Enter")
    expect(page.get_by_text("No customers match these filters.")).to_be_visible()

    page.go_back()  # the address kept each step
    expect(rows).to_have_count(1)
    expect(page.get_by_label("Search names")).to_have_value(f"zebra{t}")


def test_a_customer_page_shows_their_notes_adds_one_and_edits_the_customer(
    page: Page, site: Site
) -> None:
    t = tag()
    with api(site) as client:
        company = made(client.post("/companies", json={"name": f"Notes Co {t}"}))
        other = made(client.post("/companies", json={"name": f"Other Co {t}"}))
        cid = customer(client, company["id"], "Grace", f"Hopper{t}", "prospective")
        made(client.post(f"/customers/{cid}/notes", json={"text": f"Met at the fair {t}."}))
    login(page, site)
    page.get_by_label("Search names").fill(f"Hopper{t}")
    page.get_by_role("button", name="Search").click()
    page.get_by_role("link", name=f"Grace Hopper{t}").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Grace Hopper{t}")
    expect(page.locator(".crm-facts")).to_contain_text(f"Notes Co {t}")
    notes = page.locator(".crm-note")
    expect(notes).to_have_count(1)
    expect(notes.first).to_contain_text(f"Met at the fair {t}.")
    expect(page.get_by_text("1 note, newest first.")).to_be_visible()
    snapshot(page, "crm-customer")

    page.get_by_label("New note").fill(f"Called back {t}:\nwants a quote.")
    page.get_by_role("button", name="Add note").click()
    expect(page.get_by_text("Note added.")).to_be_visible()
    expect(notes).to_have_count(2)
    expect(notes.first).to_contain_text(f"Called back {t}:")
    expect(page.get_by_text("2 notes, newest first.")).to_be_visible()
    expect(page.get_by_label("New note")).to_have_value("")

    page.get_by_label("Last name").fill(f"Hopper-Murray{t}")
    page.get_by_label("Status").select_option("active")
    page.get_by_label("Company", exact=True).select_option(label=f"Other Co {t}")
    page.get_by_role("button", name="Save changes").click()
    expect(page.get_by_text("Saved.")).to_be_visible()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Grace Hopper-Murray{t}")
    expect(page.locator(".crm-facts")).to_contain_text("active")
    expect(page.locator(".crm-facts")).to_contain_text(f"Other Co {t}")

    page.reload()  # both changes are the server's, not only the page's
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Grace Hopper-Murray{t}")
    expect(notes).to_have_count(2)
    expect(notes.first).to_contain_text("wants a quote.")
    with api(site) as client:
        saved = made(client.get(f"/customers/{cid}"))
    assert (saved["last_name"], saved["status"], saved["company_id"], saved["version"]) == (
        f"Hopper-Murray{t}",
        "active",
        other["id"],
        2,
    )


def test_a_version_conflict_between_two_browsers_says_so_and_reload_recovers(
    page: Page, site: Site, browser: Browser, watch: Watch
) -> None:
    t = tag()
    with api(site) as client:
        company = made(client.post("/companies", json={"name": f"Conflict Co {t}"}))
        cid = customer(client, company["id"], "Alan", f"Turing{t}", "active")
    second_context = browser.new_context(base_url=site.base_url, viewport=WIDE)
    second = watched(second_context.new_page(), watch)
    try:
        for tab in (page, second):
            login(tab, site)
            tab.goto(f"/#/crm/customers/{cid}")
            expect(tab.get_by_label("Last name")).to_have_value(f"Turing{t}")

        page.get_by_label("Last name").fill(f"First{t}")
        page.get_by_role("button", name="Save changes").click()
        expect(page.get_by_text("Saved.")).to_be_visible()

        second.get_by_label("First name").fill("Second")
        second.get_by_role("button", name="Save changes").click()
        alert = second.get_by_role("alert")
        expect(alert).to_contain_text(CONFLICT)
        expect(alert).not_to_contain_text("412")
        expect(alert).not_to_contain_text("Precondition")
        expect(second.get_by_role("heading", level=1)).to_have_text(f"Alan Turing{t}")

        second.get_by_role("button", name="Reload").click()
        expect(second.get_by_label("Last name")).to_have_value(f"First{t}")
        expect(second.get_by_label("First name")).to_have_value("Alan")
        expect(second.get_by_role("heading", level=1)).to_have_text(f"Alan First{t}")
        expect(second.get_by_text(CONFLICT)).to_have_count(0)
        second.get_by_label("First name").fill("Second")
        second.get_by_role("button", name="Save changes").click()
        expect(second.get_by_text("Saved.")).to_be_visible()
        expect(second.get_by_role("heading", level=1)).to_have_text(f"Second First{t}")
    finally:
        second_context.close()
    with api(site) as client:
        saved = made(client.get(f"/customers/{cid}"))
    assert (saved["first_name"], saved["last_name"], saved["version"]) == ("Second", f"First{t}", 3)


def test_companies_are_created_and_renamed(page: Page, site: Site) -> None:
    t = tag()
    login(page, site)
    page.get_by_role("navigation", name="CRM").get_by_role("link", name="Companies").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Companies")
    page.get_by_label("Company name").fill(f"Harbour {t}")
    page.get_by_role("button", name="Create company").click()
    expect(page.get_by_text(f"Created “Harbour {t}”.")).to_be_visible()
    rows = page.locator("table tbody tr")
    expect(rows.first).to_contain_text(f"Harbour {t}")  # newest first after a create
    snapshot(page, "crm-companies")

    page.get_by_role("button", name=f"Rename Harbour {t}").click()
    page.get_by_label("New name").fill(f"Harbour & Sons {t}")
    page.get_by_role("button", name="Save name").click()
    expect(page.get_by_text(f"Renamed “Harbour {t}” to “Harbour & Sons {t}”.")).to_be_visible()
    expect(rows.filter(has_text=f"Harbour & Sons {t}")).to_have_count(1)
    expect(page.get_by_role("button", name=f"Rename Harbour & Sons {t}")).to_be_focused()

    # Names are unique: the API's 409 is said in its words.
    page.get_by_label("Company name").fill(f"Harbour & Sons {t}")
    page.get_by_role("button", name="Create company").click()
    expect(page.get_by_role("alert")).to_have_text(
        f"A company named 'Harbour & Sons {t}' already exists."
    )

    # Renamed meanwhile elsewhere: the plain conflict message, and Reload shows that name.
    with api(site) as client:
        found = made(client.get("/companies", params={"search": f"Harbour & Sons {t}"}))
        (company,) = found["items"]
        made(
            client.patch(
                f"/companies/{company['id']}",
                json={"name": f"Harbour Ltd {t}"},
                headers={"If-Match": f'"{company["version"]}"'},
            )
        )
    page.get_by_role("button", name=f"Rename Harbour & Sons {t}").click()
    page.get_by_label("New name").fill(f"Harbour Brothers {t}")
    page.get_by_role("button", name="Save name").click()
    expect(page.get_by_role("alert")).to_contain_text(CONFLICT)
    page.get_by_role("button", name="Reload").click()
    expect(rows.filter(has_text=f"Harbour Ltd {t}")).to_have_count(1)
    page.get_by_role("button", name=f"Rename Harbour Ltd {t}").click()
    page.get_by_label("New name").fill(f"Harbour Brothers {t}")
    page.get_by_role("button", name="Save name").click()
    renamed = f"Renamed “Harbour Ltd {t}” to “Harbour Brothers {t}”."
    expect(page.get_by_text(renamed)).to_be_visible()
    expect(rows.filter(has_text=f"Harbour Brothers {t}")).to_have_count(1)

    page.get_by_role("link", name=f"Customers of Harbour Brothers {t}").click()
    # The companies page has a "New company" form: exact labels, once the customers page is up.
    expect(page).to_have_url(re.compile(rf"#/crm\?company_id={company['id']}$"))
    expect(page.get_by_label("Company", exact=True)).to_have_value(str(company["id"]))
    expect(page.get_by_text("No customers match these filters.")).to_be_visible()
