"""Real-time sync in process, on both databases: changes on the source model (Listing)
captured in their own transaction and applied to the target (Product) by the consumer.

PostgreSQL captures with a trigger (every write, bulk and raw SQL included); SQLite with
signals (``save()`` and ``delete()`` only). Celery is eager here: a commit wakes the
consumer, which applies at once. The real-worker tests are in tests/test_realtime_worker.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection, transaction

from djsync.models import PendingChange, SyncChange, SyncJob, SyncRun
from djsync.realtime import capture, consumer, queue, receivers
from tests.testapp.models import Listing, Product

POSTGRES = connection.vendor == "postgresql"


@pytest.fixture
def job(make_job: Any, django_capture_on_commit_callbacks: Any) -> SyncJob:
    with django_capture_on_commit_callbacks(execute=True):
        made = make_job("test_realtime_products", name="listings", realtime=True)
    receivers.forget_routes()
    return made


@pytest.fixture
def commit(django_capture_on_commit_callbacks: Any) -> Any:
    """Run the block as a committed transaction would: its on_commit callbacks (the
    consumer's wake-up) run at the end."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


def listing(sku: str, **values: Any) -> Listing:
    values = {"name": f"Listing {sku}", "price": Decimal("1.00"), "qty": 1, **values}
    return Listing.objects.create(sku=sku, **values)


def target() -> dict[str, tuple[str, Decimal, int, bool]]:
    return {p.sku: (p.name, p.price, p.qty, p.active) for p in Product.objects.all()}


def source() -> dict[str, tuple[str, Decimal, int, bool]]:
    return {r.sku: (r.name, r.price, r.qty, r.active) for r in Listing.objects.all()}


def test_saves_and_deletes_show_on_the_target(job, commit):
    with commit():
        listing("A")
        listing("B")
    assert target() == source() and len(target()) == 2
    with commit():
        b = Listing.objects.get(sku="B")
        b.price = Decimal("9.50")
        b.save()
        Listing.objects.get(sku="A").delete()
    assert target() == source() == {"B": ("Listing B", Decimal("9.50"), 1, True)}
    assert not PendingChange.objects.exists()
    # Two batches, one run: the second joined the first (REALTIME_RUN_WINDOW).
    run = SyncRun.objects.get(job=job, trigger="realtime")
    assert run.status == "succeeded" and (run.created, run.updated, run.deleted) == (2, 1, 1)
    assert sorted(run.changes.values_list("action", flat=True)) == [
        "create",
        "create",
        "delete",
        "update",
    ]


def test_a_change_outside_the_job_rows_leaves_other_target_rows_alone(job, commit):
    Product.objects.create(sku="OTHER", name="Not from the shop", price=1)
    with commit():
        listing("A")
    assert set(target()) == {"A", "OTHER"}  # the job deletes, but only under changed keys


@pytest.mark.skipif(not POSTGRES, reason="triggers: PostgreSQL")
def test_bulk_update_and_raw_sql_are_captured_on_postgresql(job, commit):
    with commit():
        rows = [listing(f"S{i}") for i in range(5)]
    for row in rows:
        row.qty = 7
    Listing.objects.bulk_update(rows, ["qty"])  # no signal: only the trigger sees it
    with connection.cursor() as cursor:
        cursor.execute("UPDATE testapp_listing SET name = 'raw' WHERE sku = 'S0'")
    Listing.objects.filter(sku="S4").delete()
    assert PendingChange.objects.count() == 5 + 1 + 1  # the creates were consumed
    consumer.drain(job.pk)
    assert target() == source()
    assert target()["S0"] == ("raw", Decimal("1.00"), 7, True)


@pytest.mark.skipif(POSTGRES, reason="the signal fallback: SQLite")
def test_the_sqlite_fallback_misses_bulk_updates(job, commit):
    with commit():
        rows = [listing("S0"), listing("S1")]
    for row in rows:
        row.qty = 7
    Listing.objects.bulk_update(rows, ["qty"])  # documented: no signal, not captured
    assert not PendingChange.objects.exists()
    assert target()["S0"][2] == 1


def test_changes_to_one_key_are_coalesced(job):
    row = listing("C")
    for qty in range(2, 12):
        row.qty = qty
        row.save()
    assert PendingChange.objects.filter(key=str(row.pk)).count() == 11
    outcomes = consumer.drain(job.pk)
    applied = [o for o in outcomes if o.state == "applied"]
    assert len(applied) == 1 and applied[0].changes == 11
    assert target() == {"C": ("Listing C", Decimal("1.00"), 11, True)}
    run = applied[0].run
    assert run is not None and run.created == 1 and run.updated == 0
    assert SyncChange.objects.filter(run=run).count() == 1


def test_a_row_leaving_the_queryset_is_deleted_from_the_target(make_job, commit):
    with commit():
        job = make_job("test_realtime_products", name="active", realtime=True)
    job.source = {"kind": "queryset", "queryset": "active"}
    job.save()
    receivers.forget_routes()
    with commit():
        listing("A")
        listing("B")
    with commit():
        Listing.objects.filter(sku="A").update(active=False) if POSTGRES else None
        if not POSTGRES:
            a = Listing.objects.get(sku="A")
            a.active = False
            a.save()
    consumer.drain(job.pk)
    assert set(target()) == {"B"}


@pytest.mark.skipif(not POSTGRES, reason="the row before an update: the trigger keeps it")
def test_a_changed_key_moves_the_target_row(job, commit):
    with commit():
        row = listing("OLD")
    row.sku = "NEW"
    row.save()
    consumer.drain(job.pk)
    assert set(target()) == {"NEW"}


def test_a_change_that_keeps_failing_is_parked_then_retried(job, settings):
    settings.DJSYNC = {"REALTIME_MAX_ATTEMPTS": 2, "REALTIME_BACKOFF": 0}
    good = listing("G")
    bad = listing("", name="no sku")  # the key is empty: a row error fails the run
    outcomes = consumer.drain(job.pk)
    # The batch fails on the bad row; then each key is retried alone: G goes through, the
    # bad one fails its second attempt and is parked.
    assert [(o.state, o.changes, o.parked) for o in outcomes] == [
        ("failed", 2, 0),
        ("applied", 1, 0),
        ("failed", 1, 1),
        ("idle", 0, 0),
    ]
    assert "column 'sku': a value is required" in outcomes[0].error
    parked = PendingChange.objects.get()
    assert parked.key == str(bad.pk) and parked.parked_at is not None and parked.attempts == 2
    assert consumer.drain(job.pk)[0].state == "idle"  # parked: not consumed
    assert queue.lag(job).parked == 1 and queue.lag(job).pending == 0
    assert target() == {"G": ("Listing G", Decimal("1.00"), 1, True)} and good.pk

    bad.sku = "FIXED"
    bad.save()
    queue.retry(PendingChange.objects.filter(parked_at__isnull=False))
    consumer.drain(job.pk)
    assert set(target()) == {"G", "FIXED"} and not PendingChange.objects.exists()
    failed = SyncRun.objects.filter(job=job, status="failed")
    assert failed.count() == 2  # each failed attempt is a failed run, mailed as one


def test_a_consumer_dying_before_it_deletes_its_changes_applies_nothing_twice(job, settings):
    settings.DJSYNC = {"REALTIME_CLAIM_TTL": 0}
    listing("D1")
    listing("D2")
    batch = queue.claim(job)
    assert batch is not None and len(batch) == 2
    # Its apply committed, then the consumer died: the changes are still there.
    run = consumer.orchestrator.run(
        job,
        source=consumer.ChangedRows(capture.source_of(job), batch),
        trigger="realtime",
        delete_guard=1.0,
    )
    assert run.created == 2 and PendingChange.objects.count() == 2
    again = consumer.drain(job.pk)  # the lease ran out: claimed again
    assert again[0].state == "applied" and again[0].run is None  # nothing to do: no run
    assert not PendingChange.objects.exists()
    creates = SyncChange.objects.filter(run__job=job, action="create")
    assert sorted(creates.values_list("key", flat=True)) == [["D1"], ["D2"]]


def test_a_paused_job_keeps_its_changes(job):
    SyncJob.objects.filter(pk=job.pk).update(realtime_paused=True)
    listing("P")
    assert consumer.drain(job.pk)[0].state == "paused"
    assert queue.lag(job).pending == 1 and not Product.objects.exists()
    SyncJob.objects.filter(pk=job.pk).update(realtime_paused=False)
    consumer.drain(job.pk)
    assert set(target()) == {"P"}


def test_a_job_without_a_queryset_source_cannot_be_real_time(make_job):
    job = make_job("test_products", name="csv", source={"path": "x.csv"})
    with pytest.raises(Exception, match="queryset source"):
        capture.source_of(job)


def test_runsync_follow_is_refused_for_a_job_that_is_not_real_time(make_job):
    make_job("test_realtime_products", name="nope")
    with pytest.raises(Exception, match="not a real-time job"):
        call_command("runsync", "nope", "--follow")


@pytest.mark.skipif(not POSTGRES, reason="triggers: PostgreSQL")
def test_turning_real_time_off_removes_the_trigger(job, commit):
    assert job.pk in capture.installed_triggers("default")
    with commit():
        job.realtime = False
        job.save()
    assert job.pk not in capture.installed_triggers("default")
    listing("X")
    assert not PendingChange.objects.exists()


def test_a_transaction_rolled_back_leaves_no_change(job):
    with pytest.raises(RuntimeError), transaction.atomic():
        listing("R")
        raise RuntimeError("rolled back")
    assert not PendingChange.objects.exists()


@pytest.mark.skipif(not POSTGRES, reason="a second process shares the database: PostgreSQL")
@pytest.mark.django_db(transaction=True)
def test_runsync_follow_consumes_in_the_foreground_and_stops_on_ctrl_c(tmp_path: Path):
    job = SyncJob.objects.create(name="followed", importer="test_realtime_products", realtime=True)
    root = Path(__file__).resolve().parent.parent
    env = {
        **os.environ,
        "PYTHONPATH": str(root),
        "DJANGO_SETTINGS_MODULE": "tests.celery_worker_settings",
        "DJSYNC_WORKER_DB": connection.settings_dict["NAME"],
        "DJSYNC_WORKER_BROKER": "memory://",
        "DJSYNC_WORKER_QUEUE": "unused",
        "DJSYNC_WORKER_DJSYNC": json.dumps({"REALTIME_POLL": 0.2}),
    }
    log_path = tmp_path / "follow.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "runsync", job.name, "--follow"],
            cwd=root,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            _wait(lambda: "Following job" in log_path.read_text(), log_path)
            # It holds a lease on the job: while it lasts, the trigger NOTIFYs.
            _wait(lambda: _followed(job) is not None, log_path)
            with connection.cursor() as cursor:  # raw SQL: nothing in this process wakes up
                cursor.execute(
                    "INSERT INTO testapp_listing (sku, name, price, qty, active) "
                    "VALUES ('F1', 'followed', 2.50, 3, true)"
                )
            _wait(lambda: Product.objects.filter(sku="F1").exists(), log_path)
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=30) == 0, log_path.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
    output = log_path.read_text()
    assert "1 changes: run #" in output and "1 created" in output and "Stopped." in output
    assert target() == {"F1": ("followed", Decimal("2.50"), 3, True)}
    assert _followed(job) is None  # stopped: the lease is given back


def _followed(job: SyncJob) -> Any:
    return SyncJob.objects.values_list("realtime_followed_until", flat=True).get(pk=job.pk)


def _wait(check: Any, log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    pytest.fail(f"gave up waiting; the command said:\n{log.read_text()}")


# -- the admin ----------------------------------------------------------------------------
def test_the_admin_shows_the_lag_and_retries_or_discards_parked_changes(job, admin_client):
    row = listing("A")
    PendingChange.objects.filter(key=str(row.pk)).update(
        parked_at="2026-01-01T00:00Z", attempts=5, error="the warehouse said no"
    )
    listing("B")
    page = admin_client.get(f"/admin/djsync/syncjob/{job.pk}/change/").content.decode()
    assert "1 pending, oldest" in page and "1 parked" in page
    changes = admin_client.get("/admin/djsync/pendingchange/?parked=yes").content.decode()
    assert "the warehouse said no" in changes and "parked" in changes
    parked = PendingChange.objects.get(parked_at__isnull=False)
    admin_client.post(
        "/admin/djsync/pendingchange/",
        {"action": "retry", "_selected_action": [parked.pk]},
    )
    parked.refresh_from_db()
    assert parked.parked_at is None and parked.attempts == 0 and queue.lag(job).pending == 2
    admin_client.post(
        "/admin/djsync/pendingchange/",
        {"action": "discard", "_selected_action": [parked.pk]},
    )
    assert queue.lag(job).pending == 1


def test_the_admin_pauses_and_resumes_a_job(job, admin_client):
    admin_client.post(
        "/admin/djsync/syncjob/", {"action": "pause_realtime", "_selected_action": [job.pk]}
    )
    job.refresh_from_db()
    assert job.realtime_paused
    listing("P")
    assert consumer.drain(job.pk)[0].state == "paused"
    admin_client.post(
        "/admin/djsync/syncjob/", {"action": "resume_realtime", "_selected_action": [job.pk]}
    )
    job.refresh_from_db()
    assert not job.realtime_paused


def test_the_admin_refuses_real_time_for_a_job_without_a_queryset_source(make_job, admin_client):
    job = make_job("test_products", name="csv-job", source={"path": "x.csv"})
    page = admin_client.get(f"/admin/djsync/syncjob/{job.pk}/change/")
    form = page.context["adminform"].form
    data = {k: v for k, v in form.initial.items() if v is not None}
    data.update(realtime="on", importer="test_products", source='{"path": "x.csv"}')
    data.update(target="{}", notify_on_failure="", column_mapping="{}")
    response = admin_client.post(f"/admin/djsync/syncjob/{job.pk}/change/", data)
    assert "real-time sync needs a queryset source" in response.content.decode()


def test_the_poll_names_each_job_with_work_once(job):
    for sku in ("Q1", "Q2", "Q3"):
        listing(sku)
    assert queue.jobs_with_work() == [job.pk]


@pytest.mark.skipif(not POSTGRES, reason="bulk writes are captured on PostgreSQL")
def test_a_large_batch_takes_the_staged_path(job):
    Product.objects.create(sku="OTHER", name="Not from the shop", price=1)
    Listing.objects.bulk_create(
        Listing(sku=f"B{i:03d}", name="bulk", price=Decimal("2.00"), qty=i) for i in range(300)
    )
    outcomes = consumer.drain(job.pk)
    run = outcomes[0].run
    assert run is not None and run.created == 300
    assert run.stats["testapp.Product"]["path"].startswith("staged"), run.stats
    Listing.objects.filter(qty__lt=250).update(name="renamed")
    Listing.objects.filter(qty__gte=290).delete()
    run = consumer.drain(job.pk)[0].run
    assert run is not None and (run.updated, run.deleted) == (250, 10)
    assert {k: v for k, v in target().items() if k != "OTHER"} == source()
    assert "OTHER" in target() and not PendingChange.objects.exists()


@pytest.mark.skipif(not POSTGRES, reason="triggers: PostgreSQL")
def test_a_trigger_left_behind_never_fails_a_write(job):
    SyncJob.objects.filter(pk=job.pk).update(realtime=False)  # no signal: the trigger stays
    assert job.pk in capture.installed_triggers("default")
    listing("KEPT")
    assert not PendingChange.objects.exists()
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM djsync_syncjob WHERE id = %s", [job.pk])
    listing("STILL")
    assert Listing.objects.count() == 2 and not PendingChange.objects.exists()
