"""Who may preview, view and apply runs in the admin: djsync's permissions plus the target's.

A preview shows target data, so it needs view permission on the target model; an apply
writes it, so it needs the target's add, change and delete permissions for exactly the
actions the plan contains (an export writes a file, not its model: view permission
suffices). A preview belongs to the user who started it: only they, or a
user with ``djsync.apply_any_preview``, may apply, discard or cancel it. What a job reads
and writes (its importer, source and target) is edited only with
``djsync.change_syncjob_source``, apart from its other fields and from running it.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_permission_codename
from django.core.exceptions import ImproperlyConfigured
from django.db import models
from django.utils.translation import gettext as _

from djsync.exceptions import DjsyncError
from djsync.exports.step import is_export
from djsync.mapping.registry import get_importer_class
from djsync.mapping.switches import ACTION_PERMISSIONS
from djsync.models import SyncJob, SyncRun

#: The codename action each plan action needs on the target model (from the switch table).
ACTION_PERMISSION = ACTION_PERMISSIONS
#: Edit a job's importer, source and target (docs/security.md).
CHANGE_SOURCE = "djsync.change_syncjob_source"
#: Apply, discard or cancel a run another user started.
APPLY_ANY = "djsync.apply_any_preview"
#: Apply the good rows of a preview whose job fails on row errors; apply past the guard.
SKIP_ERRORS = "djsync.apply_skipping_errors"
FORCE_GUARD = "djsync.force_delete_guard"
#: The SyncJob fields that decide what a job reads and writes (``realtime`` installs a
#: trigger on its source's table).
SOURCE_FIELDS = ("importer", "source", "target", "realtime")


def target_models(job: SyncJob) -> list[type[models.Model]] | None:
    """The models a job's importers write to (several for a multi-model job), or None if
    one of its importers is not registered."""
    from djsync.runs.steps import importer_names

    try:
        classes = [get_importer_class(name) for name in importer_names(job)]
    except ImproperlyConfigured:
        return None
    if not classes:
        return None
    return [cls.model for cls in classes if cls.target_class is None]


def target_permissions(job: SyncJob) -> list[str]:
    """Permissions the targets of a job that are not models ask of whoever writes to them
    (a target's ``permission``); a model's are its add/change/delete permissions."""
    from djsync.runs.steps import importer_names

    try:
        classes = [get_importer_class(name) for name in importer_names(job)]
    except ImproperlyConfigured:
        return []
    return [
        c.target_class.permission for c in classes if c.target_class and c.target_class.permission
    ]


def target_model(job: SyncJob) -> type[models.Model] | None:
    """The model a single-model job's importer writes to (None: unregistered, or several)."""
    found = target_models(job)
    return found[0] if found and len(found) == 1 else None


def _can_view_all(user: Any, found: list[type[models.Model]]) -> bool:
    return all(user.has_perm(model_perm(model, "view")) for model in found)


def model_perm(model: type[models.Model], action: str) -> str:
    opts = model._meta
    return f"{opts.app_label}.{get_permission_codename(action, opts)}"


def is_staff(user: Any) -> bool:
    return bool(user and user.is_active and user.is_staff)


def can_change_source(user: Any) -> bool:
    """Edit what a job reads and writes: its importer, source and target."""
    return is_staff(user) and user.has_perm(CHANGE_SOURCE)


def owns_run(user: Any, run: SyncRun) -> bool:
    """Started ``run`` (is the owner of its preview)."""
    return run.user_id is not None and run.user_id == getattr(user, "pk", None)


def may_decide(user: Any, run: SyncRun) -> bool:
    """Apply, discard or cancel ``run``: its owner, or a user with apply_any_preview (runs
    started by a command or a schedule have no owner)."""
    return is_staff(user) and (owns_run(user, run) or user.has_perm(APPLY_ANY))


def can_view_run(user: Any, run: SyncRun) -> bool:
    """See a run's page, progress and row errors."""
    found = target_models(run.job)
    return (
        is_staff(user)
        and user.has_perm("djsync.view_syncrun")
        and (found is None or _can_view_all(user, found))
    )


def can_preview(user: Any, job: SyncJob) -> bool:
    """Start a preview (dry run) of a job, from an upload or from its own source."""
    found = target_models(job)
    return (
        is_staff(user)
        and found is not None
        and user.has_perm("djsync.add_syncrun")
        and user.has_perm("djsync.view_syncrun")
        and _can_view_all(user, found)
    )


def missing_for_counts(user: Any, model: type[models.Model], counts: dict[str, int]) -> list[str]:
    """The target permissions ``user`` lacks to write a plan with these counts."""
    needed = [model_perm(model, perm) for key, perm in ACTION_PERMISSION.items() if counts[key]]
    return [perm for perm in needed if not user.has_perm(perm)]


def missing_apply_permissions(user: Any, run: SyncRun) -> list[str]:
    """Why ``user`` may not apply ``run``'s plan: the permissions they lack (empty: allowed)."""
    from djsync.runs.steps import importer_names

    found = target_models(run.job)
    if found is None:
        return [_("importer %(importer)r is not registered") % {"importer": run.job.importer}]
    missing = [] if can_preview(user, run.job) else ["djsync.add_syncrun"]
    missing += [p for p in target_permissions(run.job) if not user.has_perm(p)]
    if is_export(run.job):  # writes a file, not the model it reads (view permission)
        return missing
    if len(found) == 1 and len(importer_names(run.job)) == 1:
        return missing + missing_for_counts(user, found[0], run.counts)
    zero = dict.fromkeys(ACTION_PERMISSION, 0)
    for model in found:  # a multi-model run: each model's own counts
        counts = {**zero, **(run.stats or {}).get(model._meta.label, {})}
        missing += missing_for_counts(user, model, counts)
    return missing


def missing_run_permissions(
    user: Any, job: SyncJob, options: dict[str, Any] | None = None
) -> list[str]:
    """What ``user`` lacks to run a job straight through: every action its switches (with
    the run's ``options``) allow."""
    from djsync.runs.steps import make_importers, resolve_switches

    if target_models(job) is None:
        return [_("importer %(importer)r is not registered") % {"importer": job.importer}]
    missing = [] if can_preview(user, job) else ["djsync.add_syncrun"]
    missing += [p for p in target_permissions(job) if not user.has_perm(p)]
    if is_export(job):
        return missing
    try:
        importers = make_importers(job)
        for importer in importers:
            if not importer.writes_model:
                continue
            switches = resolve_switches(importer, job, options or {})
            counts = {k: int(v) for k, v in switches.allowed_actions().items()}
            missing += missing_for_counts(user, importer.model, counts)
    except (DjsyncError, ImproperlyConfigured) as exc:
        return [str(exc)]
    return missing


#: Run options that raise a limit the job (or its importer) sets.
LIMIT_OPTIONS = ("max_create", "max_update", "max_delete", "max_total", "delete_guard")


def missing_option_permissions(user: Any, job: SyncJob, options: dict[str, Any]) -> list[str]:
    """What ``user`` lacks to start a run (or a preview, applied later with its options)
    with ``options`` that get past what stops an apply: skipping row errors needs
    SKIP_ERRORS, like the admin's apply; ``force``, or a limit raised above the job's (a
    higher ``max_*`` or ``delete_guard``), needs FORCE_GUARD."""
    from djsync.runs.steps import make_importers, resolve_switches

    needed = set()
    if options.get("on_row_error") == "skip":
        needed.add(SKIP_ERRORS)
    if options.get("force"):
        needed.add(FORCE_GUARD)
    raised = {name: options[name] for name in LIMIT_OPTIONS if options.get(name) is not None}
    if raised:
        try:
            importers = make_importers(job)
        except (DjsyncError, ImproperlyConfigured) as exc:
            return [str(exc)]
        for importer in importers:
            before = resolve_switches(importer, job, {})
            after = resolve_switches(importer, job, raised)
            for name in raised:
                old, new = getattr(before, name), getattr(after, name)
                if old is not None and (new is None or new > old):
                    needed.add(FORCE_GUARD)
    return sorted(perm for perm in needed if not user.has_perm(perm))
