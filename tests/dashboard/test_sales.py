"""The sales section of the dashboard (issue 11): a product's units over the past N days with
a per-day chart, the best sellers over a window, the ingested days and files, and a day's
upload with a progress bar, checked against the API's own answers."""

from __future__ import annotations

import datetime as dt
import gzip
import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import orjson
import pytest
from playwright.sync_api import Locator, Page, expect

from tests.dashboard.conftest import Site, login, snapshot

DASH = "\N{EN DASH}"  # in the pager's ranges ("1-20 of 30", with an en dash)


@pytest.fixture
def api(site: Site) -> Iterator[httpx2.Client]:
    """The API as a script sees it: a bearer token from the password grant."""
    answer = httpx2.post(
        f"{site.base_url}/api/v1/auth/token",
        data={"username": site.email, "password": site.password},
    )
    answer.raise_for_status()
    headers = {"Authorization": f"Bearer {answer.json()['access_token']}"}
    with httpx2.Client(base_url=f"{site.base_url}/api/v1", headers=headers) as client:
        yield client


def get(api: httpx2.Client, path: str, **params: Any) -> Any:
    answer = api.get(path, params=params)
    assert answer.status_code == 200, answer.text
    return answer.json()


def drawn(chart: Locator) -> dict[str, Any]:
    """What Chart.js drew on the canvas: its labels and bar values."""
    data: dict[str, Any] = chart.evaluate(
        "c => { const d = Chart.getChart(c).data;"
        " return {labels: d.labels, values: d.datasets[0].data}; }"
    )
    return data


def latest_day(api: httpx2.Client) -> dt.date:
    return dt.date.fromisoformat(get(api, "/sales/days", limit=1)["items"][0]["date"])


def open_sales(page: Page, site: Site, tab: str) -> None:
    login(page, site)
    # The first page (CRM) renders fully first: the shell does not drop a render it has left.
    expect(page.locator("main h1")).to_be_visible()
    expect(page.locator("main .loading")).to_have_count(0)
    page.get_by_role("link", name="Sales").click()
    page.get_by_role("navigation", name="Sales pages").get_by_role("link", name=tab).click()
    expect(page.get_by_role("link", name=tab)).to_have_attribute("aria-current", "page")


def test_product_lookup_shows_the_units_of_the_past_n_days_with_a_chart(
    page: Page, site: Site, api: httpx2.Client
) -> None:
    expected = get(api, "/sales/products/1", days=10)
    open_sales(page, site, "Product lookup")
    expect(page.get_by_role("heading", name="Sales: product lookup", level=1)).to_be_visible()
    page.get_by_label("Product id").fill("1")
    page.get_by_label("Days").fill("10")
    page.get_by_role("button", name="Look up").click()

    window = f"{expected['from']} to {expected['to']}"
    expect(page.get_by_role("heading", name=f"Product 1, {window}")).to_be_visible()
    assert expected["total"] > 0  # the demo's product 1 is its best seller
    expect(page.get_by_test_id("sales-total")).to_have_text(f"{expected['total']:,}")
    chart = page.get_by_role("img", name="Bar chart: units of product 1 sold per day")
    expect(chart).to_be_visible()
    expect(chart).to_have_attribute("aria-label", re.compile(f"{expected['total']:,} in all"))
    bars = drawn(chart)
    assert bars["values"] == [d["units"] for d in expected["by_day"]]
    assert len(bars["labels"]) == 10
    # The same numbers in words, for screen readers.
    page.get_by_text("The numbers, day by day").click()
    rows = page.get_by_role("table", name=f"Units of product 1 per day, {window}").locator(
        "tbody tr"
    )
    expect(rows).to_have_count(10)
    last = expected["by_day"][-1]
    expect(rows.last).to_contain_text(last["date"])
    expect(rows.last).to_contain_text(f"{last['units']:,}")
    assert "/#/sales?product=1&days=10" in page.url  # the lookup can be bookmarked
    snapshot(page, "sales-product")

    # One product on one day (the seed's productsoldbyday).
    day = expected["by_day"][3]
    one = get(api, f"/sales/products/1/days/{day['date']}")
    page.get_by_label("Day", exact=True).fill(day["date"])
    page.get_by_role("button", name="Units on this day").click()
    expect(page.get_by_role("status").filter(has_text="Product 1 sold")).to_contain_text(
        f"Product 1 sold {one['units']:,} units on {day['date']}"
    )


def test_a_window_without_data_and_a_refused_window_are_said_in_words(
    page: Page, site: Site
) -> None:
    login(page, site)
    page.goto("/#/sales?product=1&days=3&to=2001-01-03")
    expect(
        page.get_by_text("No sales file covers this window: the counts are zeros.")
    ).to_be_visible()
    expect(page.get_by_test_id("sales-total")).to_have_text("0")
    # Past what the form lets through, the API's own words.
    page.goto("/#/sales?product=1&days=5000")
    expect(page.get_by_role("alert")).to_contain_text("3660")


def test_top_products_over_a_window_match_the_api_and_lead_to_their_lookup(
    page: Page, site: Site, api: httpx2.Client
) -> None:
    expected = get(api, "/sales/top", days=30, limit=5)
    open_sales(page, site, "Top products")
    page.get_by_label("Days").fill("30")
    page.get_by_label("How many products").fill("5")
    page.get_by_role("button", name="Show").click()

    window = f"{expected['from']} to {expected['to']}"
    expect(page.get_by_role("heading", name=f"Top 5 products, {window} (30 days)")).to_be_visible()
    rows = page.get_by_role("table", name=f"Best sellers, {window}").locator("tbody tr")
    expect(rows).to_have_count(5)
    for row, item in zip(rows.all(), expected["items"], strict=True):
        expect(row).to_contain_text(f"Product {item['product_id']}")
        expect(row).to_contain_text(f"{item['units']:,}")
    chart = page.get_by_role("img", name="Bar chart: the 5 best-selling products")
    assert drawn(chart)["values"] == [item["units"] for item in expected["items"]]
    snapshot(page, "sales-top")

    first = expected["items"][0]
    rows.first.get_by_role("link", name=f"Product {first['product_id']}").click()
    heading = f"Product {first['product_id']}, {window}"
    expect(page.get_by_role("heading", name=heading)).to_be_visible()
    expect(page.get_by_test_id("sales-total")).to_have_text(f"{first['units']:,}")


def test_the_ingested_days_and_files_are_listed(page: Page, site: Site, api: httpx2.Client) -> None:
    days = get(api, "/sales/days", limit=20)
    files = get(api, "/sales/files", limit=20, ordering="-id")
    open_sales(page, site, "Days and files")
    expect(page.get_by_role("heading", name="Sales: days and files", level=1)).to_be_visible()

    day_rows = page.get_by_role("table", name="The days with sales, newest first").locator(
        "tbody tr"
    )
    expect(day_rows).to_have_count(len(days["items"]))
    newest = days["items"][0]
    expect(day_rows.first).to_contain_text(newest["date"])
    expect(day_rows.first).to_contain_text(f"{newest['units']:,}")
    expect(day_rows.first).to_contain_text(newest["files"][0]["name"])
    assert days["total"] > 20  # the demo's 30 days: a second page
    days_pages = page.get_by_role("navigation", name="Pages of days")
    expect(days_pages).to_contain_text(f"1{DASH}20 of {days['total']}")
    ledger = page.get_by_role("table", name="The ledger of ingested files, newest first")
    file_rows = ledger.locator("tbody tr")
    expect(file_rows).to_have_count(len(files["items"]))
    top = files["items"][0]
    expect(file_rows.first).to_contain_text(top["name"])
    expect(file_rows.first).to_contain_text("current")
    # The demo's files have three bad lines each: their reasons, by line number.
    bad = top["bad_line_sample"][0]
    file_rows.first.get_by_text(str(top["bad_lines"]), exact=True).click()
    expect(file_rows.first).to_contain_text(f"line {bad['line']}: {bad['reason']}")
    snapshot(page, "sales-files")

    # The older days, on the next page.
    days_pages.get_by_role("button", name="Next").click()
    expect(days_pages).to_contain_text(f"21{DASH}{min(40, days['total'])} of {days['total']}")
    oldest = get(api, "/sales/days", limit=20, offset=20)["items"][-1]
    expect(day_rows.last).to_contain_text(oldest["date"])
    replaced = get(api, "/sales/files", current="false")
    page.get_by_label("Show").select_option(label="Replaced files")
    if replaced["total"] == 0:
        expect(page.get_by_text("No file has been replaced.")).to_be_visible()
    else:
        expect(ledger.locator("tbody tr")).to_have_count(min(20, replaced["total"]))


def day_file(day: dt.date, product: int, folder: Path) -> tuple[Path, int, int, int]:
    """A day's file in the demo's format, named as the seed names them: its path, the units of
    `product` in it, its transactions and all its units."""
    rng = random.Random(day.toordinal())  # test data, the same for a day
    lines, mine, units = [], 0, 0
    for _ in range(6000):  # ~300 kB: enough for the upload to report progress
        products = rng.choices(range(1, 251), k=rng.randint(1, 4))
        if rng.random() < 0.05:
            products.append(product)
        mine += products.count(product)
        units += len(products)
        lines.append(orjson.dumps({"id": rng.randint(1, 20_000), "products": products}))
    path = folder / f"{day:%Y%m%d}_transactions.json"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path, mine, len(lines), units


def test_a_sales_upload_shows_its_progress_and_report_and_the_chart_that_follows(
    page: Page, site: Site, api: httpx2.Client, tmp_path: Path
) -> None:
    latest = latest_day(api)
    day = latest + dt.timedelta(days=1)  # a new day, so "the past 7 days" now end with it
    product = 7
    before = get(api, f"/sales/products/{product}", days=6, to=latest.isoformat())["total"]
    path, mine, transactions, units = day_file(day, product, tmp_path)
    assert mine > 0

    open_sales(page, site, "Days and files")
    page.get_by_label("Daily file (JSON lines)").set_input_files(path)
    expect(page.get_by_label("Day of the sales")).to_have_value(day.isoformat())  # from the name
    page.get_by_role("button", name="Upload").click()
    progress = page.get_by_role("progressbar", name="Upload progress")
    expect(progress).to_have_js_property("value", 1)
    expect(page.locator("#sales-progress-text")).to_have_text("Done")
    expect(page.get_by_role("status").filter(has_text="Ingested")).to_have_text(
        f"Ingested {day}: {units:,} units in {transactions:,} transactions."
    )
    expect(page.locator(".sales-facts")).to_contain_text(path.name)
    expect(page.locator(".sales-facts")).to_contain_text(f"upload-{day}.json")  # the ledger's name
    # The new day heads the list of days, marked new, with its file.
    first_day = page.get_by_role("table", name="The days with sales, newest first")
    expect(first_day.locator("tbody tr").first).to_contain_text(f"{day}")
    expect(first_day.locator("tbody tr").first).to_contain_text("new")
    expect(first_day.locator("tbody tr").first).to_contain_text(f"{units:,}")
    recorded = get(api, "/sales/files", day=day.isoformat())
    assert recorded["total"] == 1
    assert recorded["items"][0]["transactions"] == transactions

    page.get_by_role("link", name="Product lookup").click()
    page.get_by_label("Product id").fill(str(product))
    page.get_by_label("Days").fill("7")
    page.get_by_role("button", name="Look up").click()
    start = day - dt.timedelta(days=6)
    expect(page.get_by_role("heading", name=f"Product {product}, {start} to {day}")).to_be_visible()
    expect(page.get_by_test_id("sales-total")).to_have_text(f"{before + mine:,}")
    bars = drawn(page.get_by_role("img", name=f"Bar chart: units of product {product}"))
    assert len(bars["values"]) == 7
    assert bars["values"][-1] == mine


def test_a_bad_file_is_refused_in_words_and_nothing_is_ingested(
    page: Page, site: Site, api: httpx2.Client, tmp_path: Path
) -> None:
    day = latest_day(api) - dt.timedelta(days=400)  # before the demo's days: not ingested
    bad = tmp_path / "export.json"
    bad.write_text("this is not JSON\nnor is this\n")
    open_sales(page, site, "Days and files")
    page.get_by_label("Daily file (JSON lines)").set_input_files(bad)
    page.get_by_label("Day of the sales").fill(day.isoformat())
    page.get_by_role("button", name="Upload").click()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("2 of 2 lines are bad")
    expect(alert).to_contain_text("nothing was ingested")
    expect(alert).to_contain_text("1 (not JSON)")
    expect(page.locator("#sales-progress-text")).to_have_text("Failed")
    assert get(api, "/sales/files", day=day.isoformat())["total"] == 0
    assert day.isoformat() not in [d["date"] for d in get(api, "/sales/days", limit=500)["items"]]

    # A second file for a day that has one: the API's words, and the way out.
    taken = tmp_path / "again.json"
    taken.write_text('{"id": 1, "products": [1]}\n')
    page.get_by_label("Daily file (JSON lines)").set_input_files(taken)
    page.get_by_label("Day of the sales").fill(latest_day(api).isoformat())
    page.get_by_role("button", name="Upload").click()
    expect(page.get_by_role("alert")).to_contain_text("already has a file")
    expect(page.get_by_role("alert")).to_contain_text("replace=true")


def test_a_gzipped_daily_file_is_sent_as_it_is(
    page: Page, site: Site, api: httpx2.Client, tmp_path: Path
) -> None:
    day = latest_day(api) - dt.timedelta(days=500)  # before the demo's days: not ingested
    plain, mine, transactions, units = day_file(day, 9, tmp_path)
    packed = plain.with_name(plain.name + ".gz")
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    open_sales(page, site, "Days and files")
    page.get_by_label("Daily file (JSON lines)").set_input_files(packed)
    expect(page.get_by_label("Day of the sales")).to_have_value(day.isoformat())
    with page.expect_request(lambda r: "/sales/files" in r.url and r.method == "POST") as sent:
        page.get_by_role("button", name="Upload").click()
    assert sent.value.headers["content-encoding"] == "gzip"
    expect(page.get_by_role("status").filter(has_text="Ingested")).to_have_text(
        f"Ingested {day}: {units:,} units in {transactions:,} transactions."
    )
    recorded = get(api, "/sales/files", day=day.isoformat())["items"]
    assert [f["name"] for f in recorded] == [f"upload-{day}.json.gz"]
    assert get(api, "/sales/products/9", days=1, to=day.isoformat())["total"] == mine
