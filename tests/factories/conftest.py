"""Factories fixtures: factories made through the API, readings appended through it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import count
from typing import Any

import pytest
from starlette.testclient import TestClient

Json = dict[str, Any]
FACTORIES = "/api/v1/factories"
FactoryFactory = Callable[..., Json]
Append = Callable[[int, Sequence[tuple[int, int, int]]], Json]


@pytest.fixture
def new_factory(client: TestClient) -> FactoryFactory:
    """POST a factory (a unique name unless one is given) and return its body."""
    numbers = count(1)

    def make(name: str | None = None) -> Json:
        response = client.post(FACTORIES, json={"name": name or f"Plant {next(numbers)}"})
        assert response.status_code == 201, response.text
        body: Json = response.json()
        return body

    return make


@pytest.fixture
def append(client: TestClient) -> Append:
    """POST readings, 10,000 at a time, and return the last report."""

    def send(factory_id: int, rows: Sequence[tuple[int, int, int]]) -> Json:
        report: Json = {}
        for at in range(0, len(rows), 10_000):
            batch = [{"time": t, "actual": a, "goal": g} for t, a, g in rows[at : at + 10_000]]
            response = client.post(f"{FACTORIES}/{factory_id}/readings", json=batch)
            assert response.status_code == 201, response.text
            report = response.json()
        return report

    return send


def chart(client: TestClient, factory_id: int, **params: Any) -> Json:
    response = client.get(f"{FACTORIES}/{factory_id}/chart-data", params=params)
    assert response.status_code == 200, response.text
    body: Json = response.json()
    return body
