"""Hostile files and values of the issue's classes that tests/test_hostile_files.py and
tests/test_hostile_values.py do not hold: other zip tricks, ODS repeat bombs, other
encodings and line endings, JSON and YAML shapes, and values at the edges of their types.

Each file is made here, small on disk, and read in a capped child (tests/hostile.py): it
ends with one clear line naming the file (and the setting, for a limit), or reads what it
holds, in under 10 s and 300 MB. Values go through real runs on both paths.
"""

from __future__ import annotations

import io
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
import tablib
from django.conf import settings as django_settings
from django.test import override_settings

import djsync
from djsync.exceptions import RowErrorsFound, SourceError
from djsync.models import SyncRun
from djsync.sources import FileSource
from djsync.sources.base import Source
from tests.hostile import run_isolated
from tests.test_differential import MEMBER_FIELDS
from tests.test_hostile_files import (
    ODS_CLOSE,
    ODS_OPEN,
    SHEET_NS,
    Member,
    child_code,
    ods_with_content,
    random_text,
    sheet_xml,
    workbook_members,
    write_zip,
    xlsx_with_sheet,
)
from tests.testapp.models import Member as MemberModel
from tests.testapp.models import Product

MiB = 1024 * 1024
HEADER = "sku,name,price,qty,updated,active"

Builder = Callable[[Path], Path]
#: name → (file name, builder, DJSYNC overrides, expected text of the last line, or None
#: when the file must read; then the number of records it holds)
CASES: dict[str, tuple[str, Builder, dict, str | None, int | None]] = {}


def case(
    name: str, filename: str, expected: str | None, records: int | None = None, **settings: object
) -> Callable[[Builder], Builder]:
    def register(build: Builder) -> Builder:
        CASES[name] = (filename, build, settings, expected, records)
        return build

    return register


def _xlsx_replacing(path: Path, *members: Member) -> Path:
    names = {m.name for m in members}
    return write_zip(
        path, [m for m in workbook_members("xlsx") if m.name not in names] + list(members)
    )


def _member_text(name: str, fmt: str = "xlsx") -> str:
    import zlib

    member = next(m for m in workbook_members(fmt) if m.name == name)
    return zlib.decompress(member.deflated, -15).decode()


# -- XLSX ---------------------------------------------------------------------------------
@case(
    "xlsx styles.xml of 3 MB (loaded whole)",
    "styles.xlsx",
    'DJSYNC["MAX_WORKBOOK_PART_SIZE"]',
    MAX_WORKBOOK_PART_SIZE=MiB,
)
def _(path: Path) -> Path:
    fonts = "".join(
        f'<font><sz val="{i % 90 + 1}"/><name val="F{i}"/></font>' for i in range(80_000)
    )
    styles = (
        f'<?xml version="1.0"?><styleSheet xmlns="{SHEET_NS}"><fonts count="80000">{fonts}'
        "</fonts></styleSheet>"
    ).encode()
    return _xlsx_replacing(path, Member("xl/styles.xml", styles))


@case(
    "xlsx workbook.xml listing 100,000 sheets",
    "sheets.xlsx",
    'DJSYNC["MAX_WORKBOOK_PART_SIZE"]',
    MAX_WORKBOOK_PART_SIZE=MiB,
)
def _(path: Path) -> Path:
    text = _member_text("xl/workbook.xml")
    many = "".join(f'<sheet name="S{i}" sheetId="{i + 2}" r:id="rId1"/>' for i in range(100_000))
    text = text.replace("</sheets>", many + "</sheets>")
    return _xlsx_replacing(path, Member("xl/workbook.xml", text.encode()))


@case("xlsx with a zip bomb nested as a member", "nested.xlsx", None, records=1)
def _(path: Path) -> Path:
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("bomb.txt", b"\0" * (50 * MiB))
    rows = '<row r="2"><c r="A2" t="inlineStr"><is><t>A1</t></is></c></row>'
    return xlsx_with_sheet(
        path,
        Member("xl/worksheets/sheet1.xml", sheet_xml(rows)),
        Member("xl/embeddings/inner.zip", inner.getvalue()),
    )


@case(
    "xlsx zip64 end record claiming 10^12 members", "zip64.xlsx", 'DJSYNC["MAX_WORKBOOK_MEMBERS"]'
)
def _(path: Path) -> Path:
    write_zip(path, workbook_members("xlsx"))
    data = bytearray(path.read_bytes())
    end = data.rfind(b"PK\x05\x06")
    start = struct.unpack("<L", data[end + 16 : end + 20])[0]
    size = struct.unpack("<L", data[end + 12 : end + 16])[0]
    z64 = struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, 10**12, 10**12, size, start)
    locator = struct.pack("<4sLQL", b"PK\x06\x07", 0, end, 1)
    tail = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, size, 0xFFFFFFFF, 0)
    path.write_bytes(bytes(data[:end]) + z64 + locator + tail)
    return path


@case("xlsx whose relationship points outside the zip", "escape.xlsx", "the workbook has no sheet")
def _(path: Path) -> Path:
    text = _member_text("xl/_rels/workbook.xml.rels")
    text = text.replace('Target="/xl/worksheets/sheet1.xml"', 'Target="../../../../etc/passwd"')
    text = text.replace('Target="worksheets/sheet1.xml"', 'Target="../../../../etc/passwd"')
    return _xlsx_replacing(path, Member("xl/_rels/workbook.xml.rels", text.encode()))


@case("xlsx cut in half", "cut.xlsx", "not a readable XLSX workbook")
def _(path: Path) -> Path:
    data = tablib.Dataset(*[[f"S{i}", "x" * 50] for i in range(2000)], headers=["sku", "name"])
    raw = data.export("xlsx")
    path.write_bytes(raw[: len(raw) // 2])
    return path


@case("xlsx with one byte of a member flipped", "flip.xlsx", "not a readable XLSX workbook")
def _(path: Path) -> Path:
    write_zip(path, workbook_members("xlsx"))
    data = bytearray(path.read_bytes())
    at = data.find(b"xl/worksheets/sheet1.xml") + len("xl/worksheets/sheet1.xml") + 20
    data[at] ^= 0xFF  # inside the sheet's deflated data
    path.write_bytes(bytes(data))
    return path


@case("a text file named .xlsx", "text.xlsx", "not a readable XLSX workbook")
def _(path: Path) -> Path:
    path.write_text(HEADER + "\nA1,Lamp,1,1,,yes\n")
    return path


@case(
    "xlsx a cell in column XFD under a one-column header",
    "far-column.xlsx",
    "row 2: a value stands right of the last header column",
)
def _(path: Path) -> Path:
    rows = '<row r="2"><c r="XFD2"><v>1</v></c></row>'
    return xlsx_with_sheet(path, Member("xl/worksheets/sheet1.xml", sheet_xml(rows)))


# -- ODS ----------------------------------------------------------------------------------
ODS_CELL = b'<table:table-cell office:value-type="string"><text:p>x</text:p></table:table-cell>'


@case("ods without content.xml", "empty.ods", "not a readable ODS file")
def _(path: Path) -> Path:
    return write_zip(path, [m for m in workbook_members("ods") if m.name != "content.xml"])


# -- XLS ----------------------------------------------------------------------------------
@case("xls of random bytes", "junk.xls", "not a readable XLS")
def _(path: Path) -> Path:
    path.write_bytes(random_text(100_000))
    return path


@case("xls cut in half", "cut.xls", "not a readable XLS")
def _(path: Path) -> Path:
    raw = tablib.Dataset(
        *[[f"S{i}", "x" * 50] for i in range(3000)], headers=["sku", "name"]
    ).export("xls")
    path.write_bytes(raw[: len(raw) // 2])
    return path


@case("xls whose records declare 65,535 bytes each", "records.xls", "not a readable XLS")
def _(path: Path) -> Path:
    raw = bytearray(tablib.Dataset(["A1", "x"], headers=["sku", "name"]).export("xls"))
    # The workbook stream starts at the first BOF record (0x0809): make every record after
    # it claim the largest length BIFF allows.
    at = raw.find(b"\x09\x08")
    pos = at
    for _ in range(50):
        if pos + 4 > len(raw):
            break
        length = struct.unpack("<H", raw[pos + 2 : pos + 4])[0]
        raw[pos + 2 : pos + 4] = b"\xff\xff"
        pos += 4 + length
    path.write_bytes(bytes(raw))
    return path


# -- text formats -------------------------------------------------------------------------
@case("csv with a UTF-8 BOM, then Latin-1", "bom.csv", "is not valid utf-8")
def _(path: Path) -> Path:
    path.write_bytes(b"\xef\xbb\xbf" + HEADER.encode() + b"\nA1,Caf\xe9,1,1,,yes\n")
    return path


@case("csv in UTF-16 with its BOM", "utf16.csv", "UTF-16")
def _(path: Path) -> Path:
    path.write_bytes((HEADER + "\nA1,Lamp,1,1,,yes\n").encode("utf-16"))
    return path


@case("csv with \\r line ends and one 12 MB line", "cr.csv", 'DJSYNC["MAX_LINE_SIZE"]')
def _(path: Path) -> Path:
    path.write_bytes(HEADER.encode() + b"\rA1,Lamp,1,1,,yes\rA2," + b"w" * (12 * MiB) + b"\r")
    return path


@case("csv with \\r line ends reads", "cr-ok.csv", None, records=2)
def _(path: Path) -> Path:
    path.write_bytes(HEADER.encode() + b"\rA1,Lamp,1,1,,yes\rA2,Kite,1,1,,no\r")
    return path


@case("csv header of 100,000 columns", "header.csv", 'DJSYNC["MAX_COLUMNS"]')
def _(path: Path) -> Path:
    path.write_text(",".join(f"c{i}" for i in range(100_000)) + "\n")
    return path


@case("csv header of 100,000 empty columns", "commas.csv", 'DJSYNC["MAX_COLUMNS"]')
def _(path: Path) -> Path:
    path.write_text("sku" + "," * 100_000 + "\nA1\n")
    return path


@case("csv header naming one column 10,000 times", "dupes.csv", "sku")
def _(path: Path) -> Path:
    path.write_text(",".join(["sku"] * 10_000) + "\n" + ",".join(["A"] * 10_000) + "\n")
    return path


@case("csv 12 MB of line breaks only", "breaks.csv", None, records=0)
def _(path: Path) -> Path:
    path.write_bytes(HEADER.encode() + b"\n" + b"\n" * (12 * MiB))
    return path


@case("json 400,000 tiny records: memory stays flat", "tiny.json", None, records=400_000)
def _(path: Path) -> Path:
    path.write_text("[" + ",".join(['{"sku":"A"}'] * 400_000) + "]")
    return path


@case("json one record with 20,000 keys", "wide.json", 'DJSYNC["MAX_COLUMNS"]')
def _(path: Path) -> Path:
    path.write_text("[{" + ",".join(f'"k{i}":1' for i in range(20_000)) + "}]")
    return path


@case("json key of 30 MB", "key.json", 'DJSYNC["MAX_CELL_SIZE"]')
def _(path: Path) -> Path:
    path.write_text('[{"' + "k" * (30 * MiB) + '": 1}]')
    return path


@case("json 5 MB of whitespace between records", "spaces.json", None, records=2)
def _(path: Path) -> Path:
    path.write_text('[{"sku": "A"},' + " " * (5 * MiB) + '{"sku": "B"}]')
    return path


@case(
    "json number 1e999999",
    "exp.json",
    "malformed JSON: parse error: numeric (floating point) overflow",
)
def _(path: Path) -> Path:
    path.write_text('[{"sku": "A", "price": 1e999999}]')
    return path


@case("json in UTF-16", "utf16.json", "starts with a UTF-16 or UTF-32 byte order mark")
def _(path: Path) -> Path:
    path.write_bytes('[{"sku": "A"}]'.encode("utf-16"))
    return path


@case("jsonl one 12 MB line of whitespace", "blank.jsonl", 'DJSYNC["MAX_LINE_SIZE"]')
def _(path: Path) -> Path:
    path.write_bytes(b'{"sku": "A1"}\n' + b" " * (12 * MiB) + b"\n")
    return path


@case("jsonl 1,000,000 empty lines", "empty.jsonl", None, records=1)
def _(path: Path) -> Path:
    path.write_bytes(b"\n" * 1_000_000 + b'{"sku": "A1"}\n')
    return path


@case(
    "yaml !!python/object tag",
    "tag.yaml",
    "malformed YAML: line 1, column 3: could not determine a constructor for the tag "
    "'tag:yaml.org,2002:python/object/apply:os.system' (only plain YAML is read",
)
def _(path: Path) -> Path:
    path.write_text("- !!python/object/apply:os.system ['touch /tmp/djsync-pwned']\n")
    return path


@case("yaml !!binary tag", "binary.yaml", None, records=1)
def _(path: Path) -> Path:
    path.write_text("- {sku: !!binary QUJD}\n")
    return path


@case("yaml 6,000 anchors without aliases", "anchors.yaml", None, records=6_000)
def _(path: Path) -> Path:
    with path.open("w") as out:
        for i in range(6_000):
            out.write(f"- &a{i} {{sku: S{i}, name: {'n' * 40}}}\n")
    return path


@case("yaml merge key <<", "merge.yaml", "YAML aliases")
def _(path: Path) -> Path:
    path.write_text("- &base {sku: A}\n- <<: *base\n")
    return path


@case("yaml 500 KiB flow list of tiny records", "flow.yaml", None, records=50_000)
def _(path: Path) -> Path:
    path.write_text("[" + ", ".join(["{sku: a}"] * 50_000) + "]\n")
    return path


@case("yaml 500 KiB of one-key records", "list.yaml", None, records=45_000)
def _(path: Path) -> Path:
    path.write_text("- {sku: 1}\n" * 45_000)
    return path


@case("yaml deep nesting in flow", "deep.yaml", 'DJSYNC["JSON_MAX_DEPTH"]')
def _(path: Path) -> Path:
    path.write_text("- {sku: " + "{a: " * 200 + "1" + "}" * 200 + "}\n")
    return path


@case("yaml 30 MB scalar", "scalar.yaml", 'more than DJSYNC["MAX_YAML_SIZE"] (512 KiB)')
def _(path: Path) -> Path:
    path.write_text("- sku: " + "s" * (30 * MiB) + "\n")
    return path


@pytest.mark.parametrize("name", list(CASES))
def test_unseen_hostile_file_is_bounded_and_clear(name, tmp_path):
    filename, build, settings, expected, records = CASES[name]
    path = build(tmp_path / filename)
    assert path.stat().st_size < 32 * MiB, "keep hostile files small"
    out = run_isolated(child_code(path, settings), timeout=30)
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    if expected is None:
        assert out.returncode == 0, out.last_line
        assert f"read {records} records" in out.stdout, out.stdout
    else:
        assert out.returncode != 0, out.stdout
        assert expected in out.last_line, out.last_line
        assert out.last_line.startswith(str(path)), out.last_line
    assert out.seconds < 10, f"{name}: {out.seconds:.1f} s"
    assert out.peak_mb < 300, f"{name}: {out.peak_mb:.0f} MB"


# -- ODS repeats --------------------------------------------------------------------------
ODS_CELL = b'<table:table-cell office:value-type="string"><text:p>%s</text:p></table:table-cell>'


def test_an_ods_cell_repeated_across_columns_fills_each_column(tmp_path):
    header = (
        b"<table:table-row>"
        + b"".join(ODS_CELL % n for n in (b"sku", b"qty", b"price", b"name"))
        + b"</table:table-row>"
    )
    twice = (ODS_CELL % b"1").replace(
        b"table-cell ", b'table-cell table:number-columns-repeated="2" ', 1
    )
    row = (
        b"<table:table-row>" + ODS_CELL % b"A1" + twice + ODS_CELL % b"Lamp" + b"</table:table-row>"
    )
    path = ods_with_content(tmp_path / "repeat.ods", ODS_OPEN + header + row + ODS_CLOSE)
    assert list(FileSource(path).read()) == [
        {"sku": "A1", "qty": "1", "price": "1", "name": "Lamp"}
    ]


def test_an_ods_row_repeated_reads_each_time_and_blank_padding_costs_nothing(tmp_path):
    """LibreOffice writes equal rows once with number-rows-repeated, and pads a sheet with
    blank rows and columns repeated to its edges: the padding makes no row."""
    header = b"<table:table-row>" + ODS_CELL % b"sku" + ODS_CELL % b"name" + b"</table:table-row>"
    same = (
        b'<table:table-row table:number-rows-repeated="3">'
        + ODS_CELL % b"A1"
        + ODS_CELL % b"Lamp"
        + b'<table:table-cell table:number-columns-repeated="16382"/></table:table-row>'
    )
    padding = (
        b'<table:table-row table:number-rows-repeated="1048000">'
        b'<table:table-cell table:number-columns-repeated="16384"/></table:table-row>'
    )
    path = ods_with_content(tmp_path / "pad.ods", ODS_OPEN + header + same + padding + ODS_CLOSE)
    assert list(FileSource(path).read()) == [{"sku": "A1", "name": "Lamp"}] * 3


@pytest.mark.parametrize("attribute", ["number-rows-repeated", "number-columns-repeated"])
def test_an_ods_repeat_bomb_costs_nothing(attribute, tmp_path):
    """table:*-repeated="1000000000" inflates in the reader, not in the zip: refused
    before anything is made of it."""
    cell = ODS_CELL % b"x"
    if attribute == "number-columns-repeated":
        cell = cell.replace(
            b"table-cell ", b'table-cell table:number-columns-repeated="1000000000" '
        )
        row = b"<table:table-row>" + cell + b"</table:table-row>"
    else:
        row = (
            b'<table:table-row table:number-rows-repeated="1000000000">'
            + cell
            + b"</table:table-row>"
        )
    header = b"<table:table-row>" + ODS_CELL % b"sku" + b"</table:table-row>"
    path = ods_with_content(tmp_path / "bomb.ods", ODS_OPEN + header + row + ODS_CLOSE)
    out = run_isolated(child_code(path, {}), timeout=30)
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    setting = "MAX_SHEET_ROWS" if "rows" in attribute else "MAX_COLUMNS"
    assert out.returncode != 0 and f'DJSYNC["{setting}"]' in out.last_line, out.last_line
    assert out.seconds < 10 and out.peak_mb < 300, (out.seconds, out.peak_mb)


# -- values at the edges of their types, through runs -------------------------------------
VALUE_CASES = [
    (
        "seen",
        "9999-12-31T23:59:59-14:00",
        r"is out of range: in UTC it falls before year 1 or after 9999$",
    ),
    (
        "seen",
        "0001-01-01T00:00:00+14:00",
        r"is out of range: in UTC it falls before year 1 or after 9999$",
    ),
    (
        "seen",
        "2024-01-01T00:00:00+99:00",
        r"^expected a date and time \(e.g. 2024-01-31 13:45:00\), got",
    ),
    ("seen", "2024-13-01", r"^expected a date and time"),
    ("joined", "9999-99-99", r"^expected a date \(e.g. 2024-01-31\), got '9999-99-99'$"),
    ("joined", "0000-01-01", r"^expected a date \(e.g. 2024-01-31\), got '0000-01-01'$"),
    ("joined", "2024-02-30", r"^expected a date \(e.g. 2024-01-31\), got '2024-02-30'$"),
    ("joined", "+002024-01-01", r"^expected a date"),
    ("alarm", "25:00", r"^expected a time \(e.g. 13:45\), got '25:00'$"),
    ("alarm", "24:00", r"^expected a time \(e.g. 13:45\), got '24:00'$"),
    ("alarm", "12:00:61", r"^expected a time"),
    ("alarm", "12:00+99:00", r"^expected a time"),
    ("token", "1234-5678", r"^expected a UUID, got '1234-5678'$"),
    ("token", "g2345678-1234-5678-1234-567812345678", r"^expected a UUID, got"),
    ("vip", "maybe", r"^expected yes/no, true/false or 1/0, got 'maybe'$"),
    ("vip", "2", r"^expected yes/no, true/false or 1/0, got '2'$"),
    ("score", "1e999999", r"^expected a finite number, got '1e999999'$"),
    ("score", "0x10", r"^expected a number, got '0x10'$"),
    ("number", "1e-999999", r"^expected a whole number, got '1e-999999'$"),
    ("number", "1e999999999999", r"^'1e999999999999' is out of range"),
    ("level", "platinum", r"^'platinum' is not one of the choices \(gold, silver\)$"),
    ("extra", '{"a": 1e999}', r"^inf is not a JSON number \(NaN or infinite\)$"),
    ("extra", "[" * 5000, r"^expected JSON: it is nested too deeply$"),
    ("team", "k" * 100_000, r"^100000 characters; the field allows at most 10$"),
]


def _member_row(**cells: str) -> dict[str, str]:
    row = dict.fromkeys(MEMBER_FIELDS, "")
    return {**row, "team": "T", "number": "1", "name": "n", "level": "gold", **cells}


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "generic"])
@pytest.mark.parametrize(
    "column, value, message", VALUE_CASES, ids=[f"{c}={v[:30]}" for c, v, _ in VALUE_CASES]
)
def test_an_edge_value_is_a_row_error_and_nothing_is_written(
    column, value, message, fast, make_job, write_csv
):
    import re

    path = write_csv([_member_row(number="2"), _member_row(**{column: value})])
    job = make_job("test_members")
    with override_settings(DJSYNC={**django_settings.DJSYNC, "FAST_PATH": fast}):
        try:
            done = djsync.run(job, file=path)
        except RowErrorsFound as exc:
            done = exc.run  # type: ignore[attr-defined]
    run = SyncRun.objects.get(pk=done.pk)
    assert run.status == "failed" and "nothing written" in run.error, run.error
    error = run.row_errors.get()
    assert (error.row, error.column) == (3, column)
    assert re.search(message, error.message), error.message
    assert error.value.startswith(value[:100].replace("\x00", "\\x00")[:50])
    assert not MemberModel.objects.exists()


# -- foreign-key lookups and keys ---------------------------------------------------------
class _Records(Source):
    """Typed records, as a JSON feed yields them (a NUL byte cannot come through a CSV)."""

    name = "records"
    first_row = 2

    def __init__(self, records: list[dict]) -> None:
        self.records = records

    def read(self):  # noqa: ANN201
        self.columns = list(self.records[0])
        yield from (dict(r) for r in self.records)


@pytest.mark.parametrize(
    "value, message",
    [
        ("c\x00", r"^'c\\x00' contains a NUL character \(\\x00\)$"),
        ("c" * 100_000, r"^100000 characters; the field allows at most 20$"),
        ("\ufeffC1", r"^no category with code '\\ufeffC1'$"),
        ("c1", r"^no category with code 'c1'$"),
        ({"a": 1}, r"^expected text, got a JSON object \{'a': 1\}$"),
    ],
    ids=["nul", "huge", "bom", "case", "object"],
)
def test_a_hostile_lookup_value_is_a_row_error(value, message, make_job):
    import re

    from tests.testapp.models import Category

    Category.objects.create(code="C1", name="x")
    good = {"sku": "A", "name": "n", "price": "1", "qty": "1", "updated": "", "active": "yes"}
    rows = [{**good, "category_code": "C1"}, {**good, "sku": "B", "category_code": value}]
    try:
        done = djsync.run(make_job("test_products"), source=_Records(rows))
    except RowErrorsFound as exc:
        done = exc.run  # type: ignore[attr-defined]
    run = SyncRun.objects.get(pk=done.pk)
    assert run.status == "failed" and "nothing written" in run.error
    error = run.row_errors.get()
    assert (error.row, error.column) == (3, "category_code")
    assert re.search(message, error.message), error.message
    assert not Product.objects.exists()


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "generic"])
@pytest.mark.parametrize(
    "first, second, distinct",
    [
        (("T", "1"), ("T ", "1"), False),  # spaces around a cell are not part of a key
        (("T", "1"), ("T", "01"), False),  # a number's key is the number
        (("Caf\u00e9", "1"), ("Cafe\u0301", "1"), True),  # NFC and NFD: what the database sees
        (("t", "1"), ("T", "1"), True),
        (("T", "1"), ("\u0422", "1"), True),  # Latin T and Cyrillic Te
    ],
    ids=["spaces", "zero", "normalization", "case", "homoglyph"],
)
def test_keys_that_look_alike_are_one_key_or_two_the_same_way_everywhere(
    first, second, distinct, fast, make_job, write_csv
):
    rows = [
        {"team": first[0], "number": first[1], "name": "a"},
        {"team": second[0], "number": second[1], "name": "b"},
    ]
    with override_settings(DJSYNC={**django_settings.DJSYNC, "FAST_PATH": fast}):
        try:
            done = djsync.run(make_job("test_members"), file=write_csv(rows))
        except RowErrorsFound as exc:
            done = exc.run  # type: ignore[attr-defined]
    run = SyncRun.objects.get(pk=done.pk)
    if distinct:
        assert run.status == "succeeded", run.error
        assert MemberModel.objects.count() == 2
    else:
        assert run.status == "failed" and "nothing written" in run.error
        messages = {e.message for e in run.row_errors.all()}
        assert messages == {"duplicate key ('T', 1): it appears more than once"}
        assert not MemberModel.objects.exists()


# -- XLSX cells a hostile writer makes up ---------------------------------------------------
@pytest.mark.parametrize(
    "row, message",
    [
        ('<c r="A2" t="s"><v>999999999999</v></c>', "row 2: not a readable XLSX workbook (list"),
        ('<c r="ZZZZZZZZ2"><v>1</v></c>', "row 2: not a readable XLSX workbook ('ZZZZZZZZ' is"),
        ('<c r="A2"><v>NaN</v></c>', "row 2: not a readable XLSX workbook (invalid literal"),
        ('<c r="A2" t="n"><v>abc</v></c>', "row 2: not a readable XLSX workbook (invalid literal"),
        ('<c r="A2" t="d"><v>9999-99-99T99:99</v></c>', "row 2: not a readable XLSX workbook"),
    ],
    ids=["shared-string-index", "column-name", "NaN-number", "text-number", "bad-date"],
)
def test_a_made_up_xlsx_cell_is_one_clear_line(row, message, tmp_path):
    sheet = Member("xl/worksheets/sheet1.xml", sheet_xml(f'<row r="2">{row}</row>'))
    path = xlsx_with_sheet(tmp_path / "cell.xlsx", sheet)
    with pytest.raises(SourceError) as info:
        list(FileSource(path).read())
    assert str(info.value).startswith(f"{path}, {message}"), str(info.value)
    assert "\n" not in str(info.value)
