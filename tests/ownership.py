"""The ownership (BOLA) registry: which parts of the API hold objects that belong to a user.

API.md: an object owned by a user is visible only to that user and to admins; to anyone else
it does not exist (404, never 403, so ids cannot be probed). `tests/test_ownership.py` walks
every path of the OpenAPI document with an `{...id}` parameter and proves that rule for each
registered resource, for every method the document declares there.

A domain with owned objects does two things here:
1. lists its path prefix in `OWNED` (or, for data every user shares, in `SHARED`), and
2. registers each item path in `REGISTRY` with a function that creates one object owned by a
   given user and returns its id.
An `{...id}` path under an `OWNED` prefix without a registration, or under no prefix at all,
fails the test, so a new endpoint cannot be forgotten.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from tests.certificates.pki import encode_key, make_certificate
from wharf.app import create_app
from wharf.core.config import Settings

API = "/api/v1"
HTTP_METHODS = ("get", "put", "patch", "delete", "post")


@dataclass(frozen=True)
class Actor:
    """A user and one of their bearer tokens."""

    user_id: int
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


# Creates one object owned by `owner` (through the API where it can) and returns its id, or,
# for an item path with several ids (`/users/{user_id}/certificates/{certificate_id}`), every
# id of its path by parameter name.
Create = Callable[[TestClient, Actor], int | dict[str, int]]


def own_account(client: TestClient, owner: Actor) -> int:
    """A user account belongs to its user."""
    return owner.user_id


def api_token(client: TestClient, owner: Actor) -> int:
    response = client.post(
        f"{API}/auth/tokens",
        json={"name": "owned", "scopes": ["read"], "expires_in_days": 7},
        headers=owner.headers,
    )
    assert response.status_code == 201, response.text
    token_id: int = response.json()["id"]
    return token_id


def certificate(client: TestClient, owner: Actor) -> dict[str, int]:
    response = client.post(
        f"{API}/users/{owner.user_id}/certificates", json=_new_certificate(), headers=owner.headers
    )
    assert response.status_code == 201, response.text
    return {"user_id": owner.user_id, "certificate_id": response.json()["id"]}


# Path prefixes whose objects belong to one user, those every user shares by design, and
# those only admins reach at all (403 for anyone else: their scope says so, no id is probed).
OWNED = (f"{API}/users", f"{API}/auth/tokens", f"{API}/certificates")
SHARED = (
    f"{API}/companies",
    f"{API}/customers",
    f"{API}/notes",
    f"{API}/sales",
    f"{API}/factories",
    f"{API}/sprockets",
    f"{API}/cars",
)
ADMIN_ONLY = (f"{API}/webhooks", f"{API}/cars/imports")

# Item path -> how to create an object at it for a user. A registration also covers every
# path below the item (`/certificates/{certificate_id}/renew`, say).
REGISTRY: dict[str, Create] = {
    f"{API}/users/{{user_id}}": own_account,
    f"{API}/auth/tokens/{{token_id}}": api_token,
    f"{API}/users/{{user_id}}/certificates/{{certificate_id}}": certificate,
}

_ID_PARAMETER = re.compile(r"\{[A-Za-z_]*id\}")


def api_document() -> dict[str, Any]:
    """The app's OpenAPI document; it does not depend on the database, so none is opened."""
    unused = Path(tempfile.gettempdir()) / "wharf-openapi-document.db"  # never connected to
    doc: dict[str, Any] = create_app(
        Settings(_env_file=None, database_url=f"sqlite:///{unused}")
    ).openapi()
    return doc


def id_paths(doc: dict[str, Any]) -> list[str]:
    """Every path template of the document with an `{...id}` parameter."""
    return sorted(p for p in doc["paths"] if _ID_PARAMETER.search(p))


def under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")


def registration(path: str) -> str | None:
    """The registered item path that covers `path` most closely, if any."""
    items = [item for item in REGISTRY if under(path, item)]
    return max(items, key=len) if items else None


def unaccounted(doc: dict[str, Any]) -> Iterator[str]:
    """Why each `{...id}` path of the document is not covered, if it is not."""
    for path in id_paths(doc):
        if registration(path) is not None:
            continue
        if any(under(path, prefix) for prefix in OWNED):
            yield f"{path} is under an owned prefix but not in tests/ownership.py REGISTRY"
        elif not any(under(path, prefix) for prefix in (*SHARED, *ADMIN_ONLY)):
            yield (
                f"{path} is neither OWNED, SHARED nor ADMIN_ONLY in tests/ownership.py: classify it"
            )


def admin_operations(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """(method, path) for every operation under an ADMIN_ONLY prefix."""
    return [
        (method, path)
        for path in sorted(doc["paths"])
        if any(under(path, prefix) for prefix in ADMIN_ONLY)
        for method in HTTP_METHODS
        if method in doc["paths"][path]
    ]


def owned_operations(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """(method, path) for every operation on a registered owned path."""
    return [
        (method, path)
        for path in id_paths(doc)
        if registration(path) is not None
        for method in HTTP_METHODS
        if method in doc["paths"][path]
    ]


def resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].removeprefix("#/components/schemas/")
        schema = doc["components"]["schemas"][name]
    return schema


def _new_certificate() -> dict[str, Any]:
    body, key = make_certificate("ec")
    return {"private_key": encode_key(key, "pkcs8-der"), "body": body}


# Operations whose body is not the object's own fields (creating something under it): a
# valid body, so that only the ownership check can refuse them.
BODIES: dict[tuple[str, str], Callable[[], Any]] = {
    ("post", f"{API}/users/{{user_id}}/certificates"): _new_certificate,
}


def request_body(doc: dict[str, Any], method: str, path: str, current: dict[str, Any]) -> Any:
    """A body an owner could send: the object's own writable fields as the admin sees them,
    so a missing ownership check would succeed rather than fail validation."""
    if (method, path) in BODIES:
        return BODIES[method, path]()
    operation = doc["paths"][path][method]
    content = operation.get("requestBody", {}).get("content", {})
    if "application/json" not in content:
        return None
    schema = resolve(doc, content["application/json"]["schema"])
    writable = schema.get("properties", {}).keys() - {"version"}
    return {key: value for key, value in current.items() if key in writable}
