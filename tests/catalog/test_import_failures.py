"""Import failures (issue 10): "every failure is a row in the report, never a crash".

Each failure is tried against a local web server: a CSV URL that cannot be fetched (the
record fails, no car changes), every way an image can fail (its row says why, its car is kept
with `image_status` "failed", and the other rows go on), and bodies that are not an import
(problem+json, never a 500). URLs refused at once, the CLI's, redirects and the SSRF rules are
in test_ssrf.py.
"""

from __future__ import annotations

import functools
import re
import socket
import time
from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from httpx2 import Response
from PIL import Image
from sqlalchemy import Engine

from tests.catalog.conftest import drain
from tests.catalog.imagefixtures import encode, jpeg, png_bomb
from tests.catalog.webserver import Route, WebServer
from wharf.app import job_handlers
from wharf.core.config import Settings
from wharf.core.outbound import Outbound
from wharf.core.work import Worker

CARS = "/api/v1/cars"
IMPORTS = f"{CARS}/imports"
PROBLEM = "application/problem+json"
TIMEOUT = 1.0  # outbound_timeout_seconds here: a slow answer fails in a second
MAX_IMAGE_BYTES = 50_000
MAX_PIXELS = 250_000
MAX_CSV_BYTES = 8192
HTML = b"<!doctype html><html><head><title>Not found</title></head><body>Sorry</body></html>"
SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
PNG_HEAD = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"

WorkerWith = Callable[..., Worker]


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then closed), allowed below."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def settings(settings: Settings, web: WebServer, closed_port: int) -> Settings:
    return settings.model_copy(
        update={
            "outbound_allow": f"{web.allow},127.0.0.1:{closed_port}",
            "outbound_timeout_seconds": TIMEOUT,
            "outbound_connect_timeout_seconds": TIMEOUT,
            "cars_max_image_bytes": MAX_IMAGE_BYTES,
            "cars_max_pixels": MAX_PIXELS,
            "cars_max_csv_bytes": MAX_CSV_BYTES,
        }
    )


@pytest.fixture
def worker_with(app: FastAPI, client: TestClient, engine: Engine, settings: Settings) -> WorkerWith:
    """A job worker whose jobs see other settings (limits, allowed hosts) than the app."""

    def make(**update: Any) -> Worker:
        tuned = settings.model_copy(update=update)
        handlers = job_handlers(
            tuned,
            engine=engine,
            keys=app.state.keys,
            outbound=Outbound.from_settings(tuned),
            storage=app.state.storage,
        )
        return Worker(engine, handlers, poll_seconds=0.01, lease_seconds=30)

    return make


# Helpers, shared with test_ssrf.py.


def csv_of(*rows: tuple[str, str | None]) -> bytes:
    lines = ["title,description,image"] + [f"{t},About {t},{image or ''}" for t, image in rows]
    return ("\n".join(lines) + "\n").encode()


def upload(client: TestClient, csv: bytes) -> dict[str, Any]:
    response = client.post(IMPORTS, content=csv, headers={"Content-Type": "text/csv"})
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "running"
    return dict(response.json())


def record_of(client: TestClient, import_id: int) -> dict[str, Any]:
    response = client.get(f"{IMPORTS}/{import_id}")
    assert response.status_code == 200, response.text
    return dict(response.json())


def imported(client: TestClient, worker: Worker, csv: bytes) -> dict[str, Any]:
    """Upload a CSV, run the import and its follow-ups, and return the finished record."""
    started = upload(client, csv)
    drain(worker)
    return record_of(client, started["id"])


def entries(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["title"]: entry for entry in record["report"] if "title" in entry}


def car(client: TestClient, car_id: int) -> dict[str, Any]:
    response = client.get(f"{CARS}/{car_id}")
    assert response.status_code == 200, response.text
    return dict(response.json())


def cars(client: TestClient) -> list[dict[str, Any]]:
    return list(client.get(CARS, params={"limit": 100}).json()["items"])


def problem(response: Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = dict(response.json())
    assert body["status"] == status
    assert body["title"]
    assert body["detail"]
    return body


def assert_failed_row(client: TestClient, entry: dict[str, Any], expected: str) -> None:
    """The row kept its car, without an image, and says why in its report and on the car."""
    assert (entry["action"], entry["image"]) == ("created", "failed"), entry
    [row_problem] = entry["problems"]
    assert row_problem["column"] == "image"
    assert expected in row_problem["reason"], row_problem["reason"]
    shown = car(client, entry["car_id"])
    assert shown["image_status"] == "failed"
    assert shown["images"] is None
    assert shown["image_error"] == row_problem["reason"]


def assert_ready(client: TestClient, entry: dict[str, Any]) -> None:
    assert entry["image"] == "fetched", entry
    assert "problems" not in entry, entry
    shown = car(client, entry["car_id"])
    assert shown["image_status"] == "ready", shown
    assert shown["images"]["web"]["jpeg"]
    assert shown["image_error"] is None


def chain(web: WebServer, name: str, hops: int, to: str) -> str:
    """The first URL of `hops` redirects that end at `to`."""
    for hop in range(1, hops + 1):
        to = web.redirect(f"/{name}/{hop}", to)
    return to


@functools.cache
def picture(width: int, height: int, seed: int = 1) -> bytes:
    return jpeg(width, height, seed=seed)


@functools.cache
def flat_jpeg(width: int, height: int) -> bytes:
    """Few bytes, many pixels: over MAX_PIXELS, far under MAX_IMAGE_BYTES."""
    return encode(Image.new("RGB", (width, height), (40, 90, 160)), "JPEG")


@functools.cache
def bomb(width: int, height: int) -> bytes:
    return png_bomb(width, height)


def half(data: bytes) -> bytes:
    return data[: len(data) // 2]


IMAGE_CASES = (
    *("ftp", "javascript", "no-host", "garbage", "dns", "refused", "timeout", "404", "500"),
    *("html-as-jpeg", "svg-as-png", "truncated", "bomb", "pixels", "too-large", "endless"),
    *("6-redirects", "redirect-to-metadata", "private"),
)


def image_failures(web: WebServer, port: int) -> dict[str, tuple[str, str]]:
    """Each way an image fails (IMAGE_CASES): its URL, served by `web` where it is one, and
    what its row must say. `port` is allowed, and nothing listens on it."""
    slow = f"no complete response within {TIMEOUT:g} s"
    metadata = "http://169.254.169.254/latest/meta-data/"
    cases = {
        "ftp": ("ftp://example.com/car.jpg", "ftp: URLs are not accepted"),
        "javascript": ("javascript:alert(1)", "javascript: URLs are not accepted"),
        "no-host": ("http:///car.jpg", "The URL has no host"),
        "garbage": ("%%car%%.jpg", "A URL without a scheme is not accepted"),
        "dns": ("http://car-images.invalid/car.jpg", "does not resolve"),
        "refused": (f"http://127.0.0.1:{port}/car.jpg", "[Errno 111] Connection refused"),
        "timeout": (web.image("/slow.jpg", picture(64, 48), delay=TIMEOUT + 1), slow),
        "404": (web.url("/missing.jpg"), "the image URL answered HTTP 404, not 200"),
        "500": (web.add("/oops.jpg", Route(status=500)), "the image URL answered HTTP 500"),
        "html-as-jpeg": (web.image("/page.jpg", HTML), "not an image: the bytes start like HTML"),
        "svg-as-png": (web.image("/logo.png", SVG, "image/png"), "SVG is not accepted"),
        "truncated": (web.image("/half.jpg", half(picture(400, 300))), "truncated image"),
        # A small bomb against the low cap here; the default cap has its own test.
        "bomb": (web.image("/bomb.png", bomb(2000, 2000), "image/png"), "4,000,000 pixels"),
        "pixels": (
            web.image("/wide.jpg", flat_jpeg(600, 500)),
            f"600x500 is 300,000 pixels; the limit is {MAX_PIXELS:,} (WHARF_CARS_MAX_PIXELS)",
        ),
        "too-large": (
            web.image("/big.jpg", picture(1000, 800)),  # ~240 KB
            f"response larger than {MAX_IMAGE_BYTES} bytes (WHARF_CARS_MAX_IMAGE_BYTES)",
        ),
        "endless": (web.add("/drip.jpg", Route(drip=True, content_type="image/jpeg")), slow),
        "6-redirects": (
            chain(web, "six", 6, web.image("/six.jpg", picture(64, 48, seed=6))),
            "the image URL redirected more than 5 times",
        ),
        "redirect-to-metadata": (
            web.redirect("/meta.jpg", metadata),
            "redirected to a refused URL: http://169.254.169.254/ resolves to 169.254.169.254, "
            "a cloud metadata address",
        ),
        "private": ("http://10.0.0.1/car.jpg", "resolves to 10.0.0.1, a private address"),
    }
    assert tuple(cases) == IMAGE_CASES
    return cases


# The CSV's URL.


def csv_failures(web: WebServer, port: int) -> dict[str, tuple[str, str]]:
    """Each way a CSV URL fails after it was accepted: the URL, and what the record says."""
    origin, slow = f"{web.base}/", f"no complete response within {TIMEOUT:g} s."
    big = b"title\n" + b"A car\n" * MAX_CSV_BYTES
    return {
        "404": (web.url("/missing.csv"), "The CSV URL answered HTTP 404, not 200."),
        "500": (web.add("/oops.csv", Route(status=500)), "The CSV URL answered HTTP 500, not 200."),
        "timeout": (
            web.add("/slow.csv", Route(body=b"title\nExisting 1\n", delay=TIMEOUT + 1)),
            f"The CSV could not be fetched: {origin}: {slow}",
        ),
        "endless": (web.add("/drip.csv", Route(drip=True)), slow),
        "refused": (
            f"http://127.0.0.1:{port}/cars.csv",
            f"The CSV could not be fetched: http://127.0.0.1:{port}/: could not connect to "
            "127.0.0.1: [Errno 111] Connection refused.",
        ),
        "too-large": (
            web.add("/big.csv", Route(body=big, content_type="text/csv")),
            f"response larger than {MAX_CSV_BYTES} bytes (WHARF_CARS_MAX_CSV_BYTES).",
        ),
        "binary": (
            web.add("/cars.png", Route(body=PNG_HEAD, content_type="text/csv")),
            "The file is not a CSV: it looks like a PNG image.",
        ),
        "html": (web.add("/page.csv", Route(body=HTML)), "The header has no title column"),
    }


@pytest.mark.parametrize(
    "case",
    ["404", "500", "timeout", "endless", "refused", "too-large", "binary", "html"],
)
def test_a_csv_that_cannot_be_fetched_fails_the_import_and_changes_no_car(
    client: TestClient, web: WebServer, worker: Worker, closed_port: int, case: str
) -> None:
    csv = csv_of(("Existing 1", web.image("/existing.jpg", picture(64, 48))), ("Existing 2", None))
    assert imported(client, worker, csv)["counts"]["created"] == 2
    assert client.post(CARS, json={"title": "Made by hand"}).status_code == 201
    before = cars(client)
    url, expected = csv_failures(web, closed_port)[case]
    started = time.monotonic()
    # sync: had the CSV been read, the cars it does not list would have been deleted.
    response = client.post(IMPORTS, json={"url": url, "sync": True})
    assert response.status_code == 202, response.text
    drain(worker)
    assert time.monotonic() - started < TIMEOUT + 2  # a slow or endless answer never hangs
    record = record_of(client, response.json()["id"])
    assert record["status"] == "failed", record
    assert expected in record["error"], record["error"]
    assert record["report"] == []
    assert record["finished_at"] is not None
    assert cars(client) == before  # the same cars, versions and images


# Images.


def good_rows(web: WebServer, count: int) -> list[tuple[str, str]]:
    return [
        (f"Good {n}", web.image(f"/good{n}.jpg", picture(64, 48, n))) for n in range(1, count + 1)
    ]


@pytest.mark.parametrize("case", IMAGE_CASES)
def test_an_image_that_fails_is_one_row_and_the_others_go_on(
    client: TestClient, web: WebServer, worker: Worker, closed_port: int, case: str
) -> None:
    url, expected = image_failures(web, closed_port)[case]
    first, second = good_rows(web, 2)
    started = time.monotonic()
    record = imported(client, worker, csv_of(first, ("Broken", url), second))
    assert time.monotonic() - started < TIMEOUT + 3
    assert record["status"] == "done"
    rows = entries(record)
    assert_failed_row(client, rows["Broken"], expected)
    assert_ready(client, rows["Good 1"])
    assert_ready(client, rows["Good 2"])
    counts = record["counts"]
    assert (counts["rows"], counts["created"], counts["skipped"]) == (3, 3, 0)
    assert (counts["images_fetched"], counts["images_failed"]) == (2, 1)


def test_a_decompression_bomb_is_refused_by_the_default_pixel_cap(
    client: TestClient, web: WebServer, worker_with: WorkerWith
) -> None:
    defaults = Settings.model_fields
    worker = worker_with(
        cars_max_pixels=defaults["cars_max_pixels"].default,
        cars_max_image_bytes=defaults["cars_max_image_bytes"].default,
    )
    data = bomb(12_000, 10_000)  # 120 MB of pixels in ~120 KB
    assert len(data) < 200_000
    (good,) = good_rows(web, 1)
    record = imported(client, worker, csv_of(("Bomb", web.image("/bomb.png", data)), good))
    expected = "12000x10000 is 120,000,000 pixels; the limit is 100,000,000 (WHARF_CARS_MAX_PIXELS)"
    assert_failed_row(client, entries(record)["Bomb"], f"too many pixels: {expected}")
    assert_ready(client, entries(record)["Good 1"])


def test_every_failure_in_one_csv_with_good_rows(
    client: TestClient, web: WebServer, worker: Worker, closed_port: int
) -> None:
    failures = image_failures(web, closed_port)
    good = good_rows(web, 3)
    mislabelled = web.image("/photo.bin", picture(80, 60, 9), "text/html")
    far = chain(web, "five", 5, web.image("/far.jpg", picture(64, 48, 5)))
    rows: list[tuple[str, str | None]] = [good[0]]
    rows += [(f"Broken {case}", url) for case, (url, _) in failures.items()]
    rows += [good[1], ("Mislabelled", mislabelled), ("Far away", far), ("No image", None)]
    rows += [good[2], ("Bad row", "not a url")]  # whitespace in `image`: the CSV check skips it
    started = time.monotonic()
    record = imported(client, worker, csv_of(*rows))
    assert time.monotonic() - started < TIMEOUT + 4  # the slow ones waited side by side
    assert record["status"] == "done"
    report = entries(record)
    for case, (_, expected) in failures.items():
        assert_failed_row(client, report[f"Broken {case}"], expected)
    for title in ("Good 1", "Good 2", "Good 3", "Mislabelled", "Far away"):
        assert_ready(client, report[title])
    assert report["No image"]["image"] == "none"
    assert car(client, report["No image"]["car_id"])["image_status"] == "none"
    [skipped] = [entry for entry in record["report"] if entry["action"] == "skipped"]
    assert skipped["row"] == len(rows) + 1  # the header is row 1
    assert skipped["problems"][0]["column"] == "image"
    counts = record["counts"]
    assert (counts["rows"], counts["skipped"]) == (len(rows), 1)
    assert counts["created"] == counts["rows"] - counts["skipped"] == len(cars(client))
    assert counts["images_failed"] == len(failures)
    assert counts["images_fetched"] == 5


def test_a_later_import_retries_a_failed_image(
    client: TestClient, web: WebServer, worker: Worker
) -> None:
    on_time = web.image("/on-time.jpg", picture(64, 48))
    csv = csv_of(("Late", web.url("/late.jpg")), ("On time", on_time))
    first = entries(imported(client, worker, csv))
    assert_failed_row(client, first["Late"], "HTTP 404")
    web.image("/late.jpg", picture(64, 48, 2))  # the server has it now
    record = imported(client, worker, csv)
    again = entries(record)
    assert again["Late"]["car_id"] == first["Late"]["car_id"]
    assert again["Late"]["action"] == "updated"
    assert_ready(client, again["Late"])
    assert (again["On time"]["action"], again["On time"]["image"]) == ("unchanged", "kept")
    assert (web.hits["/late.jpg"], web.hits["/on-time.jpg"]) == (2, 1)
    counts = record["counts"]
    assert (counts["updated"], counts["unchanged"], counts["images_failed"]) == (1, 1, 0)


def test_an_unchanged_row_costs_nothing(client: TestClient, web: WebServer, worker: Worker) -> None:
    csv = csv_of(*good_rows(web, 2))
    assert imported(client, worker, csv)["counts"]["images_fetched"] == 2
    hits, before = dict(web.hits), cars(client)
    record = imported(client, worker, csv)
    assert dict(web.hits) == hits  # not one request
    assert cars(client) == before  # no version moved
    counts = record["counts"]
    assert (counts["unchanged"], counts["images_kept"]) == (2, 2)
    assert counts["created"] == counts["updated"] == counts["images_fetched"] == 0
    for entry in entries(record).values():
        assert (entry["action"], entry["image"]) == ("unchanged", "kept")


# What comes back is problem+json, never a 500.


def test_a_binary_csv_body_fails_the_import_as_not_a_csv(
    client: TestClient, worker: Worker
) -> None:
    record = imported(client, worker, PNG_HEAD + bytes(range(256)))
    assert record["status"] == "failed"
    assert record["error"] == "The file is not a CSV: it looks like a PNG image."
    assert cars(client) == []


@pytest.mark.parametrize("sent", ["whole", "chunked"])
def test_a_csv_body_over_the_limit_is_413(client: TestClient, sent: str) -> None:
    csv = b"title\n" + b"A car\n" * MAX_CSV_BYTES
    # Chunked, no Content-Length tells the size up front: the route counts as it reads.
    content = csv if sent == "whole" else (csv[i : i + 1000] for i in range(0, len(csv), 1000))
    response = client.post(IMPORTS, content=content, headers={"Content-Type": "text/csv"})
    assert re.search(r"exceeds 8,?192 bytes", problem(response, 413)["detail"])
    assert client.get(IMPORTS).json()["total"] == 0


@pytest.mark.parametrize("content_type", ["application/xml", "multipart/form-data", None])
def test_a_body_of_another_type_is_415(client: TestClient, content_type: str | None) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.post(IMPORTS, content=b"<cars/>", headers=headers)
    assert "text/csv" in problem(response, 415)["detail"]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b'{"url": "http://example.com/cars.csv", "colour": "red"}', 422),
        (b'{"sync": true}', 422),
        (b'{"url": 5}', 422),
        (b'{"url": "http://example.com/cars.csv", "sync": "maybe"}', 422),
        (b"[]", 422),
        (b'{"url": ', 400),  # not JSON at all: malformed, as everywhere in the API
        (b"", 400),
    ],
)
def test_a_json_body_that_is_not_an_import_request_is_refused(
    client: TestClient, body: bytes, status: int
) -> None:
    response = client.post(IMPORTS, content=body, headers={"Content-Type": "application/json"})
    problem(response, status)
    assert client.get(IMPORTS).json()["total"] == 0


# Bugs in the code under test, kept visible until they are fixed.


def test_truncated_images_thumbnailed_side_by_side_all_say_truncated(
    client: TestClient, web: WebServer, worker_with: WorkerWith
) -> None:
    whole = picture(400, 300)
    # Cut at different places, so no two have the same bytes (each is decoded).
    rows = [(f"Cut {n}", web.image(f"/cut{n}.jpg", whole[: 9000 + 97 * n])) for n in range(60)]
    record = imported(client, worker_with(cars_thumbnail_threads=2), csv_of(*rows))
    reasons = {entry["problems"][0]["reason"] for entry in entries(record).values()}
    assert reasons == {"truncated image"}


def test_the_same_picture_from_another_url_is_reused(
    client: TestClient, web: WebServer, worker: Worker
) -> None:
    first = entries(
        imported(client, worker, csv_of(("First", web.image("/a.jpg", picture(64, 48)))))
    )
    assert_ready(client, first["First"])
    again = imported(client, worker, csv_of(("Second", web.image("/b.jpg", picture(64, 48)))))
    second = entries(again)["Second"]
    assert second["image"] == "reused", second
    assert car(client, second["car_id"])["image_status"] == "ready"
    assert again["counts"]["images_reused"] == 1


def test_a_dns_failure_does_not_promise_a_retry(client: TestClient, worker: Worker) -> None:
    record = imported(client, worker, csv_of(("Nowhere", "http://car-images.invalid/a.jpg")))
    assert_failed_row(client, entries(record)["Nowhere"], "does not resolve")
    assert "retried" not in entries(record)["Nowhere"]["problems"][0]["reason"]


def test_a_redirect_without_a_location_is_named_as_such(
    client: TestClient, web: WebServer, worker: Worker
) -> None:
    record = imported(client, worker, csv_of(("Moved", web.add("/moved.jpg", Route(status=302)))))
    reason = entries(record)["Moved"]["problems"][0]["reason"]
    assert "more than 5" not in reason, reason
    assert "HTTP 302" in reason, reason
