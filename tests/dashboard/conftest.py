"""Fixtures of the dashboard's browser tests: one real `wharf serve` with the demo data, one
Chromium (Debian's, driven by Playwright), and a fresh browser context per test whose console
errors and failed requests fail the test.

The browser is Debian's `chromium` (browsers cannot be downloaded here). Without it these
tests skip and say how to get it, unless WHARF_TEST_REQUIRE_BROWSER is set (.ci/run sets it),
and then they fail.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    Page,
    Playwright,
    Request,
    Response,
    ViewportSize,
    expect,
    sync_playwright,
)
from sqlalchemy import Engine

from tests.conftest import TEST_KEYS
from tests.servers import _stop, _wait_until_up, free_port
from wharf.cli import DEMO_ADMIN
from wharf.core.data.db import create_db_engine

CHROMIUM = os.environ.get("WHARF_TEST_CHROMIUM", "/usr/bin/chromium")
# As the machine's notes advise: without these, Chromium keeps trying Google's hosts.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(os.environ.get("WHARF_TEST_SCREENSHOTS", "var/screenshots"))
WIDE: ViewportSize = {"width": 1440, "height": 900}
NARROW: ViewportSize = {"width": 375, "height": 812}


@dataclass
class Site:
    """The served dashboard: its address, the demo admin's login, its database."""

    base_url: str
    email: str
    password: str
    database_url: str
    env: dict[str, str]
    cwd: Path
    engine: Engine = field(repr=False)


@dataclass
class Watch:
    """What went wrong in the page while a test ran."""

    console_errors: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    expected: list[str] = field(default_factory=list)  # substrings a test allows

    def on_console(self, msg: ConsoleMessage) -> None:
        if msg.type != "error":
            return
        text = msg.text
        # Chromium logs every 4xx as "Failed to load resource"; the API's 401/404/409/412/422
        # are answers the page shows in words. Server errors and failed loads still count
        # (see on_response and on_failed).
        if text.startswith("Failed to load resource: the server responded with a status of 4"):
            return
        if not any(allowed in text for allowed in self.expected):
            self.console_errors.append(text)

    def on_failed(self, request: Request) -> None:
        # An image the browser stopped loading itself (the viewport changed, so `srcset` chose
        # another rendition, or the tab closed) was not refused by anyone: not a failure. A
        # thumbnail that really fails still shows as its 404 or 5xx in `on_response`.
        if "/media/" in request.url and request.failure == "net::ERR_ABORTED":
            return
        if not any(allowed in request.url for allowed in self.expected):
            self.failed.append(f"{request.method} {request.url}: {request.failure}")

    def on_response(self, response: Response) -> None:
        url = response.url
        broken_asset = response.status == 404 and ("/ui/" in url or "/media/" in url)
        if (response.status >= 500 or broken_asset) and not any(a in url for a in self.expected):
            self.failed.append(f"{response.request.method} {url}: HTTP {response.status}")


def _browser_or_skip(playwright: Playwright) -> Browser:
    required = bool(os.environ.get("WHARF_TEST_REQUIRE_BROWSER"))
    if not Path(CHROMIUM).exists():
        hint = "apt-get install chromium (as root), or point WHARF_TEST_CHROMIUM at a Chromium"
        if required:
            pytest.fail(f"{CHROMIUM} is missing and WHARF_TEST_REQUIRE_BROWSER is set: {hint}")
        pytest.skip(f"the dashboard's browser tests need Chromium at {CHROMIUM}: {hint}")
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = _browser_or_skip(playwright)
        yield launched
        launched.close()


@pytest.fixture(scope="session")
def site(browser: Browser, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """`wharf migrate`, `keys`, `demo` and `serve`, as `make run` does, in a folder of its own."""
    cwd = tmp_path_factory.mktemp("dashboard")
    database_url = f"sqlite:///{cwd / 'wharf.db'}"
    env = {
        **os.environ,
        "WHARF_DATABASE_URL": database_url,
        "WHARF_LOG_LEVEL": "WARNING",
        "WHARF_KEY_ENCRYPTION_KEYS": TEST_KEYS,
        "WHARF_RATE_LIMITS_ENABLED": "false",
        "WHARF_OUTBOUND_ALLOW": "127.0.0.1",  # the tests' own image server and receiver
    }
    wharf = [sys.executable, "-m", "wharf"]
    for command in (["migrate"], ["demo"]):
        subprocess.run([*wharf, *command], cwd=cwd, env=env, check=True, capture_output=True)
    password = (cwd / "var" / "demo-admin-password").read_text().strip()
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    stderr = cwd / "server.err"
    with stderr.open("wb") as err:
        proc = subprocess.Popen(
            [*wharf, "serve", "--port", str(port), "--workers", "1"],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
        )
    engine = create_db_engine(database_url)
    try:
        _wait_until_up(proc, base_url, stderr)
        yield Site(base_url, DEMO_ADMIN, password, database_url, env, cwd, engine)
    finally:
        engine.dispose()
        _stop(proc)
        errors = [line for line in stderr.read_text().splitlines() if "Traceback" in line]
        assert not errors, f"the server logged errors:\n{stderr.read_text()[-4000:]}"


@pytest.fixture
def watch() -> Watch:
    return Watch()


@pytest.fixture
def page(browser: Browser, site: Site, watch: Watch) -> Iterator[Page]:
    """A fresh context (no cookies) at 1440 px wide, watched for console errors and failures."""
    context = browser.new_context(base_url=site.base_url, viewport=WIDE)
    yield watched(context.new_page(), watch)
    context.close()
    assert not watch.console_errors, f"console errors: {watch.console_errors}"
    assert not watch.failed, f"failed requests: {watch.failed}"


def watched(tab: Page, watch: Watch) -> Page:
    """`tab` with its console errors and failed requests reported to `watch`."""
    tab.on("console", watch.on_console)
    tab.on("pageerror", lambda exc: watch.console_errors.append(f"uncaught: {exc}"))
    tab.on("requestfailed", watch.on_failed)
    tab.on("response", watch.on_response)
    tab.set_default_timeout(15_000)
    return tab


def login(page: Page, site: Site, email: str | None = None, password: str | None = None) -> None:
    """Log in through the form, as a person does, and wait for the first page (the CRM),
    rendered: a test that goes on with `page.goto` must not race the login's own navigation
    (under CI's load, one such `goto` ended on the CRM page)."""
    page.goto("/")
    page.get_by_label("Email").fill(email or site.email)
    page.get_by_label("Password").fill(password or site.password)
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("button", name="Log out").wait_for()
    expect(page).to_have_url(re.compile(r"#/crm$"))
    expect(page.locator("#main .loading")).to_have_count(0)


def accessible(page: Page) -> None:
    """axe-core over the page as it is now: no serious or critical violation."""
    from axe_playwright_python.sync_playwright import Axe

    results: Any = Axe().run(page)
    bad = [
        f"{v['id']} ({v['impact']}): {v['help']} — {[n['target'] for n in v['nodes']][:5]}"
        for v in results.response["violations"]
        if v["impact"] in ("serious", "critical")
    ]
    assert not bad, f"accessibility violations on {page.url}:\n" + "\n".join(bad)


def snapshot(page: Page, name: str) -> None:
    """A full-page screenshot at 1440 and at 375 px wide (var/screenshots/<name>-<w>.png),
    each checked with axe-core; the page is left at its original width."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    original = page.viewport_size or WIDE
    for size in (WIDE, NARROW):
        page.set_viewport_size(size)
        page.wait_for_timeout(150)  # charts redraw on resize
        accessible(page)
        page.screenshot(path=str(SCREENSHOTS / f"{name}-{size['width']}.png"), full_page=True)
    page.set_viewport_size(original)
