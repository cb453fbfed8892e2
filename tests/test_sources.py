"""File sources: every format from a path or an upload, encodings, delimiters, and bad files."""

from __future__ import annotations

import datetime as dt
import io
from decimal import Decimal
from pathlib import Path

import pytest
import tablib
from django.core.files.uploadedfile import SimpleUploadedFile, TemporaryUploadedFile

import djsync
from djsync.exceptions import MappingError, SourceError
from djsync.models import SyncRun
from djsync.sources import FileSource, get_source
from djsync.sources.base import MISSING
from tests.testapp.models import Product

HEADERS = ["sku", "name", "price", "qty", "updated", "active"]
ROWS = [
    ["A1", "Lamp", "1.50", 3, "2026-01-02", "yes"],
    ["A2", "Kite", "2", 1, "", "no"],
]
FORMATS = ["csv", "tsv", "jsonl", "json", "xlsx", "xls", "ods", "yaml"]


def table_bytes(fmt: str, headers: list[str] = HEADERS, rows: list[list] = ROWS) -> bytes:
    """The same little table written in any of the supported formats."""
    if fmt == "jsonl":
        import json

        lines = [json.dumps(dict(zip(headers, r, strict=True))) for r in rows]
        return ("\n".join(lines) + "\n").encode()
    data = tablib.Dataset(*rows, headers=headers)
    out = data.export(fmt)
    return out.encode("utf-8") if isinstance(out, str) else out


def read(data: bytes, name: str = "data.csv", **options) -> tuple[list[dict], FileSource]:
    source = FileSource(file=io.BytesIO(data), name=name, **options)
    return list(source.read()), source


def as_text(records: list[dict]) -> list[dict]:
    """Cells as a CSV would show them, so typed formats compare with text ones."""
    return [
        {k: "" if v is None else str(v).removesuffix(".0") for k, v in r.items()} for r in records
    ]


def check_products_created() -> None:
    assert Product.objects.count() == 2
    lamp = Product.objects.get(sku="A1")
    assert (lamp.name, lamp.price, lamp.qty, lamp.active) == ("Lamp", Decimal("1.50"), 3, True)
    assert lamp.updated == dt.date(2026, 1, 2)
    kite = Product.objects.get(sku="A2")
    assert (kite.price, kite.qty, kite.updated, kite.active) == (Decimal("2.00"), 1, None, False)


# -- every format ------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", FORMATS)
def test_each_format_reads_the_same_records(fmt):
    records, source = read(table_bytes(fmt), name=f"products.{fmt}")
    assert source.columns == HEADERS
    assert as_text(records) == as_text([dict(zip(HEADERS, r, strict=True)) for r in ROWS])


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_format_from_a_path_syncs_into_the_model(fmt, tmp_path, make_job):
    path = tmp_path / f"products.{fmt}"
    path.write_bytes(table_bytes(fmt))
    run = djsync.run(make_job("test_products"), file=path)
    assert run.status == "succeeded", run.error
    assert run.counts["created"] == 2
    assert run.source_name == str(path)
    check_products_created()
    again = djsync.run("test-products", file=str(path))
    assert again.counts["unchanged"] == 2, "typed cells must equal the stored values"


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_format_from_an_uploaded_file(fmt, make_job):
    upload = SimpleUploadedFile(f"upload.{fmt}", table_bytes(fmt))
    run = djsync.run(make_job("test_products"), file=upload)
    assert run.status == "succeeded", run.error
    assert run.source_name == f"upload.{fmt}"
    check_products_created()


def test_a_temporary_uploaded_file_is_read_from_its_start(make_job):
    upload = TemporaryUploadedFile("big.csv", "text/csv", 0, "utf-8")
    upload.write(table_bytes("csv"))  # the handle now stands at the end
    run = djsync.run(make_job("test_products"), file=upload)
    assert run.status == "succeeded", run.error
    check_products_created()


def test_job_source_options_build_a_file_source(tmp_path, make_job):
    path = tmp_path / "export.txt"
    path.write_bytes(table_bytes("csv").replace(b",", b";"))
    job = make_job("test_products", source={"path": path.name, "delimiter": ";"})
    run = djsync.run(job)
    assert run.status == "succeeded", run.error
    check_products_created()


def test_format_option_when_the_name_does_not_say():
    records, _ = read(table_bytes("json"), name="feed", format="json")
    assert records[0]["sku"] == "A1"
    with pytest.raises(SourceError, match="feed: cannot tell the file format"):
        read(b"", name="feed")


def test_format_aliases():
    assert read(table_bytes("yaml"), name="x.yml")[0][0]["sku"] == "A1"
    assert read(table_bytes("jsonl"), name="x.ndjson")[0][0]["sku"] == "A1"


def test_unknown_source_kind_and_bad_options():
    from djsync.exceptions import ConfigurationError

    with pytest.raises(ConfigurationError, match="unknown source kind 'ftp'"):
        get_source({"kind": "ftp"})
    with pytest.raises(ConfigurationError, match="a job's file source cannot set 'colour'"):
        get_source({"path": "x.csv", "colour": "red"})  # a job's options: keys are checked
    with pytest.raises(ConfigurationError, match="bad options for a file source"):
        get_source({"path": "x.csv", "colour": "red"}, trusted=True)


def test_missing_file_names_the_file(tmp_path, make_job):
    missing = tmp_path / "nowhere.csv"
    with pytest.raises(SourceError, match=r"nowhere\.csv: file not found"):
        djsync.run(make_job("test_products"), file=missing)
    assert SyncRun.objects.get().status == "failed"


def test_json_object_holding_one_list():
    records, source = read(b'{"count": 1, "results": [{"sku": "A1"}]}', name="x.json")
    assert records == [{"sku": "A1"}]
    assert source.columns == ["sku"]


def test_jsonl_and_json_columns_are_the_union_of_the_keys():
    records, source = read(b'{"a": 1}\n\n{"b": 2}\n', name="x.jsonl")
    assert records == [{"a": 1}, {"b": 2}]
    assert source.columns == ["a", "b"]


# -- encodings ---------------------------------------------------------------------------
def test_utf8_byte_order_mark_is_skipped():
    records, source = read(b"\xef\xbb\xbfsku,name\nA1,Caf\xc3\xa9\n")
    assert source.columns == ["sku", "name"]
    assert records == [{"sku": "A1", "name": "Café"}]


def test_bom_in_json():
    records, _ = read(b'\xef\xbb\xbf[{"sku": "A1"}]', name="x.json")
    assert records == [{"sku": "A1"}]


def test_latin1_by_option():
    records, _ = read(b"sku,name\nA1,Caf\xe9\n", encoding="latin-1")
    assert records == [{"sku": "A1", "name": "Café"}]


def test_wrong_encoding_names_the_file_and_line(tmp_path, make_job):
    Product.objects.create(sku="OLD", name="Old", price=1)
    path = tmp_path / "latin.csv"
    lines = ["sku,name,price,qty,updated,active", "A1,Lamp,1,1,,yes", "A2,Café,1,1,,yes"]
    path.write_bytes("\n".join(lines).encode("latin-1"))
    with pytest.raises(SourceError) as info:
        djsync.run(make_job("test_products"), file=path)
    message = str(info.value)
    assert "latin.csv" in message and "row 3" in message and "line 3 is not valid utf-8" in message
    assert "encoding option" in message
    assert list(Product.objects.values_list("sku", flat=True)) == ["OLD"]
    run = SyncRun.objects.get()
    assert run.status == "failed" and "line 3" in run.error
    # The same file with the right encoding goes through.
    fixed = djsync.run(
        "test-products", file=path, source_options={"encoding": "latin-1"}, force=True
    )
    assert fixed.status == "succeeded", fixed.error
    assert Product.objects.get(sku="A2").name == "Café"


def test_unknown_encoding_name():
    with pytest.raises(SourceError, match="unknown encoding 'klingon'"):
        FileSource("x.csv", encoding="klingon")


# -- empty and header-only ---------------------------------------------------------------
@pytest.mark.parametrize(
    "data, name, message",
    [
        (b"", "empty.csv", "empty.csv, row 1: the file is empty: no header row"),
        (b"\n\n", "blank.csv", "blank.csv, row 1: the file is empty: no header row"),
        (b"", "empty.json", "empty.json: the file is empty"),
        (b"", "empty.yaml", "empty.yaml: the file is empty"),
        (b"", "empty.jsonl", "empty.jsonl: the file is empty"),
    ],
)
def test_empty_file_is_a_file_error(data, name, message):
    with pytest.raises(SourceError) as info:
        read(data, name=name)
    assert str(info.value) == message


def test_empty_xlsx_sheet():
    with pytest.raises(SourceError, match="the sheet is empty"):
        read(table_bytes("xlsx", headers=[], rows=[]), name="x.xlsx")


def test_header_only_file_has_columns_and_no_records():
    records, source = read(b"sku,name\n")
    assert records == []
    assert source.columns == ["sku", "name"]


def test_empty_file_writes_nothing(tmp_path, make_job):
    Product.objects.create(sku="KEEP", name="Keep", price=1)
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    with pytest.raises(SourceError, match=r"empty\.csv, row 1: the file is empty"):
        djsync.run(make_job("test_products"), file=path)
    assert Product.objects.filter(sku="KEEP").exists()


def test_header_problems_name_row_one():
    with pytest.raises(SourceError, match="row 1: the header names column 'sku' twice"):
        read(b"sku,name,sku\nA,b,c\n")
    with pytest.raises(SourceError, match="row 1: the header's cell 2 is empty"):
        read(b"sku,,name\nA,b,c\n")


# -- malformed CSV -----------------------------------------------------------------------
def test_unclosed_quote_names_the_row(tmp_path, make_job):
    path = tmp_path / "broken.csv"
    path.write_text('sku,name,price,qty,updated,active\nA1,Lamp,1,1,,yes\nA2,"Kite,1,1,,yes\n')
    with pytest.raises(SourceError) as info:
        djsync.run(make_job("test_products"), file=path)
    assert str(info.value) == "broken.csv, row 3: malformed CSV: unexpected end of data".replace(
        "broken.csv", str(path)
    )
    assert Product.objects.count() == 0
    assert SyncRun.objects.get().status == "failed"


def test_stray_quote_names_the_row():
    with pytest.raises(SourceError, match=r"x\.csv, row 3: malformed CSV: ',' expected after"):
        read(b'sku,name\nA1,Lamp\nA2,"Ki"te\n', name="x.csv")


def test_too_many_cells_names_the_row(tmp_path, make_job):
    path = tmp_path / "wide.csv"
    path.write_text("sku,name,price,qty,updated,active\nA1,Lamp,1,1,,yes\nA2,Kite,1,1,,yes,oops\n")
    with pytest.raises(SourceError) as info:
        djsync.run(make_job("test_products"), file=path)
    message = str(info.value)
    assert f"{path}, row 3: 7 cells but the header has 6 columns" in message
    assert Product.objects.count() == 0


def test_trailing_empty_cells_are_dropped_and_a_short_row_has_missing_cells():
    records, _ = read(b"a,b,c\n1,2,3,,\n4\n5,,\n")
    assert records == [
        {"a": "1", "b": "2", "c": "3"},
        {"a": "4", "b": MISSING, "c": MISSING},  # cells the row does not have
        {"a": "5", "b": "", "c": ""},  # empty cells it has
    ]
    source = FileSource(file=io.BytesIO(b"a,b,c\n4\n"), name="x.csv")
    assert list(source.read_rows()) == [["4", MISSING, MISSING]]


def test_malformed_jsonl_names_the_line():
    with pytest.raises(SourceError, match=r"x\.jsonl, row 2: malformed JSON"):
        read(b'{"sku": "A1"}\n{sku: A2}\n', name="x.jsonl")
    with pytest.raises(SourceError, match=r"x\.jsonl, row 1: each line must hold a JSON object"):
        read(b"[1, 2]\n", name="x.jsonl")


def test_malformed_json_and_yaml():
    with pytest.raises(SourceError, match=r"x\.json: malformed JSON: .* at line 2"):
        read(b'[{"sku": "A1"},\n oops]', name="x.json")
    with pytest.raises(SourceError, match=r"x\.json, row 2: expected an object, got int"):
        read(b'[{"sku": "A1"}, 5]', name="x.json")
    with pytest.raises(SourceError, match=r"x\.yaml: malformed YAML"):
        read(b"- sku: [A1\n", name="x.yaml")


# -- corrupt workbooks -------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, data, message",
    [
        ("corrupt.xlsx", b"PK\x03\x04this is not a workbook", "not a readable XLSX workbook"),
        ("corrupt.xlsx", table_bytes("csv"), "not a readable XLSX workbook"),
        ("corrupt.xls", b"garbage", "not a readable XLS file"),
        ("corrupt.ods", b"garbage", "not a readable ODS file"),
    ],
)
def test_corrupt_workbook_names_the_file_and_writes_nothing(
    name, data, message, tmp_path, make_job
):
    Product.objects.create(sku="KEEP", name="Keep", price=1)
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(SourceError) as info:
        djsync.run(make_job("test_products"), file=path)
    assert str(info.value).startswith(f"{path}: {message}")
    assert list(Product.objects.values_list("sku", flat=True)) == ["KEEP"]
    assert SyncRun.objects.get().status == "failed"


def test_truncated_xlsx(tmp_path):
    data = table_bytes("xlsx")
    with pytest.raises(SourceError, match="not a readable XLSX workbook"):
        read(data[: len(data) // 2], name="half.xlsx")


def test_value_right_of_the_header_in_a_sheet():
    data = table_bytes("xlsx", headers=["sku", "name", ""], rows=[["A1", "Lamp", "stray"]])
    with pytest.raises(SourceError, match=r"x\.xlsx, row 2: a value stands right of the last"):
        read(data, name="x.xlsx")


# -- sheets ------------------------------------------------------------------------------
def two_sheet_book(fmt: str) -> bytes:
    first = tablib.Dataset(["X1"], headers=["other"], title="Notes")
    second = tablib.Dataset(*ROWS, headers=HEADERS, title="Products")
    out = tablib.Databook([first, second]).export(fmt)
    return out


@pytest.mark.parametrize("fmt", ["xlsx", "xls", "ods"])
def test_sheet_option_by_name_or_index(fmt):
    data = two_sheet_book(fmt)
    assert read(data, name=f"b.{fmt}")[0] == [{"other": "X1"}]  # the first sheet by default
    by_name, source = read(data, name=f"b.{fmt}", sheet="Products")
    assert source.columns == HEADERS and by_name[0]["sku"] == "A1"
    by_index, _ = read(data, name=f"b.{fmt}", sheet=1)
    assert by_index[1]["sku"] == "A2"


@pytest.mark.parametrize("fmt", ["xlsx", "xls", "ods"])
def test_missing_sheet_names_the_sheets(fmt):
    data = two_sheet_book(fmt)
    with pytest.raises(SourceError, match=r"no sheet 'Prices' \(sheets: Notes, Products\)"):
        read(data, name=f"b.{fmt}", sheet="Prices")
    with pytest.raises(SourceError, match=r"no sheet number 5 \(the workbook has 2\)"):
        read(data, name=f"b.{fmt}", sheet=5)


def test_xlsx_cells_keep_their_types():
    data = table_bytes(
        "xlsx", headers=["sku", "when"], rows=[["A1", dt.datetime(2026, 1, 2, 3, 4)]]
    )
    records, _ = read(data, name="x.xlsx")
    assert records == [{"sku": "A1", "when": dt.datetime(2026, 1, 2, 3, 4)}]


# -- delimiters --------------------------------------------------------------------------
@pytest.mark.parametrize("delimiter", [";", "|", "\t"])
def test_delimiter_option(delimiter):
    data = f"sku{delimiter}name\nA1{delimiter}Lamp, large\n".encode()
    records, _ = read(data, delimiter=delimiter)
    assert records == [{"sku": "A1", "name": "Lamp, large"}]


@pytest.mark.parametrize("delimiter", [",", ";", "|", "\t"])
def test_delimiter_auto(delimiter):
    data = f"\ufeffsku{delimiter}name{delimiter}qty\nA1{delimiter}Lamp{delimiter}3\n".encode()
    records, _ = read(data, delimiter="auto")
    assert records == [{"sku": "A1", "name": "Lamp", "qty": "3"}]


def test_tsv_uses_tabs_by_default():
    records, _ = read(b"sku\tname\nA1\tLamp, large\n", name="x.tsv")
    assert records == [{"sku": "A1", "name": "Lamp, large"}]


def test_wrong_delimiter_reads_one_column_and_the_key_column_is_missing(tmp_path, make_job):
    path = tmp_path / "semicolons.csv"
    path.write_bytes(table_bytes("csv").replace(b",", b";"))
    with pytest.raises(MappingError) as info:
        djsync.run(make_job("test_products"), file=path)
    assert str(path) in str(info.value) and "missing column" in str(info.value)
    assert Product.objects.count() == 0


# -- row numbers -------------------------------------------------------------------------
def test_row_numbers_follow_the_file_across_blank_lines(tmp_path, make_job):
    path = tmp_path / "gaps.csv"
    path.write_text("sku,name,price,qty,updated,active\nA1,Lamp,1,1,,yes\n\n\nA2,Kite,abc,1,,yes\n")
    run = djsync.run(make_job("test_products"), file=path, on_row_error="skip")
    error = run.row_errors.get()
    assert (error.row, error.column, error.value) == (5, "price", "abc")


def test_json_records_are_numbered_from_one(tmp_path, make_job):
    path = tmp_path / "p.json"
    path.write_bytes(table_bytes("json", rows=[*ROWS, ["A3", "Drum", "x", 1, "", "yes"]]))
    run = djsync.run(make_job("test_products"), file=path, on_row_error="skip")
    assert run.row_errors.get().row == 3


def test_source_is_path_or_file_not_both():
    with pytest.raises(SourceError, match="either a path or an open file"):
        FileSource("x.csv", file=io.BytesIO(b""))
    with pytest.raises(SourceError):
        FileSource()


def test_path_objects_and_strings(tmp_path):
    path = Path(tmp_path / "x.csv")
    path.write_bytes(b"a\n1\n")
    assert list(FileSource(path).read()) == [{"a": "1"}]
    assert list(FileSource(str(path)).read()) == [{"a": "1"}]
