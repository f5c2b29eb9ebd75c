"""The loader of the seed's files: factories with their chart data, and sprocket types.

A file is told apart by its top-level key, `factories` or `sprockets`. It is checked whole
before anything is written, and a fault is reported at its exact place
(`factories[1].factory.chart_data.time[7]`). Loading is idempotent: factories are matched by
name (`Factory 1`, `Factory 2`, ... by position when the file gives none), readings by
(factory, time), sprocket types by their four dimensions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import Connection

from wharf.core.errors import BadRequest, Conflict, InvalidInput
from wharf.factories import readings, service
from wharf.factories.readings import MAX_PRODUCTION, MAX_TIME
from wharf.sprockets.schemas import BOUNDS
from wharf.sprockets.service import load_types

Path = list[str | int]
ARRAYS = ("sprocket_production_actual", "sprocket_production_goal", "time")
NAME_LENGTH = 200


def where(path: Path) -> str:
    """`factories[1].factory.chart_data.time[7]` from its parts."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text or "the file"


class Refused(InvalidInput):
    """Bad input, at `path` of the file (the request body over HTTP)."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{where(path)}: {problem}", loc=["body", *path])
        self.path = path


class NotJson(BadRequest):
    """The file is not JSON at all (400 over HTTP, as every malformed body is)."""


@dataclass(frozen=True)
class Series:
    index: int
    name: str
    rows: list[readings.Row]


@dataclass(frozen=True)
class Parsed:
    factories: list[Series] = field(default_factory=list)
    sprockets: list[dict[str, int]] = field(default_factory=list)


def decode(data: bytes | str) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        # orjson refuses integers past 64 bits, which are JSON all the same: the standard
        # parser reads them, and the bounds below then name the value's place.
        try:
            return json.loads(data)
        except (ValueError, RecursionError):  # RecursionError: nesting deeper than Python's
            raise NotJson(f"The file is not JSON: {exc}.") from None


def parse(data: bytes | str) -> Parsed:
    """Check a whole file; `Refused` (or `NotJson`) names the first fault."""
    document = decode(data)
    if not isinstance(document, dict) or len(document) != 1:
        raise Refused([], "must be an object with one key, `factories` or `sprockets`")
    key = next(iter(document))
    if key == "factories":
        return Parsed(factories=_factories(document[key]))
    if key == "sprockets":
        return Parsed(sprockets=_sprockets(document[key]))
    raise Refused([key], "is not `factories` or `sprockets`")


def _object(
    value: Any, path: Path, required: tuple[str, ...], optional: tuple[str, ...] = ()
) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise Refused(path, "must be an object")
    for name in value:
        if name not in required and name not in optional:
            raise Refused([*path, name], "is not a known field")
    for name in required:
        if name not in value:
            raise Refused([*path, name], "is missing")
    return value


def _array(value: Any, path: Path) -> list[Any]:
    if not isinstance(value, list):
        raise Refused(path, "must be an array")
    return value


def _integer(value: Any, path: Path, low: int, high: int, what: str) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # 30.0 is an integer to JSON (and JSON Schema); 30.5 is not
    if not isinstance(value, int) or isinstance(value, bool):
        if isinstance(value, (dict, list)):
            shown = "an object" if isinstance(value, dict) else "an array"
        else:
            shown = json.dumps(value)
            shown = shown if len(shown) <= 40 else shown[:37] + "..."
        raise Refused(path, f"must be an integer, not {shown}")
    if value < low:
        raise Refused(path, f"{what} cannot be below {low} (got {value})")
    if value > high:
        raise Refused(path, f"{what} cannot exceed {high:,} (got {value})")
    return value


def _factories(value: Any) -> list[Series]:
    entries = _array(value, ["factories"])
    found: list[Series] = []
    names: dict[str, int] = {}
    for index, entry in enumerate(entries):
        path: Path = ["factories", index]
        inner = _object(entry, path, ("factory",))["factory"]
        path = [*path, "factory"]
        factory = _object(inner, path, ("chart_data",), ("name",))
        name = _name(factory, path, index)
        if name in names:
            raise Refused(
                [*path, "name"] if "name" in factory else path,
                f"names the factory {name!r} again, as factories[{names[name]}] does",
            )
        names[name] = index
        found.append(Series(index, name, _chart(factory["chart_data"], [*path, "chart_data"])))
    return found


def _name(factory: dict[str, Any], path: Path, index: int) -> str:
    if "name" not in factory:
        return f"Factory {index + 1}"
    name = factory["name"]
    if not isinstance(name, str) or not name.strip():
        raise Refused([*path, "name"], "must be a non-blank string")
    if not name.isprintable():  # NUL and other controls: PostgreSQL refuses NUL in text
        raise Refused([*path, "name"], "holds a control character")
    if len(name.strip()) > NAME_LENGTH:
        raise Refused([*path, "name"], f"is longer than {NAME_LENGTH} characters")
    return name.strip()


def _chart(value: Any, path: Path) -> list[readings.Row]:
    data = _object(value, path, ARRAYS)
    arrays = {name: _array(data[name], [*path, name]) for name in ARRAYS}
    times = arrays["time"]
    for name in ARRAYS[:2]:
        if len(arrays[name]) != len(times):
            raise Refused(
                [*path, name], f"has {len(arrays[name])} values where time has {len(times)}"
            )
    seen: dict[int, int] = {}
    previous: int | None = None
    for n, raw in enumerate(times):
        time = _integer(raw, [*path, "time", n], 0, MAX_TIME, "a time")
        if time in seen:
            raise Refused([*path, "time", n], f"repeats the time {time} of time[{seen[time]}]")
        if previous is not None and time < previous:
            raise Refused([*path, "time", n], f"times must increase: {time} comes after {previous}")
        seen[time] = n
        previous = time
    actual, goal = (
        [
            _integer(v, [*path, name, n], 0, MAX_PRODUCTION, "production")
            for n, v in enumerate(arrays[name])
        ]
        for name in ARRAYS[:2]
    )
    return list(zip(times, actual, goal, strict=True))


def _sprockets(value: Any) -> list[dict[str, int]]:
    rows = []
    for index, entry in enumerate(_array(value, ["sprockets"])):
        path: Path = ["sprockets", index]
        row = _object(entry, path, tuple(BOUNDS))
        rows.append(
            {
                name: _integer(row[name], [*path, name], 1, high, name.replace("_", " "))
                for name, high in BOUNDS.items()
            }
        )
    return rows


def _counts() -> dict[str, int]:
    return {"created": 0, "unchanged": 0, "duplicates": 0}


def load_document(conn: Connection, data: bytes | str) -> dict[str, dict[str, int]]:
    """Check one file and load it: `parse`, then `load` (the HTTP import)."""
    return load(conn, [parse(data)])


def load(conn: Connection, files: list[Parsed]) -> dict[str, dict[str, int]]:
    """Write what checked files hold that is not stored yet, in the caller's transaction,
    and count it. A file's reading that differs from the stored one at its time is a
    conflict (409): readings are appended, never rewritten."""
    report = {"factories": _counts(), "readings": _counts(), "sprocket_types": _counts()}
    # Every factory the files name is locked before anything is written, in id order. A
    # write bumps the cache generation (its row is then held to the commit), and an append
    # locks its factory before it bumps: locking a factory after a first write could
    # deadlock with an append on PostgreSQL.
    service.lock_named(conn, [s.name for parsed in files for s in parsed.factories])
    for parsed in files:
        for series in parsed.factories:
            _load_series(conn, series, report)
        if parsed.sprockets:
            for kind, n in load_types(conn, parsed.sprockets).items():
                report["sprocket_types"][kind] += n
    return report


def _load_series(conn: Connection, series: Series, report: dict[str, dict[str, int]]) -> None:
    factory_id = service.find_by_name(conn, series.name)
    created = factory_id is None
    if factory_id is None:
        factory_id = service.create_factory(conn, name=series.name)["id"]
    else:
        service.lock(conn, factory_id)
    report["factories"]["created" if created else "unchanged"] += 1
    times = [time for time, _, _ in series.rows]
    stored = {t: (a, g) for t, a, g in readings.existing(conn, factory_id, times)}
    new = []
    for n, (time, actual, goal) in enumerate(series.rows):
        if time not in stored:
            new.append((time, actual, goal))
        elif stored[time] != (actual, goal):
            at = where(["factories", series.index, "factory", "chart_data", "time", n])
            raise Conflict(
                f"{at}: {series.name} already has a reading at {time} with actual "
                f"{stored[time][0]} and goal {stored[time][1]}; the file says {actual} and "
                f"{goal}. Readings are never rewritten: nothing was loaded."
            )
    readings.store(conn, factory_id, new, bump=not created)
    report["readings"]["created"] += len(new)
    report["readings"]["unchanged"] += len(series.rows) - len(new)
