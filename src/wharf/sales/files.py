"""A sales file before any engine sees it: its day, its identity, and whether it is text.

`inspect` reads the file once, as it is stored: the sha256 of those bytes is the file's
identity in the ledger. A gzipped file is inflated on the way (the engines read it
themselves) so that both engines only ever see valid UTF-8 text.
"""

from __future__ import annotations

import codecs
import hashlib
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from wharf.sales.errors import FileRefused

CHUNK = 1024 * 1024
GZIP_MAGIC = b"\x1f\x8b"
# A gzip member inflating to more than this many times its size is refused (a "zip bomb").
MAX_INFLATION = 200
_DAY_IN_NAME = re.compile(r"^(\d{4})-?(\d{2})-?(\d{2})(?:[_.\-]|$)")
DAY_HELP = (
    "name it like the seed does, YYYYMMDD_transactions.json(.gz), or give the day with "
    "--date YYYY-MM-DD (?date=YYYY-MM-DD over HTTP)"
)


@dataclass(frozen=True)
class Inspected:
    sha256: str
    bytes: int
    gzipped: bool
    # The customer id's key as the first non-empty line spells it ("id" or the seed's "Id").
    id_key: str
    # When every line is a plain object of two keys whose values hold no strings, fractions,
    # literals or nested objects (see `_Shape`), how many lines there are; else None.
    plain_rows: int | None = None


def day_from_name(name: str) -> date:
    """The day a file's name gives: `20261130_transactions.json` or `2026-11-30...`."""
    match = _DAY_IN_NAME.match(Path(name).name)
    if match is None:
        raise FileRefused(f"The file name {Path(name).name!r} holds no date: {DAY_HELP}.")
    try:
        return date(int(match[1]), int(match[2]), int(match[3]))
    except ValueError as exc:
        raise FileRefused(
            f"The file name {Path(name).name!r} holds no valid date ({exc}): {DAY_HELP}."
        ) from exc


def peek(path: Path) -> tuple[bool, str]:
    """Whether the file is gzipped, and the id's key its first line uses: what an engine
    needs to start before `inspect` has read the whole file (its verdicts win)."""
    with path.open("rb") as fh:
        head = fh.read(CHUNK // 16)
    gzipped = head.startswith(GZIP_MAGIC)
    if gzipped:
        try:
            head = zlib.decompressobj(wbits=31).decompress(head, CHUNK)
        except zlib.error:
            return True, "id"
    text = _TextCheck()
    text.head = head
    text._sniff(b"\n")
    return gzipped, text.id_key or "id"


def inspect(path: Path, *, progress: Callable[[int, int], None] | None = None) -> Inspected:
    """Hash the file and check that it is UTF-8 text; `progress(bytes, lines)` as it goes."""
    digest = hashlib.sha256()
    size = 0
    text = _TextCheck(count_lines=progress is not None)
    inflate: zlib._Decompress | None = None
    gzipped = False
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            if size == 0 and chunk.startswith(GZIP_MAGIC):
                gzipped = True
                inflate = zlib.decompressobj(wbits=31)
            size += len(chunk)
            digest.update(chunk)
            if inflate is None:
                text.feed(chunk)
            else:
                inflate = _inflate(inflate, chunk, text, size)
            if progress is not None:
                progress(size, text.lines)
    if size == 0:
        raise FileRefused("The file is empty: there is nothing to ingest.")
    if inflate is not None and not inflate.eof:
        raise FileRefused("The gzip stream ends before its end: the file is incomplete.")
    text.close()
    return Inspected(
        digest.hexdigest(), size, gzipped, text.id_key or "id", text.shape.plain_rows()
    )


def _inflate(
    inflate: zlib._Decompress, chunk: bytes, text: _TextCheck, size: int
) -> zlib._Decompress:
    data = chunk
    while data:
        try:
            out = inflate.decompress(data, CHUNK * 4)
            while True:
                text.feed(out)
                if text.bytes > MAX_INFLATION * size + CHUNK * 16:
                    raise FileRefused(
                        f"The gzip file inflates more than {MAX_INFLATION} times its size: "
                        "refused as a decompression bomb."
                    )
                if not inflate.unconsumed_tail:
                    break
                out = inflate.decompress(inflate.unconsumed_tail, CHUNK * 4)
        except zlib.error as exc:
            raise FileRefused(f"The file starts like gzip but is not valid gzip: {exc}.") from exc
        data = inflate.unused_data
        if inflate.eof and data:
            # Another gzip member follows (concatenated .gz files are one valid stream).
            inflate = zlib.decompressobj(wbits=31)
        else:
            break
    return inflate


class _TextCheck:
    """Refuses what is not UTF-8 text, counting lines for the progress bar."""

    def __init__(self, *, count_lines: bool = False) -> None:
        self.decoder = codecs.getincrementaldecoder("utf-8")()
        self.bytes = 0
        self.lines = 0
        self.count_lines = count_lines  # only a progress bar needs them: 0.2 s per 200 MB
        self.id_key: str | None = None
        self.head = b""
        self.shape = _Shape()

    def feed(self, data: bytes) -> None:
        for byte in (b"\x00", b"\x01"):
            at = data.find(byte)
            if at >= 0:
                raise FileRefused(
                    f"The file is not text: byte 0x{byte.hex()} at offset {self.bytes + at}."
                )
        try:
            # ASCII is UTF-8: the decoder is needed only for the rest, or to finish a
            # character the last chunk began.
            if not data.isascii() or self.decoder.getstate()[0]:
                self.decoder.decode(data)
        except UnicodeDecodeError as exc:
            raise FileRefused(
                f"The file is not UTF-8 text: invalid bytes at offset {self.bytes + exc.start}."
            ) from exc
        if self.id_key is None:
            self._sniff(data)
        self.bytes += len(data)
        if self.count_lines:
            self.lines += data.count(b"\n")
        self.shape.feed(data)

    def _sniff(self, data: bytes) -> None:
        self.head += data[:65536]
        for line in self.head.split(b"\n")[:-1] or []:
            if line.strip():
                self.id_key = "Id" if b'"Id"' in line and b'"id"' not in line else "id"
                return
        if len(self.head) >= 65536:
            self.id_key = "id"

    def close(self) -> None:
        try:
            self.decoder.decode(b"", final=True)
        except UnicodeDecodeError as exc:
            raise FileRefused("The file is not UTF-8 text: it ends inside a character.") from exc
        if self.id_key is None:
            self._sniff(b"\n")


class _Shape:
    """Whether every line of a file is plain: `{"id": 7, "products": [1, 2]}` and no more.

    Then DuckDB's typed JSON reader, which is several times faster than checking each line's
    JSON but lax (it reads "5" as 5 and 1.5 as 2), cannot misread it, and the engine may use
    it. The proof is a few byte counts, taken as the bytes go by anyway:
    - only digits, `-,:[]{}"`, blanks and the letters of `id`, `Id` and `products` occur:
      no fraction, exponent, literal, NaN, escape or other text;
    - no comma before a closing bracket (a liberty DuckDB's parser takes);
    - as many `{` as `}` as lines ending in `}`: one flat object per line;
    - four quotes and two colons per object: exactly two keys, neither value a string.
    Whether the two keys are the id and products, and the products non-negative, the
    engine checks on what it read.
    """

    ALLOWED = b'0123456789-,:[]{}" \t\r\nidIprocuts'
    BLANKS_AND_LETTERS = b" \t\ridIprocuts"

    def __init__(self) -> None:
        self.ok = True
        self.opens = self.closes = self.ends = self.quotes = self.colons = 0
        self.last = b""  # the last byte kept so far (newlines are kept)

    def feed(self, data: bytes) -> None:
        # Counting in what is left once blanks and letters are gone: smaller, and a comma
        # before a bracket is then two bytes side by side. Byte methods only: one pass of C
        # each (a Python loop over 5 million lines took seconds).
        if not self.ok:
            return
        if data.translate(None, self.ALLOWED):
            self.ok = False
            return
        kept = data.translate(None, self.BLANKS_AND_LETTERS)
        seam = self.last + kept[:1]  # a pair split between two chunks
        if b",]" in kept or b",}" in kept or seam in (b",]", b",}"):
            self.ok = False
            return
        self.ends += kept.count(b"}\n") + (seam == b"}\n")
        self.last = kept[-1:] or self.last
        self.opens += kept.count(b"{")
        self.closes += kept.count(b"}")
        self.quotes += kept.count(b'"')
        self.colons += kept.count(b":")

    def plain_rows(self) -> int | None:
        rows = self.opens
        ends = self.ends + (self.last == b"}")  # a last line without its newline
        plain = (
            self.ok
            and rows > 0
            and rows == self.closes == ends
            and self.quotes == 4 * rows
            and self.colons == 2 * rows
        )
        return rows if plain else None
