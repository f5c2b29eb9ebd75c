"""Operation ids, which generated clients name their functions after: one rule for all
(`core.http.openapi.operation_id`, the endpoint function's name), unique, short, snake_case,
and stable. tests/operation_ids.txt holds them, so a rename or a new operation is a
deliberate change: after one, run `.venv/bin/python -m tests.test_operation_ids` to rewrite
it, and review the diff."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI

from tests.ownership import api_document
from wharf.app import create_app
from wharf.core.config import Settings
from wharf.core.http import openapi

SNAPSHOT = Path(__file__).with_name("operation_ids.txt")
SNAKE = re.compile(r"[a-z][a-z0-9]*(_[a-z0-9]+)*")
MAX_LENGTH = 40
METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")


def operations(doc: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(operation id, METHOD, path) of every operation, sorted by path and method."""
    found = [
        (operation["operationId"], method.upper(), path)
        for path, item in doc["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    ]
    return sorted(found, key=lambda op: (op[2], op[1]))


def render(doc: dict[str, Any]) -> str:
    return "".join(f"{op_id} {method} {path}\n" for op_id, method, path in operations(doc))


def test_ids_are_unique() -> None:
    ids = [op_id for op_id, _, _ in operations(api_document())]

    assert len(ids) == len(set(ids)), sorted({i for i in ids if ids.count(i) > 1})


def test_ids_are_short_snake_case_names() -> None:
    for op_id, method, path in operations(api_document()):
        where = f"{op_id} ({method} {path})"
        assert SNAKE.fullmatch(op_id), where
        assert len(op_id) <= MAX_LENGTH, where
        assert "api_v1" not in op_id, where
        assert not op_id.endswith(tuple(f"_{m}" for m in METHODS)), where


def test_ids_are_the_committed_ones() -> None:
    current = render(api_document())
    committed = SNAPSHOT.read_text()
    if current != committed:
        gone = sorted(set(committed.splitlines()) - set(current.splitlines()))
        new = sorted(set(current.splitlines()) - set(committed.splitlines()))
        pytest.fail(
            "Operation ids changed: generated clients' function names change with them.\n"
            f"Only in {SNAPSHOT.name}: {gone}\nOnly in the document: {new}\n"
            "If this is deliberate, run `.venv/bin/python -m tests.test_operation_ids`."
        )


def test_the_metrics_id_does_not_depend_on_the_setting() -> None:
    unused = Path(tempfile.gettempdir()) / "wharf-openapi-document.db"  # never connected to
    settings = Settings(_env_file=None, database_url=f"sqlite:///{unused}", metrics_public=True)

    doc = create_app(settings).openapi()

    assert doc["paths"]["/metrics"]["get"]["operationId"] == "get_metrics"


def _app_with(*routers: APIRouter) -> FastAPI:
    app = FastAPI(generate_unique_id_function=openapi.operation_id)
    for router in routers:
        app.include_router(router)
    return app


def test_two_endpoints_with_one_name_fail_at_startup() -> None:
    first, second = APIRouter(prefix="/a"), APIRouter(prefix="/b")

    @first.get("/things")
    async def list_things() -> None: ...

    @second.get("/things", name="list_things")
    async def list_other_things() -> None: ...

    with pytest.raises(RuntimeError, match="'list_things' of GET /b/things"):
        openapi.check_operation_ids(_app_with(first, second))


def test_one_endpoint_for_several_methods_fails_at_startup() -> None:
    router = APIRouter()

    @router.api_route("/things", methods=["PUT", "PATCH"])
    async def change_thing() -> None: ...

    with pytest.raises(RuntimeError, match="several methods"):
        openapi.check_operation_ids(_app_with(router))


def test_distinct_names_pass() -> None:
    router = APIRouter()

    @router.get("/things")
    async def list_things() -> None: ...

    @router.post("/things")
    async def create_thing() -> None: ...

    openapi.check_operation_ids(_app_with(router))


if __name__ == "__main__":
    SNAPSHOT.write_text(render(api_document()))
    print(f"wrote {SNAPSHOT}")
