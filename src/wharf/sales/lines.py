"""What a sales file must hold, line by line, and what every engine reports about it.

The rules, the same for every engine (a test holds DuckDB and Spark to identical reports):

- A file is UTF-8 text, optionally gzipped. A NUL byte, a byte 0x01 (no text has one; the
  line reader uses it as its column separator) or invalid UTF-8 refuses the whole file, as
  does a file with no transactions at all, or a line longer than `MAX_LINE_BYTES`.
- Lines are numbered from 1, empty ones included; empty (or blank) lines are ignored.
- A non-empty line is a transaction when it is a JSON object whose customer id (key `id`,
  or the seed's `Id`; `id` wins when both are there) is an integer in the signed 64-bit
  range, and whose `products` is a list (maybe empty) of integers from 0 to 2^63-1. A
  product listed twice counts twice.
- Any other non-empty line is a bad line, with the first reason that applies, in the order
  of `REASONS`. A last non-empty line that is not JSON is reported as truncated.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from wharf.sales.files import Inspected

NOT_JSON = "not JSON"
TRUNCATED = "truncated last line"
NOT_OBJECT = "not an object"
DUPLICATE_KEY = "a key appears twice"
BAD_ID = "id missing or not an integer"
BAD_PRODUCTS = "products missing or not a list of non-negative integers"
REASONS = (NOT_JSON, TRUNCATED, NOT_OBJECT, DUPLICATE_KEY, BAD_ID, BAD_PRODUCTS)

SAMPLE = 100  # bad lines reported by number; the rest are only counted
MAX_LINE_BYTES = 16 * 1024 * 1024
# An id: a JSON integer of at most 19 digits, checked against the 64-bit range after.
ID_TEXT = r"-?[0-9]{1,19}"
# `products` as minified JSON: a list of plain non-negative integers (no sign, no fraction,
# no exponent, nothing nested), each checked against the 64-bit range after.
PRODUCTS_TEXT = r"\[([0-9]{1,19}(,[0-9]{1,19})*)?\]"


@dataclass(frozen=True)
class BadLine:
    line: int
    reason: str


@dataclass
class Counted:
    """What an engine found in one file."""

    lines: int  # non-empty lines
    transactions: int  # good lines
    units: int  # products counted over all transactions
    counts: dict[int, int]  # product id -> units
    bad_lines: int
    sample: list[BadLine] = field(default_factory=list)  # the first SAMPLE, by line number
    engine: str = ""

    @classmethod
    def tally(
        cls, *, lines: int, good: int, counts: dict[int, int], sample: list[BadLine]
    ) -> Counted:
        """What an engine found, from its line counts, per-product units and bad lines."""
        return cls(
            lines=lines,
            transactions=good,
            units=sum(counts.values()),
            counts=counts,
            bad_lines=lines - good,
            sample=sample,
        )


class Engine(Protocol):
    name: str

    def count(
        self, path: str, *, gzipped: bool, id_key: str, plain_rows: int | None = None
    ) -> Counted:
        """Count one file, which has passed `files.inspect` (or, for a remote path, cannot).

        `id_key` is the spelling of the customer id the file's first line uses: an engine
        may read that key only on its fast path, as long as what it reports is the same.
        `plain_rows` is `Inspected.plain_rows`: a fast path may rely on it."""
        ...

    def typed_tally(self, path: str, *, gzipped: bool, id_key: str) -> dict[int, int] | None:
        """Units per product by a fast typed pass that `ingest` runs beside `files.inspect`,
        and uses only when `inspect` finds the file plain; None where the engine has no
        such pass, or the pass cannot vouch for what it read."""
        ...

    def identify(self, path: str) -> Inspected | None:
        """What `files.inspect` gives, for a remote path only this engine can reach; None
        when the engine reads local files only."""
        ...
