"""Failures read like answers (issue 9, part 4): one line naming the cause, a failed run that
says nothing was written, row errors grouped and capped, a broker or worker that is not
there, old history pruned, exports that read back, one writer per model."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from io import StringIO
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import IntegrityError
from django.utils import timezone

import djsync
from djsync.engine.diff import RowError
from djsync.engine.row_errors import group_errors, message_template
from djsync.exceptions import RunLocked
from djsync.exports.files import neutralize, unneutralize
from djsync.mapping.importers import Switches
from djsync.mapping.registry import get_importer_class
from djsync.models import SyncChange, SyncRowError, SyncRun
from djsync.runs import locks, report
from djsync.sources import FileSource
from djsync.uploads import save_upload, storage
from tests import celery_app
from tests.hostile import run_isolated
from tests.testapp.models import Category, Product

COLUMNS = "sku,name,price,qty,updated,active"


def csv_file(
    tmp_path: Path, *lines: str, name: str = "products.csv", columns: str = COLUMNS
) -> Path:
    path = tmp_path / name
    path.write_text("\n".join([columns, *lines]) + "\n")
    return path


def runsync(*args: Any, **options: Any) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("runsync", *[str(a) for a in args], stdout=out, stderr=err, **options)
    return out.getvalue(), err.getvalue()


def fails(*args: Any, **options: Any) -> tuple[str, str]:
    """Run runsync expecting a failure: (its one-line error, stdout)."""
    out = StringIO()
    with pytest.raises(CommandError) as info:
        call_command("runsync", *[str(a) for a in args], stdout=out, stderr=StringIO(), **options)
    return str(info.value), out.getvalue()


def snapshot() -> list[tuple[Any, ...]]:
    return list(Product.objects.order_by("sku").values_list("sku", "name", "price", "qty"))


@pytest.fixture
def catalogue(make_job, tmp_path):
    """SAME unchanged, CHANGE updated, GONE deleted, NEW created by products.csv."""
    for sku in ("SAME", "CHANGE", "GONE"):
        Product.objects.create(sku=sku, name="Thing", price=1, qty=1)
    path = csv_file(tmp_path, "SAME,Thing,1,1,,yes", "CHANGE,Thing,2.50,1,,yes", "NEW,Kite,3,4,,no")
    job = make_job("test_products")
    return job, path


# -- one line naming the cause, nothing written, the run failed ------------------------------
def _boom(*args: Any, **kwargs: Any) -> None:
    raise ZeroDivisionError("boom")


def _integrity(*args: Any, **kwargs: Any) -> None:
    raise IntegrityError(
        'duplicate key value violates unique constraint "testapp_product_sku_key"\n'
        "DETAIL:  Key (sku)=(NEW) already exists."
    )


FAILURES = {
    # name: (file lines or None for the catalogue file, extra args, patch, expected message)
    "source: file not found": (None, ["--file", "{tmp}/nowhere.csv"], None, "file not found"),
    "source: malformed CSV": (
        ['SAME,"Thing,1,1,,yes', "X,Y,1,1,,yes"],
        [],
        None,
        "malformed CSV",
    ),
    "mapping: a column missing": (
        "sku,name,qty,updated,active\nSAME,Thing,1,,yes\n",
        [],
        None,
        "missing column 'price'",
    ),
    "limit: max-create": (None, ["--max-create", "0", "--force"], None, "more than the limit of 0"),
    "limit: delete guard": ("sku,name,price,qty,updated,active\n", [], None, "delete guard"),
    "row errors: fail the run": (
        ["SAME,Thing,1,1,,yes", "BAD,Thing,x,y,,yes"],
        ["--force"],
        None,
        "1 bad row",
    ),
    "unexpected: ZeroDivisionError": (
        None,
        ["--force"],
        ("djsync.runs.steps.apply_plan", _boom),
        "test-products: ZeroDivisionError: boom",
    ),
    "unexpected: a multi-line database error": (
        None,
        ["--force"],
        ("djsync.runs.steps.apply_plan", _integrity),
        'IntegrityError: duplicate key value violates unique constraint "testapp_product_sku_key"'
        " DETAIL:  Key (sku)=(NEW) already exists.",
    ),
}


@pytest.mark.parametrize("case", list(FAILURES), ids=list(FAILURES))
def test_a_failed_run_ends_in_one_line_and_says_nothing_was_written(catalogue, tmp_path, case):
    job, path = catalogue
    lines, extra, patch, expected = FAILURES[case]
    if isinstance(lines, list):
        path = csv_file(tmp_path, *lines, name="case.csv")
    elif isinstance(lines, str):
        path = tmp_path / "case.csv"
        path.write_text(lines)
    args = [a.format(tmp=tmp_path) for a in extra]
    if "--file" not in args:
        args = ["--file", path, *args]
    before = snapshot()
    with mock.patch(patch[0], patch[1]) if patch else mock.MagicMock():
        message, out = fails("test-products", *args)
    assert "\n" not in message and "Traceback" not in message
    assert message.startswith("test-products: ") and expected in message
    assert snapshot() == before  # nothing written
    run = SyncRun.objects.get()
    assert run.status == "failed" and expected.removeprefix("test-products: ") in run.error
    summary = out.splitlines()[0]
    assert summary.startswith("test-products: failed") and "nothing written" in summary
    assert " created," not in out and "+ create" not in out  # never claims a write
    if run.stats:  # the plan was made: what it would have done
        assert "the plan would have created" in summary


def test_the_summary_of_a_failed_run_says_what_would_have_been_done(catalogue):
    job, path = catalogue
    message, out = fails("test-products", "--file", path, "--max-total", "1", "--force", "--diff")
    assert "the plan has 3 changes, more than the limit of 1" in message
    run = SyncRun.objects.get()
    assert report.summary_line(run).endswith(
        "— nothing written; the plan would have created 1, updated 1, deleted 1 "
        "(1 unchanged, 0 row errors)"
    )
    assert "+ would create testapp.Product [NEW]" in out
    assert "~ would update testapp.Product [CHANGE] price: '1.00' → '2.50'" in out
    assert "- would delete testapp.Product [GONE]" in out
    assert "+ create" not in out
    data = report.run_as_dict(run)
    assert data["written"] is False and data["status"] == "failed"
    # A run that failed before it had a plan claims no counts at all.
    Product.objects.all().delete()
    fails("test-products", "--file", path.with_name("missing.csv"))
    early = SyncRun.objects.order_by("-pk").first()
    assert report.summary_line(early).endswith("— nothing written")


def test_an_unexpected_exception_is_one_line_and_its_traceback_goes_to_the_log(catalogue, caplog):
    job, path = catalogue
    with mock.patch("djsync.runs.steps.apply_plan", _boom):
        message, _ = fails("test-products", "--file", path, "--force")
    assert message == "test-products: ZeroDivisionError: boom"
    logged = [r for r in caplog.records if r.name == "djsync" and r.exc_info]
    assert logged and "ZeroDivisionError" in caplog.text
    # --traceback (or -v 3) prints it on stderr as well.
    err = StringIO()
    with mock.patch("djsync.runs.steps.apply_plan", _boom), pytest.raises(CommandError):
        call_command(
            "runsync",
            "test-products",
            "--file",
            str(path),
            "--force",
            "--traceback",
            stdout=StringIO(),
            stderr=err,
        )
    assert "Traceback (most recent call last)" in err.getvalue()
    assert "ZeroDivisionError: boom" in err.getvalue()


def test_a_real_process_prints_one_line_and_no_traceback(tmp_path):
    """The command as a user runs it: no logging configured, so without care Python would
    print the logged traceback on stderr."""
    path = csv_file(tmp_path, "NEW,Kite,3,4,,no")
    code = f"""
    from unittest import mock
    from django.core.management import ManagementUtility, call_command
    call_command("migrate", verbosity=0)
    from djsync.models import SyncJob
    SyncJob.objects.create(name="p", importer="test_products")
    def boom(*args, **kwargs):
        raise KeyError("no such thing")
    with mock.patch("djsync.runs.steps.apply_plan", boom):
        ManagementUtility(["manage.py", "runsync", "p", "--file", {str(path)!r}]).execute()
    """
    out = run_isolated(code, timeout=60)
    assert out.returncode == 1, out.stderr
    assert "Traceback" not in out.stderr
    assert out.last_line == "CommandError: p: KeyError: 'no such thing'"
    assert "p: failed" in out.stdout and "nothing written" in out.stdout


# -- row errors: rows, not messages; grouped; capped --------------------------------------------
def test_row_errors_count_rows_and_are_grouped_by_column_and_message(make_job, tmp_path):
    Category.objects.create(code="tools", name="Tools")
    make_job("test_products")
    lines = [f"P{i},Thing,x{i},y{i},,yes,tools" for i in range(4)]  # two bad cells a row
    lines += [f"Q{i},Thing,1,1,,yes,N{i:03}" for i in range(7)]  # an unknown category
    lines += ["OK,Thing,1,1,,yes,tools"]
    path = csv_file(tmp_path, *lines, columns=COLUMNS + ",category_code")
    out, _ = runsync("test-products", "--file", path, "--skip-errors")
    run = SyncRun.objects.get()
    assert run.errors == 11  # rows, not the 15 messages
    assert run.row_errors.count() == 15  # both messages of a row kept
    assert "1 created, 0 updated, 0 deleted, 0 unchanged, 11 row errors" in out
    assert (
        "! 7 rows, column 'category_code': no category with code … ('N000', 'N001', 'N002', …)"
        " — first at row 6" in out
    )
    assert "! 4 rows, column 'price': expected a decimal number, got … ('x0', 'x1', 'x2', …)" in out
    assert "! 4 rows, column 'qty':" in out
    groups = report.error_groups(run)
    assert [g["rows"] for g in groups] == [7, 4, 4]
    data = json.loads(
        runsync("test-products", "--file", path, "--skip-errors", "--format", "json")[0]
    )
    assert data["runs"][0]["counts"]["errors"] == 11
    assert data["runs"][0]["error_groups"][0]["column"] == "category_code"


def test_the_failing_message_counts_bad_rows_not_messages(make_job, tmp_path):
    make_job("test_products")
    path = csv_file(tmp_path, "A,Thing,x,y,,yes", "B,Thing,x,1,,yes")
    message, _ = fails("test-products", "--file", path)
    assert "2 bad rows" in message  # three messages on two rows


def test_error_groups_are_the_same_whatever_order_the_errors_arrive_in():
    """The staged paths find duplicate keys after the other row errors: the groups, their
    counts and their samples (those of the lowest rows) must not depend on that order."""
    import random

    errors = [
        RowError(
            row=r,
            column="qty",
            message=f"expected a whole number, got 'v{r % 7}'",
            value=f"v{r % 7}",
        )
        for r in range(2, 60)
    ] + [RowError(row=r, message="key shared with row 3", key=(f"K{r}",)) for r in (90, 5, 40)]
    expected = group_errors(errors)
    assert expected[0]["rows"] == 58 and expected[0]["samples"] == ["v2", "v3", "v4"]
    for seed in range(5):
        shuffled = errors[:]
        random.Random(seed).shuffle(shuffled)
        assert group_errors(shuffled) == expected


def test_message_templates_group_values_that_differ_only_in_the_value():
    assert message_template("no plane with tailnum 'N123'", "N123") == "no plane with tailnum …"
    assert message_template("expected a number, got x", "x") == "expected a number, got …"
    assert message_template("expected a number, got 'x'", "x") == "expected a number, got …"
    errors = [
        RowError(row=r, message=f"no plane with tailnum 'N{r}'", column="tailnum", value=f"N{r}")
        for r in range(2, 723)
    ]
    (group,) = group_errors(errors)
    assert group["rows"] == 721 and group["samples"] == ["N2", "N3", "N4"]
    assert report.group_text(group) == (
        "721 rows, column 'tailnum': no plane with tailnum … ('N2', 'N3', 'N4', …) — first at row 2"
    )


@pytest.mark.parametrize("fast_path", [True, False], ids=["staged", "generic"])
def test_row_errors_stored_are_capped_and_the_counts_stay_exact(
    make_job, tmp_path, settings, fast_path
):
    settings.DJSYNC = {**settings.DJSYNC, "MAX_ROW_ERRORS": 5, "FAST_PATH": fast_path}
    make_job("test_products")
    bad = [f"B{i:02},Thing,x,1,,yes" for i in range(12)]
    path = csv_file(tmp_path, "OK,Thing,1,1,,yes", *bad)
    out, _ = runsync("test-products", "--file", path, "--skip-errors", "--dry-run")
    run = SyncRun.objects.get()
    assert run.errors == 12 and run.created == 1
    assert run.row_errors.count() == 5
    assert [e.row for e in run.row_errors.all()] == [3, 4, 5, 6, 7]
    warning = next(w for w in run.warnings if "MAX_ROW_ERRORS" in w)
    assert "only 5 of the 12 row error messages (12 rows) are stored" in warning
    assert "the counts are exact" in warning and f"warning: {warning}" in out
    # The groups were counted over every error, stored or not.
    assert "! 12 rows, column 'price'" in out


@pytest.mark.parametrize("fast_path", [True, False], ids=["staged", "generic"])
def test_a_plan_keeps_only_the_row_errors_it_can_store_in_memory(db, tmp_path, settings, fast_path):
    """A file of bad rows costs bounded memory: the plan holds MAX_ROW_ERRORS row errors
    whole and only counts and groups the rest, on the staged and the generic path alike."""
    settings.DJSYNC = {**settings.DJSYNC, "MAX_ROW_ERRORS": 7, "FAST_PATH": fast_path}
    bad = [f"B{i:04},Thing,x{i},1,,yes" for i in range(500)]
    twice = [f"C{i:04},Thing,y,z,,yes" for i in range(100)]  # two bad cells: one row
    path = csv_file(tmp_path, "OK,Thing,1,1,,yes", *bad, *twice)
    importer = get_importer_class("test_products")()
    plan = importer.build_plan(FileSource(path), Switches(on_row_error="skip"))
    try:
        assert len(plan.errors.kept) == 7 and [e.row for e in plan.errors][:2] == [3, 4]
        assert plan.errors.total == 700 and plan.error_rows == 600
        groups = {(g["column"], g["message"]): g["rows"] for g in plan.errors.groups.result()}
        assert groups[("price", "expected a decimal number, got …")] == 600
        assert groups[("qty", "expected a whole number, got …")] == 100
    finally:
        getattr(plan, "close", lambda: None)()


# -- the broker and the workers ---------------------------------------------------------------
@pytest.fixture
def real_broker(request) -> Iterator[Any]:
    """The test Celery app not eager, on a broker the test chooses (restored after)."""
    conf = celery_app.conf
    saved = {k: conf[k] for k in ("broker_url", "task_always_eager", "broker_write_url")}

    def use(url: str) -> None:
        conf.update(broker_url=url, broker_write_url=url, task_always_eager=False)

    yield use
    conf.update(**saved)


@pytest.fixture
def silent_broker() -> Iterator[str]:
    """A TCP port that accepts connections and never answers (a hung broker)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(50)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"redis://127.0.0.1:{server.getsockname()[1]}/0"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


def _upload_names() -> set[str]:
    store = storage()
    try:
        return set(store.listdir("")[1])
    except FileNotFoundError:
        return set()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("broker", ["closed port", "silent"])
def test_a_broker_that_does_not_answer_fails_the_run_in_seconds(
    make_job, tmp_path, real_broker, silent_broker, settings, broker
):
    settings.DJSYNC = {**settings.DJSYNC, "SEND_TIMEOUT": 1, "SEND_RETRIES": 1}
    real_broker("redis://127.0.0.1:1/0" if broker == "closed port" else silent_broker)
    make_job("test_products")
    path = csv_file(tmp_path, "NEW,Kite,3,4,,no")
    uploads = _upload_names()
    started = time.monotonic()
    message, _ = fails("test-products", "--async", "--file", path)
    took = time.monotonic() - started
    assert took < 8, took
    assert message.startswith("test-products: the Celery broker at redis://127.0.0.1:")
    assert "did not answer within 1 s (the SEND_TIMEOUT setting): " in message
    assert message.endswith(f"run #{SyncRun.objects.get().pk} was not queued; nothing was written")
    assert "\n" not in message
    run = SyncRun.objects.get()
    assert run.status == "failed" and "was not queued" in run.error
    assert run.upload == "" and _upload_names() == uploads  # its upload removed
    assert Product.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_applying_a_preview_with_the_broker_down_keeps_the_preview(
    make_job, tmp_path, real_broker, settings, admin_client
):
    """The admin's apply goes through the same bounded publish: the page answers in
    seconds, the preview stays previewed (to apply once the broker is back) with a note."""
    from django.urls import reverse

    make_job("test_products")
    path = csv_file(tmp_path, "NEW,Kite,3,4,,no")
    runsync("test-products", "--file", path, "--dry-run")
    run = SyncRun.objects.get()
    assert run.status == "previewed"
    settings.DJSYNC = {**settings.DJSYNC, "SEND_TIMEOUT": 1, "SEND_RETRIES": 0}
    run.user = admin_client.get(reverse("admin:index")).wsgi_request.user
    run.save(update_fields=["user"])
    real_broker("redis://127.0.0.1:1/0")
    started = time.monotonic()
    response = admin_client.post(reverse("admin:djsync_syncrun_apply", args=[run.pk]))
    assert time.monotonic() - started < 8
    assert response.status_code == 302
    run.refresh_from_db()
    assert run.status == "previewed"
    assert run.error.startswith("not applied: the Celery broker at redis://127.0.0.1:1/0 did")
    assert "SEND_TIMEOUT" in run.error and Product.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_wait_with_no_worker_says_so_after_a_short_time(make_job, tmp_path, real_broker, settings):
    settings.DJSYNC = {**settings.DJSYNC, "WAIT_NO_WORKER": 1}
    real_broker("memory://")  # a broker that takes the message; no worker reads it
    make_job("test_products")
    path = csv_file(tmp_path, "NEW,Kite,3,4,,no")
    uploads = _upload_names()
    started = time.monotonic()
    message, out = fails("test-products", "--wait", "--file", path, "--no-progress")
    assert time.monotonic() - started < 10
    run = SyncRun.objects.get()
    assert message == f"test-products: {run.error}"
    assert f"no Celery worker took run #{run.pk}" in message and "WAIT_NO_WORKER" in message
    assert "will not run" in message
    assert run.status == "failed" and run.upload == "" and _upload_names() == uploads
    assert "test-products: failed" in out and "nothing written" in out
    # A worker that starts later skips it: it is no longer queued.
    from djsync.runs.monitor import claim

    assert claim(run.pk) is None and Product.objects.count() == 0


# -- prunesyncruns ---------------------------------------------------------------------------
def test_prunesyncruns_removes_old_history_but_never_active_runs_or_fresh_previews(
    make_job, settings
):
    settings.DJSYNC = {**settings.DJSYNC, "UPLOAD_MAX_AGE": 2 * 24 * 3600}
    job = make_job("test_products")
    now = timezone.now()

    def old_run(days: float, status: str, *, changes: int = 0, errors: int = 0) -> SyncRun:
        upload = save_upload(StringIO_bytes(b"sku\n"), "x.csv")
        run = SyncRun.objects.create(
            job=job, trigger="command", status=status, upload=upload, dry_run=status == "previewed"
        )
        SyncRun.objects.filter(pk=run.pk).update(created_at=now - timedelta(days=days))
        SyncChange.objects.bulk_create(
            SyncChange(run=run, model="testapp.Product", action="create", key=[f"K{i}"], after={})
            for i in range(changes)
        )
        SyncRowError.objects.bulk_create(
            SyncRowError(run=run, model="testapp.Product", row=i, message="bad")
            for i in range(errors)
        )
        run.refresh_from_db()
        return run

    gone = [
        old_run(40, "succeeded", changes=7, errors=3),
        old_run(40, "failed", errors=5),
        old_run(35, "cancelled"),
        old_run(3, "previewed", changes=2),  # its upload expired: an abandoned preview
    ]
    kept = [
        old_run(40, "applying", changes=4),  # active: never
        old_run(40, "queued"),
        old_run(1.5, "previewed", changes=3),  # waits for its apply (upload not expired)
        old_run(0.1, "succeeded", changes=1),  # younger than --older-than
    ]
    out, _ = call_out("prunesyncruns", "--older-than", "1", "--dry-run")
    assert out.strip() == (
        "would delete 4 runs, 9 changes, 8 row errors, 4 uploaded files older than 1 days"
    )
    assert SyncRun.objects.count() == 8
    out, _ = call_out("prunesyncruns", "--older-than", "1", "--batch-size", "2")
    assert (
        out.strip() == "deleted 4 runs, 9 changes, 8 row errors, 4 uploaded files older than 1 days"
    )
    assert set(SyncRun.objects.values_list("pk", flat=True)) == {r.pk for r in kept}
    assert not SyncChange.objects.filter(run_id__in=[r.pk for r in gone]).exists()
    assert not SyncRowError.objects.filter(run_id__in=[r.pk for r in gone]).exists()
    names = _upload_names()
    assert all(r.upload not in names for r in gone) and all(r.upload in names for r in kept)
    assert SyncChange.objects.count() == 4 + 3 + 1
    for run in kept:
        storage().delete(run.upload)
    # The beat task does the same with KEEP_RUNS_DAYS.
    from djsync.tasks import prune_sync_runs

    settings.DJSYNC = {**settings.DJSYNC, "KEEP_RUNS_DAYS": 0.05}
    assert prune_sync_runs() == {"runs": 1, "changes": 1, "row_errors": 0, "uploads": 1}
    with pytest.raises(CommandError, match="--older-than must be 0 or more"):
        call_out("prunesyncruns", "--older-than", "-1")


def StringIO_bytes(data: bytes) -> Any:  # noqa: N802 - reads like the class it stands for
    import io

    handle = io.BytesIO(data)
    handle.name = "x.csv"
    return handle


def call_out(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


# -- neutralized exports read back to the same values -----------------------------------------
TRICKY = [
    "-5 degrees",
    "=1+1",
    '=HYPERLINK("http://evil")',
    "@SUM(A1:A2)",
    "+1 555 0100",
    "-",
    "'=already quoted",
    "''@twice",
    "'plain quote",
    "-5",
    "+3.25",
    "O'Brien",
]


def test_neutralize_only_what_a_spreadsheet_would_evaluate():
    assert (
        neutralize("-5") == "-5" and neutralize("+3.25") == "+3.25" and neutralize("-1e6") == "-1e6"
    )
    assert neutralize("-5 degrees") == "'-5 degrees"
    assert neutralize("=1+1") == "'=1+1" and neutralize("@x") == "'@x"
    assert neutralize("\tx") == "'\tx" and neutralize("\rx") == "'\rx"
    assert neutralize("plain") == "plain" and neutralize(5) == 5 and neutralize(None) is None
    for value in [*TRICKY, "\t=x", "", "'"]:
        assert unneutralize(neutralize(value)) == value


@pytest.mark.parametrize("fmt", ["csv", "tsv", "xlsx"])
def test_a_neutralized_export_reads_back_to_the_same_values(make_job, tmp_path, fmt):
    for i, name in enumerate(TRICKY):
        Product.objects.create(sku=f"T{i:02}", name=name, price=Decimal("1.50"), qty=i)
    export = make_job(
        "test_products", name="products-export", target={"kind": "file", "path": f"out.{fmt}"}
    )
    run = djsync.run(export)
    assert run.status == "succeeded", run.error
    if fmt == "csv":
        text = (tmp_path / "out.csv").read_text()
        assert "T00,'-5 degrees," in text and "T01,'=1+1," in text and "T09,-5," in text
    back = make_job("test_products", name="products-import")
    again = djsync.run(back, file=tmp_path / f"out.{fmt}", dry_run=True)
    assert again.status == "previewed", again.error
    assert (again.created, again.updated, again.deleted, again.errors) == (0, 0, 0, 0)
    assert again.unchanged == len(TRICKY)


# -- one writer per model ----------------------------------------------------------------------
@pytest.fixture
def writer_of_products(make_job):
    """Job "other-products" is writing testapp.Product: its run holds the model's lock."""
    other = make_job("test_products_lenient", name="other-products")
    run = SyncRun.objects.create(job=other, trigger="command", status="applying")
    held = locks.acquire_run(other.pk, run.pk, models=[("testapp.Product", "default")])
    yield run, held
    held.release()


def test_two_jobs_writing_one_model_do_not_run_at_once(catalogue, writer_of_products):
    job, path = catalogue
    other_run, _ = writer_of_products
    before = snapshot()
    message, out = fails("test-products", "--file", path, "--force")
    mine = SyncRun.objects.exclude(pk=other_run.pk).get()
    assert message == (
        f"test-products: job 'other-products' (run #{other_run.pk}) is writing model "
        f"testapp.Product; one run per model at a time (this run #{mine.pk} was refused)"
    )
    assert mine.status == "failed" and snapshot() == before
    assert "nothing written" in out
    # The job's own lock was given back with the refusal.
    assert locks.job_lock(job.pk).holder() is None


def test_lock_wait_covers_the_model_lock_too(catalogue, writer_of_products, settings, monkeypatch):
    job, path = catalogue
    _, held = writer_of_products
    settings.DJSYNC = {**settings.DJSYNC, "LOCK_WAIT": 5}

    class Clock:
        """The holder finishes while the second run waits for its lock."""

        monotonic = staticmethod(time.monotonic)

        @staticmethod
        def sleep(seconds: float) -> None:
            held.release()
            time.sleep(min(seconds, 0.05))

    monkeypatch.setattr(locks, "time", Clock)
    out, _ = runsync("test-products", "--file", path, "--force")
    assert "test-products: succeeded" in out
    assert Product.objects.filter(sku="NEW").exists()


def test_a_multi_model_job_locks_every_model_it_writes(make_job, tmp_path):
    writer = make_job("test_categories", name="category-writer")
    run = SyncRun.objects.create(job=writer, trigger="command", status="applying")
    held = locks.acquire_run(writer.pk, run.pk, models=[("testapp.Category", "default")])
    try:
        both = make_job("test_categories,test_products", name="catalogue")
        path = csv_file(tmp_path, "NEW,Kite,3,4,,no")
        with pytest.raises(
            RunLocked, match=r"job 'category-writer' .* is writing model testapp\.Category"
        ):
            djsync.run(both, file=path)
    finally:
        held.release()
    assert Product.objects.count() == 0 and Category.objects.count() == 0
    # Every lock of the refused run was given back: the models are free again.
    for label in ("testapp.Category", "testapp.Product"):
        assert locks.model_lock(label).holder() is None
