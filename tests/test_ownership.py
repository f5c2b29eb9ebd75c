"""The ownership (BOLA) matrix: another user can neither read, change nor delete a user's own
objects; for them the objects do not exist (404, never 403, 200 or 204). See tests/ownership.py
for the registry a domain with owned objects adds itself to."""

from __future__ import annotations

import re
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.conftest import UserFactory
from tests.ownership import (
    REGISTRY,
    Actor,
    admin_operations,
    api_document,
    owned_operations,
    registration,
    request_body,
    unaccounted,
)

DOC = api_document()
OPERATIONS = owned_operations(DOC)
PROBLEM_FIELDS = {"type", "title", "status", "detail", "instance"}


def test_every_id_path_is_accounted_for() -> None:
    problems = list(unaccounted(DOC))
    assert not problems, "\n".join(problems)


def test_a_forgotten_owned_path_fails_the_matrix() -> None:
    doc = {
        "paths": {
            **DOC["paths"],
            "/api/v1/certificates/{certificate_id}": {"get": {}},  # owned, not registered
            "/api/v1/widgets/{widget_id}": {"get": {}},  # neither owned nor shared
            "/api/v1/users/{user_id}/avatar": {"get": {}},  # covered by the users entry
        }
    }
    problems = list(unaccounted(doc))
    assert len(problems) == 2, problems
    assert "/api/v1/certificates/{certificate_id} is under an owned prefix" in problems[0]
    assert "/api/v1/widgets/{widget_id} is neither OWNED, SHARED nor ADMIN_ONLY" in problems[1]


def test_the_matrix_is_not_empty() -> None:
    # Users and tokens are owned today; the matrix must be checking something.
    assert {path for _, path in OPERATIONS} >= set(REGISTRY)


def _item_path(template: str, ids: dict[str, int]) -> str:
    return template.format(**ids)


def _preconditions(current: dict[str, Any]) -> dict[str, str]:
    # The current version: a write that skipped the ownership check would succeed.
    return {"If-Match": f'"{current["version"]}"'} if "version" in current else {}


@pytest.mark.parametrize(
    ("method", "path"), OPERATIONS, ids=[f"{m.upper()} {p}" for m, p in OPERATIONS]
)
def test_another_user_cannot_reach_an_owned_object(
    anon: TestClient, make_user: UserFactory, method: str, path: str
) -> None:
    owner = Actor(*make_user(role="user"))
    intruder = Actor(*make_user(role="user"))
    admin = Actor(*make_user(role="admin"))
    item = registration(path)
    assert item is not None
    param = item.rsplit("{", 1)[1].rstrip("}")  # the object's own id is the last one
    created = REGISTRY[item](anon, owner)
    ids = created if isinstance(created, dict) else {param: created}
    object_id = ids[param]
    item_url = _item_path(item, ids)
    url = _item_path(path, ids)

    seen_by_admin = anon.get(item_url, headers=admin.headers)
    assert seen_by_admin.status_code == 200, seen_by_admin.text  # the object exists
    before = seen_by_admin.json()
    assert anon.get(item_url, headers=owner.headers).status_code == 200  # and is the owner's

    body = request_body(DOC, method, path, before)
    headers = {**intruder.headers, **(_preconditions(before) if method != "get" else {})}
    response = anon.request(method.upper(), url, json=body, headers=headers)

    assert response.status_code == 404, (
        f"{method.upper()} {url} by another user answered {response.status_code}, "
        f"not 404: {response.text}"
    )
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem.keys() >= PROBLEM_FIELDS
    assert problem["status"] == 404
    # Nothing in the answer tells the object apart from one that never existed.
    absent = anon.request(
        method.upper(), _item_path(path, {**ids, param: 2**31 - 1}), json=body, headers=headers
    )
    assert absent.status_code == 404
    assert problem["detail"] == absent.json()["detail"].replace(str(2**31 - 1), str(object_id))

    after = anon.get(item_url, headers=admin.headers)
    assert after.status_code == 200, after.text
    assert after.json() == before, "the object changed"


ADMIN_OPERATIONS = admin_operations(DOC)


def test_the_admin_matrix_is_not_empty() -> None:
    assert ("post", "/api/v1/webhooks") in ADMIN_OPERATIONS


@pytest.mark.parametrize(
    ("method", "path"), ADMIN_OPERATIONS, ids=[f"{m.upper()} {p}" for m, p in ADMIN_OPERATIONS]
)
def test_a_user_cannot_reach_admin_only_operations(
    anon: TestClient, make_user: UserFactory, method: str, path: str
) -> None:
    user = Actor(*make_user(role="user"))  # read and write, not admin
    url = re.sub(r"\{[a-z_]+\}", "1", path)
    response = anon.request(method.upper(), url, json={}, headers=user.headers)
    assert response.status_code == 403, response.text
    assert response.json()["status"] == 403
    assert "admin" in response.json()["detail"]
