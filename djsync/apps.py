"""App config: discovers each installed app's ``sync.py``, checks the importers and the
stored jobs (djsync.checks)."""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.core import checks
from django.utils.module_loading import autodiscover_modules
from django.utils.translation import gettext_lazy as _


class DjsyncConfig(AppConfig):
    name = "djsync"
    verbose_name = _("Sync")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        autodiscover_modules("sync")
        checks.register(check_importers)
        from djsync.checks import check_jobs, check_settings, check_sqlite_locking

        checks.register(check_settings)
        checks.register(check_jobs)
        checks.register(check_sqlite_locking)
        from djsync.runs.notifications import on_run_finished
        from djsync.signals import run_finished

        run_finished.connect(on_run_finished, dispatch_uid="djsync.runs.notifications")
        connect_realtime(self)
        from django.apps import apps

        if apps.is_installed("django_celery_beat"):
            from djsync.runs import schedules

            schedules.connect()


def check_importers(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Every problem of every registered importer, at once (djsync.E001): keys and fields
    that are not fields of its model or target, lookups that are not fields of the related
    model, and whatever else keeps it from being built."""
    from djsync.checks import importer_problems
    from djsync.mapping.registry import _importers

    return [
        checks.Error(f"importer {name!r}: {problem}", obj=cls, id="djsync.E001")
        for name, cls in sorted(_importers.items())
        for problem in importer_problems(cls)
    ]


def connect_realtime(app: AppConfig) -> None:
    """Real-time capture (djsync.realtime.capture): every model's saves and deletes (a real-
    time job's source is captured by a signal on SQLite, woken up after on PostgreSQL), a
    job's switch installing or removing its trigger, and the triggers set after migrate."""
    from django.db.backends.signals import connection_created
    from django.db.models.signals import post_delete, post_migrate, post_save

    from djsync.models import SyncJob
    from djsync.realtime import receivers

    # Every model's saves (a dictionary look-up); deletes only of the captured models
    # (receivers.routes), since a delete receiver turns off Django's fast deletes.
    post_save.connect(receivers.on_save, dispatch_uid="djsync.realtime.save")
    connection_created.connect(receivers.on_connect, dispatch_uid="djsync.realtime.connect")
    post_save.connect(receivers.on_job_saved, sender=SyncJob, dispatch_uid="djsync.realtime.job")
    post_delete.connect(
        receivers.on_job_deleted, sender=SyncJob, dispatch_uid="djsync.realtime.job_deleted"
    )
    post_migrate.connect(
        receivers.after_migrate, sender=app, dispatch_uid="djsync.realtime.migrate"
    )
