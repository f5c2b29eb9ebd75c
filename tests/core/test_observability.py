"""Request ids, the JSON access log, /metrics, and the /healthz and /readyz probes."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient
from starlette.types import ASGIApp, Receive, Scope, Send

from tests.conftest import UserFactory, auth, front_layer
from tests.servers import serve
from wharf.app import create_app
from wharf.core.config import Settings
from wharf.core.data.db import create_db_engine
from wharf.core.http import exposition, observability
from wharf.core.http.exposition import MULTIPROC_ENV, multiprocess_metrics
from wharf.core.http.middleware import HttpContract
from wharf.core.http.observability import UNMATCHED
from wharf.core.logging import JsonFormatter
from wharf.core.metrics import DB_POOL_CHECKED_OUT, DB_POOL_SIZE

COMPANIES = "/api/v1/companies"
LOGIN = "/api/v1/auth/token"
PASSWORD = "correct horse battery"  # what make_user gives every user
TEST_CLIENT_LOGGERS = {"httpx", "httpx2", "httpcore"}
FIELDS = {
    "request_id",
    "method",
    "route",
    "path",
    "status",
    "duration_ms",
    "principal_id",
    "user_agent",
}


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def access() -> Iterator[list[logging.LogRecord]]:
    """Every record of the `wharf.access` logger during the test."""
    handler = Collect()
    logger = logging.getLogger("wharf.access")
    logger.addHandler(handler)
    yield handler.records
    logger.removeHandler(handler)


@pytest.fixture
def everything(app: FastAPI) -> Iterator[list[logging.LogRecord]]:
    """Every record of every logger (Wharf's, the framework's, the root), at every level."""
    handler = Collect()
    loggers = [logging.getLogger(), logging.getLogger("wharf")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    yield handler.records
    for logger, level in zip(loggers, levels, strict=True):
        logger.removeHandler(handler)
        logger.setLevel(level)


def fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: getattr(record, k) for k in FIELDS}


def one_line_for(records: list[logging.LogRecord], request_id: str) -> dict[str, Any]:
    lines = [fields(r) for r in records if getattr(r, "request_id", None) == request_id]
    assert len(lines) == 1, lines
    return lines[0]


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def scrape(client: TestClient, **headers: str) -> dict[str, Any]:
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {f.name: f for f in text_string_to_metric_families(response.text)}


def make_company(client: TestClient, name: str = "Acme") -> dict[str, Any]:
    response = client.post(COMPANIES, json={"name": name})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


# The access log


def test_one_json_line_per_request_with_every_field(
    anon: TestClient, make_user: UserFactory, access: list[logging.LogRecord]
) -> None:
    user_id, token = make_user(role="admin")
    anon.headers.update(auth(token))
    company = make_company(anon)
    access.clear()
    response = anon.get(
        f"{COMPANIES}/{company['id']}",
        headers={"X-Request-ID": "trace-7", "User-Agent": "probe/1.0"},
    )
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "trace-7"
    assert len(access) == 1
    line = fields(access[0])
    assert line == {
        "request_id": "trace-7",
        "method": "GET",
        "route": "/api/v1/companies/{company_id}",
        "path": f"/api/v1/companies/{company['id']}",
        "status": 200,
        "duration_ms": line["duration_ms"],
        "principal_id": user_id,
        "user_agent": "probe/1.0",
    }
    assert 0 < line["duration_ms"] < 10_000
    # The formatter writes it as one JSON object on one line.
    text = JsonFormatter().format(access[0])
    assert "\n" not in text
    parsed = json.loads(text)
    assert parsed["logger"] == "wharf.access"
    assert set(parsed) >= FIELDS


def test_generated_request_id_is_logged_and_returned(
    client: TestClient, access: list[logging.LogRecord]
) -> None:
    response = client.get(COMPANIES)
    generated = response.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    assert one_line_for(access, generated)["status"] == 200


def test_an_insane_request_id_is_replaced_in_the_log_too(
    client: TestClient, access: list[logging.LogRecord]
) -> None:
    response = client.get(COMPANIES, headers={"X-Request-ID": 'x" injected="1'})
    returned = response.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", returned)
    assert [getattr(r, "request_id", None) for r in access] == [returned]


def test_anonymous_requests_log_no_principal(
    anon: TestClient, access: list[logging.LogRecord]
) -> None:
    response = anon.get(COMPANIES, headers={"X-Request-ID": "anon-1"})
    assert response.status_code == 401
    line = one_line_for(access, "anon-1")
    assert line["principal_id"] is None
    assert line["route"] == COMPANIES
    assert line["status"] == 401


def test_unknown_paths_are_one_route_in_logs_and_metrics(
    client: TestClient, access: list[logging.LogRecord]
) -> None:
    before = sample("wharf_http_requests_total", route=UNMATCHED, method="GET", status="404")
    for n in range(3):
        response = client.get(f"/api/v1/nowhere/{n}", headers={"X-Request-ID": f"lost-{n}"})
        assert response.status_code == 404
        line = one_line_for(access, f"lost-{n}")
        assert line["route"] == UNMATCHED
        assert line["path"] == f"/api/v1/nowhere/{n}"  # the path itself is still logged
    after = sample("wharf_http_requests_total", route=UNMATCHED, method="GET", status="404")
    assert after - before == 3


def test_a_missing_object_keeps_its_route_template(
    client: TestClient, access: list[logging.LogRecord]
) -> None:
    response = client.get(f"{COMPANIES}/999999", headers={"X-Request-ID": "gone-1"})
    assert response.status_code == 404
    assert one_line_for(access, "gone-1")["route"] == "/api/v1/companies/{company_id}"


def test_wrong_method_is_logged_under_the_route(
    client: TestClient, access: list[logging.LogRecord]
) -> None:
    response = client.delete(COMPANIES, headers={"X-Request-ID": "m-1"})
    assert response.status_code == 405
    assert one_line_for(access, "m-1")["route"] == COMPANIES


@pytest.mark.parametrize(
    ("method", "headers", "body", "status"),
    [
        ("GET", {"Accept": "text/html"}, None, 406),
        ("POST", {"Content-Type": "text/plain"}, b"name=x", 415),
        ("POST", {"Content-Type": "application/json"}, b"x" * (11 * 1024 * 1024), 413),
    ],
)
def test_answers_before_routing_are_logged_with_a_request_id(
    client: TestClient,
    access: list[logging.LogRecord],
    method: str,
    headers: dict[str, str],
    body: bytes | None,
    status: int,
) -> None:
    response = client.request(
        method, COMPANIES, headers={"X-Request-ID": "early-1", **headers}, content=body
    )
    assert response.status_code == status
    assert response.headers["x-request-id"] == "early-1"
    line = one_line_for(access, "early-1")
    assert line["status"] == status
    assert line["route"] == COMPANIES  # refused before routing, but the path names its route


def test_the_trailing_slash_path_is_logged_as_asked(
    client: TestClient, access: list[logging.LogRecord]
) -> None:
    client.get(f"{COMPANIES}/", headers={"X-Request-ID": "slash-1"})
    line = one_line_for(access, "slash-1")
    assert line["path"] == f"{COMPANIES}/"
    assert line["route"] == COMPANIES


def test_user_agent_is_truncated(client: TestClient, access: list[logging.LogRecord]) -> None:
    client.get(COMPANIES, headers={"X-Request-ID": "ua-1", "User-Agent": "a" * 5000})
    assert one_line_for(access, "ua-1")["user_agent"] == "a" * 256


def test_query_strings_are_not_logged(
    client: TestClient, everything: list[logging.LogRecord]
) -> None:
    client.get(COMPANIES, params={"search": "s3cr3t-in-the-query"})
    assert everything
    assert "s3cr3t-in-the-query" not in _dump(everything)


def test_no_password_or_token_reaches_any_log(
    anon: TestClient, make_user: UserFactory, everything: list[logging.LogRecord]
) -> None:
    make_user(email="ada@example.com")
    wrong = "not-the-password-but-secret-too"
    assert anon.post(LOGIN, data={"username": "ada@example.com", "password": wrong}).status_code
    login = anon.post(LOGIN, data={"username": "ada@example.com", "password": PASSWORD})
    assert login.status_code == 200, login.text
    token = login.json()["access_token"]
    assert anon.get(COMPANIES, headers=auth(token)).status_code == 200
    assert anon.post(COMPANIES, json={"name": "Acme"}, headers=auth(token)).status_code == 201
    minted = anon.post(
        "/api/v1/auth/tokens", json={"name": "ci", "scopes": ["read"]}, headers=auth(token)
    )
    assert minted.status_code == 201, minted.text
    api_token = minted.json()["token"]
    assert anon.get(COMPANIES, headers=auth(api_token)).status_code == 200
    assert anon.get(COMPANIES, headers=auth(token[:-3] + "xyz")).status_code == 401
    text = _dump(everything)
    assert '"/api/v1/auth/token"' in text or "/api/v1/auth/token" in text  # we did capture
    for secret in (PASSWORD, wrong, token, api_token, token[:-3]):
        assert secret not in text


def _dump(records: list[logging.LogRecord]) -> str:
    """Everything a server's record could put into a log line: message, extras, exception."""
    formatter = logging.Formatter()
    parts = []
    for record in records:
        if record.name.split(".")[0] in TEST_CLIENT_LOGGERS:
            continue  # the test's own HTTP client, which logs the URLs it asks for
        parts.append(record.getMessage())
        parts.append(repr(record.__dict__))
        if record.exc_info:
            parts.append(formatter.formatException(record.exc_info))
    return "\n".join(parts)


def test_the_json_formatter_redacts_a_token_that_slips_through() -> None:
    token = "wharf_" + "Ab9-_" * 9
    record = logging.makeLogRecord(
        {"name": "wharf.x", "msg": "oops %s", "args": (token,), "levelno": 20}
    )
    record.levelname = "INFO"
    record.extra_field = f"Bearer {token}"
    line = JsonFormatter().format(record)
    assert token not in line
    assert json.loads(line)["extra_field"] == "Bearer wharf_[redacted]"
    # Metric and logger names that merely start with wharf_ are left alone.
    record = logging.makeLogRecord({"msg": "wharf_http_requests_total", "levelname": "INFO"})
    assert "wharf_http_requests_total" in JsonFormatter().format(record)


def test_the_json_formatter_keeps_an_exception_on_one_line() -> None:
    record = logging.makeLogRecord({"name": "wharf.test", "msg": "failed", "levelname": "ERROR"})
    try:
        raise ValueError("bad\nthing")
    except ValueError:
        record.exc_info = sys.exc_info()
    line = JsonFormatter().format(record)
    assert "\n" not in line
    parsed = json.loads(line)
    assert parsed["level"] == "error"
    assert "ValueError: bad" in parsed["error"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", parsed["time"])


def test_an_unhandled_error_is_logged_once_with_the_request_id(
    app: FastAPI, make_user: UserFactory, everything: list[logging.LogRecord]
) -> None:
    async def boom() -> None:
        raise RuntimeError("kaboom")

    app.add_api_route("/boom", boom)
    # raise_server_exceptions=True: an exception that left the app would be raised here, as
    # it would reach uvicorn, which would log its traceback a second time.
    with TestClient(app) as client:
        response = client.get("/boom", headers={"X-Request-ID": "err-1"})
    line = assert_one_500(response, everything, "err-1", secret="kaboom")
    assert line["route"] == "/boom"
    assert next(r for r in everything if r.name == "wharf.access").__dict__["error"] == (
        "RuntimeError"
    )


def test_an_error_in_front_of_routing_is_answered_and_logged_once(
    app: FastAPI, client: TestClient, everything: list[logging.LogRecord], monkeypatch: Any
) -> None:
    # The layers in front of FastAPI (contract, rate limit, cache) run outside Starlette's
    # error middleware; the observability layer answers for them.
    def broken(*_: object) -> None:
        raise RuntimeError("front fell over")

    contract = front_layer(app, HttpContract)
    monkeypatch.setattr(contract, "_refuse", broken)
    response = client.get("/api/v1/companies", headers={"X-Request-ID": "front-1"})
    assert_one_500(response, everything, "front-1", secret="fell over")


def assert_one_500(
    response: httpx2.Response, records: list[logging.LogRecord], request_id: str, *, secret: str
) -> dict[str, Any]:
    """A 500 problem naming the request id and not the error, one traceback logged with the
    id, and the access line; which is returned."""
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["x-request-id"] == request_id
    assert response.json()["status"] == 500
    assert request_id in response.json()["detail"]
    assert secret not in response.text
    tracebacks = [r for r in records if r.exc_info]
    assert len(tracebacks) == 1, tracebacks
    assert getattr(tracebacks[0], "request_id", None) == request_id
    line = one_line_for([r for r in records if r.name == "wharf.access"], request_id)
    assert line["status"] == 500
    return line


def test_a_layer_in_front_of_routing_can_name_the_route(
    app: FastAPI, access: list[logging.LogRecord]
) -> None:
    class AnswersEarly:
        def __init__(self, app: ASGIApp) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http" and scope["path"] == "/early/7":
                scope[observability.ROUTE_KEY] = "/early/{n}"
                await send({"type": "http.response.start", "status": 200, "headers": []})
                await send({"type": "http.response.body", "body": b"{}"})
                return
            await self.app(scope, receive, send)

    app.add_middleware(AnswersEarly)
    with TestClient(app) as client:
        response = client.get("/early/7", headers={"X-Request-ID": "early-7"})
    assert response.headers["x-request-id"] == "early-7"
    assert one_line_for(access, "early-7")["route"] == "/early/{n}"


def test_the_access_log_follows_the_log_level(
    database_url: str, tmp_path: Path, access: list[logging.LogRecord]
) -> None:
    settings = Settings(
        _env_file=None, database_url=database_url, var_dir=tmp_path, log_level="WARNING"
    )
    try:
        with TestClient(create_app(settings)) as client:
            assert client.get("/healthz").status_code == 200
        assert access == []
    finally:
        logging.getLogger("wharf").setLevel(logging.INFO)


# Request metrics and /metrics


def test_requests_and_latency_are_counted_by_route_template(client: TestClient) -> None:
    template = "/api/v1/companies/{company_id}"
    ids = [make_company(client, f"Co {n}")["id"] for n in range(3)]
    labels = {"route": template, "method": "GET"}
    count_before = sample("wharf_http_requests_total", **labels, status="200")
    latency_before = sample("wharf_http_request_duration_seconds_count", **labels)
    for company_id in ids:
        assert client.get(f"{COMPANIES}/{company_id}").status_code == 200
    assert sample("wharf_http_requests_total", **labels, status="200") - count_before == 3
    assert sample("wharf_http_request_duration_seconds_count", **labels) - latency_before == 3
    for company_id in ids:  # a label per template, never per id
        assert (
            REGISTRY.get_sample_value(
                "wharf_http_requests_total",
                {"route": f"{COMPANIES}/{company_id}", "method": "GET", "status": "200"},
            )
            is None
        )


def test_metrics_reports_requests_latency_cache_rate_limits_and_the_pool(
    client: TestClient, settings: Settings
) -> None:
    company = make_company(client)
    for _ in range(2):
        client.get(f"{COMPANIES}/{company['id']}")
    client.get("/api/v1/nowhere")
    families = scrape(client)
    requests = {
        (s.labels["route"], s.labels["method"], s.labels["status"]): s.value
        for s in families["wharf_http_requests"].samples
    }
    assert requests[("/api/v1/companies/{company_id}", "GET", "200")] >= 2
    assert requests[(COMPANIES, "POST", "201")] >= 1
    assert requests[(UNMATCHED, "GET", "404")] >= 1
    assert not any(route.startswith(f"{COMPANIES}/") and "{" not in route for route, *_ in requests)
    latency = families["wharf_http_request_duration_seconds"]
    assert latency.type == "histogram"
    assert any(s.labels.get("le") == "+Inf" for s in latency.samples)
    for name in ("wharf_cache_lookups", "wharf_rate_limited", "wharf_backend_errors"):
        assert families[name].type == "counter"
    # The pool is read at scrape time; the scrape itself holds one connection (for the auth).
    assert families["wharf_db_pool_size"].samples[0].value == settings.database_pool_size
    assert families["wharf_db_pool_checked_out"].samples[0].value == 1


def test_metrics_needs_an_admin_token(anon: TestClient, make_user: UserFactory) -> None:
    response = anon.get("/metrics")
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"].lower().startswith("bearer")
    _, user_token = make_user(role="user")
    assert anon.get("/metrics", headers=auth(user_token)).status_code == 403
    _, reader_token = make_user(role="admin", scopes=frozenset({"read"}))
    assert anon.get("/metrics", headers=auth(reader_token)).status_code == 403
    _, admin_token = make_user(role="admin")
    assert "wharf_http_requests" in scrape(anon, **auth(admin_token))


def test_metrics_can_be_made_public(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WHARF_METRICS_PUBLIC", "true")
    settings = Settings(_env_file=None, database_url=database_url, var_dir=tmp_path)
    assert settings.metrics_public
    with TestClient(create_app(settings)) as client:
        families = scrape(client)
    # No token, so no connection is checked out while the pool is read.
    assert families["wharf_db_pool_checked_out"].samples[0].value == 0


def test_metrics_is_in_the_openapi_document_with_its_security(anon: TestClient) -> None:
    operation = anon.get("/openapi.json").json()["paths"]["/metrics"]["get"]
    assert operation["security"]
    assert "text/plain" in operation["responses"]["200"]["content"]


def test_pool_gauges_follow_checkouts_for_multiprocess_mode(database_url: str) -> None:
    # With several workers the pool gauges are kept from pool events; the arithmetic is the
    # same in one process, so it is checked here on an engine of its own.
    engine = create_db_engine(database_url, pool_size=3)

    def checked_out() -> float:
        value: float = next(iter(DB_POOL_CHECKED_OUT.collect())).samples[0].value
        return value - start

    try:
        start = 0.0
        start = checked_out()
        exposition.track_pool(engine)
        assert next(iter(DB_POOL_SIZE.collect())).samples[0].value == 3
        with engine.connect(), engine.connect():
            assert checked_out() == 2
        assert checked_out() == 0
        engine.dispose()  # a new pool, as after a dropped connection: the listeners carry over
        with engine.connect():
            assert checked_out() == 1
        assert checked_out() == 0
    finally:
        engine.dispose()


def test_multiprocess_metrics_wipes_the_directory_and_restores_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    directory = tmp_path / "prometheus"
    directory.mkdir()
    (directory / "counter_1.db").write_bytes(b"stale")
    with multiprocess_metrics(directory):
        assert os.environ[MULTIPROC_ENV] == str(directory.resolve())
        assert list(directory.iterdir()) == []
    assert MULTIPROC_ENV not in os.environ


def test_metrics_of_every_worker_are_reported_by_each(database_url: str, tmp_path: Path) -> None:
    """`wharf serve --workers 2`: whichever worker answers /metrics reports both."""
    pool_size = Settings(_env_file=None).database_pool_size
    directory = tmp_path / "var" / "prometheus"
    with serve(database_url, tmp_path, workers=2) as server:

        def scrape_fresh() -> dict[str, Any]:
            # A new connection each time, so the two workers share the requests.
            with httpx2.Client(base_url=server.base_url, timeout=10) as client:
                response = client.get("/metrics", headers=auth(server.token))
            assert response.status_code == 200, response.text
            return {f.name: f for f in text_string_to_metric_families(response.text)}

        def gauge(families: dict[str, Any], name: str) -> float:
            value: float = families[name].samples[0].value
            return value

        def live_workers() -> set[int]:
            return {
                int(m) for m in re.findall(r"gauge_livesum_(\d+)", str(list(directory.iterdir())))
            }

        def wait_for_both(reason: str, gone: int = 0) -> None:
            deadline = time.monotonic() + 45
            while True:
                size = gauge(scrape_fresh(), "wharf_db_pool_size")  # drops dead workers first
                if size == 2 * pool_size and gone not in live_workers():
                    return
                assert time.monotonic() < deadline, (reason, size, live_workers())
                time.sleep(0.2)

        wait_for_both("the second worker never reported its pool")
        for _ in range(20):
            with httpx2.Client(base_url=server.base_url, timeout=10) as client:
                assert client.get("/readyz").status_code == 200
        for _ in range(6):
            families = scrape_fresh()
            readyz = sum(
                s.value
                for s in families["wharf_http_requests"].samples
                if s.labels["route"] == "/readyz" and s.labels["status"] == "200"
            )
            assert readyz == 20
            # The scrape's own auth holds one connection; every other checkout was returned.
            assert gauge(families, "wharf_db_pool_checked_out") == 1
        workers = live_workers()
        assert len(workers) == 2

        # A worker that dies is replaced by uvicorn; its pool must leave the live sum.
        victim = min(workers)
        os.kill(victim, signal.SIGKILL)
        wait_for_both("the replacement worker never took the dead one's place", gone=victim)
        assert len(live_workers()) == 2


# /healthz and /readyz


def test_healthz_does_not_touch_the_database(app: FastAPI, anon: TestClient) -> None:
    good = app.state.engine
    app.state.engine = create_db_engine("postgresql://postgres@127.0.0.1:1/nothing")
    try:
        assert anon.get("/healthz").json() == {"status": "ok"}
        assert anon.get("/readyz").status_code == 503
    finally:
        app.state.engine.dispose()
        app.state.engine = good


def test_readyz_without_redis_checks_the_database(anon: TestClient) -> None:
    response = anon.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "database": "ok"}


def test_readyz_names_the_database_when_it_is_down(app: FastAPI, anon: TestClient) -> None:
    good = app.state.engine
    app.state.engine = create_db_engine("postgresql://postgres@127.0.0.1:1/nothing")
    try:
        response = anon.get("/readyz")
    finally:
        app.state.engine.dispose()
        app.state.engine = good
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == 503
    assert body["database"] == "down"
    assert "database" in body["detail"]


def _redis_app(database_url: str, tmp_path: Path, redis_url: str) -> FastAPI:
    settings = Settings(
        _env_file=None,
        database_url=database_url,
        var_dir=tmp_path,
        redis_url=redis_url,
        cache="off",  # only the probe talks to Redis here
        rate_limits_enabled=False,
    )
    return create_app(settings)


def test_readyz_checks_redis_when_configured(
    database_url: str, tmp_path: Path, redis_url: str
) -> None:
    with TestClient(_redis_app(database_url, tmp_path, redis_url)) as client:
        response = client.get("/readyz")
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "ready", "database": "ok", "redis": "ok"}


def test_readyz_names_redis_when_it_is_down(database_url: str, tmp_path: Path) -> None:
    app = _redis_app(database_url, tmp_path, "redis://127.0.0.1:1/0")
    with TestClient(app) as client:
        began = time.monotonic()
        response = client.get("/readyz")
        elapsed = time.monotonic() - began
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["redis"] == "down"
    assert body["database"] == "ok"
    assert body["detail"] == "Not ready: redis is unreachable."
    assert response.headers["retry-after"] == "5"
    assert elapsed < 5
