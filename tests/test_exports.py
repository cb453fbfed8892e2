"""Exports: a job whose target is a file; every tablib format, formulas neutralized, atomic."""

from __future__ import annotations

import csv
import json
import tracemalloc
from decimal import Decimal

import pytest
import tablib
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone
from openpyxl import load_workbook

import djsync
from djsync.exceptions import ConfigurationError, TargetError
from djsync.exports.files import write_rows
from djsync.exports.jobs import export_formats, export_job, export_queryset, is_export
from tests.testapp.models import Category, Product


@pytest.fixture
def catalogue(db):
    tools = Category.objects.create(code="tools", name="Tools")
    Product.objects.create(sku="A1", name="Saw", price=Decimal("5.50"), qty=2, category=tools)
    Product.objects.create(sku="A2", name='=HYPERLINK("http://evil")', price=1, qty=1)
    Product.objects.create(sku="A3", name="@SUM(A1:A2)", price=2, qty=0, active=False)


def read_csv(path):
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_export_job_writes_a_dated_csv_that_syncs_back(catalogue, make_job, tmp_path):
    job = make_job(
        "test_products",
        name="products-export",
        target={"kind": "file", "path": "out/products-{date:%Y-%m-%d}.csv"},
    )
    assert is_export(job)
    run = djsync.run(job)
    assert run.status == "succeeded", run.error
    today = timezone.localdate().isoformat()
    path = tmp_path / "out" / f"products-{today}.csv"
    assert run.rows_read == 3
    assert run.stats["testapp.Product"]["file"] == str(path)
    rows = read_csv(path)
    assert list(rows[0]) == ["sku", "name", "price", "qty", "updated", "active", "category_code"]
    assert rows[0] == {
        "sku": "A1",
        "name": "Saw",
        "price": "5.50",
        "qty": "2",
        "updated": "",
        "active": "true",
        "category_code": "tools",
    }
    # The export reads back through the same importer: nothing to change — the formula
    # cells the export protected with a leading quote read back without it.
    sync = make_job("test_products", name="products-import")
    again = djsync.run(sync, file=path, dry_run=True)
    assert again.counts["unchanged"] == 3 and again.counts["updated"] == 0


def test_formula_cells_are_neutralized_in_spreadsheet_formats(catalogue, tmp_path):
    qs = Product.objects.order_by("sku")
    export_queryset(qs, tmp_path / "p.csv")
    names = [r["name"] for r in read_csv(tmp_path / "p.csv")]
    assert names == ["Saw", '\'=HYPERLINK("http://evil")', "'@SUM(A1:A2)"]

    export_queryset(qs, tmp_path / "p.xlsx")
    sheet = load_workbook(tmp_path / "p.xlsx").active
    assert [c.value for c in sheet[1]][:3] == ["id", "sku", "name"]  # every field, no importer
    cells = [c.value for c in sheet["C"]][1:]
    assert cells == ["Saw", '\'=HYPERLINK("http://evil")', "'@SUM(A1:A2)"]
    assert all(c.data_type != "f" for c in sheet["C"])

    # Data formats keep the text as it is: no spreadsheet runs them.
    export_queryset(qs, tmp_path / "p.jsonl")
    lines = [json.loads(x) for x in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert lines[1]["name"] == '=HYPERLINK("http://evil")'


def test_negative_numbers_are_not_touched(db, tmp_path):
    Product.objects.create(sku="N", name="-minus", price=Decimal("-3.00"), qty=-4)
    export_queryset(Product.objects.all(), tmp_path / "n.csv")
    row = read_csv(tmp_path / "n.csv")[0]
    assert (row["name"], row["price"], row["qty"]) == ("'-minus", "-3.00", "-4")


@pytest.mark.parametrize("fmt", [f for f in export_formats() if f not in ("dbf",)])
def test_every_format_exports(catalogue, tmp_path, fmt):
    result = export_queryset(Product.objects.order_by("sku"), tmp_path / f"p.{fmt}")
    assert result.rows == 3 and result.format == fmt
    data = (tmp_path / f"p.{fmt}").read_bytes()
    assert data
    if fmt in ("csv", "tsv", "json", "yaml", "xlsx", "xls", "ods"):
        loaded = tablib.Dataset().load(
            data if fmt in ("xlsx", "xls", "ods") else data.decode(), format=fmt
        )
        assert [str(s) for s in loaded["sku"]] == ["A1", "A2", "A3"]
    if fmt == "jsonl":
        assert [json.loads(x)["sku"] for x in data.decode().splitlines()] == ["A1", "A2", "A3"]


def test_an_unwritable_path_is_a_clear_error_and_leaves_nothing(catalogue, make_job, tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    job = make_job("test_products", target={"kind": "file", "path": "not-a-dir/products.csv"})
    with pytest.raises(
        TargetError, match="not-a-dir/products.csv: cannot write the export"
    ) as info:
        djsync.run(job)
    assert info.value.run.status == "failed"
    assert "cannot write the export" in info.value.run.error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["not-a-dir"]

    folder = tmp_path / "a-folder.csv"
    folder.mkdir()
    with pytest.raises(TargetError, match="writing the export failed"):
        export_queryset(Product.objects.all(), folder)
    assert list(folder.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-folder.csv", "not-a-dir"]


def test_a_failure_mid_export_keeps_the_previous_file(tmp_path):
    path = tmp_path / "daily.csv"
    path.write_text("yesterday's complete export\n")

    def rows():
        for n in range(1000):
            if n == 500:
                raise RuntimeError("database went away")
            yield [n, f"row {n}"]

    with pytest.raises(RuntimeError, match="went away"):
        write_rows(path, "csv", ["n", "name"], rows())
    assert path.read_text() == "yesterday's complete export\n"
    assert [p.name for p in tmp_path.iterdir()] == ["daily.csv"]


def test_a_large_csv_export_streams_without_holding_the_rows(tmp_path):
    rows = 100_000
    generated = ([n, f"product {n}", Decimal(n) / 100, n % 7 == 0] for n in range(rows))
    tracemalloc.start()
    try:
        count = write_rows(tmp_path / "big.csv", "csv", ["n", "name", "price", "flag"], generated)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == rows
    assert peak < 5 * 1024 * 1024  # the rows as a list would take about 30 MB
    with (tmp_path / "big.csv").open() as handle:
        assert sum(1 for _ in handle) == rows + 1


def test_export_options_are_checked(catalogue, make_job, tmp_path):
    job = make_job("test_products", target={"kind": "file", "path": "x.pdf"})
    with pytest.raises(ConfigurationError, match="cannot export to 'pdf'"):
        export_job(job)
    job.target = {"kind": "file", "path": "{when}.csv"}
    job.save()
    with pytest.raises(ConfigurationError, match="bad placeholder"):
        export_job(job)
    job.target = {"kind": "file"}
    job.save()
    with pytest.raises(ConfigurationError, match="give the export a path"):
        export_job(job)


def test_export_follows_the_importer_scope_and_a_target_filter(catalogue, make_job, tmp_path):
    job = make_job(
        "test_products",
        target={"kind": "file", "path": "active.json", "filter": {"active": True}},
    )
    export_job(job)
    data = json.loads((tmp_path / "active.json").read_text())
    assert [r["sku"] for r in data] == ["A1", "A2"]
    assert data[0]["price"] == "5.50"


def test_runsync_exports_an_export_job_and_any_job_with_export(
    catalogue, make_job, tmp_path, capsys
):
    make_job("test_products", name="exp", target={"kind": "file", "path": "e.tsv"})
    call_command("runsync", "exp", "--no-progress")
    assert len((tmp_path / "e.tsv").read_text().splitlines()) == 4
    out = capsys.readouterr().out
    assert "exported 3 rows" in out and "e.tsv" in out

    make_job("test_products", name="plain")
    call_command(
        "runsync", "plain", "--export", str(tmp_path / "plain-{date}.xlsx"), "--no-progress"
    )
    assert (tmp_path / f"plain-{timezone.localdate().isoformat()}.xlsx").exists()

    capsys.readouterr()
    call_command("runsync", "plain", "--export", str(tmp_path / "dry.csv"), "--dry-run")
    assert not (tmp_path / "dry.csv").exists()
    out = capsys.readouterr().out
    assert "previewed (dry run)" in out and "3 created" in out

    with pytest.raises(CommandError, match="cannot write the export"):
        call_command("runsync", "plain", "--export", str(tmp_path / "e.tsv" / "x.csv"))
