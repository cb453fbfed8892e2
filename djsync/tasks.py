"""Celery tasks: thin wrappers that take ids and call the same services as ``runsync``."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from . import services
from .models import SyncRun


@shared_task(name="djsync.preview_run")
def preview_run(run_id: int) -> int:
    """Read and diff a queued run and store its plan (status: previewed)."""
    services.execute_queued(SyncRun.objects.get(pk=run_id))
    return run_id


@shared_task(name="djsync.apply_run")
def apply_run(run_id: int, user_id: int | None = None) -> int:
    """Apply the plan stored on a previewed run."""
    services.apply_previewed(SyncRun.objects.get(pk=run_id), user=_user(user_id))
    return run_id


@shared_task(name="djsync.run_job")
def run_job(job_id: int, trigger: str = SyncRun.Trigger.SCHEDULE, **options: Any) -> int:
    """Read, diff and apply a job in one go (scheduled and queued command runs)."""
    from .models import SyncJob

    run = services.run(SyncJob.objects.get(pk=job_id), trigger=trigger, **options)
    return run.pk


def _user(user_id: int | None) -> Any:
    if user_id is None:
        return None
    from django.contrib.auth import get_user_model

    return get_user_model()._default_manager.filter(pk=user_id).first()
