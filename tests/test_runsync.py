"""``manage.py runsync``: in process with call_command, and as a real process for exit codes,
JSON output and the progress bar."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import struct
import subprocess
import sys
import termios
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from djsync.models import SyncRun
from tests.testapp.models import Product

ROOT = Path(__file__).resolve().parent.parent
COLUMNS = "sku,name,price,qty,updated,active"


def csv_file(tmp_path: Path, *lines: str, name: str = "products.csv") -> Path:
    path = tmp_path / name
    path.write_text("\n".join([COLUMNS, *lines]) + "\n")
    return path


def runsync(*args: Any, **options: Any) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("runsync", *[str(a) for a in args], stdout=out, stderr=err, **options)
    return out.getvalue(), err.getvalue()


def seed(*skus: str) -> None:
    for sku in skus:
        Product.objects.create(sku=sku, name="Thing", price=1, qty=1)


@pytest.fixture
def job(make_job, tmp_path):
    """The job reads products.csv; SAME is unchanged, CHANGE updated, NEW created, GONE deleted."""
    seed("SAME", "CHANGE", "GONE")
    path = csv_file(tmp_path, "SAME,Thing,1,1,,yes", "CHANGE,Thing,2.50,1,,yes", "NEW,Kite,3,4,,no")
    return make_job("test_products", source={"path": path.name}, description="Our catalogue")


# -- in process --------------------------------------------------------------------------
def test_list_one_job_a_line_name_first(job, make_job):
    make_job("test_members", enabled=False)
    out, _ = runsync("--list")
    lines = out.splitlines()
    assert lines[0].split("\t") == ["test-members", "test_members (disabled)", ""]
    assert lines[1].split("\t") == ["test-products", "test_products", "Our catalogue"]


def test_run_prints_a_summary_and_a_sample(job):
    out, err = runsync("test-products", force=True)
    assert "test-products: succeeded" in out
    assert "1 created, 1 updated, 1 deleted, 1 unchanged, 0 row errors" in out
    assert "+ create testapp.Product [NEW]" in out
    assert "~ update testapp.Product [CHANGE] price: '1.00' → '2.50'" in out
    assert "- delete testapp.Product [GONE]" in out
    assert err == ""
    assert sorted(Product.objects.values_list("sku", flat=True)) == ["CHANGE", "NEW", "SAME"]
    assert SyncRun.objects.get().trigger == "command"


def test_every_run_prints_the_path_it_took(job, settings):
    from django.db import connection

    out, _ = runsync("test-products", "--dry-run", force=True)
    assert f"  path: staged: {connection.vendor}\n" in out
    settings.DJSYNC = {**settings.DJSYNC, "FAST_PATH": False}
    out, _ = runsync("test-products", "--dry-run", "--format", "json", force=True)
    (result,) = json.loads(out)["runs"]
    assert result["paths"] == {"testapp.Product": "generic: the FAST_PATH setting is off"}


def test_dry_run_writes_nothing(job):
    out, _ = runsync("test-products", "--dry-run", "--force")
    assert "previewed (dry run)" in out and "1 created, 1 updated, 1 deleted" in out
    assert sorted(Product.objects.values_list("sku", flat=True)) == ["CHANGE", "GONE", "SAME"]
    run = SyncRun.objects.get()
    assert run.dry_run and run.status == "previewed" and run.changes.count() == 3


def test_file_overrides_the_jobs_source(job, tmp_path):
    other = csv_file(
        tmp_path,
        "SAME,Thing,1,1,,yes",
        "CHANGE,Thing,1,1,,yes",
        "GONE,Thing,1,1,,yes",
        "X,Y,1,1,,yes",
        name="other.csv",
    )
    out, _ = runsync("test-products", "--file", other)
    assert "1 created, 0 updated, 0 deleted, 3 unchanged" in out
    assert SyncRun.objects.get().source_name == str(other)


def test_file_with_encoding_and_format(job, tmp_path):
    path = tmp_path / "export.dat"
    path.write_bytes(f"{COLUMNS}\nSAME,Thing,1,1,,yes\nCAFE,Café,1,1,,yes\n".encode("latin-1"))
    out, _ = runsync(
        "test-products",
        "--file",
        path,
        "--encoding",
        "latin-1",
        "--file-format",
        "csv",
        "--no-delete",
    )
    assert "1 created" in out
    assert Product.objects.get(sku="CAFE").name == "Café"


def test_file_goes_with_one_job(job):
    with pytest.raises(CommandError, match="--file goes with a single job"):
        runsync("test-products", "test-products", "--file", "x.csv")


@pytest.mark.parametrize(
    "flag, counts",
    [
        ("--no-create", "0 created, 1 updated, 1 deleted"),
        ("--no-update", "1 created, 0 updated, 1 deleted"),
        ("--no-delete", "1 created, 1 updated, 0 deleted"),
    ],
)
def test_switch_flags_turn_an_action_off(job, flag, counts):
    out, _ = runsync("test-products", flag, "--force")
    assert counts in out


@pytest.mark.parametrize("flag", ["--create", "--update", "--delete"])
def test_switch_flags_turn_an_action_on(make_job, tmp_path, flag):
    seed("GONE", "CHANGE")
    path = csv_file(tmp_path, "CHANGE,Other,1,1,,yes", "NEW,Kite,1,1,,yes")
    make_job("test_products", create=False, update=False, delete=False, source={"path": path.name})
    out, _ = runsync("test-products", flag, "--force")
    counts = {
        "--create": "1 created, 0 updated, 0 deleted",
        "--update": "0 created, 1 updated, 0 deleted",
        "--delete": "0 created, 0 updated, 1 deleted",
    }[flag]
    assert counts in out


@pytest.mark.parametrize(
    "flag, message",
    [
        ("--max-create", "the plan has 1 creates, more than the limit of 0"),
        ("--max-update", "the plan has 1 updates, more than the limit of 0"),
        ("--max-delete", "the plan has 1 deletes, more than the limit of 0"),
        ("--max-total", "the plan has 3 changes, more than the limit of 0"),
    ],
)
def test_limit_flags_fail_with_the_reason(job, flag, message):
    with pytest.raises(CommandError) as info:
        runsync("test-products", flag, "0", "--force")
    assert str(info.value).startswith("test-products: ") and message in str(info.value)
    assert Product.objects.count() == 3 and Product.objects.get(sku="CHANGE").price == 1


def test_negative_limit_is_refused(job):
    with pytest.raises(CommandError, match="must be 0 or more"):
        runsync("test-products", "--max-total", "-1")


def test_force_passes_the_delete_guard(job, tmp_path):
    seed("A", "B", "C")  # six rows in all; the file keeps one
    path = csv_file(tmp_path, "SAME,Thing,1,1,,yes", name="one.csv")
    with pytest.raises(CommandError, match="deletes 5 of 6 rows in scope .* delete guard of 50%"):
        runsync("test-products", "--file", path)
    assert Product.objects.count() == 6
    out, _ = runsync("test-products", "--file", path, "--delete-guard", "0.9")
    assert "5 deleted" in out and Product.objects.count() == 1


def test_force_flag(job, tmp_path):
    path = csv_file(tmp_path, name="header-only.csv")
    with pytest.raises(CommandError, match="Is the source empty or truncated"):
        runsync("test-products", "--file", path)
    out, _ = runsync("test-products", "--file", path, "--force")
    assert "3 deleted" in out and Product.objects.count() == 0


def test_diff_prints_every_change(job, tmp_path):
    lines = [f"N{i:02},New {i},1,1,,yes" for i in range(12)]
    path = csv_file(
        tmp_path, "SAME,Thing,1,1,,yes", "CHANGE,Thing,1,7,,no", "GONE,Thing,1,1,,yes", *lines
    )
    out, _ = runsync("test-products", "--file", path, "--diff", "--dry-run")
    assert out.count("+ create") == 12
    assert "~ update testapp.Product [CHANGE] qty: 1 → 7; active: True → False" in out
    assert "more (use --diff for all)" not in out
    brief, _ = runsync("test-products", "--file", path, "--dry-run")
    assert brief.count("+ create") == 5 and "… and 8 more (use --diff for all)" in brief


def test_format_json_is_machine_readable(job):
    out, _ = runsync("test-products", "--format", "json", "--diff", "--force")
    data = json.loads(out)
    (run,) = data["runs"]
    assert run["job"] == "test-products" and run["status"] == "succeeded"
    assert run["counts"] == {"created": 1, "updated": 1, "deleted": 1, "unchanged": 1, "errors": 0}
    assert run["per_model"]["testapp.Product"]["rows_in_scope"] == 3
    by_action = {c["action"]: c for c in run["changes"]}
    assert by_action["update"]["before"] == {"price": "1.00"}
    assert by_action["update"]["after"] == {"price": "2.50"}
    assert by_action["create"]["after"]["sku"] == "NEW"


def test_format_json_on_failure_still_prints_json(job, tmp_path):
    path = csv_file(tmp_path, "A1,Lamp,cheap,1,,yes", name="bad.csv")
    out = StringIO()
    with pytest.raises(CommandError, match=r"1 bad row in .*bad\.csv, nothing written"):
        call_command(
            "runsync", "test-products", "--file", str(path), "--format", "json", stdout=out
        )
    (run,) = json.loads(out.getvalue())["runs"]
    assert run["status"] == "failed"
    assert run["row_errors"] == [
        {
            "row": 2,
            "column": "price",
            "key": ["A1"],
            "message": "expected a decimal number, got 'cheap'",
            "value": "cheap",
        }
    ]


def test_row_errors_are_listed_and_skip_errors_applies_the_rest(job, tmp_path):
    path = csv_file(
        tmp_path,
        "SAME,Thing,1,1,,yes",
        "CHANGE,Thing,1,1,,yes",
        "GONE,Thing,1,1,,yes",
        "BAD,Thing,x,1,,yes",
        "NEW,Kite,1,1,,yes",
        name="mixed.csv",
    )
    with pytest.raises(CommandError) as info:
        runsync("test-products", "--file", path)
    assert "row 5, column 'price': expected a decimal number, got 'x'" in str(info.value)
    assert not Product.objects.filter(sku="NEW").exists()
    out, _ = runsync("test-products", "--file", path, "--skip-errors")
    assert "1 created, 0 updated, 0 deleted, 3 unchanged, 1 row error" in out
    # Grouped by column and message at verbosity 1; every row error at 2.
    assert "! 1 row, column 'price': expected a decimal number, got … ('x') — at row 5" in out
    assert f"! {path}, row 5" not in out
    assert Product.objects.filter(sku="NEW").exists()
    out2, _ = runsync("test-products", "--file", path, "--skip-errors", verbosity=2)
    assert f"! {path}, row 5, column 'price': expected a decimal number" in out2


def test_verbosity_zero_prints_nothing(job):
    out, err = runsync("test-products", "--force", verbosity=0)
    assert out == "" and err == ""
    assert Product.objects.filter(sku="NEW").exists()


def test_verbosity_two_shows_more_changes_and_every_row_error(job, tmp_path):
    lines = [f"N{i:02},New {i},1,1,,yes" for i in range(30)]
    bad = [f"B{i:02},Bad,x,1,,yes" for i in range(25)]
    path = csv_file(
        tmp_path,
        "SAME,Thing,1,1,,yes",
        "CHANGE,Thing,1,1,,yes",
        "GONE,Thing,1,1,,yes",
        *lines,
        *bad,
    )
    out, _ = runsync("test-products", "--file", path, "--dry-run", "--skip-errors", verbosity=2)
    assert out.count("+ create") == 30
    assert out.count(f"! {path}, row ") == 25
    out1, _ = runsync("test-products", "--file", path, "--dry-run", "--skip-errors", verbosity=1)
    assert out1.count("+ create") == 5 and out1.count("! ") == 1
    assert "! 25 rows, column 'price': expected a decimal number, got … ('x', …)" in out1
    assert "(-v 2 lists every row error)" in out1


def test_dry_run_that_would_fail_exits_non_zero(job, tmp_path):
    path = csv_file(tmp_path, name="header-only.csv")
    with pytest.raises(CommandError, match="a real run would fail: .*delete guard"):
        runsync("test-products", "--file", path, "--dry-run")
    assert SyncRun.objects.get().status == "previewed"


def test_unknown_job_and_no_job(job):
    with pytest.raises(CommandError, match=r"no sync job named 'nope' \(jobs: test-products\)"):
        runsync("nope")
    with pytest.raises(CommandError, match="name at least one job"):
        runsync()


def test_several_jobs_run_in_order_and_a_failure_does_not_stop_the_others(job, make_job, tmp_path):
    cats = tmp_path / "cats.csv"
    cats.write_text("code\nX\n")  # no name column
    make_job("test_categories", source={"path": cats.name})
    with pytest.raises(CommandError) as info:
        runsync("test-categories", "test-products", "--force")
    assert "test-categories: " in str(info.value) and "missing column 'name'" in str(info.value)
    assert "test-products" not in str(info.value)
    assert Product.objects.filter(sku="NEW").exists()
    assert [r.status for r in SyncRun.objects.order_by("pk")] == ["failed", "succeeded"]


# -- --apply RUN: a stored preview, applied after review ---------------------------------
def preview(*args: Any) -> SyncRun:
    """A preview made as CI would: ``runsync JOB --dry-run``."""
    runsync("test-products", "--dry-run", "--force", *args)
    return SyncRun.objects.latest("pk")


def test_apply_writes_the_stored_preview(job):
    run = preview()
    out, _ = runsync("--apply", run.pk)
    assert "test-products: succeeded" in out
    assert "1 created, 1 updated, 1 deleted, 1 unchanged, 0 row errors" in out
    assert "+ create testapp.Product [NEW]" in out
    assert sorted(Product.objects.values_list("sku", flat=True)) == ["CHANGE", "NEW", "SAME"]
    assert str(Product.objects.get(sku="CHANGE").price) == "2.50"
    run.refresh_from_db()
    assert run.status == "succeeded" and not run.dry_run
    assert SyncRun.objects.count() == 1, "the preview's run is the one applied"


def test_apply_writes_what_was_previewed_not_the_source_now(job, tmp_path):
    run = preview()
    csv_file(tmp_path, "SAME,Thing,1,1,,yes")  # the file changed after the review
    runsync("--apply", run.pk)
    assert sorted(Product.objects.values_list("sku", flat=True)) == ["CHANGE", "NEW", "SAME"]


def test_apply_of_a_stale_preview_fails_and_writes_nothing(job):
    run = preview()
    Product.objects.filter(sku="CHANGE").update(price="7.00")  # someone edits meanwhile
    with pytest.raises(CommandError) as info:
        runsync("--apply", run.pk)
    message = str(info.value)
    assert message.startswith("test-products: testapp.Product: the target changed since")
    assert "CHANGE (changed)" in message and "Nothing written; preview again." in message
    assert "\n" not in message
    assert sorted(Product.objects.values_list("sku", flat=True)) == ["CHANGE", "GONE", "SAME"]
    assert str(Product.objects.get(sku="CHANGE").price) == "7.00"
    run.refresh_from_db()
    assert run.status == "failed"


def test_apply_json_output(job):
    run = preview()
    out, _ = runsync("--apply", run.pk, "--format", "json")
    (result,) = json.loads(out)["runs"]
    assert result["status"] == "succeeded" and result["counts"]["created"] == 1


def test_apply_only_a_previewed_run(job):
    run = preview()
    runsync("--apply", run.pk)
    with pytest.raises(CommandError, match=rf"^test-products: run {run.pk} is succeeded; only a"):
        runsync("--apply", run.pk)
    runsync("test-products", "--force")
    direct = SyncRun.objects.latest("pk")
    with pytest.raises(CommandError, match="only a previewed run"):
        runsync("--apply", direct.pk)
    with pytest.raises(CommandError, match="^no run #999999$"):
        runsync("--apply", 999999)


def test_apply_refuses_a_job_name_and_run_flags(job):
    run = preview()
    with pytest.raises(CommandError, match="--apply takes a run id, not a job"):
        runsync("test-products", "--apply", run.pk)
    for flags in (["--dry-run"], ["--delete"], ["--max-delete", "0"], ["--file", "x.csv"]):
        with pytest.raises(CommandError, match=f"--apply does not go with {flags[0]}"):
            runsync("--apply", run.pk, *flags)
    run.refresh_from_db()
    assert run.status == "previewed"
    assert Product.objects.count() == 3


# -- as a real process -------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo_db(tmp_path_factory) -> dict[str, str]:
    """A migrated demo database with the demo jobs; the command runs as its own process."""
    db = tmp_path_factory.mktemp("runsync") / "demo.sqlite3"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "demo_project.settings",
        "DEMO_SQLITE": str(db),
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("DATABASE_URL", None)
    for args in (["migrate", "-v0"], ["loaddata", "demo_jobs", "-v0"]):
        subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True)
    return env


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", "runsync", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_process_exit_codes_and_output_streams(demo_db, tmp_path):
    listed = manage(demo_db, "--list")
    assert listed.returncode == 0
    assert [line.split("\t")[0] for line in listed.stdout.splitlines()] == [
        "categories",
        "departments",
        "directory",
        "employees",
        "products",
    ]

    ok = manage(demo_db, "categories", "departments")
    assert ok.returncode == 0, ok.stderr
    assert "categories: succeeded" in ok.stdout and "departments: succeeded" in ok.stdout
    assert ok.stderr == "", "no progress bar when stderr is not a terminal"

    bad = tmp_path / "products.csv"
    bad.write_text("sku,name,price,qty,category_code,updated,active\nP1,Lamp,oops,1,BOOK,,yes\n")
    failed = manage(demo_db, "products", "--file", str(bad))
    assert failed.returncode != 0
    assert "row 2, column 'price': expected a decimal number, got 'oops'" in failed.stderr
    assert f"1 bad row in {bad}, nothing written" in failed.stderr
    assert "CommandError" in failed.stderr and "Traceback" not in failed.stderr

    missing = manage(demo_db, "nope")
    assert missing.returncode != 0 and "no sync job named 'nope'" in missing.stderr


def test_process_apply_a_preview_then_again(demo_db):
    previewed = manage(demo_db, "departments", "--dry-run", "--format", "json")
    assert previewed.returncode == 0, previewed.stderr
    (run,) = json.loads(previewed.stdout)["runs"]
    applied = manage(demo_db, "--apply", str(run["run"]))
    assert applied.returncode == 0, applied.stderr
    assert "departments: succeeded" in applied.stdout
    again = manage(demo_db, "--apply", str(run["run"]))
    assert again.returncode == 1
    assert f"run {run['run']} is succeeded; only a previewed run" in again.stderr
    assert "Traceback" not in again.stderr


def test_process_json_output(demo_db):
    done = manage(demo_db, "products", "--dry-run", "--format", "json")
    assert done.returncode == 0, done.stderr
    (run,) = json.loads(done.stdout)["runs"]
    assert run["status"] == "previewed" and run["dry_run"] is True
    assert run["counts"]["created"] + run["counts"]["unchanged"] == 200
    assert done.stderr == ""


def test_process_progress_bar_on_a_terminal(demo_db):
    """With stderr on a terminal, tqdm draws a bar there; stdout still gets the summary."""
    leader, follower = pty.openpty()
    # A terminal 100 columns wide (a fresh pseudo-terminal has no size, and tqdm draws
    # nothing in zero columns).
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    try:
        done = subprocess.run(
            [sys.executable, "manage.py", "runsync", "employees", "--dry-run"],
            cwd=ROOT,
            env=demo_db,
            stdout=subprocess.PIPE,
            stderr=follower,
            text=True,
            timeout=120,
        )
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(leader)
    terminal = b"".join(chunks).decode(errors="replace")
    assert done.returncode == 0
    assert "employees: reading" in terminal and "rows" in terminal
    assert "employees: previewed (dry run)" in done.stdout
    assert "employees: reading" not in done.stdout
