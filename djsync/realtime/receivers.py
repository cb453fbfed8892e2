"""The signal receivers of real-time sync, connected by djsync.apps.

Every model's ``post_save``/``post_delete``: a real-time job's source row captured (the
signal fallback, on a database without triggers) and the job's consumer woken once the
transaction commits (on every database: on PostgreSQL the trigger captured it already).
A job's ``realtime`` switch installs or removes its trigger; ``migrate`` sets them all.
"""

from __future__ import annotations

import logging
import time
from functools import partial
from typing import Any

from django.apps import apps
from django.db import models, router, transaction
from django.db.models.signals import post_delete

from djsync.models import PendingChange, SyncJob
from djsync.realtime import capture

logger = logging.getLogger("djsync")


#: Seconds a process trusts its list of real-time jobs before reading it again.
ROUTES_TTL = 10.0

_routes: dict[str, list[int]] | None = None
_routes_at = 0.0
#: Models whose ``post_delete`` this module listens to: only the captured ones, since any
#: delete receiver turns off Django's fast deletes of that model.
_deletes_heard: set[type[models.Model]] = set()


def forget_routes() -> None:
    """Read the real-time jobs again at the next save (a job changed in this process)."""
    global _routes
    _routes = None


def routes() -> dict[str, list[int]]:
    """Model label → ids of the real-time jobs that capture it, cached for ROUTES_TTL s;
    the deletes of exactly those models are listened to."""
    global _routes, _routes_at
    if _routes is not None and time.monotonic() - _routes_at < ROUTES_TTL:
        return _routes
    found = capture.jobs_by_model()
    captured = {apps.get_model(label) for label in found}
    for model in _deletes_heard - captured:
        post_delete.disconnect(sender=model, dispatch_uid=f"djsync.realtime.delete.{model}")
    for model in captured - _deletes_heard:
        post_delete.connect(on_delete, sender=model, dispatch_uid=f"djsync.realtime.delete.{model}")
    _deletes_heard.clear()
    _deletes_heard.update(captured)
    _routes, _routes_at = found, time.monotonic()
    return found


def on_connect(sender: Any, connection: Any, **kwargs: Any) -> None:
    """``connection_created``: the first connection of a process reads the real-time jobs,
    so that a delete before any save is heard."""
    if _routes is None and connection.alias == router.db_for_read(SyncJob):
        routes()


def jobs_of(sender: type[models.Model]) -> list[int]:
    """Ids of the real-time jobs whose source is ``sender``'s table."""
    if sender._meta.app_label == "djsync":
        return []
    return routes().get(sender._meta.concrete_model._meta.label, [])  # type: ignore[union-attr]


def on_save(sender: type[models.Model], instance: models.Model, **kwargs: Any) -> None:
    """``post_save`` of every model: capture the change of a real-time job's source (not on
    PostgreSQL, where the trigger did) and wake the job's consumer once it commits."""
    jobs = jobs_of(sender)
    if jobs:
        Operation = PendingChange.Operation
        operation = Operation.CREATE if kwargs.get("created") else Operation.UPDATE
        _changed(jobs, instance, operation, kwargs.get("using"), old=None)


def on_delete(sender: type[models.Model], instance: models.Model, **kwargs: Any) -> None:
    """``post_delete`` of a captured model: as :func:`on_save`, with the row as it was
    (where its target row is)."""
    jobs = jobs_of(sender)
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
        forget_routes()

    transaction.on_commit(follow, using=using)


def on_job_deleted(sender: type[SyncJob], instance: SyncJob, **kwargs: Any) -> None:
    """A job deleted: its trigger goes with it (its pending changes went by cascade)."""
    using = kwargs.get("using") or router.db_for_write(SyncJob)
    job_id = instance.pk

    def follow() -> None:
        capture.uninstall(job_id, using)
        forget_routes()

    transaction.on_commit(follow, using=using)
