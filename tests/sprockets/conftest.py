"""Sprocket fixtures: a factory that creates types through the API and checks they were made."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from starlette.testclient import TestClient

Json = dict[str, Any]
SprocketFactory = Callable[..., Json]
SPROCKETS = "/api/v1/sprockets"
# The seed's own example: /api/sprocket/create/5/6/4/7/
SEED = {"teeth": 5, "pitch_diameter": 6, "outside_diameter": 4, "pitch": 7}


def sprocket_url(sprocket_id: int) -> str:
    return f"{SPROCKETS}/{sprocket_id}"


def dims(teeth: int, pitch_diameter: int, outside_diameter: int, pitch: int) -> Json:
    return {
        "teeth": teeth,
        "pitch_diameter": pitch_diameter,
        "outside_diameter": outside_diameter,
        "pitch": pitch,
    }


@pytest.fixture
def new_sprocket(client: TestClient) -> SprocketFactory:
    """POST a sprocket type (the seed's example unless dimensions are given); return its body."""

    def make(*values: int) -> Json:
        response = client.post(SPROCKETS, json=dims(*values) if values else SEED)
        assert response.status_code == 201, response.text
        body: Json = response.json()
        return body

    return make


def read(client: TestClient, sprocket_id: int) -> Json:
    response = client.get(sprocket_url(sprocket_id))
    assert response.status_code == 200, response.text
    body: Json = response.json()
    return body
