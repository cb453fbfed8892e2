"""A job's schedule becomes its django-celery-beat PeriodicTask, kept in step with the job."""

from __future__ import annotations

import json

import pytest
from django.core.exceptions import ValidationError
from django_celery_beat.models import PeriodicTask

from djsync.models import SyncJob
from djsync.runs.schedules import REAPER_NAME, parse_schedule, periodic_task, sync_all

pytestmark = pytest.mark.django_db


def test_saving_a_scheduled_job_creates_its_periodic_task(make_job):
    job = make_job("test_products", schedule="*/15 * * * *")
    task = periodic_task(job)
    assert task.name == "djsync: test-products"
    assert task.task == "djsync.run_job" and json.loads(task.args) == [job.pk]
    assert json.loads(task.kwargs) == {"trigger": "schedule"}
    assert task.enabled and task.interval is None
    assert (task.crontab.minute, task.crontab.hour, task.crontab.day_of_week) == ("*/15", "*", "*")
    assert str(task.crontab.timezone) == "Europe/Paris"


def test_editing_disabling_and_clearing_the_schedule(make_job):
    job = make_job("test_products", schedule="*/15 * * * *")
    first = periodic_task(job)
    job.schedule = "every 10 minutes"
    job.save()
    task = periodic_task(job)
    assert task.pk == first.pk and task.crontab is None
    assert (task.interval.every, task.interval.period) == (10, "minutes")

    job.enabled = False
    job.save()
    assert not periodic_task(job).enabled
    job.enabled = True
    job.name = "renamed"
    job.save()
    assert periodic_task(job).enabled and periodic_task(job).name == "djsync: renamed"

    job.schedule = ""
    job.save()
    assert periodic_task(job) is None


def test_deleting_the_job_removes_its_periodic_task(make_job):
    job = make_job("test_products", schedule="every day")
    other = make_job("test_products", name="other", schedule="every 30 seconds")
    SyncJob.objects.filter(pk=job.pk).delete()  # (job.delete is the "delete" switch field)
    assert list(
        PeriodicTask.objects.filter(task="djsync.run_job").values_list("name", flat=True)
    ) == ["djsync: other"]
    assert (periodic_task(other).interval.every, periodic_task(other).interval.period) == (
        30,
        "seconds",
    )


def test_jobs_without_schedule_have_no_periodic_task_and_sync_all_catches_up(make_job):
    job = make_job("test_products")
    assert periodic_task(job) is None
    SyncJob.objects.filter(pk=job.pk).update(schedule="0 3 * * 1")  # no signal
    assert periodic_task(job) is None
    assert sync_all() == 1
    assert periodic_task(job).crontab.day_of_week == "1"


def test_the_dead_run_reaper_is_scheduled_after_migrate():
    task = PeriodicTask.objects.get(name=REAPER_NAME)
    assert task.task == "djsync.reap_stale_runs" and task.interval.period == "minutes"


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("every minute", ("interval", {"every": 1, "period": "minutes"})),
        ("Every 2 Hours", ("interval", {"every": 2, "period": "hours"})),
        (
            "0  6 * * 1-5",
            (
                "crontab",
                {
                    "minute": "0",
                    "hour": "6",
                    "day_of_month": "*",
                    "month_of_year": "*",
                    "day_of_week": "1-5",
                },
            ),
        ),
    ],
)
def test_schedule_forms(text, parsed):
    assert parse_schedule(text) == parsed


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("every fortnight", "neither a crontab"),
        ("*/15 * * *", "neither a crontab"),
        ("61 * * * *", "bad crontab"),
        ("every 0 minutes", "at least 1"),
    ],
)
def test_a_bad_schedule_is_a_validation_error_on_the_job(make_job, text, message):
    job = make_job("test_products")
    job.schedule = text
    with pytest.raises(ValidationError) as info:
        job.full_clean()
    assert message in " ".join(info.value.message_dict["schedule"])
