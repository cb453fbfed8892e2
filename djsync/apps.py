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
