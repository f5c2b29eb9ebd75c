"""The typed pass: only files whose bytes prove every line plain take it, and it reports
what the exact pass reports."""

from __future__ import annotations

import random
from pathlib import Path

import duckdb
import pytest

from wharf.sales import files
from wharf.sales.duck import DuckDBEngine
from wharf.sales.lines import Counted

PLAIN = [
    '{"id": 1, "products": [1, 2, 2]}',
    '{"id":-7,"products":[]}',
    '{"id": 3, "products": [9]}',
]


def inspect(tmp_path: Path, text: str) -> files.Inspected:
    path = tmp_path / "day.json"
    path.write_bytes(text.encode())
    return files.inspect(path)


def report(c: Counted) -> tuple[object, ...]:
    return (c.lines, c.transactions, c.units, c.counts, c.bad_lines, c.sample)


@pytest.mark.parametrize(
    "text",
    [
        "\n".join(PLAIN) + "\n",
        "\n".join(PLAIN),  # no newline at the end
        "\r\n".join(PLAIN) + "\r\n",
        "\n\n".join(PLAIN) + "\n\n  \n",  # blank lines
        "\n".join(p.replace('"id"', '"Id"') for p in PLAIN) + "\n",
    ],
)
def test_plain_files_are_recognised(tmp_path: Path, text: str) -> None:
    assert inspect(tmp_path, text).plain_rows == 3


@pytest.mark.parametrize(
    "line",
    [
        '{"id": "1", "products": [1]}',  # a string value
        '{"id": 1, "products": ["1"]}',
        '{"id": 1.5, "products": [1]}',  # a fraction
        '{"id": 1, "products": [1e2]}',  # an exponent
        '{"id": true, "products": [1]}',  # literals
        '{"id": 1, "products": [null]}',
        '{"id": 1, "products": [NaN]}',
        '{"id": 1, "products": [1,]}',  # trailing commas, as DuckDB's parser allows
        '{"id": 1, "products": [1] ,}',
        '{"id": 1, "products": [1], "p": 2}',  # a third key
        '{"id": 1, "products": [1], "s": 1, "s": {}}',  # a repeat balanced by an object
        '{"id": 1, "products": [{}]}',  # nesting
        '{"id": 1, "products": [1]}{"id": 2, "products": [2]}',  # two objects on a line
        '\ufeff{"id": 1, "products": [1]}',  # not ASCII
        '{"id": 1, "products": [1]}\f',  # a blank the shape does not know
    ],
)
def test_anything_else_is_not_plain(tmp_path: Path, line: str) -> None:
    assert inspect(tmp_path, "\n".join([*PLAIN, line, *PLAIN]) + "\n").plain_rows is None


def test_a_trailing_comma_split_between_chunks_is_seen(tmp_path: Path) -> None:
    # The comma is the last byte of the first chunk read, its bracket the first of the next.
    line, filler = '{"id": 1, "products": [1,', '{"id": 1, "products": [1]}\n'
    rows, spaces = divmod(files.CHUNK - len(line), len(filler))
    first = filler * rows + " " * spaces + line
    assert len(first) == files.CHUNK
    assert first.endswith(",")
    assert inspect(tmp_path, first + "]}\n").plain_rows is None
    assert inspect(tmp_path, first + "2]}\n").plain_rows == rows + 1


@pytest.mark.parametrize(
    "line",
    [
        '{"ix": 1, "products": [1]}',  # plain, but not the id
        '{"id": 1, "prodcuts": [1]}',
        '{"id": 1, "products": [-1]}',  # a negative product
        '{"id": 99999999999999999999, "products": [1]}',  # beyond 64 bits
        '{"id": 1, "products": [1]',  # not JSON
        '{"id": 1, "products": [[1]]}',
    ],
)
def test_a_plain_looking_bad_line_gets_the_exact_report(tmp_path: Path, line: str) -> None:
    path = tmp_path / "day.json"
    path.write_text("\n".join([*PLAIN, line, *PLAIN]) + "\n")
    inspected = files.inspect(path)
    engine = DuckDBEngine()
    counted = engine.count(
        str(path), gzipped=False, id_key="id", plain_rows=inspected.plain_rows or 7
    )
    with duckdb.connect() as db:
        exact = engine._exact(db, {"path": str(path), "compression": "none"})
    assert report(counted) == report(exact)
    assert counted.bad_lines == 1


@pytest.mark.parametrize("key", ["id", "Id"])
def test_the_typed_pass_agrees_with_the_exact_pass(tmp_path: Path, key: str) -> None:
    rng = random.Random(3)
    rows = [
        f'{{"{key}": {rng.randint(-5, 10**12)}, "products": '
        f"[{', '.join(str(rng.randint(0, 300)) for _ in range(rng.randint(0, 5)))}]}}"
        for _ in range(20_000)
    ]
    path = tmp_path / "day.json"
    path.write_text("\n".join(rows) + "\n")
    inspected = files.inspect(path)
    assert inspected.plain_rows == 20_000
    engine = DuckDBEngine()
    with duckdb.connect() as db:
        params = {"path": str(path), "compression": "none"}
        typed = engine._plain(db, params, inspected.id_key, 20_000)
        exact = engine._exact(db, params)
    assert typed is not None
    assert report(typed) == report(exact)
