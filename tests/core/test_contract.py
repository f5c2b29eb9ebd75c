"""The HTTP contract every endpoint keeps (API.md), exercised through the CRM companies."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from httpx2 import Response
from starlette.testclient import TestClient

from tests.conftest import UserFactory, auth
from wharf.app import create_app
from wharf.core.config import Settings

COMPANIES = "/api/v1/companies"
PROBLEM_KEYS = {"type", "title", "status", "detail", "instance"}


def assert_problem(response: Response, status: int) -> dict[str, Any]:
    """An RFC 9457 problem whose `status` is the HTTP status and `instance` the path."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body.keys() >= PROBLEM_KEYS
    assert body["status"] == status
    assert isinstance(body["title"], str)
    assert isinstance(body["detail"], str)
    assert body["title"]
    assert body["detail"]
    assert body["instance"] == response.request.url.path.rstrip("/")
    return body


def make_company(client: TestClient, name: str = "Acme") -> dict[str, Any]:
    response = client.post(COMPANIES, json={"name": name})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


# Errors are problem+json


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        ("GET", "/api/v1/nowhere", {}, 404),
        ("GET", f"{COMPANIES}/999", {}, 404),
        ("DELETE", COMPANIES, {}, 405),
        (
            "POST",
            COMPANIES,
            {"content": b"{", "headers": {"Content-Type": "application/json"}},
            400,
        ),
        ("POST", COMPANIES, {"json": {}}, 422),
        ("POST", COMPANIES, {"content": b"name=x", "headers": {"Content-Type": "text/plain"}}, 415),
        ("GET", COMPANIES, {"headers": {"Accept": "text/html"}}, 406),
        ("GET", COMPANIES, {"params": {"limit": 501}}, 422),
        ("GET", COMPANIES, {"params": {"ordering": "colour"}}, 422),
        ("PATCH", f"{COMPANIES}/1", {"json": {"name": "B"}}, 428),
        ("GET", COMPANIES, {"headers": {"Authorization": "Bearer nonsense"}}, 401),
        ("POST", "/api/v1/auth/token", {"data": {"username": "x@example.com"}}, 422),
    ],
)
def test_every_error_is_problem_json(
    client: TestClient, method: str, path: str, kwargs: dict[str, Any], status: int
) -> None:
    make_company(client)
    assert_problem(client.request(method, path, **kwargs), status)


def test_unknown_path_is_404_problem(client: TestClient) -> None:
    body = assert_problem(client.get("/api/v1/no-such-thing"), 404)
    assert body["instance"] == "/api/v1/no-such-thing"


def test_unknown_path_outside_the_api_is_404_problem(anon: TestClient) -> None:
    assert_problem(anon.get("/no-such-page"), 404)


def test_wrong_method_is_405_problem_with_allow(client: TestClient) -> None:
    response = client.delete(COMPANIES)
    assert_problem(response, 405)
    assert "GET" in response.headers["allow"]


def test_malformed_json_is_400(client: TestClient) -> None:
    response = client.post(
        COMPANIES, content=b'{"name": "Acme",', headers={"Content-Type": "application/json"}
    )
    assert_problem(response, 400)
    assert client.get(COMPANIES).json()["total"] == 0


def test_validation_error_is_422_with_errors(client: TestClient) -> None:
    body = assert_problem(client.post(COMPANIES, json={"name": ""}), 422)
    assert body["errors"], body
    for error in body["errors"]:
        assert set(error) == {"loc", "msg", "type"}
        assert isinstance(error["loc"], list)
        assert isinstance(error["msg"], str)
        assert isinstance(error["type"], str)
    assert body["errors"][0]["loc"] == ["body", "name"]


def test_missing_field_is_422(client: TestClient) -> None:
    body = assert_problem(client.post(COMPANIES, json={}), 422)
    assert {"loc": ["body", "name"], "msg": "Field required", "type": "missing"} in body["errors"]


def test_unknown_body_field_is_422(client: TestClient) -> None:
    body = assert_problem(client.post(COMPANIES, json={"name": "Acme", "colour": "red"}), 422)
    assert any(e["loc"] == ["body", "colour"] for e in body["errors"])
    assert client.get(COMPANIES).json()["total"] == 0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("id", 7),
        ("url", "http://testserver/api/v1/companies/7"),
        ("created_at", "2020-01-01T00:00:00Z"),
    ],
)
def test_read_only_field_in_body_is_422(client: TestClient, field: str, value: object) -> None:
    created = assert_problem(client.post(COMPANIES, json={"name": "Acme", field: value}), 422)
    assert any(field in e["loc"] for e in created["errors"])

    company = make_company(client, "Other")
    patched = client.patch(
        f"{COMPANIES}/{company['id']}", json={field: value, "version": company["version"]}
    )
    assert_problem(patched, 422)
    assert client.get(f"{COMPANIES}/{company['id']}").json() == company


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]
)
def test_non_json_body_is_415(client: TestClient, content_type: str) -> None:
    response = client.post(COMPANIES, content=b"name=Acme", headers={"Content-Type": content_type})
    assert_problem(response, 415)
    assert client.get(COMPANIES).json()["total"] == 0


def test_body_without_content_type_is_415(client: TestClient) -> None:
    assert_problem(client.post(COMPANIES, content=b'{"name": "Acme"}'), 415)


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/json; charset=utf-8", "APPLICATION/JSON"]
)
def test_json_content_types_are_accepted(client: TestClient, content_type: str) -> None:
    response = client.post(
        COMPANIES, content=b'{"name": "Acme"}', headers={"Content-Type": content_type}
    )
    assert response.status_code == 201, response.text


@pytest.mark.parametrize("accept", ["text/html", "application/xml", "application/json;q=0"])
def test_accept_excluding_json_is_406(client: TestClient, accept: str) -> None:
    assert_problem(client.get(COMPANIES, headers={"Accept": accept}), 406)


@pytest.mark.parametrize(
    "accept",
    ["application/json", "*/*", "application/*", "text/html, application/json;q=0.5"],
)
def test_accept_including_json_is_fine(client: TestClient, accept: str) -> None:
    response = client.get(COMPANIES, headers={"Accept": accept})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")


def test_garbled_accept_quality_is_not_a_500(client: TestClient) -> None:
    assert client.get(COMPANIES, headers={"Accept": "application/json;q=."}).status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("GET", f"{COMPANIES}/99999999999999999999", {}),
        ("GET", f"{COMPANIES}/9223372036854775808", {}),
        ("GET", COMPANIES, {"params": {"offset": "99999999999999999999"}}),
        ("GET", COMPANIES, {"params": {"search": "a\x00b"}}),
        ("POST", COMPANIES, {"json": {"name": "a\x00b"}}),
        ("PATCH", f"{COMPANIES}/1", {"json": {"name": "B", "version": 99999999999999999999}}),
        (
            "PATCH",
            f"{COMPANIES}/1",
            {"json": {"name": "B"}, "headers": {"If-Match": '"1' + "9" * 30 + '"'}},
        ),
        ("GET", "/api/v1/users/99999999999999999999", {}),
        ("GET", "/api/v1/auth/tokens/99999999999999999999", {}),
        ("GET", "/api/v1/auth/tokens", {"params": {"user_id": "99999999999999999999"}}),
        (
            "POST",
            "/api/v1/auth/token",
            {"data": {"username": "a\x00@example.com", "password": "x"}},
        ),
    ],
)
def test_odd_input_is_never_a_500(
    client: TestClient, method: str, path: str, kwargs: dict[str, Any]
) -> None:
    make_company(client)
    response = client.request(method, path, **kwargs)
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert_problem(response, response.status_code)


# Paths, request ids and body limits


def test_trailing_slash_works_without_redirect(client: TestClient) -> None:
    company = make_company(client)
    listed = client.get(f"{COMPANIES}/", follow_redirects=False)
    assert listed.status_code == 200
    assert listed.json()["total"] == 1
    one = client.get(f"{COMPANIES}/{company['id']}/", follow_redirects=False)
    assert one.status_code == 200
    assert one.json() == company


def test_trailing_slash_on_post(client: TestClient) -> None:
    response = client.post(f"{COMPANIES}/", json={"name": "Acme"}, follow_redirects=False)
    assert response.status_code == 201


def test_request_id_is_echoed_when_sane(client: TestClient) -> None:
    response = client.get(COMPANIES, headers={"X-Request-ID": "client-req.42:a_b"})
    assert response.headers["x-request-id"] == "client-req.42:a_b"


def test_request_id_is_generated_when_absent(client: TestClient) -> None:
    first = client.get(COMPANIES).headers["x-request-id"]
    second = client.get(COMPANIES).headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", first)
    assert first != second


@pytest.mark.parametrize("given", ["has spaces in it", "x" * 129, "semi;colon", "<script>", ""])
def test_insane_request_id_is_replaced(client: TestClient, given: str) -> None:
    returned = client.get(COMPANIES, headers={"X-Request-ID": given}).headers["x-request-id"]
    assert returned != given
    assert re.fullmatch(r"[0-9a-f]{32}", returned)


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/api/v1/nowhere", {}),
        (COMPANIES, {"Accept": "text/html"}),  # refused before routing, by the middleware
        (COMPANIES, {"Authorization": "Bearer wharf_unknown"}),
    ],
)
def test_request_id_is_on_error_responses_too(
    client: TestClient, path: str, headers: dict[str, str]
) -> None:
    response = client.get(path, headers={"X-Request-ID": "trace-1", **headers})
    assert response.status_code >= 400
    assert response.headers["x-request-id"] == "trace-1"


@pytest.fixture
def small_client(database_url: str, tmp_path: Path, make_user: UserFactory) -> Iterator[TestClient]:
    """An admin client of an app that takes request bodies of at most 2048 bytes."""
    settings = Settings(
        _env_file=None, database_url=database_url, var_dir=tmp_path / "small", max_body_bytes=2048
    )
    _, token = make_user(role="admin")
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        client.headers.update(auth(token))
        yield client


def test_body_over_the_limit_is_413(small_client: TestClient) -> None:
    body = b'{"name": "' + b"x" * 3000 + b'"}'
    response = small_client.post(
        COMPANIES, content=body, headers={"Content-Type": "application/json"}
    )
    assert_problem(response, 413)
    assert small_client.get(COMPANIES).json()["total"] == 0


def test_streamed_body_over_the_limit_is_413(small_client: TestClient) -> None:
    # No Content-Length: the limit must hold while reading, not only by the declared length.
    chunks = [b'{"name": "', b"x" * 1500, b"x" * 1500, b'"}']
    response = small_client.post(
        COMPANIES, content=iter(chunks), headers={"Content-Type": "application/json"}
    )
    assert "content-length" not in response.request.headers
    assert_problem(response, 413)
    assert small_client.get(COMPANIES).json()["total"] == 0


def test_body_under_the_limit_is_fine(small_client: TestClient) -> None:
    assert small_client.post(COMPANIES, json={"name": "x" * 150}).status_code == 201
    streamed = small_client.post(
        COMPANIES,
        content=iter([b'{"name": ', b'"Streamed"}']),
        headers={"Content-Type": "application/json"},
    )
    assert streamed.status_code == 201, streamed.text


# Collections


def query_of(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


def test_list_envelope(client: TestClient) -> None:
    make_company(client)
    response = client.get(COMPANIES)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"items", "total", "limit", "offset", "next", "previous"}
    assert body["total"] == 1
    assert body["limit"] == 50
    assert body["offset"] == 0
    assert body["next"] is None
    assert body["previous"] is None
    assert "link" not in response.headers
    assert body["items"][0]["name"] == "Acme"


def test_pages_link_to_each_other(client: TestClient) -> None:
    for name in ("A", "B", "C", "D", "E"):
        make_company(client, name)

    first = client.get(COMPANIES, params={"limit": 2})
    body = first.json()
    assert [c["name"] for c in body["items"]] == ["A", "B"]
    assert body["total"] == 5
    assert body["previous"] is None
    assert query_of(body["next"]) == {"limit": ["2"], "offset": ["2"]}
    assert first.headers["link"] == f'<{body["next"]}>; rel="next"'

    middle = client.get(body["next"])
    body = middle.json()
    assert [c["name"] for c in body["items"]] == ["C", "D"]
    assert query_of(body["next"])["offset"] == ["4"]
    assert query_of(body["previous"])["offset"] == ["0"]
    assert f'<{body["next"]}>; rel="next"' in middle.headers["link"]
    assert f'<{body["previous"]}>; rel="prev"' in middle.headers["link"]

    last = client.get(body["next"])
    body = last.json()
    assert [c["name"] for c in body["items"]] == ["E"]
    assert body["next"] is None
    assert query_of(body["previous"])["offset"] == ["2"]
    assert last.headers["link"] == f'<{body["previous"]}>; rel="prev"'


def test_links_keep_other_query_parameters(client: TestClient) -> None:
    for name in ("Alpha", "Beta", "Alpine"):
        make_company(client, name)
    body = client.get(COMPANIES, params={"search": "al", "ordering": "-name", "limit": 1}).json()
    assert body["total"] == 2
    assert query_of(body["next"]) == {
        "search": ["al"],
        "ordering": ["-name"],
        "limit": ["1"],
        "offset": ["1"],
    }


def test_offset_past_the_end_is_an_empty_page(client: TestClient) -> None:
    make_company(client)
    body = client.get(COMPANIES, params={"offset": 10}).json()
    assert body["items"] == []
    assert body["total"] == 1
    assert body["next"] is None


def test_limit_defaults_to_50(client: TestClient) -> None:
    for n in range(51):
        make_company(client, f"Company {n:02}")
    body = client.get(COMPANIES).json()
    assert body["limit"] == 50
    assert len(body["items"]) == 50
    assert body["total"] == 51
    assert query_of(body["next"])["offset"] == ["50"]


def test_limit_500_is_allowed(client: TestClient) -> None:
    assert client.get(COMPANIES, params={"limit": 500}).json()["limit"] == 500


@pytest.mark.parametrize(
    ("params", "loc"),
    [
        ({"limit": 501}, ["query", "limit"]),
        ({"limit": 0}, ["query", "limit"]),
        ({"limit": "ten"}, ["query", "limit"]),
        ({"offset": -1}, ["query", "offset"]),
    ],
)
def test_bad_page_parameters_are_422(
    client: TestClient, params: dict[str, str | int], loc: list[str]
) -> None:
    body = assert_problem(client.get(COMPANIES, params=params), 422)
    assert [e["loc"] for e in body["errors"]] == [loc]


# Conditional requests


def test_single_get_has_version_etag(client: TestClient) -> None:
    company = make_company(client)
    response = client.get(f"{COMPANIES}/{company['id']}")
    assert response.headers["etag"] == f'"{company["version"]}"' == '"1"'


def test_if_none_match_gives_304_without_body(client: TestClient) -> None:
    company = make_company(client)
    url = f"{COMPANIES}/{company['id']}"
    response = client.get(url, headers={"If-None-Match": '"1"'})
    assert response.status_code == 304
    assert response.content == b""
    assert response.headers["etag"] == '"1"'
    assert client.get(url, headers={"If-None-Match": 'W/"1"'}).status_code == 304
    assert client.get(url, headers={"If-None-Match": '"0", "1"'}).status_code == 304


def test_if_none_match_with_an_old_version_gives_200(client: TestClient) -> None:
    company = make_company(client)
    url = f"{COMPANIES}/{company['id']}"
    patched = client.patch(url, json={"name": "Acme 2"}, headers={"If-Match": '"1"'})
    assert patched.status_code == 200
    assert patched.headers["etag"] == '"2"'
    response = client.get(url, headers={"If-None-Match": '"1"'})
    assert response.status_code == 200
    assert response.headers["etag"] == '"2"'
    assert response.json()["name"] == "Acme 2"


def test_collection_etag_and_304(client: TestClient) -> None:
    make_company(client)
    first = client.get(COMPANIES)
    etag = first.headers["etag"]
    assert etag
    again = client.get(COMPANIES, headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""

    make_company(client, "Another")
    changed = client.get(COMPANIES, headers={"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["etag"] != etag
    assert changed.json()["total"] == 2


def test_collection_etag_differs_per_page(client: TestClient) -> None:
    make_company(client, "A")
    make_company(client, "B")
    page1 = client.get(COMPANIES, params={"limit": 1}).headers["etag"]
    page2 = client.get(COMPANIES, params={"limit": 1, "offset": 1}).headers["etag"]
    assert page1 != page2


def test_create_returns_201_with_location(client: TestClient) -> None:
    response = client.post(COMPANIES, json={"name": "Acme"})
    assert response.status_code == 201
    body = response.json()
    assert response.headers["location"] == body["url"]
    assert body["url"] == f"http://testserver{COMPANIES}/{body['id']}"
    assert client.get(response.headers["location"]).json() == body


def test_timestamps_are_utc_with_z(client: TestClient) -> None:
    company = make_company(client)
    for field in ("created_at", "updated_at"):
        assert company[field].endswith("Z"), company[field]


# Operations endpoints and the OpenAPI document


def test_healthz(anon: TestClient) -> None:
    response = anon.get("/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_readyz(anon: TestClient) -> None:
    response = anon.get("/readyz")
    assert response.status_code == 200
    assert response.json()["database"] == "ok"


def test_docs_and_redoc_are_served(anon: TestClient) -> None:
    docs = anon.get("/docs")
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()
    assert anon.get("/redoc").status_code == 200


def test_openapi_lists_the_bearer_oauth2_scheme(anon: TestClient) -> None:
    document = anon.get("/openapi.json").json()
    schemes = document["components"]["securitySchemes"]
    oauth2 = [s for s in schemes.values() if s["type"] == "oauth2"]
    assert len(oauth2) == 1
    flow = oauth2[0]["flows"]["password"]
    assert flow["tokenUrl"] == "/api/v1/auth/token"
    assert set(flow["scopes"]) == {"read", "write", "admin"}
    list_companies = document["paths"][COMPANIES]["get"]
    assert list_companies["security"], "the companies list must declare its security"


def test_unmigrated_database_refuses_to_start(tmp_path: Path) -> None:
    settings = Settings(
        _env_file=None, database_url=f"sqlite:///{tmp_path / 'empty.db'}", var_dir=tmp_path
    )
    app = create_app(settings)
    with pytest.raises(Exception, match="wharf migrate"), TestClient(app):
        pass
    app.state.engine.dispose()
