"""A CSV file parsed by PostgreSQL (djsync/backends/rawcsv.py) ends exactly as when it is
read in Python: the same target rows, counts, stored changes and row errors, for files it
takes and for hostile files it hands back to the Python path.

Each file goes through a dry run and an applied run twice, once with FAST_PATH_RAW_CSV
on and once off, from the same target rows; ``raw`` says which path the first one took.
"""

from __future__ import annotations

import codecs
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from djsync.models import SyncJob
from tests.test_differential import run_outcome
from tests.testapp.models import Employee, Product

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's COPY"),
]

HEADER = b"sku,name,price,qty,updated\r\n"

#: A well-formed file: quoted commas and doubled quotes, CRLF, a negative price, Unicode.
GOOD = (
    HEADER
    + b'A1,"lamp, ""deluxe""",12.50,3,2024-01-31\r\n'
    + b"A2,kite,-0.5,-7,2024-02-29\r\n"
    + "A4,caf\u00e9 cr\u00e8me,7,0,2023-12-01\r\n".encode()
    + b"A5,plain,1.00,1,2024-03-01\r\n"
)


def seed() -> None:
    Product.objects.all().delete()
    Product.objects.create(sku="A1", name="lamp", price=Decimal("12.50"), qty=3)
    Product.objects.create(sku="A3", name="gone", price=Decimal("1.00"), qty=1)
    Product.objects.create(sku="A5", name="plain", price=Decimal("1.00"), qty=1)


@pytest.fixture
def job(db: None) -> SyncJob:
    return SyncJob.objects.create(name="plain", importer="test_products_plain", allow_delete=True)


def both(job: SyncJob, path: Path, settings: Any) -> tuple[list[dict], str]:
    """The outcomes of a dry run and an applied run of ``path``, the same on both paths;
    and how the first path read the file."""
    seen: dict[bool, list[dict]] = {}
    raw = ""
    for on in (True, False):
        settings.DJSYNC = {**settings.DJSYNC, "FAST_PATH_RAW_CSV": on}
        runs = []
        for dry_run in (True, False):
            seed()
            outcome, plan = run_outcome(job, str(path), dry_run=dry_run)
            runs.append(outcome)
            if on and plan is not None:
                raw = plan.raw_csv
        seen[on] = runs
    for step, (a, b) in enumerate(zip(seen[True], seen[False], strict=True)):
        assert a == b, f"{'dry run' if step == 0 else 'run'}: PostgreSQL's reading differs"
    return seen[True], raw


def write(tmp_path: Path, data: bytes, name: str = "plain.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_a_well_formed_file_is_parsed_by_postgresql_with_the_same_result(job, tmp_path, settings):
    (dry, applied), raw = both(job, write(tmp_path, GOOD), settings)
    assert raw == "staged"
    assert applied["status"] == "succeeded"
    assert applied["counts"] == {
        "created": 2,
        "updated": 2,
        "deleted": 1,
        "unchanged": 0,
        "errors": 0,
    }
    rows = {r["sku"]: r for r in applied["target"]}
    assert rows["A1"]["name"] == 'lamp, "deluxe"'
    assert rows["A2"]["price"] == Decimal("-0.50") and rows["A2"]["qty"] == -7
    assert rows["A4"]["name"] == "caf\u00e9 cr\u00e8me"
    assert [c[0] for c in dry["changes"]] == ["create", "create", "delete", "update", "update"]


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(codecs.BOM_UTF8 + GOOD, id="byte-order mark"),
        pytest.param(GOOD.replace(b"\r\n", b"\n"), id="LF"),
        pytest.param(GOOD.rstrip(b"\r\n"), id="no line end at the end"),
        pytest.param(HEADER, id="header only"),
        pytest.param(
            b"sku,extra,name,price,qty,updated\n"
            b'B1,"anything, \'=1+1",x,1,1,2024-01-01\nB2,,y,2,2,2024-01-02\n',
            id="a column no field reads, any cell",
        ),
        pytest.param(
            HEADER + b"B2,b,1,1,2024-01-01\r\nB1,a,1,1,2024-01-01\r\n", id="unsorted keys"
        ),
        pytest.param(HEADER + b"B1,=SUM(A1),1,1,2024-01-01\r\n", id="formula, not quoted"),
        pytest.param(
            HEADER + b"B1,a,1,1,2024-01-01\r\nB1,b,2,2,2024-01-02\r\nB2,c,1,1,2024-01-01\r\n",
            id="duplicate keys next to each other",
        ),
        pytest.param(
            HEADER + b'"B1",a,1,1,2024-01-01\r\nB0,b,2,2,2024-01-02\r\n"B0",c,1,1,2024-01-01\r\n',
            id="quoted keys, repeated",
        ),
        pytest.param(
            HEADER + b"B1,a,1,1,2024-01-01\r\nB2,b,1,1,2024-01-01\r\nB1,c,2,2,2024-01-02\r\n",
            id="duplicate keys",
        ),
        pytest.param(
            HEADER + b"A5,plain,1.00,1,2024-03-01\r\nA1,b,1,1,2024-01-01\r\n"
            b"A5,plain,1.00,1,2024-03-01\r\n",
            id="a stored key twice",
        ),
    ],
)
def test_files_postgresql_parses(job, tmp_path, settings, data):
    _, raw = both(job, write(tmp_path, data), settings)
    assert raw == "staged"


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(HEADER + b"B1, spaced ,1,1,2024-01-01\r\n", id="space around text"),
        pytest.param(HEADER + b'B1," spaced",1,1,2024-01-01\r\n', id="space inside quotes"),
        pytest.param(HEADER + "B1,\u00a0nbsp,1,1,2024-01-01\r\n".encode(), id="non-breaking space"),
        pytest.param(HEADER + b"B1,a,,1,2024-01-01\r\n", id="empty cell"),
        pytest.param(HEADER + b'B1,"",1,1,2024-01-01\r\n', id="empty quoted cell"),
        pytest.param(HEADER + b"B1,a,1,1\r\n", id="short row"),
        pytest.param(HEADER + b"B1,a,1,1,2024-01-01,,\r\n", id="long row, empty cells"),
        pytest.param(HEADER + b"B1,a,1,1,2024-01-01,x\r\n", id="long row"),
        pytest.param(GOOD.replace(b"A2,", b"\r\nA2,"), id="blank line"),
        pytest.param(GOOD + b"\r\n", id="blank line at the end"),
        pytest.param(HEADER + b'B1,"two\r\nlines",1,1,2024-01-01\r\n', id="quoted line break"),
        pytest.param(HEADER + "B1,caf\u00e9,1,1,2024-01-01\r\n".encode("latin-1"), id="latin-1"),
        pytest.param(HEADER + b"B1,a\x00b,1,1,2024-01-01\r\n", id="NUL byte"),
        pytest.param(HEADER + b"B1,'=SUM(A1),1,1,2024-01-01\r\n", id="neutralized formula"),
        pytest.param(HEADER + b"B1," + b"x" * 201 + b",1,1,2024-01-01\r\n", id="too long"),
        pytest.param(HEADER + b"B1,a,1.005,1,2024-01-01\r\n", id="three decimal places"),
        pytest.param(HEADER + b"B1,a,1,+5,2024-01-01\r\n", id="plus sign"),
        pytest.param(HEADER + b"B1,a,1,9999999999,2024-01-01\r\n", id="out of range"),
        pytest.param(HEADER + b"B1,a,1,1,2024-02-30\r\n", id="impossible date"),
        pytest.param(HEADER + b"B1,a,1,1,2024-1-5\r\n", id="short date"),
        pytest.param(HEADER + b"B1,a,1,1,0000-01-01\r\n", id="year zero"),
        pytest.param(HEADER + b"B1,a,1,1,2024-01-01\r\n\\.\r\nB2,b,1,1,2024-01-01\r\n", id="\\."),
        pytest.param(HEADER + b'B1,ab"c,1,1,2024-01-01\r\n', id="quote in an unquoted cell"),
        pytest.param(HEADER + b'B1,"ab"c,1,1,2024-01-01\r\n', id="text after a quote"),
        pytest.param(HEADER + b'B1,"ab,1,1,2024-01-01\r\n', id="quote left open"),
        pytest.param(GOOD.replace(b"\r\nA4", b"\nA4"), id="mixed line ends"),
        pytest.param(
            b'sku,"name",price,qty,updated\r\nB1,a,1,1,2024-01-01\r\n', id="quoted header"
        ),
        pytest.param(b"sku,name,price,qty,updated,\r\nB1,a,1,1,2024-01-01,\r\n", id="header ,"),
        pytest.param(HEADER + b",a,1,1,2024-01-01\r\n", id="empty key"),
    ],
)
def test_hostile_files_end_as_in_python(job, tmp_path, settings, data):
    (dry, applied), raw = both(job, write(tmp_path, data), settings)
    assert raw == "" or raw.startswith("refused: "), raw


def test_a_refused_file_still_reports_row_file_and_column(job, tmp_path, settings):
    data = GOOD + b"B9,a,1.005,1,2024-01-01\r\n"
    (dry, _), raw = both(job, write(tmp_path, data), settings)
    assert raw.startswith("refused: ")
    [(row, column, message, key, value)] = dry["row_errors"]
    assert (row, column, key, value) == (6, "price", ["B9"], "1.005")


def test_many_rows_across_chunks(job, tmp_path, settings):
    """Rows, quoted cells and multi-byte characters cut by the chunk boundaries."""
    lines = [
        f'K{i:06d},"n\u00e9, ""{i}""",{i % 1000}.{i % 100:02d},{i % 7 - 3},2024-0{i % 9 + 1}-1{i % 9}'
        for i in range(30_000)
    ]
    data = HEADER + ("\r\n".join(lines) + "\r\n").encode()
    (dry, applied), raw = both(job, write(tmp_path, data), settings)
    assert raw == "staged"
    assert applied["counts"]["created"] == 30_000
    assert applied["counts"]["deleted"] == 3


def test_an_importer_with_other_fields_is_not_tried(make_job, write_csv, tmp_path, settings):
    job = make_job("test_products")
    path = write_csv(
        [{"sku": "A", "name": "a", "price": "1", "qty": "1", "updated": "", "active": "yes"}]
    )
    _, plan = run_outcome(job, str(path))
    assert plan.raw_csv == ""


@pytest.mark.parametrize(
    "rows",
    [
        pytest.param(b"9,nine\n10,ten\n11,eleven\n", id="increasing as numbers, not as text"),
        pytest.param(b"9,nine\n10,ten\n10,ten again\n", id="a repeat after increasing ones"),
        pytest.param(b"10,ten\n9,nine\n10,ten again\n", id="a repeat, not increasing"),
    ],
)
def test_whole_number_keys(make_job, tmp_path, settings, rows):
    job = make_job("test_employees", delete=True)
    path = write(tmp_path, b"number,name\n" + rows, "employees.csv")
    seen = {}
    for on in (True, False):
        settings.DJSYNC = {**settings.DJSYNC, "FAST_PATH_RAW_CSV": on}
        Employee.objects.all().delete()
        Employee.objects.create(number=10, name="old")
        seen[on], plan = run_outcome(job, str(path))
        if on:
            assert plan.raw_csv == "staged"
    assert seen[True] == seen[False]
