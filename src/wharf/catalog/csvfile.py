"""The car catalog's CSV files: bytes in, checked rows and per-row problems out.

Pure: no I/O and no logging, so the CLI, the admin upload and the background import all
parse the same way and report the same row numbers.

Row numbers are as a person sees them in a spreadsheet: the header is row 1 (when blank lines
come before it, each of them is a row too) and the first data row is row 2. They count the CSV
reader's records, not the file's lines: a quoted field that spans three lines is still one
row, as it is one row in the spreadsheet the file came from.

What refuses the whole file (`CsvRefused`, 422) is what makes every row untrustworthy: not
UTF-8, binary, empty, no usable header, broken quoting (after one, where a row ends is a
guess), or too many rows. Anything else is one row's problem and the other rows go on.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass

from wharf.core.errors import WharfError

TITLE_MAX = 200
DESCRIPTION_MAX = 2000
IMAGE_MAX = 2000
COLUMNS = ("title", "description", "image")

_BOM = b"\xef\xbb\xbf"
# What a file uploaded by mistake usually is, by its first bytes. Checked before decoding,
# so a PNG is named as one rather than as "byte 0x89 is not UTF-8".
_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"%PDF-", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive (an .xlsx spreadsheet is one: export it as CSV UTF-8)"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an old Excel or Word file: export it as CSV UTF-8"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"\xff\xfe", "UTF-16 text: save it as CSV UTF-8"),
    (b"\xfe\xff", "UTF-16 text: save it as CSV UTF-8"),
)
# Control characters (C0, DEL, C1). A description may hold tabs and line breaks (a
# spreadsheet cell with several lines); a title is one line; an image is a URL or a path.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_IN_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_NOT_IN_IMAGE = re.compile(r"[\s\x00-\x1f\x7f-\x9f]")
_SHOWN_COLUMNS = 20
# The delimiter is sniffed from this much of the start: a header is far shorter.
_HEAD = 64 * 1024
# A quoted run (a doubled quote is two runs: same count), or one left open to the end, a
# delimiter, or a line break.
_HEADER_TOKENS = re.compile(r'"[^"]*(?:"|\Z)|[,;]|\r\n?|\n')


class CsvRefused(WharfError):
    """The file as a whole cannot be used; `detail` says why and, where known, where."""

    status, title = 422, "Not a usable CSV"


@dataclass(frozen=True)
class CsvRow:
    row: int
    title: str
    description: str | None
    image: str | None


@dataclass(frozen=True)
class RowProblem:
    row: int
    column: str | None  # None: the row as a whole (too many fields)
    reason: str


@dataclass(frozen=True)
class ParsedCsv:
    rows: tuple[CsvRow, ...]
    problems: tuple[RowProblem, ...]
    # (earlier row, the row that wins): each earlier row names the last row with its title.
    superseded: tuple[tuple[int, int], ...]


def parse(data: bytes, *, max_rows: int = 100_000) -> ParsedCsv:
    """Parse a catalog CSV: a `title` column (required), `description` and `image` (optional),
    in any order and any case; other columns are ignored.

    Titles are compared exactly after stripping surrounding whitespace, case included ("Golf"
    and "GOLF" are two cars): a title is a name someone typed, and folding case would merge
    names that differ on purpose. When one comes twice the later row wins.
    """
    text = _decode(data)
    # newline="": the reader itself splits records, so line breaks inside quotes survive.
    # strict: a stray quote (`"24" wheels`) is an error, not silently dropped quotes.
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(text), strict=True)
    rows = _Rows(max_rows)
    try:
        rows.read(reader)
    except csv.Error as exc:
        # The record after the last one read is the broken one.
        raise CsvRefused(_quoting(rows.row + 1, reader.line_num, str(exc))) from None
    return rows.result()


class _Rows:
    """What has been read so far; `row` is the reader's record count, the row a spreadsheet
    shows (blank records are rows there too)."""

    def __init__(self, max_rows: int) -> None:
        self.max_rows = max_rows
        self.row = 0
        self.winners: dict[str, CsvRow] = {}  # title -> its latest good row, in row order
        self.earlier: dict[str, list[int]] = {}  # title -> the rows it superseded
        self.problems: list[RowProblem] = []

    def read(self, reader: Iterator[list[str]]) -> None:
        header = self._header(reader)
        title_at, description_at, image_at = _columns(header)
        width = len(header)
        winners, problems = self.winners, self.problems
        count = 0
        # The hot loop of a 100,000-row import: checks are inlined, and the functions that
        # word each problem run only for rows that have one.
        for fields in reader:
            self.row += 1
            if not fields:
                continue  # a blank line
            size = len(fields)
            if size < width:
                fields += [""] * (width - size)  # a short row: the missing cells are empty
            title = fields[title_at].strip()
            if not title and not any(field.strip() for field in fields):
                continue  # a row of empty cells (`,,`), as spreadsheets export trailing rows
            count += 1
            if count > self.max_rows:
                raise CsvRefused(f"The file has more than {self.max_rows:,} rows; split it.")
            if size > width:
                reason = f"row has {size} fields; the header has {width}"
                problems.append(RowProblem(self.row, None, reason))
                continue
            description = None if description_at is None else fields[description_at].strip()
            image = None if image_at is None else fields[image_at].strip()
            description, image = description or None, image or None
            if not (
                0 < len(title) <= TITLE_MAX
                and _plain(title, _CONTROL)
                and (
                    description is None
                    or (len(description) <= DESCRIPTION_MAX and _plain(description, _IN_TEXT))
                )
                and (image is None or (len(image) <= IMAGE_MAX and not _NOT_IN_IMAGE.search(image)))
            ):
                problems.extend(_problems(self.row, title, description, image))
                continue
            previous = winners.pop(title, None)  # pop: the winner moves to its later position
            if previous is not None:
                self.earlier.setdefault(title, []).append(previous.row)
            winners[title] = CsvRow(self.row, title, description, image)

    def _header(self, reader: Iterator[list[str]]) -> list[str]:
        for fields in reader:
            self.row += 1
            if any(field.strip() for field in fields):
                return fields
        raise CsvRefused("The file has no header row: it holds only blank lines.")

    def result(self) -> ParsedCsv:
        winners = self.winners
        superseded = sorted(
            (old, winners[title].row) for title, olds in self.earlier.items() for old in olds
        )
        return ParsedCsv(tuple(winners.values()), tuple(self.problems), tuple(superseded))


def _plain(value: str, control: re.Pattern[str]) -> bool:
    # Printable ASCII (most titles) cannot hold a control character: skip the regex.
    return (value.isascii() and value.isprintable()) or control.search(value) is None


def _problems(row: int, title: str, description: str | None, image: str | None) -> list[RowProblem]:
    found: list[RowProblem] = []
    _check_title(row, title, found)
    if description is not None:
        _check_description(row, description, found)
    if image is not None:
        _check_image(row, image, found)
    return found


def _quoting(row: int, line: int, error: str) -> str:
    # After broken quoting, where the next row starts is a guess: a row read from the middle
    # of a field could be imported as a car. So the whole file is refused, naming the place.
    where = f"Row {row} (line {line})"
    if error.startswith("unexpected end of data"):
        return f"{where}: a quoted field opened on this row is never closed."
    if "expected after" in error:
        return (
            f'{where}: a quote inside a field must be doubled (""), with the whole field in quotes.'
        )
    if error.startswith("field larger than field limit"):
        return f"{where}: a field is longer than {csv.field_size_limit():,} characters."
    return f"{where} cannot be read as CSV: {error}."


def _decode(data: bytes) -> str:
    if not data.strip():
        raise CsvRefused("The file is empty.")
    for signature, what in _SIGNATURES:
        if data.startswith(signature):
            raise CsvRefused(f"The file is not a CSV: it looks like {what}.")
    nul = data.find(b"\x00")
    if nul >= 0:
        raise CsvRefused(
            f"The file is not a CSV: it holds a NUL byte at offset {nul}, so it looks like a "
            "binary file.",
            extra={"offset": nul},
        )
    start = len(_BOM) if data.startswith(_BOM) else 0
    try:
        text = data[start:].decode("utf-8")
    except UnicodeDecodeError as exc:
        offset = start + exc.start
        line = data.count(b"\n", 0, offset) + 1
        raise CsvRefused(
            f"The file is not UTF-8: byte 0x{data[offset]:02x} at offset {offset} (line "
            f"{line}) is not valid UTF-8. Save it as CSV UTF-8.",
            extra={"offset": offset, "line": line},
        ) from None
    if not text.strip():
        raise CsvRefused("The file is empty.")
    return text


def _delimiter(text: str) -> str:
    """`;` when the header line has more `;` than `,` outside quotes, else `,`.

    csv.Sniffer guesses from how evenly characters recur across lines; given a header alone
    it picks a letter of a column name as often as not, and it cannot be told to choose
    between just these two. Counting outside quotes is exact for any header a spreadsheet
    writes (`title;"notes, long"` is a `;` file). A header of one column cannot tell; it is
    read as `,`, the CSV default (a `;` file then reads the same unless a title holds an
    unquoted `,`, which shows up as a row with too many fields).
    """
    counts = {",": 0, ";": 0}
    start = 0
    for token in _HEADER_TOKENS.finditer(text, 0, _HEAD):
        mark = token.group()
        if mark in counts:
            counts[mark] += 1
        elif mark[0] != '"':  # a line break outside quotes
            line = text[start : token.start()]
            if line.replace(",", "").replace(";", "").strip():
                break  # the header: the first line that is not blank
            counts = {",": 0, ";": 0}
            start = token.end()
    return ";" if counts[";"] > counts[","] else ","


def _columns(header: list[str]) -> tuple[int, int | None, int | None]:
    names = [name.strip().lower() for name in header]
    positions: dict[str, int] = {}
    for at, name in enumerate(names):
        if name not in COLUMNS:
            continue
        if name in positions:
            # Which of two `title` columns is meant is a guess either way, and a wrong guess
            # imports every row wrongly; the same goes for description and image.
            raise CsvRefused(
                f"The header names {name} twice (columns {positions[name] + 1} and {at + 1})."
            )
        positions[name] = at
    if "title" not in positions:
        shown = ", ".join(repr(name) for name in header[:_SHOWN_COLUMNS])
        more = len(header) - _SHOWN_COLUMNS
        if more > 0:
            shown += f" and {more} more"
        raise CsvRefused(
            f"The header has no title column (title is required; description and image are "
            f"optional). Its columns are: {shown}.",
            extra={"columns": header[:_SHOWN_COLUMNS]},
        )
    return positions["title"], positions.get("description"), positions.get("image")


def _check_title(row: int, title: str, found: list[RowProblem]) -> None:
    if not title:
        found.append(RowProblem(row, "title", "title is empty"))
    elif len(title) > TITLE_MAX:
        found.append(RowProblem(row, "title", _too_long("title", title, TITLE_MAX)))
    elif (control := _CONTROL.search(title)) is not None:
        found.append(RowProblem(row, "title", _control("title", control)))


def _check_description(row: int, description: str, found: list[RowProblem]) -> None:
    if len(description) > DESCRIPTION_MAX:
        reason = _too_long("description", description, DESCRIPTION_MAX)
        found.append(RowProblem(row, "description", reason))
    elif (control := _IN_TEXT.search(description)) is not None:
        found.append(RowProblem(row, "description", _control("description", control)))


def _check_image(row: int, image: str, found: list[RowProblem]) -> None:
    # Only the shape: whether it is a reachable http(s) URL, or a path under the import's
    # directory, is for the importer, which knows which of the two it takes.
    if len(image) > IMAGE_MAX:
        found.append(RowProblem(row, "image", _too_long("image", image, IMAGE_MAX)))
    elif (bad := _NOT_IN_IMAGE.search(image)) is not None:
        kind = "a control character" if _CONTROL.match(bad.group()) else "whitespace"
        reason = f"image contains {kind} (U+{ord(bad.group()):04X} at position {bad.start() + 1})"
        found.append(RowProblem(row, "image", reason))


def _too_long(column: str, value: str, limit: int) -> str:
    return f"{column} is {len(value):,} characters; at most {limit:,}"


def _control(column: str, found: re.Match[str]) -> str:
    code = ord(found.group())
    return f"{column} contains a control character (U+{code:04X} at position {found.start() + 1})"
