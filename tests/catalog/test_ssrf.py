"""Imports and the URLs they may follow (issue 10): a CSV URL that is not a usable http(s)
URL is refused at once (422; exit code 1 in the CLI); a URL in a CSV, or of the CSV, never
reaches an internal address, however it is written or redirected, unless
WHARF_OUTBOUND_ALLOW lists its host; redirects are followed five times, not six.

A canary, a second web server on 127.0.0.1 that is not allowed, stands for the internal
service: every disguised form of its address is tried, and it must see no request at all.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from typer.testing import CliRunner

from tests.catalog.conftest import drain
from tests.catalog.imagefixtures import jpeg
from tests.catalog.test_import_failures import (
    IMPORTS,
    TIMEOUT,
    assert_failed_row,
    assert_ready,
    cars,
    chain,
    csv_of,
    entries,
    imported,
    problem,
    record_of,
)
from tests.catalog.webserver import Route, WebServer, serving
from wharf.app import job_handlers
from wharf.cli import app as cli
from wharf.core.config import Settings
from wharf.core.outbound import Outbound
from wharf.core.work import Worker

# Every way to write an internal address that is not allowed, most of them the canary's:
# (template with {port}, the canary's, and {allowed}, the web server's host:port), and what
# the refusal says.
DISGUISED: dict[str, tuple[str, str]] = {
    "loopback": ("http://127.0.0.1:{port}/car.jpg", "resolves to 127.0.0.1, a loopback address"),
    "localhost": ("http://localhost:{port}/car.jpg", "a loopback address"),
    "localhost-upper": ("http://LOCALHOST:{port}/car.jpg", "a loopback address"),
    "private-10": ("http://10.0.0.1:{port}/car.jpg", "resolves to 10.0.0.1, a private address"),
    "private-192": ("http://192.168.1.1:{port}/car.jpg", "192.168.1.1, a private address"),
    "private-172": ("http://172.16.0.1/car.jpg", "172.16.0.1, a private address"),
    "shared": ("http://100.64.0.1/car.jpg", "a shared (carrier-grade NAT) address"),
    "metadata": (
        "http://169.254.169.254/latest/meta-data/",
        "resolves to 169.254.169.254, a cloud metadata address",
    ),
    "metadata-ipv6": ("http://[fd00:ec2::254]/latest/", "a cloud metadata address"),
    "link-local": ("http://169.254.1.1:{port}/car.jpg", "a link-local address"),
    "unspecified": ("http://0.0.0.0:{port}/car.jpg", "the unspecified address"),
    "zero": ("http://0:{port}/car.jpg", "the unspecified address"),
    "ipv6-loopback": ("http://[::1]:{port}/car.jpg", "resolves to ::1, a loopback address"),
    "ipv6-unspecified": ("http://[::]:{port}/car.jpg", "the unspecified address"),
    "ipv4-mapped": (
        "http://[::ffff:127.0.0.1]:{port}/car.jpg",
        "which carries 127.0.0.1, a loopback address",
    ),
    "ipv4-mapped-long": (
        "http://[0:0:0:0:0:ffff:7f00:1]:{port}/car.jpg",
        "which carries 127.0.0.1, a loopback address",
    ),
    "ipv4-compatible": ("http://[::127.0.0.1]:{port}/car.jpg", "a reserved address"),
    "nat64": ("http://[64:ff9b::7f00:1]:{port}/car.jpg", "which carries 127.0.0.1"),
    "6to4": ("http://[2002:7f00:1::]:{port}/car.jpg", "which carries 127.0.0.1"),
    "decimal": ("http://2130706433:{port}/car.jpg", "resolves to 127.0.0.1, a loopback address"),
    "hex": ("http://0x7f000001:{port}/car.jpg", "resolves to 127.0.0.1, a loopback address"),
    "hex-dotted": ("http://0x7f.1:{port}/car.jpg", "resolves to 127.0.0.1, a loopback address"),
    "octal": ("http://0177.0.0.1:{port}/car.jpg", "Invalid IPv4 address"),
    "octal-whole": ("http://017700000001:{port}/car.jpg", "a loopback address"),
    "short": ("http://127.1:{port}/car.jpg", "resolves to 127.0.0.1, a loopback address"),
    "userinfo": ("http://{allowed}@127.0.0.1:{port}/car.jpg", "user name or password"),
    "backslash": ("http://127.0.0.1:{port}\\@{allowed}/car.jpg", "user name or password"),
    "fragment": ("http://127.0.0.1:{port}#@{allowed}/car.jpg", "a loopback address"),
}


@pytest.fixture
def canary() -> Iterator[WebServer]:
    """An internal service: on loopback, not in WHARF_OUTBOUND_ALLOW; serves what `web` does."""
    with serving() as server:
        server.image("/car.jpg", jpeg(64, 48, seed=7))
        server.add("/cars.csv", Route(body=csv_of(("From the canary", None))))
        server.add("/latest/meta-data/", Route(body=b"secret-role-credentials"))
        yield server


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"outbound_timeout_seconds": TIMEOUT, "outbound_connect_timeout_seconds": TIMEOUT}
    )


def disguised(case: str, canary: WebServer, web: WebServer) -> str:
    return DISGUISED[case][0].format(port=canary.port, allowed=web.allow)


# Image URLs in a CSV's rows.


def test_every_disguised_internal_image_url_fails_its_row_and_reaches_nothing(
    client: TestClient, web: WebServer, canary: WebServer, worker: Worker
) -> None:
    good = web.image("/good.jpg", jpeg(64, 48))
    also = web.image("/also.jpg", jpeg(64, 48, seed=2))
    rows = [(f"Sneaky {case}", disguised(case, canary, web)) for case in DISGUISED]
    record = imported(client, worker, csv_of(("Good", good), *rows, ("Good too", also)))
    assert record["status"] == "done"
    report = entries(record)
    for case, (_, expected) in DISGUISED.items():
        assert_failed_row(client, report[f"Sneaky {case}"], "the image URL was refused")
        assert expected in report[f"Sneaky {case}"]["problems"][0]["reason"], case
    assert_ready(client, report["Good"])
    assert_ready(client, report["Good too"])
    assert record["counts"]["images_failed"] == len(DISGUISED)
    assert canary.total() == 0


# URLs of a CSV: refused when the import is asked for, by POST or by the CLI.


# What the schema's pattern says, where it refuses a URL before the outbound client sees it.
PATTERN = "should match pattern"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("ftp://example.com/cars.csv", ("ftp: URLs are not accepted", PATTERN)),
        ("not a url", ("A URL without a scheme is not accepted", PATTERN)),
        ("cars.csv", ("A URL without a scheme is not accepted", PATTERN)),
        ("http://", ("The URL has no host", PATTERN)),
        ("http:///cars.csv", ("The URL has no host",)),
        ("javascript:alert(1)", ("javascript: URLs are not accepted", PATTERN)),
        ("http://user:secret@example.com/cars.csv", ("user name or password",)),
        ("http://cars.invalid/cars.csv", ("the host cars.invalid does not resolve",)),
        ("http://10.1.2.3/cars.csv", ("resolves to 10.1.2.3, a private address",)),
    ],
)
def test_an_invalid_csv_url_is_refused_at_once(
    client: TestClient, url: str, expected: tuple[str, ...]
) -> None:
    body = problem(client.post(IMPORTS, json={"url": url, "sync": True}), 422)
    assert any(text in body["detail"] for text in expected), body["detail"]
    assert [error["loc"] for error in body["errors"]] == [["body", "url"]]
    assert "secret" not in str(body)  # a password in a URL is never echoed
    assert client.get(IMPORTS).json()["total"] == 0  # no record was made


def cli_env(monkeypatch: pytest.MonkeyPatch, settings: Settings, tmp_path: Path) -> None:
    """The environment `wharf` reads its settings from: this test's database and limits."""
    monkeypatch.chdir(tmp_path)  # no .env of the repository's is read
    monkeypatch.setenv("WHARF_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("WHARF_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("WHARF_MEDIA_ROOT", str(tmp_path / "media"))
    monkeypatch.setenv("WHARF_OUTBOUND_ALLOW", settings.outbound_allow)
    monkeypatch.setenv("WHARF_OUTBOUND_TIMEOUT_SECONDS", str(TIMEOUT))


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("ftp://example.com/cars.csv", "The CSV URL was refused: ftp: URLs are not accepted"),
        ("http://", "The CSV URL was refused: The URL has no host"),
        # Without "://" the CLI reads a file: a mistyped URL is a file that is not there.
        ("not a url", "not a url: cannot be read: No such file or directory"),
        ("http://cars.invalid/cars.csv", "the host cars.invalid does not resolve"),
        ("http://192.168.7.7/cars.csv", "192.168.7.7, a private address"),
        ("{web}/missing.csv", "The CSV URL answered HTTP 404, not 200."),
    ],
)
def test_the_cli_fails_a_bad_csv_url_with_a_message_and_exit_code_1(
    client: TestClient,
    web: WebServer,
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    source: str,
    expected: str,
) -> None:
    cli_env(monkeypatch, settings, tmp_path)
    url = source.format(web=web.base)
    result = CliRunner().invoke(cli, ["cars", "import", url])
    assert result.exit_code == 1, (result.output, result.exception)
    assert expected in result.output, result.output
    assert "Traceback" not in result.output
    assert cars(client) == []
    for record in client.get(IMPORTS).json()["items"]:  # none for the file that is not there
        assert record["status"] == "failed"
        assert expected in record["error"]


def test_the_cli_shows_a_bracketed_host_in_its_message(
    client: TestClient, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli_env(monkeypatch, settings, tmp_path)
    result = CliRunner().invoke(cli, ["cars", "import", "http://[fe80::1]/cars.csv"])
    assert result.exit_code == 1
    assert "link-local address" in result.output  # the message is there...
    assert "http://[fe80::1]/" in result.output  # ...but not the host it names


def test_every_disguised_internal_csv_url_is_refused_at_once(
    client: TestClient, web: WebServer, canary: WebServer
) -> None:
    for case, (_, expected) in DISGUISED.items():
        url = disguised(case, canary, web).replace("/car.jpg", "/cars.csv")
        body = problem(client.post(IMPORTS, json={"url": url}), 422)
        assert expected in body["detail"], (case, body)
        assert [error["loc"] for error in body["errors"]] == [["body", "url"]]
    assert client.get(IMPORTS).json()["total"] == 0
    assert canary.total() == 0


# Redirects: each hop is checked again, and there are at most five.


def test_a_redirect_to_a_refused_address_fails_the_row(
    client: TestClient, web: WebServer, canary: WebServer, worker: Worker
) -> None:
    targets = {
        "to the canary": canary.url("/car.jpg"),
        "to the canary in disguise": f"http://0x7f000001:{canary.port}/car.jpg",
        "to the metadata service": "http://169.254.169.254/latest/meta-data/",
        "to a private address": "http://10.0.0.1/car.jpg",
        "to another scheme": "file:///etc/passwd",
    }
    rows = [(title, web.redirect(f"/hop/{n}", to)) for n, (title, to) in enumerate(targets.items())]
    good = web.image("/good.jpg", jpeg(64, 48))
    record = imported(client, worker, csv_of(*rows, ("Good", good)))
    report = entries(record)
    for title in targets:
        assert_failed_row(
            client,
            report[title],
            f"the image URL was refused: {web.base}/ redirected to a refused URL",
        )
    assert "file: URLs are not accepted" in report["to another scheme"]["problems"][0]["reason"]
    assert_ready(client, report["Good"])
    for n in range(len(targets)):
        assert web.hits[f"/hop/{n}"] == 1  # the allowed server was asked, and no further
    assert canary.total() == 0


@pytest.mark.parametrize("to", ["canary", "metadata"])
def test_a_csv_url_redirecting_to_a_refused_address_fails_the_import(
    client: TestClient, web: WebServer, canary: WebServer, worker: Worker, to: str
) -> None:
    assert client.post("/api/v1/cars", json={"title": "Kept"}).status_code == 201
    before = cars(client)
    target, why = {
        "canary": (canary.url("/cars.csv"), f"{canary.base}/ resolves to 127.0.0.1, a loopback"),
        "metadata": ("http://169.254.169.254/latest/user-data", "a cloud metadata address"),
    }[to]
    response = client.post(IMPORTS, json={"url": web.redirect("/cars.csv", target), "sync": True})
    assert response.status_code == 202, response.text  # the first hop is allowed
    drain(worker)
    record = record_of(client, response.json()["id"])
    assert record["status"] == "failed"
    refused = f"The CSV URL was refused: {web.base}/ redirected to a refused URL: "
    assert record["error"].startswith(refused), record["error"]
    assert why in record["error"]
    assert cars(client) == before
    assert canary.total() == 0


@pytest.mark.parametrize("hops", [5, 6])
def test_a_csv_url_is_followed_through_five_redirects_not_six(
    client: TestClient, web: WebServer, worker: Worker, hops: int
) -> None:
    csv = web.add("/cars.csv", Route(body=csv_of(("Far", None)), content_type="text/csv"))
    response = client.post(IMPORTS, json={"url": chain(web, "hop", hops, csv)})
    assert response.status_code == 202, response.text
    drain(worker)
    record = record_of(client, response.json()["id"])
    assert sum(web.hits[f"/hop/{hop}"] for hop in range(1, hops + 1)) == min(hops, 6)
    if hops == 5:
        assert record["status"] == "done", record
        assert record["counts"]["created"] == 1
        assert web.hits["/cars.csv"] == 1
    else:
        assert record["status"] == "failed"
        assert record["error"] == "The CSV URL redirected more than 5 times."
        assert web.hits["/cars.csv"] == 0
        assert cars(client) == []


def test_an_image_url_is_followed_through_five_redirects_not_six(
    client: TestClient, web: WebServer, worker: Worker
) -> None:
    five = chain(web, "five", 5, web.image("/five.jpg", jpeg(64, 48, seed=5)))
    six = chain(web, "six", 6, web.image("/six.jpg", jpeg(64, 48, seed=6)))
    report = entries(imported(client, worker, csv_of(("Five", five), ("Six", six))))
    assert_ready(client, report["Five"])
    assert_failed_row(client, report["Six"], "the image URL redirected more than 5 times")
    assert (web.hits["/five.jpg"], web.hits["/six.jpg"]) == (1, 0)


# WHARF_OUTBOUND_ALLOW.


def test_only_the_hosts_wharf_outbound_allow_lists_are_reached(
    client: TestClient,
    web: WebServer,
    canary: WebServer,
    worker: Worker,
    app: FastAPI,
    engine: Engine,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A picture on each server: only the listed one (`web`) may be reached.
    csv = csv_of(
        ("Listed", web.image("/car.jpg", jpeg(64, 48))), ("Unlisted", canary.url("/car.jpg"))
    )
    report = entries(imported(client, worker, csv))
    assert_ready(client, report["Listed"])
    assert_failed_row(
        client, report["Unlisted"], f"{canary.base}/ resolves to 127.0.0.1, a loopback address"
    )
    refused = client.post(IMPORTS, json={"url": canary.url("/cars.csv")})
    assert "a loopback address" in problem(refused, 422)["detail"]
    assert canary.total() == 0
    # Listing the canary too (host:port, as the variable takes it) lets it through.
    monkeypatch.setenv("WHARF_OUTBOUND_ALLOW", f" {web.allow} , {canary.allow} ")
    listed = Settings(_env_file=None, database_url=settings.database_url)
    assert listed.outbound_allowed == {web.allow, canary.allow}
    tuned = settings.model_copy(update={"outbound_allow": listed.outbound_allow})
    handlers = job_handlers(
        tuned,
        engine=engine,
        keys=app.state.keys,
        outbound=Outbound.from_settings(tuned),
        storage=app.state.storage,
    )
    again = entries(
        imported(client, Worker(engine, handlers, poll_seconds=0.01, lease_seconds=30), csv)
    )
    assert again["Unlisted"]["car_id"] == report["Unlisted"]["car_id"]
    assert again["Unlisted"]["action"] == "updated"
    assert_ready(client, again["Unlisted"])
    assert (again["Listed"]["action"], again["Listed"]["image"]) == ("unchanged", "kept")
    assert canary.hits["/car.jpg"] == 1
