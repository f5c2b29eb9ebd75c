"""The dashboard's factories section (issue 11): each factory's actual-versus-goal chart over a
range (day, week, month, year, custom) with the bucket the API chose said in words, the
summary figures, and the sprocket types with create, edit, delete, the 409 of a duplicate and
the message of a version conflict."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import httpx2
import pytest
from playwright.sync_api import Page, expect

from tests.dashboard.conftest import Site, login, snapshot
from wharf.factories.chart import BUCKETS
from wharf.factories.demo import DEMO_NAME

DAY = 86_400
RANGES = {"Day": DAY, "Week": 7 * DAY, "Month": 30 * DAY, "Year": 365 * DAY}
MAX_POINTS = 500  # what the page asks for when the bucket is automatic
CONFLICT = "This was changed by someone else since you opened it."


@pytest.fixture
def api(site: Site) -> Iterator[httpx2.Client]:
    """The demo admin's API client: what the page shows is checked against its answers."""
    answer = httpx2.post(
        f"{site.base_url}/api/v1/auth/token",
        data={"username": site.email, "password": site.password},
    )
    assert answer.status_code == 200, answer.text
    headers = {"Authorization": f"Bearer {answer.json()['access_token']}"}
    with httpx2.Client(base_url=f"{site.base_url}/api/v1", headers=headers) as client:
        yield client


def _open(page: Page, site: Site, path: str) -> None:
    """Log in, let the first page (the CRM) finish loading, then go to `path`: the shell does
    not drop a render that a newer page replaced, so a late CRM answer would overwrite it."""
    login(page, site)
    page.wait_for_load_state("networkidle")
    page.goto(path)


def _utc(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _minutes(seconds: int) -> str:
    """A datetime-local input's value for a UTC instant."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M")


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def _figures(factory: dict[str, Any]) -> list[str]:
    """The summary figures as the page writes them, from the API's factory."""
    return [
        f"{factory['readings']:,}",
        _utc(factory["first_time"]),
        _utc(factory["last_time"]),
        f"{factory['actual_total']:,}",
        f"{factory['goal_total']:,}",
        _percent(factory["attainment"]),
    ]


def _factory(api: httpx2.Client, name: str) -> dict[str, Any]:
    found = api.get("/factories", params={"search": name}).json()["items"]
    factory: dict[str, Any] = next(f for f in found if f["name"] == name)
    return factory


def _range_end(factory: dict[str, Any]) -> int:
    """Where the page's named ranges end: the end of the last reading's UTC day."""
    last: int = factory["last_time"]
    return -(-(last + 1) // DAY) * DAY


def _drawn(page: Page) -> dict[str, Any]:
    """What Chart.js holds for the chart on the page."""
    drawn: dict[str, Any] = page.evaluate(
        """() => {
            const chart = Chart.getChart(document.querySelector('.chart canvas'));
            return {labels: chart.data.labels.length, actual: chart.data.datasets[0].data,
                    goal: chart.data.datasets[1].data};
        }"""
    )
    return drawn


def _said(page: Page, data: dict[str, Any], *, explicit: bool = False) -> None:
    """The words beside the chart say the bucket and the points the API answered."""
    summary = page.locator(".chart-summary")
    if data["bucket"] is None:
        expect(summary.locator(".bucket")).to_have_text(
            "Bucket: none, the raw readings (they fit the chart)."
        )
    else:
        how = "as chosen" if explicit else "chosen by the server so the range fits 500 points"
        expect(summary.locator(".bucket")).to_contain_text(f"({data['bucket']}), {how}.")
    expect(summary.locator(".points")).to_have_text(
        f"{data['points']:,} points from {_utc(data['from'])} to {_utc(data['to'])}."
    )
    drawn = _drawn(page)
    assert drawn["labels"] == data["points"]
    assert drawn["actual"] == data["sprocket_production_actual"]
    assert drawn["goal"] == data["sprocket_production_goal"]
    canvas = page.locator(".chart canvas")
    expect(canvas).to_have_attribute("role", "img")
    expect(canvas).to_have_attribute(
        "aria-label",
        f"Line chart of {_factory_name(page)}: "
        + (
            f"actual and goal production, {data['points']} points from {_utc(data['from'])} to "
            f"{_utc(data['to'])}. The numbers are in the table below."
        ),
    )


def _factory_name(page: Page) -> str:
    return page.get_by_role("heading", level=1).inner_text()


def test_the_factories_list_shows_each_factorys_summary(
    page: Page, site: Site, api: httpx2.Client
) -> None:
    factories = api.get("/factories", params={"limit": 500, "ordering": "id"}).json()["items"]
    _open(page, site, "/#/crm")
    page.get_by_role("link", name="Factories", exact=True).first.click()
    expect(page.get_by_role("heading", name="Factories", level=1)).to_be_visible()
    assert any(f["name"] == DEMO_NAME for f in factories)
    for factory in factories:
        row = page.get_by_role("row").filter(
            has=page.get_by_role("link", name=factory["name"], exact=True)
        )
        expect(row.get_by_role("cell")).to_have_text([factory["name"], *_figures(factory)])
    snapshot(page, "factories-list")
    page.get_by_role("link", name=DEMO_NAME).click()
    expect(page.get_by_role("heading", name=DEMO_NAME, level=1)).to_be_visible()


def test_each_range_charts_the_bucket_the_api_chose(
    page: Page, site: Site, api: httpx2.Client
) -> None:
    factory = _factory(api, DEMO_NAME)
    end = _range_end(factory)
    login(page, site)
    with page.expect_response(lambda r: "/chart-data" in r.url) as first:
        page.goto(f"/#/factories/{factory['id']}")
    expect(page.get_by_role("heading", name=DEMO_NAME, level=1)).to_be_visible()
    expect(page.get_by_role("radio", name="Month")).to_be_checked()  # the default
    _said(page, first.value.json())
    ranges = page.get_by_role("group", name="Range")
    chosen: dict[str, str] = {}
    for label, span in RANGES.items():
        with page.expect_response(lambda r: "/chart-data" in r.url) as answer:
            ranges.get_by_text(label, exact=True).click()
        data = answer.value.json()
        # The same question asked of the API directly gets the same answer.
        asked = {"from": end - span, "to": end, "max_points": MAX_POINTS}
        assert api.get(f"/factories/{factory['id']}/chart-data", params=asked).json() == data
        assert data["points"] > 0
        _said(page, data)
        chosen[label] = data["bucket"]
        if label == "Month":
            snapshot(page, "factories-chart")
    # A longer range gets a coarser bucket: a year in days, a day in minutes.
    assert chosen == {"Day": "5m", "Week": "1h", "Month": "6h", "Year": "1d"}
    seconds = [BUCKETS[chosen[label]] for label in RANGES]
    assert seconds == sorted(seconds)
    # The chart's numbers are also a table, for screen readers.
    page.get_by_text("The chart's 365 points as a table").click()
    expect(page.locator(".chart-numbers tbody tr")).to_have_count(365)
    page.reload()  # the range is kept in the address
    expect(page.get_by_role("radio", name="Year")).to_be_checked()


def test_a_custom_range_charts_exactly_that_window(
    page: Page, site: Site, api: httpx2.Client
) -> None:
    factory = _factory(api, DEMO_NAME)
    start = _range_end(factory) - 2 * DAY + 9 * 3600  # a working morning, 09:00 to 12:00
    _open(page, site, f"/#/factories/{factory['id']}")
    expect(page.locator(".chart-summary .bucket")).to_be_visible()
    with page.expect_response(lambda r: "/chart-data" in r.url):  # the last day, at first
        page.get_by_role("group", name="Range").get_by_text("Custom", exact=True).click()
    page.get_by_label("From (UTC)").fill(_minutes(start))
    page.get_by_label("To (UTC)").fill(_minutes(start + 3 * 3600))
    with page.expect_response(lambda r: "/chart-data" in r.url) as answer:
        page.get_by_role("button", name="Show").click()
    data = answer.value.json()
    assert (data["from"], data["to"]) == (start, start + 3 * 3600)
    expected = api.get(
        f"/factories/{factory['id']}/chart-data",
        params={"from": start, "to": start + 3 * 3600, "max_points": MAX_POINTS},
    ).json()
    assert data == expected
    assert data["bucket"] is None  # every 30 s: the raw readings fit
    assert data["points"] == 360
    _said(page, data)
    with page.expect_response(lambda r: "bucket=1h" in r.url) as hourly:
        page.get_by_label("Bucket").select_option("1h")
    data = hourly.value.json()
    assert data["points"] == 3
    _said(page, data, explicit=True)
    expect(page.locator(".chart-summary .bucket")).to_have_text("Bucket: 1 hour (1h), as chosen.")
    # A window that ends before it starts is the API's 422, said in words.
    page.get_by_label("To (UTC)").fill(_minutes(start - 3600))
    page.get_by_role("button", name="Show").click()
    expect(page.get_by_role("alert")).to_contain_text("must come before to")


def test_the_summary_figures_match_the_api(page: Page, site: Site, api: httpx2.Client) -> None:
    name = f"Test works {uuid4().hex[:8]}"
    made = api.post("/factories", json={"name": name})
    assert made.status_code == 201, made.text
    factory_id = made.json()["id"]
    readings = [
        {"time": 1_700_000_000 + 60 * n, "actual": actual, "goal": 40}
        for n, actual in enumerate([31, 44, 38, 40, 29])
    ]
    assert api.post(f"/factories/{factory_id}/readings", json=readings).status_code == 201
    factory = api.get(f"/factories/{factory_id}").json()
    # By hand, too: the API's figures are what its readings say.
    assert (factory["readings"], factory["actual_total"], factory["goal_total"]) == (5, 182, 200)
    assert _figures(factory) == [
        "5",
        "2023-11-14 22:13:20 UTC",
        "2023-11-14 22:17:20 UTC",
        "182",
        "200",
        "91.0%",
    ]
    _open(page, site, "/#/crm")
    page.get_by_role("link", name="Factories", exact=True).first.click()
    page.get_by_role("link", name=name).click()
    expect(page.get_by_role("heading", name=name, level=1)).to_be_visible()
    stats = page.locator(".factory-stats .stat")
    labels = [
        "Readings",
        "First reading",
        "Last reading",
        "Actual total",
        "Goal total",
        "Attainment",
    ]
    expect(stats.locator(".label")).to_have_text(labels)
    expect(stats.locator(".value")).to_have_text(_figures(factory))
    # Its chart: the five raw readings, within the default range (ending on its last day).
    expect(page.locator(".chart-summary .points")).to_contain_text("5 points from")
    expect(page.locator(".chart-summary .totals")).to_have_text(
        "In this range: actual 182, goal 200, attainment 91.0%."
    )
    assert _drawn(page)["actual"] == [31, 44, 38, 40, 29]


def _dimensions() -> dict[str, int]:
    draw = random.SystemRandom()
    return {
        "teeth": draw.randint(100, 9_999),
        "pitch_diameter": draw.randint(100, 999_999),
        "outside_diameter": draw.randint(100, 999_999),
        "pitch": draw.randint(100, 999_999),
    }


LABELS = {
    "teeth": "Teeth",
    "pitch_diameter": "Pitch diameter",
    "outside_diameter": "Outside diameter",
    "pitch": "Pitch",
}


def _fill(form: Any, values: dict[str, int]) -> None:
    for key, label in LABELS.items():
        form.get_by_label(label, exact=True).fill(str(values[key]))


def _row(page: Page, sprocket_id: int) -> Any:
    return page.get_by_role("row").filter(
        has=page.get_by_role("cell", name=str(sprocket_id), exact=True)
    )


def _cells(sprocket_id: int, values: dict[str, int]) -> list[str]:
    return [str(sprocket_id), *(f"{values[k]:,}" for k in LABELS), "EditDelete"]


def test_sprocket_types_are_added_edited_and_deleted(
    page: Page, site: Site, api: httpx2.Client
) -> None:
    _open(page, site, "/#/crm")
    page.get_by_role("link", name="Factories", exact=True).first.click()
    page.get_by_role("link", name="Sprocket types").click()
    expect(page.get_by_role("heading", name="Sprocket types", level=1)).to_be_visible()
    values = _dimensions()
    add = page.get_by_role("form", name="Add a sprocket type")
    _fill(add, values)
    with page.expect_response(lambda r: r.url.endswith("/sprockets") and r.status == 201) as made:
        add.get_by_role("button", name="Add sprocket type").click()
    sprocket_id = made.value.json()["id"]
    expect(add.get_by_role("status")).to_contain_text(f"Sprocket type {sprocket_id} added")
    expect(_row(page, sprocket_id).get_by_role("cell")).to_have_text(_cells(sprocket_id, values))
    assert {k: api.get(f"/sprockets/{sprocket_id}").json()[k] for k in LABELS} == values
    snapshot(page, "factories-sprockets")

    page.get_by_role("button", name=f"Edit sprocket type {sprocket_id}").click()
    edit = page.get_by_role("form", name=f"Edit sprocket type {sprocket_id}")
    expect(edit.get_by_label("Teeth")).to_have_value(str(values["teeth"]))
    changed = {**values, "pitch": values["pitch"] + 1, "teeth": values["teeth"] - 1}
    _fill(edit, changed)
    edit.get_by_role("button", name="Save changes").click()
    expect(page.locator("#status")).to_contain_text(f"Sprocket type {sprocket_id} saved")
    expect(edit).to_be_hidden()
    expect(_row(page, sprocket_id).get_by_role("cell")).to_have_text(_cells(sprocket_id, changed))
    stored = api.get(f"/sprockets/{sprocket_id}").json()
    assert {k: stored[k] for k in LABELS} == changed
    assert stored["version"] == 2

    page.get_by_role("button", name=f"Delete sprocket type {sprocket_id}").click()
    expect(page.get_by_role("heading", name=f"Delete sprocket type {sprocket_id}?")).to_be_visible()
    page.get_by_role("button", name="Delete it").click()
    expect(page.locator("#status")).to_contain_text(f"Sprocket type {sprocket_id} deleted.")
    expect(_row(page, sprocket_id)).to_have_count(0)
    assert api.get(f"/sprockets/{sprocket_id}").status_code == 404


def test_a_duplicate_sprocket_type_is_refused_in_words(
    page: Page, site: Site, api: httpx2.Client
) -> None:
    values = _dimensions()
    existing = api.post("/sprockets", json=values).json()["id"]
    other_values = _dimensions()
    other = api.post("/sprockets", json=other_values).json()["id"]
    _open(page, site, "/#/factories/sprockets")
    add = page.get_by_role("form", name="Add a sprocket type")
    _fill(add, values)
    add.get_by_role("button", name="Add sprocket type").click()
    described = (
        f"teeth {values['teeth']}, pitch_diameter {values['pitch_diameter']}, "
        f"outside_diameter {values['outside_diameter']}, pitch {values['pitch']}"
    )
    expect(add.get_by_role("alert")).to_contain_text(
        f"Sprocket type {existing} already has these dimensions ({described})"
    )
    # Editing another type into the same four dimensions is refused the same way.
    page.get_by_role("button", name=f"Edit sprocket type {other}").click()
    edit = page.get_by_role("form", name=f"Edit sprocket type {other}")
    _fill(edit, values)
    edit.get_by_role("button", name="Save changes").click()
    expect(edit.get_by_role("alert")).to_contain_text(
        f"Sprocket type {existing} already has these dimensions"
    )
    stored = api.get(f"/sprockets/{other}").json()
    assert {k: stored[k] for k in LABELS} == other_values


def test_a_sprocket_type_changed_elsewhere_shows_the_conflict_message(
    page: Page, site: Site, api: httpx2.Client
) -> None:
    values = _dimensions()
    sprocket_id = api.post("/sprockets", json=values).json()["id"]
    _open(page, site, "/#/factories/sprockets")
    page.get_by_role("button", name=f"Edit sprocket type {sprocket_id}").click()
    edit = page.get_by_role("form", name=f"Edit sprocket type {sprocket_id}")
    elsewhere = {**values, "pitch": values["pitch"] + 7, "version": 1}
    assert api.put(f"/sprockets/{sprocket_id}", json=elsewhere).status_code == 200
    edit.get_by_label("Teeth").fill(str(values["teeth"] + 1))
    edit.get_by_role("button", name="Save changes").click()
    expect(edit.get_by_role("alert")).to_have_text(f"{CONFLICT} Reload")
    edit.get_by_role("button", name="Reload").click()
    edit = page.get_by_role("form", name=f"Edit sprocket type {sprocket_id}")
    expect(edit.get_by_label("Pitch", exact=True)).to_have_value(str(values["pitch"] + 7))
    edit.get_by_label("Teeth").fill(str(values["teeth"] + 1))
    edit.get_by_role("button", name="Save changes").click()
    expect(page.locator("#status")).to_contain_text(f"Sprocket type {sprocket_id} saved")
    assert api.get(f"/sprockets/{sprocket_id}").json()["teeth"] == values["teeth"] + 1
