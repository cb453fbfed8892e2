"""Beat schedules kept in the database: each scheduled SyncJob owns one PeriodicTask.

A job's ``schedule`` is a crontab expression (``"*/15 * * * *"``, in the project's time
zone) or an interval (``"every 10 minutes"``, ``"every 30 seconds"``, ``"every day"``).
Saving the job creates or updates its PeriodicTask (django-celery-beat), disabling the job
disables it, clearing the schedule or deleting the job removes it; ``celery beat -S django``
then runs the ``djsync.run_job`` task on time. A watched job (``job.watch``: seconds) owns
a second one, on an interval, that calls ``djsync.watch_job``. Wired in
``DjsyncConfig.ready()`` when ``django_celery_beat`` is installed.
"""

from __future__ import annotations

import json
from typing import Any

from django.db.models.signals import post_delete, post_migrate, post_save
from django.utils import timezone

from djsync.models import SyncJob
from djsync.runs.cron import parse_schedule

#: The task a job's PeriodicTask calls, with ``args=[job.pk]``.
TASK = "djsync.run_job"
#: The task a watched job's PeriodicTask calls (djsync.watch), with ``args=[job.pk]``.
WATCH_TASK = "djsync.watch_job"
#: The PeriodicTask that marks runs of dead workers failed (see djsync.runs.monitor).
REAPER_NAME = "djsync: mark runs of dead workers failed"


def periodic_task(job: SyncJob) -> Any:
    """The PeriodicTask of a job, or None."""
    from django_celery_beat.models import PeriodicTask

    return PeriodicTask.objects.filter(task=TASK, args=json.dumps([job.pk])).first()


def sync_job(job: SyncJob) -> Any:
    """Create, update or remove the job's PeriodicTask to match its schedule and state."""
    from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

    task = periodic_task(job)
    if not job.schedule:
        if task is not None:
            task.delete()
        return None
    kind, values = parse_schedule(job.schedule)
    task = task or PeriodicTask(task=TASK, args=json.dumps([job.pk]))
    task.name = f"djsync: {job.name}"
    task.kwargs = json.dumps({"trigger": "schedule"})
    task.description = (
        f"Runs sync job {job.name!r}. Managed by djsync: edit the job's schedule instead."
    )
    task.enabled = job.enabled
    if kind == "interval":
        task.interval, _ = IntervalSchedule.objects.get_or_create(**values)
        task.crontab = None
    else:
        task.crontab, _ = CrontabSchedule.objects.get_or_create(
            **values, timezone=timezone.get_default_timezone_name()
        )
        task.interval = None
    task.save()
    return task


def remove_job(job: SyncJob) -> None:
    for task in (periodic_task(job), watch_task(job)):
        if task is not None:
            task.delete()


def watch_task(job: SyncJob) -> Any:
    """The PeriodicTask of a job's watch (djsync.watch), or None."""
    from django_celery_beat.models import PeriodicTask

    return PeriodicTask.objects.filter(task=WATCH_TASK, args=json.dumps([job.pk])).first()


def sync_watch(job: SyncJob) -> Any:
    """Create, update or remove the PeriodicTask that polls a watched job every
    ``job.watch`` seconds; a poll left waiting in the queue past the next one expires."""
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    task = watch_task(job)
    if job.watch is None:
        if task is not None:
            task.delete()
        return None
    task = task or PeriodicTask(task=WATCH_TASK, args=json.dumps([job.pk]))
    task.name = f"djsync watch: {job.name}"
    task.description = f"Polls sync job {job.name!r}. Managed by djsync: edit the job's watch."
    task.enabled = job.enabled
    task.interval, _ = IntervalSchedule.objects.get_or_create(every=job.watch, period="seconds")
    task.crontab = None
    task.expire_seconds = job.watch
    task.save()
    return task


def sync_all() -> int:
    """Bring every job's PeriodicTask in line (e.g. after loading jobs with raw fixtures)."""
    for job in SyncJob.objects.all():
        sync_job(job)
        sync_watch(job)
    return SyncJob.objects.exclude(schedule="").count()


def ensure_reaper(every_minutes: int = 1) -> Any:
    """The PeriodicTask that runs ``djsync.reap_stale_runs`` (created once, then left alone)."""
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    interval, _ = IntervalSchedule.objects.get_or_create(every=every_minutes, period="minutes")
    task, _ = PeriodicTask.objects.get_or_create(
        name=REAPER_NAME,
        defaults={"task": "djsync.reap_stale_runs", "interval": interval},
    )
    return task


# -- signals -------------------------------------------------------------------------------
def _saved(sender: type, instance: SyncJob, **kwargs: Any) -> None:
    sync_job(instance)
    sync_watch(instance)


def _deleted(sender: type, instance: SyncJob, **kwargs: Any) -> None:
    remove_job(instance)


def _migrated(sender: Any, using: str = "default", **kwargs: Any) -> None:
    from django.db import router
    from django_celery_beat.models import PeriodicTask

    if getattr(sender, "name", None) == "djsync" and router.allow_migrate_model(
        using, PeriodicTask
    ):
        ensure_reaper()


def connect() -> None:
    """Keep PeriodicTasks in step with jobs; called from ``DjsyncConfig.ready()``."""
    post_save.connect(_saved, sender=SyncJob, dispatch_uid="djsync_schedule_saved")
    post_delete.connect(_deleted, sender=SyncJob, dispatch_uid="djsync_schedule_deleted")
    post_migrate.connect(_migrated, dispatch_uid="djsync_schedule_reaper")
