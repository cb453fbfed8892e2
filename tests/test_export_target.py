"""An export job through the engine: the file is a target (djsync.targets.file) compared with
the previous file, previewed, limited, and replaced whole or not at all."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
import tracemalloc
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.management import call_command

import djsync
from djsync.engine.diff import Create, Plan
from djsync.exceptions import (
    ConfigurationError,
    ConflictError,
    LimitExceeded,
    TargetError,
)
from djsync.exports.jobs import export_queryset
from djsync.runs.orchestrator import apply_previewed
from djsync.targets.file import FileTarget
from tests.testapp.models import Category, Product


@pytest.fixture
def catalogue(db):
    tools = Category.objects.create(code="tools", name="Tools")
    Product.objects.create(sku="A1", name="Saw", price=Decimal("5.50"), qty=2, category=tools)
    Product.objects.create(sku="A2", name='=HYPERLINK("http://evil")', price=1, qty=1)
    Product.objects.create(sku="A3", name="@SUM(A1:A2)", price=2, qty=0, active=False)


def export_job(make_job, path="out/products.csv", **options):
    return make_job(
        "test_products", name="products-export", target={"kind": "file", "path": path, **options}
    )


def skus(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8") as handle:
        return [row["sku"] for row in csv.DictReader(handle)]


def changes(run) -> dict[tuple[str, str], object]:
    return {(c.action, c.key[0]): c for c in run.changes.all()}


def test_a_dry_run_shows_what_the_export_changes_and_writes_nothing(catalogue, make_job, tmp_path):
    job = export_job(make_job)
    path = tmp_path / "out" / "products.csv"
    first = djsync.run(job, dry_run=True)
    assert first.status == "previewed", first.error
    assert (first.created, first.updated, first.deleted) == (3, 0, 0)
    assert not path.exists()

    assert djsync.run(job).status == "succeeded"
    written = path.read_bytes()
    Product.objects.filter(sku="A1").update(price=Decimal("6.00"))
    Product.objects.filter(sku="A3").delete()
    Product.objects.create(sku="A4", name="Drill", price=9, qty=1)

    dry = djsync.run(job, dry_run=True)
    assert (dry.created, dry.updated, dry.deleted, dry.unchanged) == (1, 1, 1, 1)
    found = changes(dry)
    assert set(found) == {("create", "A4"), ("update", "A1"), ("delete", "A3")}
    update = found["update", "A1"]
    assert (update.before, update.after) == ({"price": "5.50"}, {"price": "6.00"})
    assert update.object_pk == "2"  # the row of the previous file
    assert path.read_bytes() == written  # a dry run writes nothing

    call_command("runsync", "products-export", "--dry-run", "--diff", "--no-progress")


def test_runsync_diff_lists_the_rows_of_the_file(catalogue, make_job, tmp_path, capsys):
    job = export_job(make_job)
    djsync.run(job)
    Product.objects.filter(sku="A1").update(qty=7)
    capsys.readouterr()
    call_command("runsync", job.name, "--dry-run", "--diff", "--no-progress")
    out = capsys.readouterr().out
    assert "A1" in out and "qty" in out and "7" in out
    assert "rewrite row 2 of products.csv" in out


def test_apply_writes_the_file_and_a_second_run_leaves_it_untouched(
    catalogue, make_job, tmp_path, capsys
):
    job = export_job(make_job)
    path = tmp_path / "out" / "products.csv"
    run = djsync.run(job)
    assert run.status == "succeeded", run.error
    assert run.stats["testapp.Product"]["exported"] == 3
    assert skus(path) == ["A1", "A2", "A3"]
    before, stamp = path.read_bytes(), path.stat().st_mtime_ns
    time.sleep(0.01)

    again = djsync.run(job)
    assert again.status == "succeeded"
    assert (again.created, again.updated, again.deleted, again.unchanged) == (0, 0, 0, 3)
    assert "exported" not in again.stats["testapp.Product"]
    assert path.read_bytes() == before and path.stat().st_mtime_ns == stamp

    capsys.readouterr()
    call_command("runsync", job.name, "--no-progress")
    out = capsys.readouterr().out
    assert f"nothing to change in {path}" in out
    assert path.stat().st_mtime_ns == stamp
    assert sorted(p.name for p in path.parent.iterdir()) == ["products.csv"]


@pytest.mark.parametrize("fmt", ["csv", "tsv", "json", "jsonl", "xlsx", "xls", "ods", "yaml"])
def test_every_readable_format_reads_back_as_nothing_to_change(catalogue, make_job, tmp_path, fmt):
    Product.objects.filter(sku="A1").update(updated="2026-05-01")
    job = export_job(make_job, path=f"p.{fmt}")
    assert djsync.run(job).status == "succeeded"
    before = (tmp_path / f"p.{fmt}").read_bytes()
    again = djsync.run(job)
    assert again.unchanged == 3 and again.created + again.updated + again.deleted == 0
    assert (tmp_path / f"p.{fmt}").read_bytes() == before


def test_a_format_the_sources_cannot_read_is_written_without_comparing(
    catalogue, make_job, tmp_path
):
    job = export_job(make_job, path="p.html")
    for _ in range(2):
        run = djsync.run(job)
        assert run.status == "succeeded" and run.created == 3
    assert "A3" in (tmp_path / "p.html").read_text()


def test_a_preview_is_applied_where_it_was_compared_and_not_over_a_changed_file(
    catalogue, make_job, tmp_path
):
    job = export_job(make_job, path="out/products-{date}.csv")
    preview = djsync.run(job, dry_run=True)
    path = Path(preview.stats["testapp.Product"]["file"])
    applied = apply_previewed(preview)
    assert applied.status == "succeeded", applied.error
    assert skus(path) == ["A1", "A2", "A3"]

    Product.objects.filter(sku="A2").update(qty=5)
    preview = djsync.run(job, dry_run=True)
    assert preview.updated == 1
    edited = path.read_text().replace("A3,", "A3-edited,")
    path.write_text(edited)  # someone edits the file between preview and apply
    with pytest.raises(ConflictError, match="the file changed since the preview"):
        apply_previewed(preview)
    assert path.read_text() == edited


def test_a_failed_write_keeps_the_previous_file(catalogue, make_job, tmp_path):
    job = export_job(make_job, path="p.xlsx")
    assert djsync.run(job).status == "succeeded"
    path = tmp_path / "p.xlsx"
    before = path.read_bytes()
    # A control character: the diff takes it, the XLSX writer refuses it half-way.
    Product.objects.create(sku="A9", name="bell\x07", price=1, qty=1)
    with pytest.raises(Exception, match="bell|Illegal|cannot"):
        djsync.run(job)
    run = job.runs.first()
    assert run.status == "failed"
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["p.xlsx"]  # no temporary file left


def test_a_killed_export_leaves_the_previous_file(tmp_path):
    path = tmp_path / "daily.csv"
    path.write_text("sku\nyesterday\n")
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from djsync.exports.files import write_rows\n"
        "def rows():\n"
        "    for n in range(10**9):\n"
        "        if n == 1000: print('writing', flush=True)\n"
        "        if n > 1000: time.sleep(0.001)\n"
        "        yield [n]\n"
        "write_rows(Path(sys.argv[1]), 'csv', ['sku'], rows())\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    child = subprocess.Popen(
        [sys.executable, "-c", script, str(path)], stdout=subprocess.PIPE, env=env, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "writing"
        time.sleep(0.2)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert path.read_text() == "sku\nyesterday\n"
    partial = [p for p in tmp_path.iterdir() if p.name != "daily.csv"]
    assert [p.name.startswith(".daily.csv.") for p in partial] == [True]  # never the file itself


def test_a_hostile_previous_file_is_a_clear_error_naming_it(
    catalogue, make_job, tmp_path, settings
):
    job = export_job(make_job, path="p.csv")
    path = tmp_path / "p.csv"

    path.write_bytes(b"sku,name\n\x00\x01\x02garbage\xff\xfe" * 100)
    with pytest.raises(TargetError, match=r"p\.csv: the file there cannot be read") as info:
        djsync.run(job)
    assert "NUL byte" in str(info.value) and "move it away" in str(info.value)
    assert path.read_bytes().startswith(b"sku,name\n\x00")

    settings.DJSYNC = {**settings.DJSYNC, "MAX_FILE_SIZE": 1024}
    path.write_text("sku,name\n" + "A1,Saw\n" * 1000)
    with pytest.raises(TargetError, match=r"p\.csv.*more than DJSYNC..MAX_FILE_SIZE"):
        djsync.run(job)

    path.write_text("id,title\n1,a letter\n")
    with pytest.raises(TargetError, match=r"p\.csv: the file there has no column 'sku'"):
        djsync.run(job)
    assert path.read_text() == "id,title\n1,a letter\n"

    path.write_text("sku,name,price\nA1,Saw,not a price\n")
    with pytest.raises(TargetError, match=r"p\.csv: row 2, column 'price': 'not a price'"):
        djsync.run(job)


def test_limits_of_the_job_apply_and_an_export_cannot_skip_deletes(catalogue, make_job, tmp_path):
    job = export_job(make_job, path="p.csv", filter={"active": True})
    job.max_delete = 0
    job.save()
    assert djsync.run(job).status == "succeeded"
    before = (tmp_path / "p.csv").read_bytes()
    Product.objects.filter(sku="A2").update(active=False)
    with pytest.raises(LimitExceeded, match="1 deletes, more than the limit of 0"):
        djsync.run(job)
    assert (tmp_path / "p.csv").read_bytes() == before
    with pytest.raises(ConfigurationError, match="is an export: it writes the whole file"):
        djsync.run(job, delete=False)


def test_the_write_streams_the_source_in_flat_memory(tmp_path):
    rows = 100_000
    target = FileTarget(
        tmp_path / "big.csv",
        format="csv",
        headers=["n", "name", "price", "flag"],
        rows=lambda: ([n, f"product {n}", Decimal(n) / 100, n % 7 == 0] for n in range(rows)),
        label="big",
    )
    plan = Plan(model="big", creates=[Create(key=(1,), values={"n": 1})])
    tracemalloc.start()
    try:
        target.write(plan, None)  # type: ignore[arg-type]
        target.finish()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert target.exported == rows
    assert peak < 5 * 1024 * 1024  # the rows as a list would take about 30 MB
    with (tmp_path / "big.csv").open() as handle:
        assert sum(1 for _ in handle) == rows + 1


def test_the_admin_previews_an_export_and_applies_it_with_view_permission_only(
    catalogue, make_job, tmp_path, client, django_user_model, django_capture_on_commit_callbacks
):
    from django.contrib.auth.models import Permission
    from django.urls import reverse

    user = django_user_model.objects.create_user("clerk", password="x", is_staff=True)
    for codename in ("add_syncrun", "view_syncrun", "view_product"):
        user.user_permissions.add(Permission.objects.get(codename=codename))
    client.force_login(user)
    job = export_job(make_job)
    path = tmp_path / "out" / "products.csv"
    djsync.run(job)
    Product.objects.filter(sku="A1").update(qty=7)
    preview = djsync.run(job, dry_run=True, user=user)
    page = client.get(reverse("admin:djsync_syncrun_change", args=[preview.pk]))
    html = page.content.decode()
    assert page.status_code == 200 and "rewrite row 2 of products.csv" in html
    assert 'id="djsync-apply"' in html  # no add/change/delete permission on the model needed
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("admin:djsync_syncrun_apply", args=[preview.pk]))
    preview.refresh_from_db()
    assert preview.status == "succeeded", preview.error
    with path.open(newline="") as handle:
        assert next(r for r in csv.DictReader(handle) if r["sku"] == "A1")["qty"] == "7"


def test_an_export_over_the_cap_is_rewritten_whole_without_a_change_per_row(
    catalogue, make_job, tmp_path, settings, admin_client, capsys
):
    from django.urls import reverse

    from djsync.exceptions import DeleteGuardError

    settings.DJSYNC = {**settings.DJSYNC, "EXPORT_COMPARE_MAX_ROWS": 2}
    job = export_job(make_job)
    path = tmp_path / "out" / "products.csv"
    first = djsync.run(job)
    assert first.status == "succeeded" and first.created == 3
    assert first.changes.count() == 0  # a first export: no plan per row
    assert skus(path) == ["A1", "A2", "A3"]

    Product.objects.filter(sku="A1").update(price=Decimal("6.00"))
    Product.objects.create(sku="A4", name="Drill", price=9, qty=1)
    before = path.read_bytes()
    note = (
        "products.csv will be rewritten with 4 rows (not compared row by row: over "
        "EXPORT_COMPARE_MAX_ROWS, 2)"
    )
    dry = djsync.run(job, dry_run=True)
    assert dry.status == "previewed", dry.error
    assert (dry.created, dry.updated, dry.deleted, dry.unchanged) == (0, 0, 0, 0)
    assert dry.changes.count() == 0 and dry.warnings == [note]
    assert path.read_bytes() == before
    page = admin_client.get(reverse("admin:djsync_syncrun_change", args=[dry.pk]))
    assert note in page.content.decode() and 'id="djsync-apply"' in page.content.decode()
    call_command("runsync", "products-export", "--dry-run", "--no-progress")
    assert note in capsys.readouterr().out

    applied = apply_previewed(dry)
    assert applied.status == "succeeded", applied.error
    assert skus(path) == ["A1", "A2", "A3", "A4"]
    with path.open(newline="") as handle:
        assert next(r for r in csv.DictReader(handle) if r["sku"] == "A1")["price"] == "6.00"
    call_command("runsync", "products-export", "--no-progress")
    assert "exported 4 rows to" in capsys.readouterr().out

    # The previous file (4 rows) is over the cap, the source (1 row) within it: the file
    # loses at least 3 - 1 of the 3 rows read before reading stopped, past the guard.
    Product.objects.exclude(sku="A1").delete()
    with pytest.raises(DeleteGuardError, match="deletes 2 of 3 rows"):
        djsync.run(job)
    assert skus(path) == ["A1", "A2", "A3", "A4"]
    assert djsync.run(job, force=True).status == "succeeded"
    assert skus(path) == ["A1"]


def test_within_the_cap_the_export_still_compares_row_by_row(
    catalogue, make_job, tmp_path, settings
):
    settings.DJSYNC = {**settings.DJSYNC, "EXPORT_COMPARE_MAX_ROWS": 3}
    job = export_job(make_job, path="p.csv")
    assert djsync.run(job).status == "succeeded"
    Product.objects.filter(sku="A2").update(qty=5)
    run = djsync.run(job, dry_run=True)
    assert (run.created, run.updated, run.unchanged) == (0, 1, 2) and not run.warnings
    assert set(changes(run)) == {("update", "A2")}


def test_a_first_export_of_many_rows_runs_in_flat_memory(transactional_db, make_job, tmp_path):
    # transactional: the run's heartbeat renews its lock from another connection
    rows = 100_000
    Product.objects.bulk_create(
        (
            Product(sku=f"S{n:06d}", name=f"product {n}", price=n % 100, qty=n % 7)
            for n in range(rows)
        ),
        batch_size=5_000,
    )
    job = export_job(make_job, path="big.csv")
    # Modules imported once (the writers, openpyxl…) are no cost of the rows: imported first.
    assert djsync.run(job, dry_run=True).created == rows
    export_queryset(Product.objects.all()[:10], tmp_path / "warm.csv")
    tracemalloc.start()
    try:
        run = djsync.run(job)  # the whole run: count, plan, write, record
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert run.status == "succeeded", run.error
    assert run.created == rows and run.stats["testapp.Product"]["exported"] == rows
    assert run.changes.count() == 0
    assert peak < 10 * 1024 * 1024  # a plan per row took about 1 KiB a row: ~100 MB
    with (tmp_path / "big.csv").open() as handle:
        assert sum(1 for _ in handle) == rows + 1
