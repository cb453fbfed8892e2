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
        from djsync.checks import check_jobs

        checks.register(check_jobs)
        from djsync.runs.notifications import on_run_finished
        from djsync.signals import run_finished

        run_finished.connect(on_run_finished, dispatch_uid="djsync.runs.notifications")
        from django.apps import apps

        if apps.is_installed("django_celery_beat"):
            from djsync.runs import schedules

            schedules.connect()


def check_importers(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Every registered importer must bind its keys and fields to real model fields."""
    from django.core.exceptions import FieldDoesNotExist, ImproperlyConfigured

    from djsync.mapping.registry import _importers

    messages: list[checks.CheckMessage] = []
    for name, cls in sorted(_importers.items()):
        try:
            cls()
        except (FieldDoesNotExist, ImproperlyConfigured, AttributeError) as exc:
            messages.append(checks.Error(f"importer {name!r}: {exc}", obj=cls, id="djsync.E001"))
    return messages
