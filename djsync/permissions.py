"""Who may preview, view and apply runs in the admin: djsync's permissions plus the target's.

A preview shows target data, so it needs view permission on the target model; an apply
writes it, so it needs the target's add, change and delete permissions for exactly the
actions the plan contains.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_permission_codename
from django.core.exceptions import ImproperlyConfigured
from django.db import models

from .exceptions import DjsyncError
from .models import SyncJob, SyncRun
from .registry import get_importer_class

#: The codename action each plan action needs on the target model.
ACTION_PERMISSION = {"created": "add", "updated": "change", "deleted": "delete"}


def target_model(job: SyncJob) -> type[models.Model] | None:
    """The model a job's importer writes to, or None if its importer is not registered."""
    try:
        return get_importer_class(job.importer).model
    except ImproperlyConfigured:
        return None


def model_perm(model: type[models.Model], action: str) -> str:
    opts = model._meta
    return f"{opts.app_label}.{get_permission_codename(action, opts)}"


def is_staff(user: Any) -> bool:
    return bool(user and user.is_active and user.is_staff)


def can_view_run(user: Any, run: SyncRun) -> bool:
    """See a run's page, progress and row errors."""
    model = target_model(run.job)
    return (
        is_staff(user)
        and user.has_perm("djsync.view_syncrun")
        and (model is None or user.has_perm(model_perm(model, "view")))
    )


def can_preview(user: Any, job: SyncJob) -> bool:
    """Start a preview (dry run) of a job, from an upload or from its own source."""
    model = target_model(job)
    return (
        is_staff(user)
        and model is not None
        and user.has_perm("djsync.add_syncrun")
        and user.has_perm("djsync.view_syncrun")
        and user.has_perm(model_perm(model, "view"))
    )


def missing_for_counts(user: Any, model: type[models.Model], counts: dict[str, int]) -> list[str]:
    """The target permissions ``user`` lacks to write a plan with these counts."""
    needed = [model_perm(model, perm) for key, perm in ACTION_PERMISSION.items() if counts[key]]
    return [perm for perm in needed if not user.has_perm(perm)]


def missing_apply_permissions(user: Any, run: SyncRun) -> list[str]:
    """Why ``user`` may not apply ``run``'s plan: the permissions they lack (empty: allowed)."""
    model = target_model(run.job)
    if model is None:
        return [f"importer {run.job.importer!r} is not registered"]
    missing = [] if can_preview(user, run.job) else ["djsync.add_syncrun"]
    return missing + missing_for_counts(user, model, run.counts)


def missing_run_permissions(user: Any, job: SyncJob) -> list[str]:
    """What ``user`` lacks to run a job straight through: every action its switches allow."""
    from .services import make_importer, resolve_switches

    model = target_model(job)
    if model is None:
        return [f"importer {job.importer!r} is not registered"]
    try:
        switches = resolve_switches(make_importer(job), job, {})
    except DjsyncError as exc:
        return [str(exc)]
    allowed = {"created": switches.create, "updated": switches.update, "deleted": switches.delete}
    missing = [] if can_preview(user, job) else ["djsync.add_syncrun"]
    return missing + missing_for_counts(user, model, {k: int(v) for k, v in allowed.items()})
