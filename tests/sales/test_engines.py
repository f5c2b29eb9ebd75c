"""The engines hold to the rules of `sales.lines`, and DuckDB and Spark to identical reports.

Every Spark call costs about a second (one JVM for the session): the Spark checks are few
files that each hold many cases.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wharf.sales import files, lines
from wharf.sales.duck import DuckDBEngine
from wharf.sales.errors import FileRefused
from wharf.sales.lines import BadLine, Counted

if TYPE_CHECKING:  # pyspark is an extra: without it, the DuckDB tests still run
    from wharf.sales.spark import SparkEngine

BIG = 2**63
NOT_JSON, TRUNCATED, NOT_OBJECT = lines.NOT_JSON, lines.TRUNCATED, lines.NOT_OBJECT
TWICE, ID, PRODUCTS = lines.DUPLICATE_KEY, lines.BAD_ID, lines.BAD_PRODUCTS
Case = tuple[str, str | list[int] | None]  # a line; its reason, its products, or None: blank

# Every rule, one line each: the reason written out by hand, or the products it counts.
CASES: list[Case] = [
    ('{"id": 1, "products": [10, 11]}', [10, 11]),
    ('{"id": 1, "products": [10, 11]', NOT_JSON),
    ("hello", NOT_JSON),
    ('{"id": 1, "products": [1], "x": NaN}', NOT_JSON),  # DuckDB's parser allows NaN
    ('{"id": 1, "products": [1,]}', NOT_JSON),  # ... and a trailing comma
    ('{"id": 1, "products": [1]} {"id": 2, "products": [2]}', NOT_JSON),
    ('{"id": 1, "products": [1]}]', NOT_JSON),
    ('{"id": 1, "products": [1]},0]', NOT_JSON),  # what Spark's wrapping must see through
    ('{"id": 1, "x": "\\ud800", "products": [1]}', NOT_JSON),  # a lone surrogate
    ("\ufeff{}", NOT_JSON),  # a byte-order mark is skipped at the start of a file only
    ("[1, 2]", NOT_OBJECT),
    ("5", NOT_OBJECT),
    ('"str"', NOT_OBJECT),
    ("null", NOT_OBJECT),
    ('{"id": 1, "products": [1], "id": 2}', TWICE),
    ('{"id": 1, "products": [1], "x": 1, "x": 2}', TWICE),
    ('{"id": 1, "i\\u0064": 2, "products": [1]}', TWICE),
    ('{"products": [1]}', ID),
    ('{"id": "x", "products": [1]}', ID),
    ('{"id": "5", "products": [1]}', ID),
    ('{"id": 4.0, "products": [1]}', ID),
    ('{"id": true, "products": [1]}', ID),
    ('{"id": 1e3, "products": [1]}', ID),
    ('{"id": null, "Id": 5, "products": [1]}', ID),  # id wins, even as null
    (f'{{"id": {BIG}, "products": [1]}}', ID),
    (f'{{"id": {-BIG - 1}, "products": [1]}}', ID),
    (f'{{"id": {BIG * 2}, "products": [1]}}', ID),
    ('{"id": 1}', PRODUCTS),
    ('{"id": 1, "products": null}', PRODUCTS),
    ('{"id": 1, "products": {}}', PRODUCTS),
    ('{"id": 1, "products": [-1]}', PRODUCTS),
    ('{"id": 1, "products": [1.5]}', PRODUCTS),
    ('{"id": 1, "products": [2.0]}', PRODUCTS),
    ('{"id": 1, "products": [1E2]}', PRODUCTS),
    ('{"id": 1, "products": ["8"]}', PRODUCTS),
    ('{"id": 1, "products": [null]}', PRODUCTS),
    ('{"id": 1, "products": [1, null]}', PRODUCTS),
    ('{"id": 1, "products": [[1]]}', PRODUCTS),
    (f'{{"id": 1, "products": [{BIG}]}}', PRODUCTS),
    ('{"id": 2, "products": []}', []),
    ('{"Id": 3, "products": [12]}', [12]),
    ('{"id": 4, "Id": "x", "products": [13]}', [13]),
    ('{"id": 5, "products": [14], "store": {"k": [1, 2], "k": 3}}', [14]),  # nested: allowed
    ('{"id": 6, "products": [15, 15, 10]}', [15, 15, 10]),
    (f'{{"id": {BIG - 1}, "products": [{BIG - 1}, 0]}}', [BIG - 1, 0]),
    (f'{{"id": {-BIG}, "products": [0]}}', [0]),
    ('{"id": -0, "products": [-0]}', [0]),
    ('  {"id" : 7 , "products" : [ 16 ] }\t', [16]),
    ('\f{"id": 8, "products": [17]}\v', [17]),  # what DuckDB's JSON reader skips
    ("", None),
    ("   ", None),
    ("\t \t", None),
    ('{"id": 9, "products": [18]}', [18]),
    ("", None),
    (" ", None),
]


def text_of(cases: list[Case], *, end: str = "\n") -> str:
    return "\n".join(line for line, _ in cases) + end


def expected(cases: list[Case]) -> Counted:
    """The report the hand-written reasons give (a last line that is not JSON is truncated)."""
    counts: dict[int, int] = {}
    sample: list[BadLine] = []
    filled = [(n, what) for n, (_, what) in enumerate(cases, 1) if what is not None]
    for n, what in filled:
        if isinstance(what, str):
            last = n == filled[-1][0] and what == NOT_JSON
            sample.append(BadLine(n, TRUNCATED if last else what))
        else:
            for product in what:
                counts[product] = counts.get(product, 0) + 1
    return Counted(
        lines=len(filled),
        transactions=len(filled) - len(sample),
        units=sum(counts.values()),
        counts=counts,
        bad_lines=len(sample),
        sample=sample[: lines.SAMPLE],
    )


def report(counted: Counted) -> tuple[Any, ...]:
    """All of a report but the engine's name."""
    c = counted
    return (c.lines, c.transactions, c.units, c.counts, c.bad_lines, c.sample)


def write(path: Path, text: str, *, zipped: bool = False) -> Path:
    data = text.encode()
    path.write_bytes(gzip.compress(data) if zipped else data)
    return path


def duck(path: Path) -> Counted:
    """DuckDB as an ingest runs it: with the pre-pass's `plain_rows`, so the typed pass runs
    whenever the file's bytes allow it."""
    inspected = files.inspect(path)
    return DuckDBEngine().count(
        str(path),
        gzipped=inspected.gzipped,
        id_key=inspected.id_key,
        plain_rows=inspected.plain_rows,
    )


def both(path: Path, spark: SparkEngine) -> Counted:
    """DuckDB's report, once Spark's is seen to be the same."""
    inspected = files.inspect(path)
    found = duck(path)
    other = spark.count(str(path), gzipped=inspected.gzipped, id_key=inspected.id_key)
    assert (found.engine, other.engine) == ("duckdb", "spark")
    assert report(other) == report(found)
    return found


# Every rule, on both engines

LAST = ('{"id": 10, "prod', NOT_JSON)


@pytest.mark.parametrize(
    ("name", "text", "zipped", "cases"),
    [
        pytest.param("day.json", text_of(CASES), False, CASES, id="plain"),
        pytest.param("day.json.gz", text_of(CASES), True, CASES, id="gzipped"),
        # Spark picks a decompressor by name, and an upload's name says nothing.
        pytest.param("upload-1.part", text_of(CASES), True, CASES, id="gzipped-as-part"),
        pytest.param(
            "day.json",
            "\ufeff" + text_of(CASES).replace("\n", "\r\n"),
            False,
            CASES,
            id="crlf-and-bom",
        ),
        pytest.param(
            "day.json", text_of([*CASES, LAST], end=""), False, [*CASES, LAST], id="cut-no-newline"
        ),
        pytest.param(
            "day.json", text_of([*CASES, LAST, ("", None)]), False, [*CASES, LAST], id="cut"
        ),
    ],
)
def test_every_rule_line_by_line(
    tmp_path: Path,
    spark_engine: SparkEngine,
    name: str,
    text: str,
    zipped: bool,
    cases: list[Case],
) -> None:
    path = write(tmp_path / name, text, zipped=zipped)
    assert report(both(path, spark_engine)) == report(expected(cases))


def test_the_sample_is_the_first_bad_lines_by_number(
    tmp_path: Path, spark_engine: SparkEngine
) -> None:
    cases: list[Case] = [
        ('{"id": 1, "products": [1]}', [1]) if n % 3 else (f"bad {n}", NOT_JSON)
        for n in range(1, 401)
    ]
    found = both(write(tmp_path / "day.json", text_of(cases)), spark_engine)
    assert found.bad_lines == 133
    assert len(found.sample) == lines.SAMPLE == 100
    assert found.sample == [BadLine(n, NOT_JSON) for n in range(3, 301, 3)]
    assert report(found) == report(expected(cases))


def test_a_line_over_the_limit_refuses_the_file(tmp_path: Path, spark_engine: SparkEngine) -> None:
    limit, first = lines.MAX_LINE_BYTES, '{"id": 1, "products": []}\n'
    at_limit = write(tmp_path / "at.json", first + "x" * limit + "\n")
    assert both(at_limit, spark_engine).sample == [BadLine(2, TRUNCATED)]  # only a bad line
    over = write(tmp_path / "over.json", first + "x" * (limit + 1) + "\n")
    with pytest.raises(FileRefused, match="longer than"):
        duck(over)
    with pytest.raises(FileRefused, match="longer than"):
        spark_engine.count(str(over), gzipped=False, id_key="id")


def test_line_numbers_follow_the_file_on_a_parallel_scan(
    tmp_path: Path, spark_engine: SparkEngine
) -> None:
    from wharf.sales.spark import session

    bad_at = range(1_500, 300_001, 3_000)  # 100, so the sample is all of them
    rows = [f'{{"id":{n},"products":[{n % 7}],"pad":"{"x" * 80}"}}\n' for n in range(300_001)]
    for n in bad_at:
        rows[n] = f"bad line {n}\n"
    path = tmp_path / "day.json"
    path.write_text("".join(rows[1:]))
    found = DuckDBEngine(threads=4).count(str(path), gzipped=False, id_key="id")
    assert found.sample == [BadLine(n, NOT_JSON) for n in bad_at]
    assert (found.lines, found.bad_lines, found.units) == (300_000, 100, 299_900)
    # Spark's numbers over many partitions (offsets from their row counts), on 30,000 lines.
    head = tmp_path / "head.json"
    head.write_text("".join(rows[1:30_001]))
    spark = session(spark_engine.master)
    spark.conf.set("spark.sql.files.maxPartitionBytes", "256k")
    try:
        assert spark.read.text(head.as_uri()).rdd.getNumPartitions() >= 10
        assert both(head, spark_engine).sample == [BadLine(n, NOT_JSON) for n in bad_at[:10]]
    finally:
        spark.conf.unset("spark.sql.files.maxPartitionBytes")


# Files only Spark reaches


def test_identify_gives_what_inspect_gives(tmp_path: Path, spark_engine: SparkEngine) -> None:
    plain = write(tmp_path / "day.json", text_of(CASES))
    seed = write(tmp_path / "upload-2.part", text_of(WITH_ID), zipped=True)
    for path in (plain, seed):
        assert spark_engine.identify(path.as_uri()) == files.inspect(path)
    assert spark_engine.identify(seed.as_uri()).id_key == "Id"
    with pytest.raises(FileRefused, match="empty"):
        spark_engine.identify(write(tmp_path / "empty.json", "").as_uri())


def test_a_broken_gzip_stream_refuses_the_file(tmp_path: Path, spark_engine: SparkEngine) -> None:
    # files.inspect refuses it first when the file is local; Spark meets it in a remote one.
    data = gzip.compress(text_of(CASES * 20).encode())
    cut = tmp_path / "day.json.gz"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(FileRefused, match="not valid gzip"):
        spark_engine.count(cut.as_uri(), gzipped=True, id_key="id")


def test_a_remote_file_must_be_named_for_what_it_is(spark_engine: SparkEngine) -> None:
    with pytest.raises(FileRefused, match=r"does not end in \.gz"):
        spark_engine.count("hdfs://namenode/sales/upload-1.part", gzipped=True, id_key="id")
    with pytest.raises(FileRefused, match=r"named like a \.bz2 file"):
        spark_engine.count("s3a://bucket/20261130.json.bz2", gzipped=False, id_key="id")


# DuckDB's two passes

CLEAN: list[Case] = [
    ('{"id": 1, "products": [1, 2, 2]}', [1, 2, 2]),
    ("", None),
    ('{"id": 2, "products": [], "store": "Paris, inf, NaN,]"}', []),  # only looks like NaN
    (f'{{"id": -4, "products": [{BIG - 1}]}}', [BIG - 1]),  # (a 19-digit id it defers)
    (" \t", None),
    ('{"id": 3, "products": [3], "a": false, "b": {"c": 1, "c": 2}}', [3]),
]
WITH_ID = [(line.replace('"id"', '"Id"'), what) for line, what in CLEAN]


@pytest.mark.parametrize(
    ("cases", "zipped"),
    [(CLEAN, False), (WITH_ID, False), (CLEAN, True)],
    ids=["id", "Id", "gzipped"],
)
def test_the_fast_pass_agrees_with_the_exact_pass(
    tmp_path: Path, cases: list[Case], zipped: bool
) -> None:
    path = write(tmp_path / "day.json", text_of(cases), zipped=zipped)
    params = {"path": str(path), "compression": "gzip" if zipped else "none"}
    engine = DuckDBEngine()
    with duckdb.connect() as db:
        fast = engine._fast(db, params, files.inspect(path).id_key)
        exact = engine._exact(db, params)
    assert fast is not None, "the fast pass vouches for a clean file"
    assert report(fast) == report(exact) == report(expected(cases))


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ('{"id": 4, "products": [1], "x": 1, "x": 2}', TWICE),
        ('{"id": 4, "products": [1], "x": NaN}', NOT_JSON),
        ('{"id": 4, "products": [1], "x": [-Infinity]}', NOT_JSON),
        ('{"id": 4, "products": [1,]}', NOT_JSON),
        ('{"id": 4, "products": [1] , }', NOT_JSON),
    ],
)
def test_the_fast_pass_defers_what_it_cannot_see(tmp_path: Path, line: str, reason: str) -> None:
    # The fast pass reads only the id and the products; these lines are otherwise good.
    cases = [*CLEAN, (line, reason), *CLEAN]
    assert report(duck(write(tmp_path / "day.json", text_of(cases)))) == report(expected(cases))


# Random files against the rules, written once more in plain Python

EDGE = " \t\r\f\v"  # what DuckDB's JSON reader skips around a line


class _Object(dict[str, Any]):
    repeated = False


def _object(pairs: list[tuple[str, Any]]) -> _Object:
    found = _Object(pairs)
    found.repeated = len(found) < len(pairs)
    return found


def _no_constants(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _integer(value: object, low: int) -> bool:
    return type(value) is int and low <= value < BIG


def rule(line: str) -> str | list[int] | None:
    text = line.strip(EDGE)
    if not text:
        return None
    try:
        value = json.loads(text, parse_constant=_no_constants, object_pairs_hook=_object)
        json.dumps(value, ensure_ascii=False).encode()  # a lone surrogate is no text
    except ValueError:
        return NOT_JSON
    if not isinstance(value, _Object):
        return NOT_OBJECT
    if value.repeated:
        return TWICE
    if not _integer(value["id"] if "id" in value else value.get("Id"), -BIG):
        return ID
    products = value.get("products")
    if not isinstance(products, list) or not all(_integer(p, 0) for p in products):
        return PRODUCTS
    return products


def reference(text: str) -> Counted:
    rows = text.removeprefix("\ufeff").split("\n")  # a CR before the LF is stripped below
    if rows[-1] == "":
        rows.pop()  # the last newline ends a line, it starts none
    return expected([(row, rule(row)) for row in rows])


def _good(key: str, ident: int, products: list[int], extra: bool, compact: bool) -> str:
    fields: dict[str, object] = {"Id" if key == "Id" else "id": ident, "products": products}
    if key == "both":
        fields["Id"] = "not read: id wins"
    if extra:
        fields["note"] = 'extra, [fields] and {"braces"}'
    return json.dumps(fields, separators=(",", ":") if compact else None)


GOOD = st.builds(
    _good,
    st.sampled_from(["id", "Id", "both"]),
    st.integers(-BIG, BIG - 1),
    st.lists(st.integers(0, 20) | st.integers(0, BIG - 1), max_size=6),
    st.booleans(),
    st.booleans(),
)
BAD = st.sampled_from([line for line, what in CASES if isinstance(what, str)]) | st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\n\r\x00\x01"), max_size=12
)
BLANK = st.sampled_from(["", " ", "\t", " \t ", "\f"])
FILES = st.tuples(
    st.lists(st.one_of(GOOD, BAD, BLANK), min_size=1, max_size=25),
    st.sampled_from(["\n", "", "\n\n"]),  # the file's end
    st.booleans(),  # CRLF
    st.booleans(),  # gzipped
)


def _random_file(folder: Path, drawn: tuple[list[str], str, bool, bool]) -> tuple[Path, str]:
    rows, end, crlf, zipped = drawn
    text = "\n".join(rows) + end
    if crlf:
        text = text.replace("\n", "\r\n")
    return write(folder / ("day.json.gz" if zipped else "day.json"), text, zipped=zipped), text


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(drawn=FILES)
def test_duckdb_reports_what_the_rules_say(
    tmp_path_factory: pytest.TempPathFactory, drawn: tuple[list[str], str, bool, bool]
) -> None:
    path, text = _random_file(tmp_path_factory.mktemp("random"), drawn)
    if not text:
        return  # an empty file is refused before any engine sees it
    assert report(duck(path)) == report(reference(text))


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(drawn=FILES)
def test_spark_reports_what_duckdb_reports(
    tmp_path_factory: pytest.TempPathFactory,
    spark_engine: SparkEngine,
    drawn: tuple[list[str], str, bool, bool],
) -> None:
    path, text = _random_file(tmp_path_factory.mktemp("random"), drawn)
    if text:
        assert report(both(path, spark_engine)) == report(reference(text))
