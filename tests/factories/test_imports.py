"""The loader, over HTTP and from the command line: the seed's files load once (loading
them again adds nothing), and bad input is refused whole, naming its exact place."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from starlette.testclient import TestClient
from typer.testing import CliRunner

from tests.factories.conftest import FACTORIES, Json
from wharf.cli import app
from wharf.factories.demo import seed_files
from wharf.factories.models import DailyRollup, Factory, HourlyRollup, Reading
from wharf.sprockets.models import SprocketType

IMPORTS = f"{FACTORIES}/imports"
runner = CliRunner()
FACTORY_FILE, SPROCKET_FILE = (json.loads(data) for data in seed_files())


def counts(created: int, unchanged: int, duplicates: int = 0) -> dict[str, int]:
    return {"created": created, "unchanged": unchanged, "duplicates": duplicates}


def stored(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            model.__tablename__: conn.execute(select(func.count()).select_from(model)).scalar_one()
            for model in (Factory, Reading, HourlyRollup, DailyRollup, SprocketType)
        }


def post(client: TestClient, document: Any) -> Any:
    return client.post(
        IMPORTS, content=json.dumps(document), headers={"Content-Type": "application/json"}
    )


def test_the_seed_loads_once_and_again_adds_nothing(client: TestClient, engine: Engine) -> None:
    first = [post(client, FACTORY_FILE), post(client, SPROCKET_FILE)]
    assert [r.status_code for r in first] == [200, 200]
    assert first[0].json() == {
        "factories": counts(3, 0),
        "readings": counts(60, 0),
        "sprocket_types": counts(0, 0),
    }
    assert first[1].json()["sprocket_types"] == counts(1, 0, 2)
    after_first = stored(engine)

    again = [post(client, FACTORY_FILE).json(), post(client, SPROCKET_FILE).json()]

    assert again[0]["factories"] == counts(0, 3)
    assert again[0]["readings"] == counts(0, 60)
    assert again[1]["sprocket_types"] == counts(0, 1, 2)
    assert stored(engine) == after_first
    names = [f["name"] for f in client.get(FACTORIES, params={"ordering": "name"}).json()["items"]]
    assert names == ["Factory 1", "Factory 2", "Factory 3"]
    second = client.get(f"{FACTORIES}/2").json()["chart_data"]
    given = FACTORY_FILE["factories"][1]["factory"]["chart_data"]
    assert {k: second[k] for k in given} == given


def test_a_file_adds_new_readings_to_the_factory_it_names(client: TestClient) -> None:
    post(client, FACTORY_FILE)
    grown = copy.deepcopy(FACTORY_FILE)
    chart = grown["factories"][0]["factory"]["chart_data"]
    for series in chart.values():
        series.append(series[-1] + 60 if series is chart["time"] else 5)
    grown["factories"].append(
        {"factory": {"name": "Named Works", "chart_data": {k: [1] for k in chart}}}
    )

    report = post(client, grown).json()

    assert report["factories"] == counts(1, 3)
    assert report["readings"] == counts(2, 60)
    assert client.get(f"{FACTORIES}/1").json()["readings"] == 21


def test_a_reading_that_differs_from_the_stored_one_is_409_and_loads_nothing(
    client: TestClient, engine: Engine
) -> None:
    post(client, FACTORY_FILE)
    before = stored(engine)
    changed = copy.deepcopy(FACTORY_FILE)
    changed["factories"].append(
        {
            "factory": {
                "name": "New",
                "chart_data": {
                    k: [1]
                    for k in ("time", "sprocket_production_actual", "sprocket_production_goal")
                },
            }
        }
    )
    changed["factories"][2]["factory"]["chart_data"]["sprocket_production_actual"][4] += 1

    response = post(client, changed)

    assert response.status_code == 409
    assert response.json()["detail"].startswith("factories[2].factory.chart_data.time[4]: ")
    assert stored(engine) == before


def seed_with(change: Callable[[Json], None]) -> Json:
    document: Json = copy.deepcopy(FACTORY_FILE)
    change(document)
    return document


def chart_of(document: Json, index: int) -> Json:
    data: Json = document["factories"][index]["factory"]["chart_data"]
    return data


def setter(index: int, name: str, position: int, value: Any) -> Callable[[Json], None]:
    def change(document: Json) -> None:
        chart_of(document, index)[name][position] = value

    return change


def times_swapped(document: Json) -> None:
    times = chart_of(document, 1)["time"]
    times[6], times[7] = times[7], times[6]


def shortened(document: Json) -> None:
    chart_of(document, 1)["sprocket_production_goal"].pop()


def named_twice(document: Json) -> None:
    document["factories"][2]["factory"]["name"] = "Factory 1"


def unknown_field(document: Json) -> None:
    document["factories"][0]["factory"]["colour"] = "red"


def missing_array(document: Json) -> None:
    del chart_of(document, 0)["time"]


def not_an_array(document: Json) -> None:
    chart_of(document, 2)["sprocket_production_actual"] = 30


def blank_name(document: Json) -> None:
    document["factories"][1]["factory"]["name"] = "  "


def control_name(document: Json) -> None:
    document["factories"][1]["factory"]["name"] = "Plant\u0000 2"  # PostgreSQL refuses NUL


T = "factories[1].factory.chart_data"
BAD_FILES: list[tuple[str, Any, str]] = [
    ("top-level-array", [], "the file"),
    ("unknown-top-key", {"plants": []}, "plants"),
    ("two-top-keys", {"factories": [], "sprockets": []}, "the file"),
    ("factories-not-array", {"factories": {}}, "factories"),
    ("entry-without-factory", {"factories": [{}]}, "factories[0].factory"),
    ("unknown-field", seed_with(unknown_field), "factories[0].factory.colour"),
    ("missing-array", seed_with(missing_array), "factories[0].factory.chart_data.time"),
    (
        "not-an-array",
        seed_with(not_an_array),
        "factories[2].factory.chart_data.sprocket_production_actual",
    ),
    ("lengths-differ", seed_with(shortened), f"{T}.sprocket_production_goal"),
    (
        "string-value",
        seed_with(setter(1, "sprocket_production_actual", 3, "30")),
        f"{T}.sprocket_production_actual[3]",
    ),
    (
        "float-value",
        seed_with(setter(1, "sprocket_production_goal", 5, 30.5)),
        f"{T}.sprocket_production_goal[5]",
    ),
    (
        "boolean-value",
        seed_with(setter(1, "sprocket_production_goal", 0, True)),
        f"{T}.sprocket_production_goal[0]",
    ),
    ("null-time", seed_with(setter(1, "time", 2, None)), f"{T}.time[2]"),
    (
        "negative-actual",
        seed_with(setter(1, "sprocket_production_actual", 9, -1)),
        f"{T}.sprocket_production_actual[9]",
    ),
    (
        "negative-goal",
        seed_with(setter(1, "sprocket_production_goal", 19, -30)),
        f"{T}.sprocket_production_goal[19]",
    ),
    ("negative-time", seed_with(setter(1, "time", 0, -5)), f"{T}.time[0]"),
    (
        "huge-integer",
        seed_with(setter(1, "sprocket_production_actual", 1, 2**70)),
        f"{T}.sprocket_production_actual[1]",
    ),
    ("times-not-increasing", seed_with(times_swapped), f"{T}.time[7]"),
    ("same-time-twice", seed_with(setter(1, "time", 7, 1611205178)), f"{T}.time[7]"),
    ("same-time-far-apart", seed_with(setter(1, "time", 7, 1611204818)), f"{T}.time[7]"),
    ("blank-name", seed_with(blank_name), "factories[1].factory.name"),
    ("control-in-name", seed_with(control_name), "factories[1].factory.name"),
    (
        "nested-where-a-number-goes",
        seed_with(setter(1, "time", 4, [[[[1]]]])),
        f"{T}.time[4]",
    ),
    ("name-twice", seed_with(named_twice), "factories[2].factory.name"),
    (
        "sprocket-zero",
        {
            "sprockets": [
                {"teeth": 5, "pitch_diameter": 5, "outside_diameter": 6, "pitch": 1},
                {"teeth": 0, "pitch_diameter": 5, "outside_diameter": 6, "pitch": 1},
            ]
        },
        "sprockets[1].teeth",
    ),
    (
        "sprocket-string",
        {"sprockets": [{"teeth": 5, "pitch_diameter": 5, "outside_diameter": 6, "pitch": "7"}]},
        "sprockets[0].pitch",
    ),
    (
        "sprocket-missing",
        {"sprockets": [{"teeth": 5, "pitch_diameter": 5, "outside_diameter": 6}]},
        "sprockets[0].pitch",
    ),
    (
        "sprocket-unknown",
        {
            "sprockets": [
                {"teeth": 5, "pitch_diameter": 5, "outside_diameter": 6, "pitch": 1, "bore": 2}
            ]
        },
        "sprockets[0].bore",
    ),
]


def parts(place: str) -> list[str | int]:
    """`factories[1].factory.time[7]` as a loc: ["factories", 1, "factory", "time", 7]."""
    if place == "the file":
        return []
    found: list[str | int] = []
    for piece in place.split("."):
        name, *indices = piece.replace("]", "").split("[")
        found += [name, *(int(i) for i in indices)]
    return found


@pytest.mark.parametrize(
    ("document", "place"), [(d, p) for _, d, p in BAD_FILES], ids=[i for i, _, _ in BAD_FILES]
)
def test_bad_input_is_422_at_its_exact_place_and_writes_nothing(
    client: TestClient, engine: Engine, document: Any, place: str
) -> None:
    before = stored(engine)

    response = post(client, document)

    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["detail"].startswith(f"{place}: "), problem["detail"]
    assert problem["errors"][0]["loc"] == ["body", *parts(place)]
    assert stored(engine) == before


def test_a_body_that_is_not_json_is_400(client: TestClient) -> None:
    response = client.post(
        IMPORTS, content=b"{'factories': []}", headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 400
    assert "not JSON" in response.json()["detail"]


def test_json_nested_past_any_parser_is_400_not_a_crash(client: TestClient) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000  # orjson and Python's json both give up on it

    response = client.post(IMPORTS, content=deep, headers={"Content-Type": "application/json"})

    assert response.status_code == 400, response.text
    assert "not JSON" in response.json()["detail"]


# The command line


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str) -> Path:
    """The seed's files in a folder, and the CLI pointed at the test's database."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WHARF_DATABASE_URL", database_url)
    for name, data in zip(("factories.json", "sprockets.json"), seed_files(), strict=True):
        (tmp_path / name).write_bytes(data)
    return tmp_path


def test_the_cli_loads_both_files_and_again_adds_nothing(files: Path, engine: Engine) -> None:
    paths = [str(files / "factories.json"), str(files / "sprockets.json")]

    first = runner.invoke(app, ["factories", "load", *paths])
    assert first.exit_code == 0, first.output
    loaded = stored(engine)
    again = runner.invoke(app, ["factories", "load", *paths])

    assert again.exit_code == 0, again.output
    assert stored(engine) == loaded
    assert loaded["factories"] == 3
    assert loaded["factory_readings"] == 60
    assert loaded["sprocket_types"] == 1
    rows = {line.split("│")[1].strip(): line for line in again.output.splitlines() if "│" in line}
    assert [cell.strip() for cell in rows["readings"].split("│")[2:5]] == ["0", "60", "0"]
    assert [cell.strip() for cell in rows["sprocket types"].split("│")[2:5]] == ["0", "1", "2"]


@pytest.mark.parametrize(
    ("document", "place"),
    [
        (d, p)
        for i, d, p in BAD_FILES
        if i in ("times-not-increasing", "negative-goal", "lengths-differ")
    ],
)
def test_the_cli_refuses_a_bad_file_with_its_place_and_loads_nothing(
    files: Path, engine: Engine, document: Any, place: str
) -> None:
    (files / "bad.json").write_text(json.dumps(document))
    before = stored(engine)

    result = runner.invoke(
        app, ["factories", "load", str(files / "factories.json"), str(files / "bad.json")]
    )

    assert result.exit_code == 1
    assert f"bad.json: {place}: " in result.output
    assert stored(engine) == before


def test_the_cli_refuses_a_file_that_is_not_json(files: Path) -> None:
    (files / "broken.json").write_text("{")

    result = runner.invoke(app, ["factories", "load", str(files / "broken.json")])

    assert result.exit_code == 1
    assert "broken.json: The file is not JSON" in result.output
