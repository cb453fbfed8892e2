"""Hostile files: every reader of a file source has a bounded cost (issue 9, part 2).

Each file is made here, small on disk (zip bombs are built from repeated deflate blocks),
and read in a capped child process (tests/hostile.py): the read must stop with one clear
line naming the setting, in under 10 s and 300 MB. A run per class then checks that the
job's run failed and nothing was written, on PostgreSQL and SQLite.
"""

from __future__ import annotations

import io
import json
import os
import struct
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
import tablib

import djsync
from djsync.exceptions import SourceError
from djsync.models import SyncRun
from djsync.sources import FileSource
from djsync.sources.base import MISSING
from tests.hostile import run_isolated
from tests.testapp.models import Product

HEADER = "sku,name,price,qty,updated,active"
SHEET_NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
MiB = 1024 * 1024


# -- building hostile files ----------------------------------------------------------------
class Member:
    """A zip member given as raw deflate data, with what the directory will declare."""

    def __init__(
        self,
        name: str,
        data: bytes = b"",
        *,
        deflated: bytes | None = None,
        size: int | None = None,
        crc: int | None = None,
    ) -> None:
        self.name = name
        if deflated is None:
            packer = zlib.compressobj(6, zlib.DEFLATED, -15)
            deflated = packer.compress(data) + packer.flush()
        self.deflated = deflated
        self.size = len(data) if size is None else size
        self.crc = zlib.crc32(data) if crc is None else crc


def repeated(prefix: bytes, unit: bytes, times: int, suffix: bytes) -> Member:
    """The sheet member ``prefix + unit * times + suffix``, deflated in milliseconds: after
    a full flush the compressor forgets its history, so the unit's block is the same bytes
    each time. Its CRC is right when the whole is small enough to compute it quickly."""
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = packer.compress(prefix) + packer.flush(zlib.Z_FULL_FLUSH)
    block = packer.compress(unit) + packer.flush(zlib.Z_FULL_FLUSH)
    tail = packer.compress(suffix) + packer.flush()
    size = len(prefix) + len(unit) * times + len(suffix)
    crc = 0
    if size < 64 * MiB:
        crc = zlib.crc32(prefix)
        for _ in range(times):
            crc = zlib.crc32(unit, crc)
        crc = zlib.crc32(suffix, crc)
    deflated = head + block * times + tail
    return Member("xl/worksheets/sheet1.xml", deflated=deflated, size=size, crc=crc)


def write_zip(path: Path, members: list[Member]) -> Path:
    """A zip written by hand, so its directory can say what the test wants."""
    out = io.BytesIO()
    central = []
    for m in members:
        offset = out.tell()
        name = m.name.encode()
        out.write(
            struct.pack(
                "<4s2B4HL2L2H",
                b"PK\x03\x04",
                20,
                0,
                0,
                8,
                0,
                0,
                m.crc,
                len(m.deflated),
                m.size,
                len(name),
                0,
            )
        )
        out.write(name + m.deflated)
        central.append(
            struct.pack(
                "<4s4B4HL2L5H2L",
                b"PK\x01\x02",
                20,
                0,
                20,
                0,
                0,
                8,
                0,
                0,
                m.crc,
                len(m.deflated),
                m.size,
                len(name),
                0,
                0,
                0,
                0,
                0,
                offset,
            )
            + name
        )
    start = out.tell()
    directory = b"".join(central)
    out.write(directory)
    out.write(
        struct.pack(
            "<4s4H2LH", b"PK\x05\x06", 0, 0, len(members), len(members), len(directory), start, 0
        )
    )
    path.write_bytes(out.getvalue())
    return path


def workbook_members(fmt: str) -> list[Member]:
    """The members of a small valid workbook (tablib's), to replace one of them."""
    data = tablib.Dataset(["A1", "Lamp"], headers=["sku", "name"]).export(fmt)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return [Member(i.filename, archive.read(i.filename)) for i in archive.infolist()]


def xlsx_with_sheet(path: Path, sheet: Member, *extra: Member) -> Path:
    members = [m for m in workbook_members("xlsx") if m.name != "xl/worksheets/sheet1.xml"]
    names = {m.name for m in extra}
    members = [m for m in members if m.name not in names]
    return write_zip(path, [*members, sheet, *extra])


def sheet_xml(rows: str, head: str = "") -> bytes:
    return (
        f'<?xml version="1.0"?>{head}<worksheet xmlns="{SHEET_NS}"><sheetData>'
        f'<row r="1"><c r="A1" t="inlineStr"><is><t>sku</t></is></c></row>'
        f"{rows}</sheetData></worksheet>"
    ).encode()


SHEET_OPEN = sheet_xml("").split(b"</sheetData>")[0]
SHEET_CLOSE = b"</sheetData></worksheet>"


def lying(path: Path) -> Path:
    """A sheet that inflates to 300 MB while the directory says 1,000 bytes (CRC of those)."""
    deflated = repeated(
        SHEET_OPEN, b"<row><c><v>1</v></c></row>" * 4000, 3000, SHEET_CLOSE
    ).deflated
    real_start = (SHEET_OPEN + b"<row><c><v>1</v></c></row>" * 100)[:1000]
    sheet = Member(
        "xl/worksheets/sheet1.xml", deflated=deflated, size=1000, crc=zlib.crc32(real_start)
    )
    return xlsx_with_sheet(path, sheet)


def lying_within_ratio(path: Path) -> Path:
    """The directory declares 50 times the compressed size (a plausible ratio); the data
    inflates to far more."""
    deflated = repeated(SHEET_OPEN, b"<row><c><v>1</v></c></row>" * 4000, 500, SHEET_CLOSE).deflated
    sheet = Member("xl/worksheets/sheet1.xml", deflated=deflated, size=50 * len(deflated), crc=0)
    return xlsx_with_sheet(path, sheet)


def shared_strings(path: Path, count: int) -> Path:
    strings = "".join(f"<si><t>{i:09d}</t></si>" for i in range(count))
    table = (
        f'<?xml version="1.0"?><sst xmlns="{SHEET_NS}" count="{count}" '
        f'uniqueCount="{count}">{strings}</sst>'
    ).encode()
    members = workbook_members("xlsx")
    types = next(m for m in members if m.name == "[Content_Types].xml")
    override = (
        '<Override PartName="/xl/sharedStrings.xml" ContentType="application/'
        'vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/>'
    )
    text = zlib.decompress(types.deflated, -15).decode()
    if "sharedStrings" not in text:
        text = text.replace("</Types>", override + "</Types>")
    return xlsx_with_sheet(
        path,
        Member(
            "xl/worksheets/sheet1.xml", sheet_xml('<row r="2"><c r="A2" t="s"><v>0</v></c></row>')
        ),
        Member("xl/sharedStrings.xml", table),
        Member("[Content_Types].xml", text.encode()),
    )


def random_text(n: int) -> bytes:
    """Letters that compress poorly (a ratio near 1.3), deterministic."""
    import base64
    import random

    rng = random.Random(9)
    return (
        base64.b64encode(rng.randbytes(n * 3 // 4 + 3))[:n].replace(b"+", b"x").replace(b"/", b"y")
    )


def ods_with_content(path: Path, content: Member | bytes) -> Path:
    members = workbook_members("ods")
    if isinstance(content, Member):
        content.name, new = "content.xml", content
    else:
        new = Member("content.xml", content)
    return write_zip(path, [m if m.name != "content.xml" else new for m in members])


ODS_OPEN = (
    b'<?xml version="1.0"?><office:document-content '
    b'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
    b'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
    b'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0"><office:body>'
    b'<office:spreadsheet><table:table table:name="S">'
)
ODS_CLOSE = b"</table:table></office:spreadsheet></office:body></office:document-content>"
ODS_ROW = (
    b'<table:table-row><table:table-cell office:value-type="string">'
    b"<text:p>x</text:p></table:table-cell></table:table-row>"
)

ENTITY_BOMB = (
    '<!DOCTYPE lolz [<!ENTITY lol "lol">'
    + "".join(
        f'<!ENTITY lol{i} "{("&lol%s;" % (i - 1 if i > 1 else "")) * 10}">' for i in range(1, 10)
    )
    + "]>"
)


# -- the cases ----------------------------------------------------------------------------
Builder = Callable[[Path], Path]
CASES: dict[str, tuple[str, Builder, dict, str]] = {}


def case(
    name: str, filename: str, expected: str, **settings: object
) -> Callable[[Builder], Builder]:
    """Register a hostile file: ``settings`` override DJSYNC for it (``format`` is the
    source's option for files whose name does not say)."""

    def register(build: Builder) -> Builder:
        CASES[name] = (filename, build, settings, expected)
        return build

    return register


@case("xlsx ratio bomb: 700 KB to 25 M cells", "bomb.xlsx", 'DJSYNC["MAX_COMPRESSION_RATIO"]')
def _(path: Path) -> Path:
    return xlsx_with_sheet(
        path,
        repeated(
            SHEET_OPEN, (b"<row>" + b"<c><v>1</v></c>" * 25 + b"</row>") * 2000, 500, SHEET_CLOSE
        ),
    )


@case(
    "xlsx directory lies about a member's size",
    "liar.xlsx",
    "zip directory of this XLSX workbook lies",
)
def _(path: Path) -> Path:
    return lying(path)


@case(
    "xlsx directory lies within a plausible ratio",
    "liar2.xlsx",
    "zip directory of this XLSX workbook lies",
)
def _(path: Path) -> Path:
    return lying_within_ratio(path)


@case("xlsx 2 GiB cell by repetition", "cell.xlsx", 'DJSYNC["MAX_COMPRESSION_RATIO"]')
def _(path: Path) -> Path:
    start = SHEET_OPEN + b'<row r="2"><c r="A2" t="inlineStr"><is><t>'
    return xlsx_with_sheet(
        path, repeated(start, b"A" * MiB, 2048, b"</t></is></c></row>" + SHEET_CLOSE)
    )


@case(
    "xlsx 2 MB cell that compresses badly",
    "cell2.xlsx",
    'DJSYNC["MAX_CELL_SIZE"]',
    MAX_CELL_SIZE=100_000,
)
def _(path: Path) -> Path:
    rows = f'<row r="2"><c r="A2" t="inlineStr"><is><t>{random_text(2 * MiB).decode()}</t></is></c></row>'
    return xlsx_with_sheet(path, Member("xl/worksheets/sheet1.xml", sheet_xml(rows)))


@case(
    "xlsx cell split by comments", "comments.xlsx", 'DJSYNC["MAX_CELL_SIZE"]', MAX_CELL_SIZE=100_000
)
def _(path: Path) -> Path:
    text = random_text(2 * MiB).decode()
    split = "<!---->".join(text[i : i + 1000] for i in range(0, len(text), 1000))
    rows = f'<row r="2"><c r="A2" t="inlineStr"><is><t>{split}</t></is></c></row>'
    return xlsx_with_sheet(path, Member("xl/worksheets/sheet1.xml", sheet_xml(rows)))


@case("xlsx 300 M blank rows", "blank.xlsx", 'DJSYNC["MAX_COMPRESSION_RATIO"]')
def _(path: Path) -> Path:
    return xlsx_with_sheet(path, repeated(SHEET_OPEN, b"<row/>" * 100_000, 3000, SHEET_CLOSE))


@case(
    "xlsx 2 GiB cell under a high ratio limit",
    "cell3.xlsx",
    'DJSYNC["MAX_WORKBOOK_SIZE"]',
    MAX_COMPRESSION_RATIO=100_000,
)
def _(path: Path) -> Path:
    start = SHEET_OPEN + b'<row r="2"><c r="A2" t="inlineStr"><is><t>'
    return xlsx_with_sheet(
        path, repeated(start, b"A" * MiB, 2048, b"</t></is></c></row>" + SHEET_CLOSE)
    )


@case("xlsx row number 300,000,000", "far.xlsx", 'DJSYNC["MAX_SHEET_ROWS"]')
def _(path: Path) -> Path:
    rows = '<row r="300000000"><c r="A300000000"><v>1</v></c></row>'
    return xlsx_with_sheet(path, Member("xl/worksheets/sheet1.xml", sheet_xml(rows)))


@case(
    "xlsx 300,000 blank rows under a high ratio limit",
    "blank2.xlsx",
    'DJSYNC["MAX_SHEET_ROWS"] (200,000 rows)',
    MAX_COMPRESSION_RATIO=100_000,
    MAX_SHEET_ROWS=200_000,
)
def _(path: Path) -> Path:
    return xlsx_with_sheet(path, repeated(SHEET_OPEN, b"<row/>" * 100_000, 3, SHEET_CLOSE))


@case("xlsx 20,000 columns", "wide.xlsx", 'DJSYNC["MAX_COLUMNS"]')
def _(path: Path) -> Path:
    cells = "".join(f"<c><v>{i}</v></c>" for i in range(1, 20_001))
    return xlsx_with_sheet(
        path, Member("xl/worksheets/sheet1.xml", sheet_xml(f'<row r="2">{cells}</row>'))
    )


@case(
    "xlsx huge shared strings table",
    "strings.xlsx",
    'DJSYNC["MAX_WORKBOOK_PART_SIZE"]',
    MAX_WORKBOOK_PART_SIZE=2 * MiB,
)
def _(path: Path) -> Path:
    return shared_strings(path, 150_000)


@case("xlsx XML entity bomb in a sheet", "lol.xlsx", "declares a DTD")
def _(path: Path) -> Path:
    rows = '<row r="2"><c r="A2" t="inlineStr"><is><t>&lol9;</t></is></c></row>'
    return xlsx_with_sheet(path, Member("xl/worksheets/sheet1.xml", sheet_xml(rows, ENTITY_BOMB)))


@case("xlsx too many members", "many.xlsx", 'DJSYNC["MAX_WORKBOOK_MEMBERS"]')
def _(path: Path) -> Path:
    return write_zip(
        path, [*workbook_members("xlsx"), *(Member(f"x/{i}", b"") for i in range(2000))]
    )


@case("ods ratio bomb", "bomb.ods", 'DJSYNC["MAX_COMPRESSION_RATIO"]')
def _(path: Path) -> Path:
    return ods_with_content(path, repeated(ODS_OPEN, ODS_ROW * 1000, 2000, ODS_CLOSE))


@case(
    "ods larger than what is parsed whole",
    "big.ods",
    'DJSYNC["MAX_IN_MEMORY_FILE_SIZE"]',
    MAX_IN_MEMORY_FILE_SIZE=1 * MiB,
)
def _(path: Path) -> Path:
    rows = b"".join(ODS_ROW.replace(b">x<", b">%d<" % i) for i in range(30_000))
    return ods_with_content(path, ODS_OPEN + rows + ODS_CLOSE)


@case("ods XML entity bomb", "lol.ods", "declares a DTD")
def _(path: Path) -> Path:
    xml = (
        ODS_OPEN.replace(b"?>", b"?>" + ENTITY_BOMB.encode(), 1)
        + ODS_ROW.replace(b">x<", b">&lol9;<")
        + ODS_CLOSE
    )
    return ods_with_content(path, xml)


@case("json 100,000 nested lists at the top", "deep.json", "row 1: expected an object, got list")
def _(path: Path) -> Path:
    path.write_text("[" * 100_000 + "]" * 100_000)
    return path


@case("json 100,000 nested lists in a record", "deep1.json", 'DJSYNC["JSON_MAX_DEPTH"]')
def _(path: Path) -> Path:
    path.write_text('[{"sku": "A", "x": ' + "[" * 100_000 + "]" * 100_000 + "}]")
    return path


@case("json 100,000 nested objects in a record", "deep2.json", 'DJSYNC["JSON_MAX_DEPTH"]')
def _(path: Path) -> Path:
    path.write_text('[{"sku": "A", "x": ' + '{"a": ' * 100_000 + "1" + "}" * 100_000 + "}]")
    return path


@case("json 30 MB string", "string.json", 'DJSYNC["MAX_CELL_SIZE"]')
def _(path: Path) -> Path:
    with path.open("w") as out:
        out.write('[{"sku": "')
        for _ in range(30):
            out.write("x" * MiB)
        out.write('"}]')
    return path


@case("json number of 100,000 digits", "number.json", "malformed JSON")
def _(path: Path) -> Path:
    path.write_text('[{"sku": ' + "9" * 100_000 + "}]")
    return path


@case("json top-level scalar", "scalar.json", "expected a list of objects")
def _(path: Path) -> Path:
    path.write_text('"just a string"')
    return path


@case("json 20,000 distinct keys", "keys.json", 'DJSYNC["MAX_COLUMNS"]')
def _(path: Path) -> Path:
    path.write_text(json.dumps([{f"k{i}": 1} for i in range(20_000)]))
    return path


@case("yaml billion laughs", "lol.yaml", "YAML aliases (*name) are refused")
def _(path: Path) -> Path:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i, name in enumerate("bcdefghi"):
        prev = "abcdefghi"[i]
        lines.append(f"{name}: &{name} [{', '.join(['*' + prev] * 9)}]")
    lines.append("rows: [{sku: *i}]")
    path.write_text("\n".join(lines) + "\n")
    return path


@case("yaml 100,000 nested lists", "deep.yaml", 'DJSYNC["JSON_MAX_DEPTH"]')
def _(path: Path) -> Path:
    path.write_text("[" * 100_000 + "]" * 100_000)
    return path


@case(
    "yaml larger than what is parsed whole",
    "big.yaml",
    'DJSYNC["MAX_IN_MEMORY_FILE_SIZE"]',
    MAX_IN_MEMORY_FILE_SIZE=MiB,
)
def _(path: Path) -> Path:
    with path.open("w") as out:
        for i in range(50_000):
            out.write(f"- {{sku: S{i:08d}, name: item number {i}}}\n")
    return path


@case(
    "xls larger than what is parsed whole",
    "big.xls",
    'DJSYNC["MAX_IN_MEMORY_FILE_SIZE"]',
    MAX_IN_MEMORY_FILE_SIZE=64 * 1024,
)
def _(path: Path) -> Path:
    rows = [[f"S{i}", f"item {i}"] for i in range(5000)]
    path.write_bytes(tablib.Dataset(*rows, headers=["sku", "name"]).export("xls"))
    return path


@case("csv endless line", "line.csv", 'DJSYNC["MAX_LINE_SIZE"]')
def _(path: Path) -> Path:
    with path.open("w") as out:
        out.write(HEADER + "\nA1,")
        for _ in range(12):
            out.write("y" * MiB)
    return path


@case("csv 2 MB quoted cell", "cell.csv", 'DJSYNC["MAX_CELL_SIZE"]')
def _(path: Path) -> Path:
    path.write_text(HEADER + '\nA1,"' + "line\n" * 400_000 + '",1,1,,yes\n')
    return path


@case("csv one row of 4 M quoted cells over short lines", "fields.csv", 'DJSYNC["MAX_LINE_SIZE"]')
def _(path: Path) -> Path:
    path.write_text(HEADER + "\n" + '"a\n",' * 4_000_000 + "\n")
    return path


@case("csv NUL bytes", "nul.csv", "line 3 holds a NUL byte")
def _(path: Path) -> Path:
    path.write_bytes(f"{HEADER}\nA1,Lamp,1,1,,yes\nA2,La\0mp,1,1,,yes\n".encode())
    return path


@case("csv 20,000 columns", "wide.csv", 'DJSYNC["MAX_COLUMNS"]')
def _(path: Path) -> Path:
    path.write_text(",".join(f"c{i}" for i in range(20_000)) + "\n" + "1," * 19_999 + "1\n")
    return path


@case("csv mixed encodings", "mixed.csv", "line 3 is not valid utf-8")
def _(path: Path) -> Path:
    path.write_bytes(
        f"{HEADER}\nA1,Caf\u00e9,1,1,,yes\n".encode() + "A2,Caf\u00e9,1,1,,yes\n".encode("latin-1")
    )
    return path


@case("csv a file over MAX_FILE_SIZE", "big.csv", 'DJSYNC["MAX_FILE_SIZE"]', MAX_FILE_SIZE=MiB)
def _(path: Path) -> Path:
    path.write_text(HEADER + "\n" + "A1,Lamp,1,1,,yes\n" * 100_000)
    return path


@case("tsv endless line", "line.tsv", 'DJSYNC["MAX_LINE_SIZE"]')
def _(path: Path) -> Path:
    path.write_text(HEADER.replace(",", "\t") + "\n" + "z" * (12 * MiB))
    return path


@case("jsonl 12 MB line", "line.jsonl", 'DJSYNC["MAX_LINE_SIZE"]')
def _(path: Path) -> Path:
    first = {"sku": "A1", "name": "Lamp", "price": "1", "qty": 1, "updated": "", "active": "y"}
    path.write_text(json.dumps(first) + '\n{"sku": "' + "q" * (12 * MiB) + '"}\n')
    return path


@case("jsonl nesting", "deep.jsonl", 'DJSYNC["JSON_MAX_DEPTH"]')
def _(path: Path) -> Path:
    path.write_text('{"sku": "A1"}\n{"sku": ' + "[" * 500 + "]" * 500 + "}\n")
    return path


@case("/dev/zero by path", "/dev/zero", "is a character device, not a regular file", format="csv")
def _(path: Path) -> Path:
    return Path("/dev/zero")


@case(
    "/dev/urandom by path",
    "/dev/urandom",
    "is a character device, not a regular file",
    format="xlsx",
)
def _(path: Path) -> Path:
    return Path("/dev/urandom")


@case("a symlink named .csv to /dev/zero", "zero.csv", "is a character device, not a regular")
def _(path: Path) -> Path:
    path.symlink_to("/dev/zero")
    return path


@case("a FIFO", "fifo.csv", "is a FIFO (named pipe), not a regular file")
def _(path: Path) -> Path:
    os.mkfifo(path)
    return path


def child_code(path: Path, settings: dict) -> str:
    settings = dict(settings)
    fmt = settings.pop("format", None)
    options = f", format={fmt!r}" if fmt else ""
    return f"""
from django.conf import settings
from djsync.conf import settings as djsync_settings
settings.DJSYNC = {{**settings.DJSYNC, **{settings!r}}}
djsync_settings.reset()
from djsync.exceptions import SourceError
from djsync.sources import FileSource
try:
    n = sum(1 for _ in FileSource({str(path)!r}{options}).read())
except SourceError as exc:
    raise SystemExit(str(exc))
print("read", n, "records")
"""


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_file_stops_with_one_clear_line_in_bounded_time_and_memory(name, tmp_path):
    filename, build, settings, expected = CASES[name]
    path = build(tmp_path / filename)
    if path.is_file():
        assert path.stat().st_size < 32 * MiB, "keep hostile files small"
    out = run_isolated(child_code(path, settings), timeout=30)
    assert out.returncode != 0, out.stdout
    assert "Traceback" not in out.stderr, out.stderr[-2000:]
    assert expected in out.last_line, out.last_line
    assert out.last_line.startswith(str(path)), out.last_line
    assert out.seconds < 10, f"{name}: {out.seconds:.1f} s"
    assert out.peak_mb < 300, f"{name}: {out.peak_mb:.0f} MB"


def test_a_valid_workbook_made_by_the_same_zip_writer_reads(tmp_path):
    """The hand-made zips are sound: without anything hostile they read."""
    rows = '<row r="2"><c r="A2" t="inlineStr"><is><t>A1</t></is></c></row>'
    path = xlsx_with_sheet(
        tmp_path / "ok.xlsx", Member("xl/worksheets/sheet1.xml", sheet_xml(rows))
    )
    assert list(FileSource(path).read()) == [{"sku": "A1"}]
    strings = shared_strings(tmp_path / "s.xlsx", 10)
    assert list(FileSource(strings).read()) == [{"sku": "000000000"}]


# -- through a run: the run fails and nothing is written ----------------------------------
RUN_CASES = [
    "xlsx ratio bomb: 700 KB to 25 M cells",
    "xlsx directory lies about a member's size",
    "xlsx XML entity bomb in a sheet",
    "xlsx row number 300,000,000",
    "ods ratio bomb",
    "json 100,000 nested lists in a record",
    "json top-level scalar",
    "yaml billion laughs",
    "csv endless line",
    "csv NUL bytes",
    "csv 20,000 columns",
    "jsonl 12 MB line",
    "a symlink named .csv to /dev/zero",
    "a FIFO",
]


@pytest.mark.parametrize("name", RUN_CASES)
def test_a_run_on_a_hostile_file_fails_and_writes_nothing(name, tmp_path, make_job, settings):
    filename, build, overrides, expected = CASES[name]
    settings.DJSYNC = {**settings.DJSYNC, **overrides}
    Product.objects.create(sku="KEEP", name="Keep", price=1, active=False)
    path = build(tmp_path / filename)
    with pytest.raises(SourceError) as info:
        djsync.run(make_job("test_products"), file=path)
    assert expected in str(info.value)
    run = SyncRun.objects.get()
    assert run.status == "failed" and expected in run.error
    assert list(Product.objects.values_list("sku", "active")) == [("KEEP", False)]


# -- short rows ---------------------------------------------------------------------------
def test_a_short_row_has_missing_cells_not_empty_ones(tmp_path):
    path = tmp_path / "short.csv"
    path.write_text(f"{HEADER}\nA1,Lamp,1,1,,\nA2,Kite,1\n")
    rows = list(FileSource(path).read_rows())
    assert rows[0] == ["A1", "Lamp", "1", "1", "", ""]  # present, empty
    assert rows[1] == ["A2", "Kite", "1", MISSING, MISSING, MISSING]


def test_a_short_row_never_takes_a_default(tmp_path, make_job):
    """The update ``active: False → True`` the issue saw: a row missing its last cell."""
    Product.objects.create(sku="A1", name="Lamp", price=1, qty=1, active=False)
    path = tmp_path / "short.csv"
    path.write_text(f"{HEADER}\nA1,Lamp,1,1,\n")
    run = djsync.run(make_job("test_products"), file=path, on_row_error="skip")
    error = run.row_errors.get()
    assert error.column == "active" and "is missing" in error.message
    assert Product.objects.get(sku="A1").active is False
