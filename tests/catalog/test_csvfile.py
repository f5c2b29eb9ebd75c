"""The catalog CSV parser: what refuses a file, what is one row's problem, and row numbers."""

from __future__ import annotations

import csv
import io
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wharf.catalog.csvfile import (
    DESCRIPTION_MAX,
    TITLE_MAX,
    CsvRefused,
    CsvRow,
    ParsedCsv,
    RowProblem,
    parse,
)


def refusal(data: bytes, **kwargs: int) -> str:
    with pytest.raises(CsvRefused) as caught:
        parse(data, **kwargs)
    assert caught.value.status == 422
    assert caught.value.title == "Not a usable CSV"
    return caught.value.detail


def titles(parsed: ParsedCsv) -> list[str]:
    return [row.title for row in parsed.rows]


# Row numbers


def test_the_first_data_row_is_row_2() -> None:
    parsed = parse(b"title,description\nGolf,Small\nPolo,\n")

    assert parsed.rows == (CsvRow(2, "Golf", "Small", None), CsvRow(3, "Polo", None, None))
    assert parsed.problems == ()


def test_a_quoted_field_over_several_lines_is_one_row() -> None:
    parsed = parse(b'title,description\nGolf,"one\ntwo\nthree"\n,oops\n')

    assert parsed.rows[0].description == "one\ntwo\nthree"
    assert parsed.problems == (RowProblem(3, "title", "title is empty"),)


def test_blank_lines_are_skipped_but_counted_as_rows() -> None:
    parsed = parse(b"\ntitle\n\nGolf\n\r\n,\nPolo\n")

    assert [(r.row, r.title) for r in parsed.rows] == [(4, "Golf"), (7, "Polo")]
    assert parsed.problems == ()


def test_every_line_ending_works() -> None:
    for newline in (b"\n", b"\r\n", b"\r"):
        parsed = parse(newline.join([b"title", b"A", b"B"]))

        assert [(r.row, r.title) for r in parsed.rows] == [(2, "A"), (3, "B")], newline


# Encoding and binary files


def test_utf8_with_and_without_bom() -> None:
    body = "title,description\nCitroën,Très bien\n".encode()

    assert parse(body) == parse(b"\xef\xbb\xbf" + body)
    assert parse(body).rows[0] == CsvRow(2, "Citroën", "Très bien", None)


def test_bytes_that_are_not_utf8_name_their_offset_and_line() -> None:
    data = b"title\nGolf\nCitro" + b"\xeb" + b"n\n"  # Latin-1 ë

    detail = refusal(data)
    assert "not UTF-8" in detail
    assert "0xeb at offset 16 (line 3)" in detail
    assert "offset 9 (line 2)" in refusal(b"\xef\xbb\xbftitle\n\xff\n")  # the BOM counts


@pytest.mark.parametrize(
    ("data", "looks_like"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "a PNG image"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "a JPEG image"),
        (b"GIF89a\x01\x00", "a GIF image"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3", "a PDF document"),
        (b"PK\x03\x04\x14\x00\x06\x00", "a ZIP archive"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1\x00", "an old Excel"),
        (b"\x1f\x8b\x08\x00", "a gzip archive"),
        ("title\nGolf\n".encode("utf-16"), "UTF-16 text"),
    ],
)
def test_a_binary_file_is_named(data: bytes, looks_like: str) -> None:
    detail = refusal(data)

    assert detail.startswith("The file is not a CSV: it looks like ")
    assert looks_like in detail


def test_nul_bytes_refuse_the_file() -> None:
    detail = refusal(b"title\nGo\x00lf\n")

    assert "is not a CSV" in detail
    assert "NUL byte at offset 8" in detail


@pytest.mark.parametrize("data", [b"", b"\xef\xbb\xbf", b"  \n\r\n", b"\xef\xbb\xbf\n\n"])
def test_an_empty_file_is_refused(data: bytes) -> None:
    assert refusal(data) == "The file is empty."


def test_a_file_of_blank_rows_is_refused() -> None:
    assert "no header row" in refusal(b",,\n , \n\n")


# Delimiter


def test_semicolons_are_sniffed_from_the_header() -> None:
    parsed = parse(b"title;description\nGolf;Small, fast\n")

    assert parsed.rows == (CsvRow(2, "Golf", "Small, fast", None),)


def test_delimiters_inside_quotes_do_not_count() -> None:
    # Two `;` inside quotes, one `,` outside: a comma file.
    parsed = parse(b'title,"notes;with;semicolons"\nGolf;x,y\n')

    assert parsed.rows == (CsvRow(2, "Golf;x", None, None),)


def test_the_header_is_the_first_line_that_is_not_blank() -> None:
    parsed = parse(b"\n;;\ntitle;description\nGolf;Small, fast\n")

    assert parsed.rows == (CsvRow(4, "Golf", "Small, fast", None),)


def test_quoted_header_with_commas_in_a_semicolon_file() -> None:
    parsed = parse(b'title;"description, long";image\nGolf;x;https://e.com/a.jpg\n')

    assert parsed.rows == (CsvRow(2, "Golf", None, "https://e.com/a.jpg"),)


def test_a_one_column_file_is_read_with_commas() -> None:
    assert titles(parse(b"title\nGolf;GTI\n")) == ["Golf;GTI"]


# Header


def test_header_case_whitespace_order_and_extra_columns() -> None:
    parsed = parse(b" Image ,price,  TITLE\t, Description\nhttps://e.com/a.jpg,100,Golf,Small\n")

    assert parsed.rows == (CsvRow(2, "Golf", "Small", "https://e.com/a.jpg"),)


def test_a_header_without_title_is_refused_listing_its_columns() -> None:
    detail = refusal(b"name,description\nGolf,Small\n")

    assert "no title column" in detail
    assert "'name', 'description'" in detail


def test_a_long_header_is_listed_in_part() -> None:
    header = ",".join(f"c{i}" for i in range(50)).encode()

    assert "and 30 more" in refusal(header + b"\n")


@pytest.mark.parametrize("header", [b"title,Title", b"title,description, DESCRIPTION"])
def test_a_column_named_twice_is_refused(header: bytes) -> None:
    assert "twice" in refusal(header + b"\nGolf,x,y\n")


def test_a_header_alone_gives_no_rows() -> None:
    assert parse(b"title,description\n") == ParsedCsv((), (), ())


# Rows


def test_bad_rows_are_problems_and_the_others_go_on() -> None:
    data = (
        "title,description,image\n"
        "Golf,Small,https://e.com/a.jpg\n"
        "   ,x,\n"
        f"{'T' * (TITLE_MAX + 1)},,\n"
        f"Polo,{'d' * (DESCRIPTION_MAX + 1)},\n"
        "Up,,https://e.com/a b.jpg\n"
        "Fox,,a\x01.jpg\n"
        "Tig\x07uan,,\n"
        'Pa\tssat,"Tab\tand\nnewline",\n'
        "Arteon,bell\x07,\n"
        "Taigo,,,extra\n"
        "Short\n"
    ).encode()

    parsed = parse(data)

    assert parsed.rows == (
        CsvRow(2, "Golf", "Small", "https://e.com/a.jpg"),
        CsvRow(12, "Short", None, None),
    )
    assert parsed.problems == (
        RowProblem(3, "title", "title is empty"),
        RowProblem(4, "title", "title is 201 characters; at most 200"),
        RowProblem(5, "description", "description is 2,001 characters; at most 2,000"),
        RowProblem(6, "image", "image contains whitespace (U+0020 at position 16)"),
        RowProblem(7, "image", "image contains a control character (U+0001 at position 2)"),
        RowProblem(8, "title", "title contains a control character (U+0007 at position 4)"),
        RowProblem(9, "title", "title contains a control character (U+0009 at position 3)"),
        RowProblem(
            10, "description", "description contains a control character (U+0007 at position 5)"
        ),
        RowProblem(11, None, "row has 4 fields; the header has 3"),
    )


def test_a_row_reports_every_problem_it_has() -> None:
    parsed = parse(f"title,description,image\n,{'d' * 2001},a b\n".encode())

    assert [(p.row, p.column) for p in parsed.problems] == [
        (2, "title"),
        (2, "description"),
        (2, "image"),
    ]


def test_values_are_stripped_and_empty_optionals_are_none() -> None:
    parsed = parse(b'title,description,image\n  Golf  ,"  \n ", \t https://e.com/a.jpg \n')

    assert parsed.rows == (CsvRow(2, "Golf", None, "https://e.com/a.jpg"),)
    # A relative path (the CLI's imports) is an image too; whether it exists is checked later.
    assert parse(b"title,image\nGolf,images/golf.jpg\n").rows[0].image == "images/golf.jpg"


def test_limits_are_counted_after_stripping() -> None:
    title = "T" * TITLE_MAX
    description = "d" * DESCRIPTION_MAX

    parsed = parse(f"title,description\n  {title}  , {description} \n".encode())

    assert parsed.rows == (CsvRow(2, title, description, None),)


def test_a_long_image_is_a_problem() -> None:
    parsed = parse(f"title,image\nGolf,https://e.com/{'a' * 2000}\n".encode())

    assert parsed.problems == (RowProblem(2, "image", "image is 2,014 characters; at most 2,000"),)


# Duplicates


def test_a_later_title_wins_in_its_own_position() -> None:
    parsed = parse(b"title,description\nGolf,first\nPolo,\nGolf,second\nUp,\nGolf,third\n")

    assert parsed.rows == (
        CsvRow(3, "Polo", None, None),
        CsvRow(5, "Up", None, None),
        CsvRow(6, "Golf", "third", None),
    )
    assert parsed.superseded == ((2, 6), (4, 6))


def test_titles_compare_case_sensitively_after_strip() -> None:
    parsed = parse(b"title\nGolf\nGOLF\n  Golf \n")

    assert titles(parsed) == ["GOLF", "Golf"]
    assert parsed.superseded == ((2, 4),)


def test_a_bad_row_does_not_supersede_a_good_one() -> None:
    parsed = parse(b"title,image\nGolf,a.jpg\nGolf,a b.jpg\n")

    assert parsed.rows == (CsvRow(2, "Golf", None, "a.jpg"),)
    assert parsed.superseded == ()
    assert [p.row for p in parsed.problems] == [3]


# Quoting


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b'title\nGolf\n"Polo\nUp\n', "Row 3 (line 4): a quoted field opened on this row is never"),
        (b'title,description\nGolf,"24" wheels\n', "Row 2 (line 2): a quote inside a field"),
    ],
)
def test_broken_quoting_refuses_the_file_naming_the_row(data: bytes, expected: str) -> None:
    assert refusal(data).startswith(expected)


def test_a_huge_field_refuses_the_file() -> None:
    data = b"title,description\nGolf,x\nPolo," + b"d" * 200_000 + b"\n"

    assert refusal(data).startswith("Row 3 (line 3): a field is longer than 131,072 characters")


# Size


def test_more_than_max_rows_is_refused() -> None:
    data = b"title\n" + b"".join(b"car %d\n" % i for i in range(11))

    assert len(parse(data, max_rows=11).rows) == 11
    assert "more than 10 rows" in refusal(data, max_rows=10)
    assert "more than 100,000 rows" in refusal(b"title\n" + b"x\n" * 100_001)


def test_blank_rows_do_not_count_towards_max_rows() -> None:
    assert len(parse(b"title\n\n\n,\nGolf\n", max_rows=1).rows) == 1


def test_100k_rows_parse_in_well_under_a_second() -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["title", "description", "image"])
    for i in range(100_000):
        writer.writerow(
            [f"Car {i}", f"A fine car, number {i}\nTwo lines", f"https://e.com/{i}.jpg"]
        )
    data = buffer.getvalue().encode()

    # CPU time, the best of three: the machine may be busy with other work, which stretches
    # wall-clock time without saying anything about the parser.
    best = float("inf")
    for _ in range(3):
        start = time.process_time()
        parsed = parse(data)
        best = min(best, time.process_time() - start)

    assert len(parsed.rows) == 100_000
    assert best < 1.0, f"{best:.3f} s"


# Round trip: whatever Python's csv writer writes from valid rows reads back as those rows.

# codec="utf-8": no lone surrogates, which no UTF-8 file can hold.
_TITLE_CHARS = st.characters(codec="utf-8", exclude_categories=["Cc"])
_TEXT_CHARS = st.characters(
    codec="utf-8",
    exclude_characters=[
        chr(c) for c in [*range(0x20), *range(0x7F, 0xA0)] if chr(c) not in "\t\n\r"
    ],
)
# Whitespace (what str.isspace calls so, control characters among it) is refused in an image.
_IMAGE_CHARS = st.characters(codec="utf-8", exclude_categories=["Cc", "Zs", "Zl", "Zp"])


def _stripped(chars: st.SearchStrategy[str], size: int) -> st.SearchStrategy[str]:
    return st.text(chars, min_size=1, max_size=size).map(str.strip).filter(bool)


_ROW = st.tuples(
    _stripped(_TITLE_CHARS, 40),
    st.none() | _stripped(_TEXT_CHARS, 60),
    st.none() | _stripped(_IMAGE_CHARS, 60),
    st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=10),
)


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(_ROW, max_size=20, unique_by=lambda row: row[0]),
    order=st.permutations(["title", "description", "image", "notes"]),
    delimiter=st.sampled_from([",", ";"]),
    bom=st.booleans(),
    quote_all=st.booleans(),
)
def test_what_the_csv_writer_writes_reads_back(
    rows: list[tuple[str, str | None, str | None, str]],
    order: list[str],
    delimiter: str,
    bom: bool,
    quote_all: bool,
) -> None:
    buffer = io.StringIO()
    writer = (
        csv.writer(buffer, delimiter=delimiter, quoting=csv.QUOTE_ALL)
        if quote_all
        else csv.writer(buffer, delimiter=delimiter)
    )
    writer.writerow(order)
    for title, description, image, notes in rows:
        values = {"title": title, "description": description, "image": image, "notes": notes}
        writer.writerow([values[name] or "" for name in order])
    data = ("\ufeff" if bom else "") + buffer.getvalue()

    parsed = parse(data.encode())

    assert parsed.problems == ()
    assert parsed.superseded == ()
    assert parsed.rows == tuple(
        CsvRow(at, title, description, image)
        for at, (title, description, image, _) in enumerate(rows, start=2)
    )
