"""The compact record of a real-time job, on both databases: its batches gathered into few
runs, its parked changes mailed once (per key), and its throughput (djsync.realtime.history,
djsync.realtime.parking). The consumer runs in process; tests/test_realtime_worker.py has
the real-worker ones."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from djsync.models import ConsumedMinute, PendingChange, SyncJob, SyncRun
from djsync.realtime import capture, consumer, history, queue, receivers
from tests.testapp.models import Listing, Product

OPS = "ops@example.com"
POSTGRES = connection.vendor == "postgresql"


@pytest.fixture
def job(make_job: Any, django_capture_on_commit_callbacks: Any) -> SyncJob:
    with django_capture_on_commit_callbacks(execute=True):
        made = make_job(
            "test_realtime_products", name="listings", realtime=True, notify_on_failure=[OPS]
        )
    receivers.forget_routes()
    return made


def listing(sku: str, **values: Any) -> Listing:
    values = {"name": f"Listing {sku}", "price": Decimal("1.00"), "qty": 1, **values}
    return Listing.objects.create(sku=sku, **values)


def runs(job: SyncJob) -> list[tuple[str, int, int, int]]:
    """The job's real-time runs, oldest first: status and counts."""
    found = SyncRun.objects.filter(job=job, trigger="realtime").order_by("created_at", "pk")
    return [(r.status, r.created, r.updated, r.deleted) for r in found]


# -- one run for many batches -----------------------------------------------------------------
def test_batches_within_the_window_join_one_run_with_every_change(job):
    a = listing("A")
    consumer.drain(job.pk)
    listing("B")
    listing("C")
    consumer.drain(job.pk)
    a.price = Decimal("2.00")
    a.save()
    Listing.objects.get(sku="B").delete()
    consumer.drain(job.pk)
    assert runs(job) == [("succeeded", 3, 1, 1)]
    run = SyncRun.objects.get(job=job)
    actions = sorted(run.changes.values_list("action", "key"))
    assert actions == [
        ("create", ["A"]),
        ("create", ["B"]),
        ("create", ["C"]),
        ("delete", ["B"]),
        ("update", ["A"]),
    ]
    assert run.stats["testapp.Product"]["created"] == 3 and run.rows_read == 4
    assert run.finished_at >= run.started_at and "changed rows" in run.source_name
    assert not ConsumedMinute.objects.filter(changes=0).exists()


def test_a_window_of_zero_keeps_each_batch_a_run(job, settings):
    settings.DJSYNC = {"REALTIME_RUN_WINDOW": 0}
    listing("A")
    consumer.drain(job.pk)
    listing("B")
    consumer.drain(job.pk)
    assert runs(job) == [("succeeded", 1, 0, 0), ("succeeded", 1, 0, 0)]


def test_a_run_past_its_window_or_its_most_changes_is_closed(job, settings):
    settings.DJSYNC = {"REALTIME_RUN_WINDOW": 60, "REALTIME_RUN_CHANGES": 3}
    listing("A")
    consumer.drain(job.pk)
    old = timezone.now() - timedelta(seconds=61)
    SyncRun.objects.filter(job=job).update(started_at=old, created_at=old)
    listing("B")
    listing("C")
    consumer.drain(job.pk)  # the first run is over a minute old: a new one
    listing("D")
    consumer.drain(job.pk)  # joins: 3 changes
    listing("E")
    consumer.drain(job.pk)  # would make 4: a new one
    assert runs(job) == [("succeeded", 1, 0, 0), ("succeeded", 3, 0, 0), ("succeeded", 1, 0, 0)]


def test_a_failed_batch_is_a_run_of_its_own_and_closes_the_open_one(job, settings):
    settings.DJSYNC = {"REALTIME_MAX_ATTEMPTS": 2, "REALTIME_BACKOFF": 0}
    listing("A")
    consumer.drain(job.pk)
    listing("B")
    listing("")  # the key is empty: a row error fails the batch
    outcomes = consumer.drain(job.pk)
    # The batch fails; each key is retried alone: B goes through, the empty key is parked.
    assert [o.state for o in outcomes] == ["failed", "applied", "failed", "idle"]
    listing("C")
    consumer.drain(job.pk)
    # B after a failed run: a new run; C after the last failed attempt: the same.
    assert [status for status, *_ in runs(job)] == [
        "succeeded",
        "failed",
        "succeeded",
        "failed",
        "succeeded",
    ]
    assert [created for status, created, *_ in runs(job) if status == "succeeded"] == [1, 1, 1]
    assert set(Product.objects.values_list("sku", flat=True)) == {"A", "B", "C"}


# -- parking: per key, mailed once --------------------------------------------------------------
def test_parking_mails_once_with_the_keys_and_the_retries_mail_nothing(job, settings, mailoutbox):
    settings.DJSYNC = {"REALTIME_MAX_ATTEMPTS": 3, "REALTIME_BACKOFF": 0}
    bad = listing("", name="no sku")
    bad.name = "still no sku"
    bad.save()  # two changes of one key
    outcomes = consumer.drain(job.pk)
    assert [(o.state, o.parked) for o in outcomes] == [
        ("failed", 0),
        ("failed", 0),
        ("failed", 2),
        ("idle", 0),
    ]
    assert SyncRun.objects.filter(job=job, status="failed").count() == 3  # in the history
    assert len(mailoutbox) == 1  # the failed attempts mailed nothing; the parking did
    mail = mailoutbox[0]
    assert mail.to == [OPS] and mail.subject == "[djsync] listings: 2 changes parked"
    assert f"Keys (source primary keys): {bad.pk}" in mail.body
    assert "column 'sku': a value is required" in mail.body
    assert f"/admin/djsync/pendingchange/?job__id__exact={job.pk}&parked=yes" in mail.body
    assert "after 3 attempts" in mail.body

    # Parked again within the hour (a retry that fails as well): no second mail.
    queue.retry(PendingChange.objects.filter(job=job))
    consumer.drain(job.pk)
    assert queue.lag(job).parked == 2 and len(mailoutbox) == 1
    # An hour later it would be mailed again.
    SyncJob.objects.filter(pk=job.pk).update(realtime_mailed_at=timezone.now() - timedelta(hours=2))
    queue.retry(PendingChange.objects.filter(job=job))
    consumer.drain(job.pk)
    assert len(mailoutbox) == 2


def test_parking_mail_names_the_base_url_and_bounds_the_keys(job, settings, mailoutbox):
    settings.DJSYNC = {"REALTIME_MAX_ATTEMPTS": 1, "NOTIFY_BASE_URL": "https://sync.example.com/"}
    for n in range(25):
        listing(f"K{n}")
    # Every key fails: the job may create nothing.
    SyncJob.objects.filter(pk=job.pk).update(max_create=0)
    consumer.drain(job.pk)
    assert queue.lag(job).parked == 25 and len(mailoutbox) == 1
    body = mailoutbox[0].body
    assert "https://sync.example.com/admin/djsync/pendingchange/?job__id__exact=" in body
    assert "… and 5 more" in body and "Parked changes of the job now: 25." in body


def test_a_keys_changes_share_their_attempts_and_park_together(job, settings):
    settings.DJSYNC = {"REALTIME_MAX_ATTEMPTS": 2, "REALTIME_BACKOFF": 60}
    bad = listing("")
    assert consumer.drain(job.pk)[0].state == "failed"  # attempt 1; back off a minute
    bad.qty = 2
    bad.save()  # a new change of the same key: it waits with the key
    assert consumer.drain(job.pk)[0].state == "idle"
    PendingChange.objects.filter(job=job).update(available_at=timezone.now())  # time passes
    outcome = consumer.drain(job.pk)[0]
    assert (outcome.state, outcome.changes, outcome.parked) == ("failed", 2, 2)
    changes = PendingChange.objects.filter(job=job)
    assert {(c.attempts, c.parked_at is not None) for c in changes} == {(2, True)}

    # A change that comes later for a parked key is parked with it, not applied alone.
    bad.qty = 3
    bad.save()
    assert consumer.drain(job.pk)[0].state == "idle"
    assert queue.lag(job).parked == 3 and queue.lag(job).pending == 0
    assert "waits with the parked changes" in PendingChange.objects.last().error


def test_the_admin_retries_and_discards_whole_keys(job, settings, admin_client):
    settings.DJSYNC = {"REALTIME_MAX_ATTEMPTS": 1}
    bad = listing("")
    bad.qty = 2
    bad.save()
    listing("OK").delete()  # another key's changes: left alone
    SyncJob.objects.filter(pk=job.pk).update(realtime_paused=True)
    ids = list(PendingChange.objects.filter(key=str(bad.pk)).values_list("pk", flat=True))
    PendingChange.objects.filter(pk__in=ids).update(parked_at=timezone.now(), attempts=1)
    page = admin_client.post(
        "/admin/djsync/pendingchange/",
        {"action": "retry", "_selected_action": [ids[0]]},
        follow=True,
    ).content.decode()
    assert "2 changes will be retried (1 keys)." in page
    assert queue.lag(job).parked == 0 and queue.lag(job).pending == 4
    page = admin_client.post(
        "/admin/djsync/pendingchange/",
        {"action": "discard", "_selected_action": [ids[1]]},
        follow=True,
    ).content.decode()
    assert "2 changes of 1 keys discarded" in page
    assert queue.lag(job).pending == 2
    assert not PendingChange.objects.filter(key=str(bad.pk)).exists()


# -- throughput ---------------------------------------------------------------------------------
def test_throughput_counts_what_was_applied(job, admin_client):
    for n in range(6):
        listing(f"T{n}")
    consumer.drain(job.pk)
    row = Listing.objects.get(sku="T0")
    row.qty = 5
    row.save()
    row.qty = 6
    row.save()  # two changes, one row written
    consumer.drain(job.pk)
    last = history.throughput(job, 1)
    assert (last.changes, last.rows) == (8, 7)
    assert 60 <= last.seconds <= 121 and last.changes_per_minute == pytest.approx(
        8 * 60 / last.seconds
    )
    # Counts from before: 5 minutes ago within the last 15, 20 minutes ago outside.
    now = timezone.now().replace(second=0, microsecond=0)
    ConsumedMinute.objects.create(job=job, minute=now - timedelta(minutes=5), changes=100, rows=90)
    ConsumedMinute.objects.create(job=job, minute=now - timedelta(minutes=20), changes=1000)
    assert history.throughput(job, 1).changes == 8
    assert (history.throughput(job, 15).changes, history.throughput(job, 15).rows) == (108, 97)
    page = admin_client.get(f"/admin/djsync/syncjob/{job.pk}/change/").content.decode()
    assert "changes/min over the last minute" in page
    assert "changes/min over the last 15 minutes" in page


# -- the NOTIFY: only while someone follows -----------------------------------------------------
@pytest.mark.skipif(not POSTGRES, reason="triggers: PostgreSQL")
@pytest.mark.django_db(transaction=True)
def test_the_trigger_notifies_only_while_a_consumer_follows(make_job):
    """A NOTIFY serializes the commits of every writer: the trigger sends one only while
    ``runsync --follow`` listens for the job."""
    import psycopg

    job = make_job("test_realtime_products", name="listings", realtime=True)
    capture.install(job)
    params = {k: v for k, v in connection.get_connection_params().items() if k != "context"}
    with psycopg.connect(**params, autocommit=True) as listener:
        listener.execute(f"LISTEN {capture.CHANNEL}")
        listing("QUIET")  # committed (autocommit): captured, no NOTIFY
        assert list(listener.notifies(timeout=0.5, stop_after=1)) == []
        followed = SyncJob.objects.filter(pk=job.pk)
        followed.update(realtime_followed_until=timezone.now() + timedelta(minutes=1))
        listing("HEARD")  # as follow() holds its lease
        notes = list(listener.notifies(timeout=5, stop_after=1))
        assert [note.payload for note in notes] == [str(job.pk)]
        followed.update(realtime_followed_until=timezone.now() - timedelta(seconds=1))
        listing("LAPSED")  # a follower killed outright: its lease ran out
        assert list(listener.notifies(timeout=0.5, stop_after=1)) == []
    # All captured (and applied: a save() wakes the consumer, eager here).
    assert set(Product.objects.values_list("sku", flat=True)) == {"QUIET", "HEARD", "LAPSED"}
