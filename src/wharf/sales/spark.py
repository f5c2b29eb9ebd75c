"""The engine for data that outgrows one machine: Spark reads the file where it lies (a
local path, hdfs://, s3a://, file://) and classifies every line in the JVM.

One exact pass, by the rules in `lines`, reporting what `DuckDBEngine` reports (a test
holds the two to identical reports). How each rule is met in Spark:

- Lines and their numbers: Spark's text reader (Hadoop's line reader) ends a line at LF,
  CRLF or CR, as DuckDB's does for a file that keeps to one of them. A line's number is
  its partition's offset plus its row in the partition (the low 33 bits of
  `monotonically_increasing_id`): the partitions of one text file are its splits, in
  file order, and the offsets come from each partition's row count.
- JSON: lines are parsed into VARIANT by Jackson, which is strict JSON (no NaN, no
  trailing commas) but stops after the first value, ignoring what follows. So a line is
  JSON when `[line,0]` and `[line,1]` both parse to lists whose second item is that 0 and
  that 1: text after a first value either breaks the list, or gives it a second item or
  closes it early, and then the same second item in both, which cannot be 0 and 1.
- Repeated keys: parsing keeps them (`allowDuplicateKeys`), so that a repeat in a nested
  object is no error (DuckDB allows it); `json_object_keys` lists the top-level keys with
  repeats, for the rule.
- Integers: VARIANT holds a JSON integer in the 64-bit range as an integer, whose schema is
  BIGINT; a fraction or exponent gives DECIMAL or DOUBLE, a larger integer DECIMAL.
- Compression: Hadoop picks a decompressor by the file's name. A local file whose name
  does not say what it is (an upload is `upload-*.part`) is read through a link with a
  name that does; a remote one must be named for what it is (`.gz` when gzipped), or it
  is refused with that advice.

What `files.inspect` checks of a local file before any engine sees it (UTF-8, no NUL or
0x01 byte) is checked here again on every line, as a remote file has had no such check;
its gzip stream is not checked for a decompression bomb.

Where the engines still differ, too rare to pay for: a file that mixes line ends (LF and
CRLF, or a CR inside a line) and has a bad line, which DuckDB's line reader refuses and
Spark reads; and what Jackson's limits make "not JSON" while DuckDB parses it: nesting
deeper than 1000, a number of more than 1000 digits, a key of more than 50,000 characters.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

from py4j.protocol import Py4JJavaError  # type: ignore[import-untyped]  # py4j has no types
from pyspark import StorageLevel
from pyspark.errors import AnalysisException
from pyspark.sql import Column, DataFrame, Row, SparkSession
from pyspark.sql import functions as F  # noqa: N812 (Spark's own spelling)

from wharf.sales import lines
from wharf.sales.errors import FileRefused
from wharf.sales.files import Inspected
from wharf.sales.lines import BadLine, Counted

ROW_BITS = (1 << 33) - 1  # monotonically_increasing_id: partition << 33 | row in partition
# What DuckDB's JSON reader skips around a line; a line of nothing else is blank.
EDGE = " \t\r\f\v"
# Hadoop's decompressors by name (CompressionCodecFactory, matched case-sensitively).
CODEC_SUFFIXES = (".gz", ".bz2", ".deflate", ".lz4", ".snappy", ".zst")
# binaryFile holds a file in one byte array: the most identify can hash.
MAX_HASHED = 2**31 - 1
_NOT_PLAIN = set("*?[]{}\\:,")  # glob and URI characters a path must not carry to Spark

_session: SparkSession | None = None
_session_lock = threading.Lock()


def session(master: str) -> SparkSession:
    """The process's one SparkSession, started on first use (the first master asked wins)."""
    global _session
    with _session_lock:
        if _session is None:
            spark = (
                SparkSession.builder.master(master)
                .appName("wharf-sales")
                .config("spark.ui.enabled", "false")  # no port to bind on a shared machine
                .config("spark.ui.showConsoleProgress", "false")
                .config("spark.sql.shuffle.partitions", "4")  # the aggregates are small
                .config("spark.sql.variant.allowDuplicateKeys", "true")  # see the docstring
                .getOrCreate()
            )
            spark.sparkContext.setLogLevel("ERROR")
            _session = spark
        return _session


class SparkEngine:
    name = "spark"

    def __init__(self, *, master: str = "local[*]") -> None:
        self.master = master

    def count(
        self, path: str, *, gzipped: bool, id_key: str, plain_rows: int | None = None
    ) -> Counted:
        del id_key, plain_rows  # no fast path: each line's own keys are read
        spark = session(self.master)
        with _readable(path, gzipped) as uri:
            try:
                text = spark.read.text(uri)
            except AnalysisException as exc:  # no such file, or no access to it
                raise FileRefused(f"Spark cannot read {path}: {_first_line(exc)}") from exc
            # Kept for the second job: each line is parsed once.
            classified = _classify(text).persist(StorageLevel.MEMORY_AND_DISK)
            try:
                counted = _tally(classified)
            except Py4JJavaError as exc:
                cause = _broken_stream(exc)
                if cause is None:
                    raise
                raise FileRefused(f"The file is not valid gzip: {cause}.") from exc
            finally:
                classified.unpersist()
        counted.engine = self.name
        return counted

    def typed_tally(self, path: str, *, gzipped: bool, id_key: str) -> dict[int, int] | None:
        del path, gzipped, id_key
        return None  # no typed pass: each line's own keys are read

    def identify(self, path: str) -> Inspected:
        """What `files.inspect` gives for a local file, for a file only Spark can reach."""
        spark = session(self.master)
        try:
            found = spark.read.format("binaryFile").load(path)
            sizes = found.select("length").collect()  # the listing only: no bytes read
        except AnalysisException as exc:
            raise FileRefused(f"Spark cannot read {path}: {_first_line(exc)}") from exc
        if len(sizes) != 1:
            raise FileRefused(
                f"Spark finds {len(sizes)} files at {path}, not one (it skips names that "
                "start with . or _)."
            )
        size = int(sizes[0]["length"])
        if size == 0:
            raise FileRefused("The file is empty: there is nothing to ingest.")
        if size > MAX_HASHED:
            raise FileRefused(
                f"The file has {size} bytes; Spark hashes at most {MAX_HASHED} in one piece."
            )
        head = found.select(
            F.sha2("content", 256).alias("sha256"),
            (F.substring("content", 1, 2) == F.lit(bytearray(b"\x1f\x8b"))).alias("gzipped"),
        ).collect()[0]
        gzipped = bool(head["gzipped"])
        with _readable(path, gzipped) as uri:
            value = F.col("value")
            first = (
                spark.read.text(uri)
                .where(F.btrim(value, F.lit(EDGE)) != "")
                .limit(1)  # the first partition first, its rows in order: the first line
                .select((value.contains('"Id"') & ~value.contains('"id"')).alias("seed"))
                .collect()
            )
        id_key = "Id" if first and first[0]["seed"] else "id"
        return Inspected(str(head["sha256"]), size, gzipped, id_key)


def _classify(text: DataFrame) -> DataFrame:
    """Each line: its partition and row, its size, whether it is text, whether it is blank,
    its reason (NULL for a transaction) and, for a transaction, its products."""
    value = F.col("value")
    is_text = F.expr("is_valid_utf8(value)") & ~value.contains("\x00") & ~value.contains("\x01")
    trimmed = text.select(
        F.spark_partition_id().alias("part"),
        F.monotonically_increasing_id().bitwiseAND(ROW_BITS).alias("idx"),
        F.octet_length(value).alias("bytes"),
        is_text.alias("text"),
        F.btrim(value, F.lit(EDGE)).alias("s"),
    )
    wrapped = trimmed.select(
        "*",
        F.expr("try_parse_json(concat('[', s, ',0]'))").alias("w0"),
        F.expr("try_parse_json(concat('[', s, ',1]'))").alias("w1"),
    )
    parsed = wrapped.select(
        "part",
        "idx",
        "bytes",
        "text",
        (F.col("s") != "").alias("filled"),
        F.col("s").startswith("{").alias("object"),
        (
            F.coalesce(F.expr("try_variant_get(w0, '$[1]', 'bigint') = 0"), F.lit(False))
            & F.coalesce(F.expr("try_variant_get(w1, '$[1]', 'bigint') = 1"), F.lit(False))
        ).alias("json"),
        F.expr("variant_get(w0, '$[0]')").alias("v"),
        # The top-level keys with their repeats, which the variant does not keep.
        F.expr("CASE WHEN s LIKE '{%' THEN json_object_keys(s) END").alias("keys"),
    )
    fields = parsed.select(
        "*",
        F.expr("coalesce(variant_get(v, '$.id'), variant_get(v, '$.Id'))").alias("id"),
        F.expr("variant_get(v, '$.products')").alias("pv"),
    )
    listed = fields.select("*", F.expr("try_variant_get(pv, '$', 'array<bigint>')").alias("listed"))
    reason = (
        F.when(~F.col("filled"), None)
        .when(~F.col("json"), lines.NOT_JSON)  # made TRUNCATED for the last line, after
        .when(~F.col("object"), lines.NOT_OBJECT)
        .when(F.size("keys") != F.size(F.array_distinct("keys")), lines.DUPLICATE_KEY)
        .when(F.col("id").isNull() | (F.schema_of_variant("id") != "BIGINT"), lines.BAD_ID)
        .when(_bad_products(), lines.BAD_PRODUCTS)
    )
    classified = listed.select(
        "part", "idx", "bytes", "text", "filled", "listed", reason.alias("reason")
    )
    return classified.select(
        "part",
        "idx",
        "bytes",
        "text",
        "filled",
        "reason",
        F.when(F.col("filled") & F.col("reason").isNull(), F.col("listed")).alias("products"),
    )


def _bad_products() -> Column:
    # [] and [null] are both ARRAY<VOID>; [1, null] is ARRAY<BIGINT>: the nulls are checked.
    return (
        F.col("pv").isNull()
        | ~F.schema_of_variant("pv").isin("ARRAY<BIGINT>", "ARRAY<VOID>")
        | ~F.forall("listed", lambda p: p.isNotNull() & (p >= 0))
    )


# Per partition, the first SAMPLE bad lines: no partition holds more than that in memory.
_FIRST_BAD = (
    f"min_by(named_struct('idx', idx, 'reason', reason), idx, {lines.SAMPLE})"
    " FILTER (WHERE reason IS NOT NULL)"
)


def _tally(classified: DataFrame) -> Counted:
    # Two jobs: one row per partition (its counts, first bad lines, last non-empty line),
    # then units per product, from the classified lines `count` keeps.
    parts = sorted(
        classified.groupBy("part")
        .agg(
            F.count(F.lit(1)).alias("rows"),
            F.count_if("filled").alias("lines"),
            F.count_if(F.col("filled") & F.col("reason").isNull()).alias("good"),
            F.max(F.struct("bytes", "idx")).alias("longest"),
            F.min(F.when(~F.col("text"), F.col("idx"))).alias("not_text"),
            F.max(F.when(F.col("filled"), F.struct("idx", "reason"))).alias("last"),
            F.expr(_FIRST_BAD).alias("bad"),
        )
        .collect(),
        key=lambda row: int(row["part"]),
    )
    number = _numbering(parts)
    _refuse_if_unreadable(parts, number)
    lines_read = sum(int(row["lines"]) for row in parts)
    good = sum(int(row["good"]) for row in parts)
    truncated = None
    last = next((row for row in reversed(parts) if row["last"] is not None), None)
    if last is not None and last["last"]["reason"] == lines.NOT_JSON:
        truncated = number(int(last["part"]), int(last["last"]["idx"]))
    first_bad = sorted(
        (number(int(row["part"]), int(bad["idx"])), str(bad["reason"]))
        for row in parts
        for bad in row["bad"] or ()
    )[: lines.SAMPLE]
    counts: dict[int, int] = {}
    if good:
        products = classified.where(F.col("products").isNotNull())
        for row in products.select(F.explode("products").alias("p")).groupBy("p").count().collect():
            counts[int(row["p"])] = int(row["count"])
    return Counted.tally(
        lines=lines_read,
        good=good,
        counts=counts,
        sample=[BadLine(n, lines.TRUNCATED if n == truncated else r) for n, r in first_bad],
    )


def _numbering(parts: list[Row]) -> Callable[[int, int], int]:
    """Line numbers from (partition, row in it): the partitions are the file's splits in
    order, so a partition's first line follows all the rows of those before it."""
    offsets: dict[int, int] = {}
    start = 0
    for row in parts:
        offsets[int(row["part"])] = start
        start += int(row["rows"])
    return lambda part, idx: offsets[part] + idx + 1


def _refuse_if_unreadable(parts: list[Row], number: Callable[[int, int], int]) -> None:
    not_text = [(int(r["part"]), int(r["not_text"])) for r in parts if r["not_text"] is not None]
    if not_text:
        raise FileRefused(
            f"The file is not UTF-8 text (or holds a byte 0x00 or 0x01): line "
            f"{number(*min(not_text))}."
        )
    longest = max(
        ((int(r["longest"]["bytes"]), int(r["part"]), int(r["longest"]["idx"])) for r in parts),
        default=None,
    )
    if longest is not None and longest[0] > lines.MAX_LINE_BYTES:
        raise FileRefused(
            f"Line {number(longest[1], longest[2])} is longer than {lines.MAX_LINE_BYTES} "
            "bytes: the file cannot be read as lines of text."
        )


@contextmanager
def _readable(path: str, gzipped: bool) -> Iterator[str]:
    """A URI Spark reads as the file it is: plain text, or gzip when `gzipped`."""
    local = _local(path)
    if local is None:
        _check_remote_name(path, gzipped)
        yield path
        return
    if _codec(local.name) == (".gz" if gzipped else None) and not (
        _NOT_PLAIN & set(str(local)) or local.name.startswith((".", "_"))
    ):
        yield f"file://{local}"
        return
    # A link in a folder of its own, with a name that says what the file is. (With a
    # cluster master, give a URI the executors can reach: this folder is the driver's.)
    folder = Path(tempfile.mkdtemp(prefix="wharf-spark-"))
    try:
        link = folder / ("lines.json.gz" if gzipped else "lines.json")
        link.symlink_to(local)
        yield f"file://{link}"
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _local(path: str) -> Path | None:
    if path.startswith("file:"):
        return Path(urlparse(path).path).resolve()
    if "://" in path:
        return None
    return Path(path).resolve()


def _codec(name: str) -> str | None:
    return next((suffix for suffix in CODEC_SUFFIXES if name.endswith(suffix)), None)


def _check_remote_name(uri: str, gzipped: bool) -> None:
    name = urlparse(uri).path.rstrip("/").rsplit("/", 1)[-1]
    codec = _codec(name)
    if gzipped and codec != ".gz":
        raise FileRefused(
            f"{uri} is gzipped but its name does not end in .gz: Spark picks a decompressor "
            "by the name, so name the file NAME.gz."
        )
    if not gzipped and codec is not None:
        raise FileRefused(
            f"{uri} is named like a {codec} file, but the rules allow plain or gzipped "
            "text only: Spark would decompress it by its name."
        )


def _first_line(exc: Exception) -> str:
    return str(exc).split("\n", 1)[0][:300]


def _broken_stream(exc: Exception) -> str | None:
    """The error a task met in Hadoop's decompressor (a gzip stream cut short or corrupt:
    the file's fault, not the cluster's), or None for any other failure."""
    trace = str(exc).splitlines()
    for at, line in reversed(list(enumerate(trace))):
        if line.startswith("Caused by: "):
            thrown_in = trace[at + 1].strip() if at + 1 < len(trace) else ""
            if thrown_in.startswith("at org.apache.hadoop.io.compress."):
                return line.removeprefix("Caused by: ")[:300]
            return None
    return None
