"""The car catalog in the dashboard (issue 11): the gallery of `<picture>` thumbnails, the
rendition a phone actually downloads, broken images with their reason, and imports by CSV
upload and by URL with their per-row report."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Locator, Page, Request, ViewportSize, expect

from tests.catalog.imagefixtures import jpeg
from tests.catalog.webserver import Route, WebServer, serving
from tests.dashboard.conftest import NARROW, WIDE, Site, Watch, login, snapshot

IMPORT_TIMEOUT = 60_000  # ms: an import runs in the server's background worker
# Functions, not expressions: the page's CSP forbids eval, which an expression would need.
ALL_SHOWN = (
    "() => [...document.querySelectorAll('.cars-gallery img')]"
    ".every(i => i.complete && i.naturalWidth > 0)"
)
FIRST_SHOWN = "() => document.querySelector('.cars-gallery img')?.naturalWidth > 0"


def _cars(page: Page) -> list[dict[str, Any]]:
    """Every car as the API gives it, read with the page's own session."""
    answer = page.request.get("/api/v1/cars?limit=500")
    assert answer.ok, answer.text()
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


def _open_cars(page: Page, site: Site) -> None:
    login(page, site)
    # The landing page fills <main> once its data came: let it, or it would land over ours.
    expect(page.locator("main h1")).to_be_visible()
    page.get_by_role("link", name="Cars", exact=True).click()
    expect(page.get_by_role("heading", name="Cars", level=1)).to_be_visible()
    expect(page.get_by_role("heading", name=re.compile(r"^Gallery \(\d+ cars?\)$"))).to_be_visible()


def _search(page: Page, text: str) -> None:
    page.get_by_label("Search title and description").fill(text)
    page.get_by_role("button", name="Show").click()


def _card(page: Page, title: str) -> Locator:
    return page.locator(".cars-gallery li").filter(
        has=page.get_by_role("heading", name=title, exact=True)
    )


def _load_every_thumbnail(page: Page) -> None:
    """Scroll down as a person does, so the lazy thumbnails load, and wait for them."""
    page.mouse.wheel(0, 100_000)
    page.wait_for_function(ALL_SHOWN)
    page.mouse.wheel(0, -100_000)


@contextmanager
def _tab(browser: Browser, site: Site, watch: Watch, viewport: ViewportSize) -> Iterator[Page]:
    """A fresh context at `viewport`, at 1x, watched as the `page` fixture watches its own."""
    context = browser.new_context(base_url=site.base_url, viewport=viewport, device_scale_factor=1)
    tab = context.new_page()
    tab.on("console", watch.on_console)
    tab.on("pageerror", lambda exc: watch.console_errors.append(f"uncaught: {exc}"))
    tab.on("requestfailed", watch.on_failed)
    tab.on("response", watch.on_response)
    tab.set_default_timeout(15_000)
    try:
        yield tab
    finally:
        context.close()
    assert not watch.console_errors, f"console errors: {watch.console_errors}"
    assert not watch.failed, f"failed requests: {watch.failed}"


def test_the_gallery_shows_each_car_as_a_picture_with_all_its_renditions(
    page: Page, site: Site
) -> None:
    _open_cars(page, site)
    car = next(c for c in _cars(page) if c["image_status"] == "ready" and c["images"])
    _search(page, car["title"])
    card = _card(page, car["title"])
    expect(card).to_have_count(1)
    web, mobile = car["images"]["web"], car["images"]["mobile"]
    img = card.locator("picture > img")
    expect(img).to_have_attribute("alt", car["title"])
    expect(img).to_have_attribute("loading", "lazy")
    expect(img).to_have_attribute("width", str(web["width"]))
    expect(img).to_have_attribute("height", str(web["height"]))
    expect(img).to_have_attribute(
        "srcset", f"{mobile['jpeg']} {mobile['width']}w, {web['jpeg']} {web['width']}w"
    )
    expect(img).to_have_attribute("sizes", re.compile(r"max-width: 600px"))
    webp = card.locator('picture > source[type="image/webp"]')
    expect(webp).to_have_attribute(
        "srcset", f"{mobile['webp']} {mobile['width']}w, {web['webp']} {web['width']}w"
    )
    avif = card.locator('picture > source[type="image/avif"]')
    if web["avif"] and mobile["avif"]:
        expect(avif).to_have_attribute(
            "srcset", f"{mobile['avif']} {mobile['width']}w, {web['avif']} {web['width']}w"
        )
    else:  # the background worker has not made it yet: no source that would 404
        expect(avif).to_have_count(0)
    expect(card.get_by_text("Image ready")).to_be_visible()
    # The browser really shows the picture.
    page.wait_for_function(FIRST_SHOWN)

    page.get_by_label("Search title and description").fill("")
    page.get_by_role("button", name="Show").click()
    expect(page.locator(".cars-gallery picture").first).to_be_visible()
    assert page.locator(".cars-gallery picture").count() > 1
    _load_every_thumbnail(page)
    snapshot(page, "cars-gallery")


@pytest.mark.parametrize(
    ("width", "wanted", "unwanted"), [(375, "mobile", "web"), (1440, "web", "mobile")]
)
def test_the_viewport_decides_which_rendition_the_browser_downloads(
    browser: Browser, site: Site, watch: Watch, width: int, wanted: str, unwanted: str
) -> None:
    viewport = NARROW if width == NARROW["width"] else WIDE
    assert viewport["width"] == width
    fetched: list[str] = []
    with _tab(browser, site, watch, viewport) as tab:

        def seen(request: Request) -> None:
            if "/media/" in request.url:
                fetched.append(request.url)

        tab.on("request", seen)
        _open_cars(tab, site)
        first = tab.locator(".cars-gallery picture > img").first
        expect(first).to_be_visible()
        # Every thumbnail of the page, not only the first screen's: none may be the other one.
        _load_every_thumbnail(tab)
        chosen = first.evaluate("img => img.currentSrc")
        cars = [c for c in _cars(tab) if c["images"]]

    def urls(variant: str) -> set[str]:
        return {
            c["images"][variant][f]
            for c in cars
            for f in ("jpeg", "webp", "avif")
            if c["images"][variant][f]
        }

    # A small original has one picture for both (never upscaled): it proves nothing here.
    wanted_urls, unwanted_urls = urls(wanted) - urls(unwanted), urls(unwanted) - urls(wanted)
    assert fetched, "the gallery fetched no thumbnail"
    assert set(fetched) & wanted_urls, f"no {wanted} rendition was fetched: {fetched}"
    assert not set(fetched) & unwanted_urls, f"{unwanted} renditions were fetched at {width} px"
    assert chosen in urls(wanted)


def test_a_broken_image_is_shown_with_its_reason(page: Page, site: Site) -> None:
    _open_cars(page, site)
    broken = next(c for c in _cars(page) if c["image_status"] == "failed")
    card = _card(page, broken["title"])
    # On the first page of the demo (newest first), and findable by a search in any case.
    _search(page, broken["title"])
    expect(card).to_have_count(1)
    expect(card.locator(".broken")).to_contain_text("Image failed")
    expect(card.locator(".broken")).to_contain_text(broken["image_error"])
    expect(card.locator("picture")).to_have_count(0)
    expect(card.get_by_text("Image failed", exact=True).last).to_be_visible()
    page.get_by_label("Images").select_option("false")
    page.get_by_label("Search title and description").fill("")
    page.get_by_role("button", name="Show").click()
    expect(page.get_by_text(re.compile(r"have a broken image; each says why"))).to_be_visible()
    expect(page.locator(".cars-gallery picture")).to_have_count(0)


@pytest.fixture
def images() -> Iterator[WebServer]:
    with serving() as server:
        # A picture of its own per test: one the catalog has already is "reused", not fetched.
        server.image("/good.jpg", jpeg(1600, 1200, seed=uuid.uuid4().int % 10**9))
        yield server


def _csv(images: WebServer, good: str, bad: str) -> str:
    return (
        "title,description,image\n"
        f"{good},A car from the tests' image server,{images.url('/good.jpg')}\n"
        f"{bad},Its picture is not there,{images.url('/missing.jpg')}\n"
    )


def _expect_report(page: Page, good: str, bad: str) -> None:
    record = page.locator(".import-record")
    expect(record.get_by_role("heading", name=re.compile(r"^Import \d+: done$"))).to_be_visible(
        timeout=IMPORT_TIMEOUT
    )
    expect(record.get_by_text(re.compile(r"The import is done: 2 rows, 2 created"))).to_be_visible()
    stats = record.locator(".stat")
    expect(stats.filter(has_text="Rows")).to_contain_text("2")
    expect(stats.filter(has_text="Images fetched")).to_contain_text("1")
    expect(stats.filter(has_text="Images failed")).to_contain_text("1")
    table = record.get_by_role("table")
    good_row = table.get_by_role("row").filter(has=page.get_by_role("link", name=good))
    expect(good_row).to_contain_text("created")
    expect(good_row).to_contain_text("fetched")
    bad_row = table.get_by_role("row").filter(has=page.get_by_role("link", name=bad))
    expect(bad_row).to_contain_text("failed")
    expect(bad_row).to_contain_text(re.compile(r"image: .*404"))
    expect(bad_row.get_by_role("cell").first).to_have_text("3")  # the header is row 1


def _expect_in_gallery(page: Page, good: str, bad: str) -> None:
    page.get_by_role("link", name=good).click()
    card = _card(page, good)
    expect(card.locator("picture > img")).to_have_attribute("alt", good)
    page.wait_for_function(FIRST_SHOWN)
    _search(page, bad)
    expect(_card(page, bad).locator(".broken")).to_contain_text("404")


def test_an_uploaded_csv_is_imported_and_its_report_shown(
    page: Page, site: Site, images: WebServer, tmp_path: Path
) -> None:
    uid = uuid.uuid4().hex[:8]
    good, bad = f"Upload good {uid}", f"Upload bad {uid}"
    csv = tmp_path / "cars.csv"
    csv.write_text(_csv(images, good, bad))
    _open_cars(page, site)
    page.get_by_role("link", name="Import cars").click()
    expect(page.get_by_role("heading", name="Import cars", level=1)).to_be_visible()
    page.get_by_label("CSV file").set_input_files(csv)
    page.get_by_role("button", name="Upload and import").click()
    _expect_report(page, good, bad)
    assert images.hits["/good.jpg"] == 1
    # The finished import is at the top of the recent ones.
    expect(
        page.get_by_role("table", name=re.compile("The last imports")).get_by_role("row").nth(1)
    ).to_contain_text("Uploaded CSV")
    snapshot(page, "cars-import")
    _expect_in_gallery(page, good, bad)


def test_a_csv_at_a_url_is_imported_and_its_report_has_a_page(
    page: Page, site: Site, images: WebServer
) -> None:
    uid = uuid.uuid4().hex[:8]
    good, bad = f"Linked good {uid}", f"Linked bad {uid}"
    source = images.add(
        f"/cars-{uid}.csv", Route(body=_csv(images, good, bad).encode(), content_type="text/csv")
    )
    _open_cars(page, site)
    page.get_by_role("link", name="Import cars").click()
    page.get_by_label("CSV URL").fill(source)
    page.get_by_role("button", name="Import from the URL").click()
    _expect_report(page, good, bad)
    assert images.hits[f"/cars-{uid}.csv"] == 1
    # Each import keeps a page of its own with the same report.
    recent = page.get_by_role("table", name=re.compile("The last imports"))
    row = recent.get_by_role("row").filter(has_text=source)
    expect(row).to_contain_text("done")
    row.get_by_role("link").click()
    expect(page.get_by_role("heading", name=re.compile(r"^Import \d+$"), level=1)).to_be_visible()
    _expect_report(page, good, bad)
    expect(page.locator(".import-meta")).to_contain_text(source)
    snapshot(page, "cars-import-report")
    _expect_in_gallery(page, good, bad)


def test_a_csv_that_cannot_be_had_fails_the_import_in_words(
    page: Page, site: Site, images: WebServer
) -> None:
    _open_cars(page, site)
    page.get_by_role("link", name="Import cars").click()
    page.get_by_label("CSV URL").fill(images.url("/no-such.csv"))
    page.get_by_role("button", name="Import from the URL").click()
    record = page.locator(".import-record")
    expect(record.get_by_role("heading", name=re.compile(r"^Import \d+: failed$"))).to_be_visible(
        timeout=IMPORT_TIMEOUT
    )
    expect(record.get_by_role("alert")).to_contain_text("The import failed, and no car was changed")
    # A URL the server refuses outright is a problem+json detail, said in words.
    page.get_by_label("CSV URL").fill("http://169.254.169.254/cars.csv")
    page.get_by_role("button", name="Import from the URL").click()
    expect(page.locator(".import-out").get_by_role("alert")).to_contain_text("metadata")
