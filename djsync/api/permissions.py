"""Who may do what through the HTTP API: the admin's rules (djsync.permissions), answered
as 401 (not signed in), 403 (signed in, not allowed, with what is missing) in JSON."""

from __future__ import annotations

from typing import Any, NoReturn

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from rest_framework.exceptions import PermissionDenied
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from djsync import permissions
from djsync.models import SyncJob, SyncRun
from djsync.run_page import may_cancel, owner_name


class IsStaff(BasePermission):
    """An active staff user, as the admin asks of everyone who signs in."""

    message = gettext_lazy("djsync's API is for active staff users, like the admin.")

    def has_permission(self, request: Request, view: Any) -> bool:
        return permissions.is_staff(request.user)


def refuse(message: str, missing: list[str] | None = None) -> NoReturn:
    """A 403 whose body says why, and which permissions are missing."""
    detail: dict[str, Any] = {"detail": message}
    if missing:
        detail["missing_permissions"] = missing
    raise PermissionDenied(detail)


def require_view_jobs(user: Any) -> None:
    if not (user.has_perm("djsync.view_syncjob") or user.has_perm("djsync.change_syncjob")):
        refuse(
            _("Listing jobs needs %(permission)s.") % {"permission": "djsync.view_syncjob"},
            ["djsync.view_syncjob"],
        )


def require_view_run(user: Any, run: SyncRun) -> None:
    if not permissions.can_view_run(user, run):
        refuse(
            _(
                "You may not see run #%(run)s: it needs djsync.view_syncrun and the view "
                "permission of every model its job writes."
            )
            % {"run": run.pk}
        )


def require_view_runs(user: Any, job: SyncJob) -> None:
    """See a job's runs: what seeing any one of them needs."""
    if not permissions.can_view_run(user, SyncRun(job=job)):
        refuse(
            _(
                "You may not see the runs of %(job)s: it needs djsync.view_syncrun and the "
                "view permission of every model the job writes."
            )
            % {"job": job.name}
        )


def require_start(user: Any, job: SyncJob, *, dry_run: bool, options: dict[str, Any]) -> None:
    """A preview needs what the admin's upload needs; a run straight through, every
    permission its actions need; options past what stops an apply, their own."""
    if dry_run:
        if not permissions.can_preview(user, job):
            refuse(
                _(
                    "You may not preview %(job)s: it needs djsync.add_syncrun, "
                    "djsync.view_syncrun and the view permission of every model it writes."
                )
                % {"job": job.name}
            )
        missing = []
    else:
        missing = permissions.missing_run_permissions(user, job, options)
    missing += permissions.missing_option_permissions(user, job, options)
    if missing:
        refuse(_("You may not run %(job)s with these options.") % {"job": job.name}, missing)


def require_decide(user: Any, run: SyncRun) -> None:
    """Apply, discard or cancel: the run's owner, or a user with apply_any_preview."""
    if not permissions.may_decide(user, run):
        refuse(
            _(
                "Run #%(run)s belongs to %(owner)s; you may not apply, discard or cancel it "
                "(that needs %(permission)s)."
            )
            % {"run": run.pk, "owner": owner_name(run), "permission": permissions.APPLY_ANY},
            [permissions.APPLY_ANY],
        )


def require_apply(user: Any, run: SyncRun) -> None:
    require_decide(user, run)
    missing = permissions.missing_apply_permissions(user, run)
    if missing:
        refuse(_("You may not apply run #%(run)s.") % {"run": run.pk}, missing)


def require_discard(user: Any, run: SyncRun) -> None:
    require_decide(user, run)
    if not permissions.can_preview(user, run.job):
        refuse(
            _("You may not discard run #%(run)s: it needs the permissions of a preview.")
            % {"run": run.pk}
        )


def require_cancel(user: Any, run: SyncRun) -> None:
    require_decide(user, run)
    if not may_cancel(user, run):
        refuse(
            _("You may not cancel run #%(run)s: it needs the permissions of a preview.")
            % {"run": run.pk}
        )
