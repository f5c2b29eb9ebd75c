"""The embedded engine: DuckDB reads the file itself and counts, on every core.

Two passes; the second runs only for a file with bad lines. The fast pass reads the file
with DuckDB's JSON reader on an explicit schema and counts in one scan; it checks each row's
id and products as the rules say and, when every row passes, its counts are the answer.
The reader cannot give line numbers and is laxer than the rules about shapes (it would read
"5" as 5, or 1.5 as 2), so any row it cannot vouch for, or any error, sends the file to the
exact pass: every line with its number, classified by the rules in `lines`. As it sees
only the id and the products, a second scan of the raw lines (`_STRICT`) looks for what
else makes a line bad: a repeated key, or JSON the rules do not allow but DuckDB parses.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import duckdb

from wharf.sales import lines
from wharf.sales.errors import FileRefused
from wharf.sales.lines import BadLine, Counted

if TYPE_CHECKING:
    from wharf.sales.files import Inspected

# Sentinels in the fast pass's one aggregate: every row adds ROW, a row that fails a check
# adds SUSPECT, and every product of a good row adds itself (product ids are >= 0).
ROW, SUSPECT = -2, -1

_FAST = """
SELECT p, count(*) FROM (
    SELECT unnest(list_prepend({row}, CASE
        WHEN json_type("{key}") IN ('BIGINT', 'UBIGINT') AND length("{key}"::VARCHAR) <= 18
            AND NOT regexp_matches(products::VARCHAR, '[^0-9,\\[\\]]')
        THEN from_json(products, '["BIGINT"]')
        ELSE [{suspect}] END)) AS p
    FROM read_json($path, format = 'newline_delimited', compression = $compression,
        maximum_object_size = {max_line},
        columns = {{'{key}': 'JSON', 'products': 'JSON'}})
) GROUP BY p
"""

# The fastest pass, for a file whose bytes proved every line plain (files._Shape): DuckDB's
# typed reader, which cannot misread such lines. A line whose keys are not the id and the
# products reads as NULLs, and a negative product shows in the tally: both send the file on.
_PLAIN = """
SELECT p, count(*) FROM (
    SELECT unnest(CASE WHEN "{key}" IS NULL OR products IS NULL THEN [NULL]
        ELSE products END) AS p
    FROM read_json($path, format = 'newline_delimited', compression = $compression,
        maximum_object_size = {max_line},
        columns = {{'{key}': 'BIGINT', 'products': 'BIGINT[]'}})
) GROUP BY p
"""

# DuckDB's JSON parser takes two liberties the rules do not: a trailing comma in a list or
# object, and NaN/Infinity as numbers. Outside strings, standard JSON has no "nan" or "inf"
# and no comma before a closing bracket, so a line DuckDB parsed takes a liberty exactly
# when its text, strings blanked, shows one. A liberty needs an a, an f or a comma before a
# bracket: the cheap first test spares most lines the blanking.
_STRING = r'"(?:[^"\\]|\\.)*"'
_LIBERTY = r"(?i)nan|inf|,[ \t\r\n]*[\]}]"
_MAYBE_LIBERTY = r"[aAfF]|,[ \t\r\n]*[\]}]"


def _liberty(text: str) -> str:
    """SQL: whether `text`, which DuckDB parsed as JSON, takes a liberty."""
    return f"regexp_matches(regexp_replace({text}, '{_STRING}', '\"\"', 'g'), '{_LIBERTY}')"


# What the fast pass cannot see, reading only the id and the products: a liberty or a
# repeated key anywhere in a line. A repeated id or products fails the reader, so only a
# line with a third key (three colons) can repeat one unseen.
_STRICT = f"""
SELECT count(*) FROM read_json_objects($path, format = 'newline_delimited',
    compression = $compression, maximum_object_size = {lines.MAX_LINE_BYTES})
WHERE CASE WHEN regexp_matches(json, '{_MAYBE_LIBERTY}|:.*:.*:')
    THEN len(json_keys(json)) <> len(list_distinct(json_keys(json))) OR {_liberty("json")}
    ELSE false END
"""  # noqa: S608

# The exact pass. Line numbers come from the line reader's ordinality (file order, also
# when the scan runs in parallel: a test checks it on a file of numbered lines). Only
# constants of `lines` are spliced in; the path is a bound parameter.
_LINES = f"""
CREATE TEMP TABLE classified AS
WITH l AS (
    SELECT ordinality AS n, line
    FROM read_csv($path, columns = {{'line': 'VARCHAR'}}, header = false, delim = '\x01',
        quote = '', escape = '', auto_detect = false, compression = $compression,
        max_line_size = {lines.MAX_LINE_BYTES + 2}) WITH ORDINALITY
),
-- The reader's limit counts a line's end too (2 bytes for CRLF): the rules' limit is
-- checked here, on the line itself. Blank: nothing but the whitespace the JSON reader
-- skips around a line (as the fast pass does); at a line's ends it is not part of its JSON.
trimmed AS (
    SELECT n, CASE WHEN strlen(line) > {lines.MAX_LINE_BYTES}
        THEN error('line ' || n || ' is longer than {lines.MAX_LINE_BYTES} bytes')
        ELSE trim(line, E' \\t\\r\\f' || chr(11)) END AS line
    FROM l WHERE line IS NOT NULL
),
filled AS (SELECT n, line FROM trimmed WHERE line <> ''),
parsed AS (
    SELECT n, CASE WHEN NOT json_valid(line) THEN NULL
        WHEN NOT regexp_matches(line, '{_MAYBE_LIBERTY}') OR NOT {_liberty("line")}
            THEN line::JSON END AS j
    FROM filled
),
fields AS (
    SELECT n, j, json_type(j) AS t,
        coalesce(json_extract(j, '$.id'), json_extract(j, '$.Id')) AS id,
        json_extract(j, '$.products') AS products
    FROM parsed
),
checked AS (
    SELECT n, products, CASE
        WHEN j IS NULL THEN 'json'
        WHEN t <> 'OBJECT' THEN '{lines.NOT_OBJECT}'
        WHEN len(json_keys(j)) <> len(list_distinct(json_keys(j))) THEN '{lines.DUPLICATE_KEY}'
        WHEN id IS NULL OR json_type(id) NOT IN ('BIGINT', 'UBIGINT')
            OR NOT regexp_full_match(id::VARCHAR, '{lines.ID_TEXT}')
            OR try_cast(id::VARCHAR AS BIGINT) IS NULL THEN '{lines.BAD_ID}'
        WHEN products IS NULL OR json_type(products) <> 'ARRAY'
            OR NOT regexp_full_match(products::VARCHAR, '{lines.PRODUCTS_TEXT}')
            OR list_count(coalesce(try_cast(products::VARCHAR AS BIGINT[]), [NULL]))
                <> json_array_length(products)
            THEN '{lines.BAD_PRODUCTS}'
        END AS reason
    FROM fields
)
SELECT n, CASE WHEN reason = 'json' THEN
        CASE WHEN n = (SELECT max(n) FROM filled) THEN '{lines.TRUNCATED}'
        ELSE '{lines.NOT_JSON}' END
    ELSE reason END AS reason,
    CASE WHEN reason IS NULL THEN products::VARCHAR::BIGINT[] END AS products
FROM checked
"""  # noqa: S608


class DuckDBEngine:
    name = "duckdb"

    def __init__(self, *, threads: int | None = None, memory_limit: str = "1GB") -> None:
        self.threads = threads or os.cpu_count() or 1
        self.memory_limit = memory_limit

    def count(
        self, path: str, *, gzipped: bool, id_key: str, plain_rows: int | None = None
    ) -> Counted:
        params = {"path": path, "compression": "gzip" if gzipped else "none"}
        with self._connect() as db:
            try:
                counted = None
                if plain_rows is not None:
                    counted = self._plain(db, params, id_key, plain_rows)
                if counted is None:
                    counted = self._fast(db, params, id_key)
            except duckdb.Error:
                counted = None  # a line the JSON reader refused: the exact pass says which
            if counted is None:
                counted = self._exact(db, params)
        counted.engine = self.name
        return counted

    def _connect(self) -> duckdb.DuckDBPyConnection:
        # The engine reads only the file it is given: no extensions, no other files.
        config: dict[str, str | bool | int | float | list[str]] = {
            "threads": self.threads,
            "memory_limit": self.memory_limit,
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
        }
        db = duckdb.connect(config=config)
        # Its bar would land in the CLI's, the watcher's and the server's output.
        db.execute("SET enable_progress_bar = false")
        return db

    def identify(self, path: str) -> Inspected | None:
        del path
        return None  # local files only: `files.inspect` reads them

    def typed_tally(self, path: str, *, gzipped: bool, id_key: str) -> dict[int, int] | None:
        """Units per product by the typed pass alone, or None where it cannot vouch for them.
        Right only for a file `files.inspect` finds plain; `ingest` runs it beside that."""
        params = {"path": path, "compression": "gzip" if gzipped else "none"}
        with self._connect() as db:
            try:
                return self._typed(db, params, id_key)
            except duckdb.Error:
                return None

    def _typed(
        self, db: duckdb.DuckDBPyConnection, params: dict[str, str], id_key: str
    ) -> dict[int, int] | None:
        query = _PLAIN.format(key="Id" if id_key == "Id" else "id", max_line=lines.MAX_LINE_BYTES)
        tally = dict(db.execute(query, params).fetchall())
        if None in tally or any(product < 0 for product in tally):
            return None
        return tally

    def _plain(
        self, db: duckdb.DuckDBPyConnection, params: dict[str, str], id_key: str, rows: int
    ) -> Counted | None:
        tally = self._typed(db, params, id_key)
        return (
            None if tally is None else Counted.tally(lines=rows, good=rows, counts=tally, sample=[])
        )

    def _fast(
        self, db: duckdb.DuckDBPyConnection, params: dict[str, str], id_key: str
    ) -> Counted | None:
        # The id's key is spliced in as a quoted identifier: `id` or `Id`, nothing else.
        query = _FAST.format(
            key="Id" if id_key == "Id" else "id",
            row=ROW,
            suspect=SUSPECT,
            max_line=lines.MAX_LINE_BYTES,
        )
        rows = db.execute(query, params).fetchall()
        tally = dict(rows)
        # A nested or out-of-range product is an error or a NULL here: the exact pass decides.
        if tally.pop(SUSPECT, 0) or None in tally:
            return None
        suspects = db.execute(_STRICT, params).fetchone()
        if suspects is None or suspects[0]:
            return None
        lines_read = tally.pop(ROW, 0)
        return Counted.tally(lines=lines_read, good=lines_read, counts=tally, sample=[])

    def _exact(self, db: duckdb.DuckDBPyConnection, params: dict[str, str]) -> Counted:
        try:
            db.execute(_LINES, params)
        except duckdb.InvalidInputException as exc:  # the reader's own errors: a long line
            raise FileRefused(
                f"The file cannot be read as lines of text: {_first_line(exc)}"
            ) from exc
        lines_read, good = db.execute(
            "SELECT count(*), count(*) FILTER (WHERE reason IS NULL) FROM classified"
        ).fetchone() or (0, 0)
        sample = db.execute(
            "SELECT n, reason FROM classified WHERE reason IS NOT NULL ORDER BY n LIMIT $limit",
            {"limit": lines.SAMPLE},
        ).fetchall()
        counts = dict(
            db.execute(
                "SELECT p, count(*) FROM (SELECT unnest(products) AS p FROM classified"
                " WHERE reason IS NULL) GROUP BY p"
            ).fetchall()
        )
        return Counted.tally(
            lines=lines_read,
            good=good,
            counts=counts,
            sample=[BadLine(int(n), str(reason)) for n, reason in sample],
        )


def _first_line(exc: Exception) -> str:
    return str(exc).split("\n", 1)[0][:300]
