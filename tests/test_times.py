"""Every time a run shows is in the site's time zone, in Django's formats: the run page, the
run and job lists, mails, runsync's output and a dead run's message (Asia/Kolkata, UTC+5:30,
so that a UTC time printed as if local shows)."""

from __future__ import annotations

from datetime import UTC, datetime
from io import StringIO
from zoneinfo import ZoneInfo

import pytest
from django.core import mail
from django.core.management import call_command
from django.urls import reverse
from django.utils.formats import date_format

import djsync
from djsync.display import duration
from djsync.exceptions import SourceError
from djsync.models import SyncRun

pytestmark = pytest.mark.django_db

KOLKATA = ZoneInfo("Asia/Kolkata")
#: 08:00 UTC is 13:30 in Kolkata.
AT = datetime(2026, 11, 30, 8, 0, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def kolkata(settings) -> None:
    settings.TIME_ZONE = "Asia/Kolkata"


def local(value: datetime, format: str = "DATETIME_FORMAT") -> str:
    return date_format(value.astimezone(KOLKATA), format)


@pytest.fixture
def finished(make_job) -> SyncRun:
    job = make_job("test_products", name="products")
    return SyncRun.objects.create(
        job=job,
        trigger="command",
        status="succeeded",
        created_at=AT,
        started_at=AT,
        finished_at=AT.replace(minute=4, second=5),
    )


def test_the_run_page_and_lists_show_local_times(finished, admin_client):
    page = admin_client.get(reverse("admin:djsync_syncrun_change", args=[finished.pk]))
    text = page.content.decode()
    assert "Nov. 30, 2026, 1:30 p.m." in text and "1:34 p.m." in text
    assert "8 a.m." not in text and "8:04 a.m." not in text
    assert "(4 min 05 s)" in text  # the duration, humanized
    runs = admin_client.get(reverse("admin:djsync_syncrun_changelist")).content.decode()
    assert "Nov. 30, 2026, 1:30 p.m." in runs and "4 min 05 s" in runs
    jobs = admin_client.get(reverse("admin:djsync_syncjob_changelist")).content.decode()
    assert local(AT, "SHORT_DATETIME_FORMAT") == "11/30/2026 1:30 p.m."
    assert "11/30/2026 1:30 p.m." in jobs and "2026-11-30 08:00" not in jobs


def test_mails_and_runsync_show_local_times(make_job, write_csv):
    job = make_job(
        "test_products", source={"path": "nowhere.csv"}, notify_on_failure=["ops@example.com"]
    )
    with pytest.raises(SourceError):
        djsync.run(job)
    run = job.runs.get()
    (message,) = mail.outbox
    assert f"started {local(run.started_at)}" in message.body
    assert f"finished {local(run.finished_at)}" in message.body

    path = write_csv(
        [{"sku": "A1", "name": "A", "price": "1", "qty": "1", "updated": "", "active": "1"}]
    )
    out = StringIO()
    call_command("runsync", "test-products", "--file", str(path), stdout=out)
    run = SyncRun.objects.latest("pk")
    assert f"finished {local(run.finished_at)}" in out.getvalue()
    assert f"in {duration(run.duration)}" in out.getvalue()


def test_a_dead_runs_message_names_its_last_heartbeat_in_local_time(make_job):
    from djsync.runs.monitor import mark_dead

    run = SyncRun.objects.create(
        job=make_job("test_products"),
        trigger="command",
        status="reading",
        started_at=AT,
        heartbeat_at=AT,
    )
    mark_dead(run)
    assert f"(last heartbeat: {local(AT)})" in run.error
    assert "1:30 p.m." in run.error


def test_durations_read_the_same_everywhere():
    assert [duration(s) for s in (None, 0.4212, 12.34, 245, 7380)] == [
        "—",
        "0.42 s",
        "12.3 s",
        "4 min 05 s",
        "2 h 03 min",
    ]
