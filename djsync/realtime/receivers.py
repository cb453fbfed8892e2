"""The signal receivers of real-time sync, connected by djsync.apps.

Every model's ``post_save``/``post_delete``: a real-time job's source row captured (the
signal fallback, on a database without triggers) and the job's consumer woken once the
transaction commits (on every database: on PostgreSQL the trigger captured it already).
A job's ``realtime`` switch installs or removes its trigger; ``migrate`` sets them all.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

from django.db import models, router, transaction

from djsync.models import PendingChange, SyncJob
from djsync.realtime import capture

logger = logging.getLogger("djsync")


def on_save(sender: type[models.Model], instance: models.Model, **kwargs: Any) -> None:
    """``post_save``: capture the change (not on PostgreSQL, where the trigger did) and wake
    the job's consumer once the transaction commits."""
    jobs = capture.jobs_of(sender)
    if jobs:
        operation = PendingChange.Operation.CREATE if kwargs.get("created") else "update"
        _changed(jobs, instance, operation, kwargs.get("using"), old=None)


def on_delete(sender: type[models.Model], instance: models.Model, **kwargs: Any) -> None:
    """``post_delete``: as :func:`on_save`, with the row as it was (where its target row is)."""
    jobs = capture.jobs_of(sender)
    if jobs:
        old = {f.column: f.value_from_object(instance) for f in instance._meta.concrete_fields}
        _changed(jobs, instance, PendingChange.Operation.DELETE, kwargs.get("using"), old=old)


def _changed(
    jobs: list[int], instance: models.Model, operation: str, using: str | None, old: Any
) -> None:
    using = using or router.db_for_write(type(instance))
    if not capture.uses_triggers(using):
        capture.capture(jobs, instance, operation, using, old)
    for job_id in jobs:
        transaction.on_commit(partial(_wake, job_id), using=using)


def _wake(job_id: int) -> None:
    try:
        from djsync.tasks import wake
    except Exception:  # noqa: BLE001 - no Celery: runsync --follow consumes
        return
    wake(job_id)


def after_migrate(sender: Any, using: str = "default", **kwargs: Any) -> None:
    """``post_migrate`` of djsync: the triggers of the real-time jobs on that database."""
    if capture.uses_triggers(using) and router.db_for_write(PendingChange) == using:
        for error in capture.sync_capture(using)["errors"]:
            logger.warning("djsync: %s", error)


def on_job_saved(sender: type[SyncJob], instance: SyncJob, **kwargs: Any) -> None:
    """A job saved (the admin, a fixture): its capture follows its ``realtime`` switch, once
    the save commits. An error is logged; the job's runs will report it."""
    using = kwargs.get("using") or router.db_for_write(SyncJob)

    def follow() -> None:
        try:
            if instance.realtime:
                capture.install(instance)
            else:
                capture.uninstall(instance.pk, using)
        except Exception:
            logger.exception("djsync: could not set up real-time capture of job %s", instance)
        capture.forget_routes()

    transaction.on_commit(follow, using=using)


def on_job_deleted(sender: type[SyncJob], instance: SyncJob, **kwargs: Any) -> None:
    """A job deleted: its trigger goes with it (its pending changes went by cascade)."""
    using = kwargs.get("using") or router.db_for_write(SyncJob)
    job_id = instance.pk

    def follow() -> None:
        capture.uninstall(job_id, using)
        capture.forget_routes()

    transaction.on_commit(follow, using=using)
