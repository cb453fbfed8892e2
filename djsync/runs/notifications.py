"""Mails about runs: failures, and every change of a job that is expected to change nothing.

A job lists its recipients in ``notify_on_failure``. A run that fails mails them the error;
with ``warn_on_change`` set, a run that changes anything mails them the diff — the counts
and the first ``SAMPLE_CHANGES`` changes per model. Mail goes through Django's e-mail
backend, and a mail that cannot be sent is logged: it never fails or rolls back a sync.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar

from django.conf import settings as django_settings
from django.core.mail import send_mail
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from djsync.conf import settings
from djsync.models import SyncRun
from djsync.runs import report

logger = logging.getLogger("djsync")


#: While true in this context, ending a run sends no mail: the caller decides once the run
#: is over and calls :func:`run_finished` itself (a watch's poll, djsync.watch.poll, which
#: mails the first failure of a streak only).
held: ContextVar[bool] = ContextVar("djsync_mail_held", default=False)


def on_run_finished(sender: object, run: SyncRun, **kwargs: object) -> None:
    """Receiver of :data:`djsync.signals.run_finished` (connected by djsync.apps)."""
    if not held.get():
        run_finished(run)


def run_finished(sync_run: SyncRun) -> bool:
    """Send the mail this run calls for, if any; True if one was sent. Never raises."""
    try:
        message = compose(sync_run)
        if message is None:
            return False
        subject, body = message
        send_mail(
            subject,
            body,
            settings.NOTIFY_FROM or django_settings.DEFAULT_FROM_EMAIL,
            list(sync_run.job.notify_on_failure),
            fail_silently=False,
        )
        return True
    except Exception:
        logger.exception("djsync: could not send the notification of run %s", sync_run.pk)
        return False


def compose(sync_run: SyncRun) -> tuple[str, str] | None:
    """Subject and body of the mail for this run, or None when it calls for none."""
    job = sync_run.job
    if not job.notify_on_failure:
        return None
    if sync_run.status == SyncRun.Status.FAILED:
        return failure_mail(sync_run)
    changed = sync_run.created + sync_run.updated + sync_run.deleted
    if (
        job.warn_on_change
        and sync_run.status == SyncRun.Status.SUCCEEDED
        and not sync_run.dry_run
        and changed
    ):
        return change_mail(sync_run)
    return None


def failure_mail(sync_run: SyncRun) -> tuple[str, str]:
    subject = _("[djsync] %(name)s: run #%(pk)s failed") % {
        "name": sync_run.job.name,
        "pk": sync_run.pk,
    }
    lines = [
        report.summary_line(sync_run),
        report.times_line(sync_run),
        "",
        _("Error: %(error)s") % {"error": sync_run.error or _("unknown")},
        "",
        _("Trigger: %(trigger)s; source: %(value)s.")
        % {
            "trigger": sync_run.get_trigger_display(),
            "value": sync_run.source_name or _("the job source"),
        },
    ]
    errors = list(report.error_lines(sync_run, limit=settings.SAMPLE_CHANGES))
    if errors:
        lines += [
            "",
            _("Row errors (%(errors)s):") % {"errors": sync_run.errors},
            *(f"  {e}" for e in errors),
        ]
    return subject, "\n".join(lines) + "\n"


def change_mail(sync_run: SyncRun) -> tuple[str, str]:
    """The diff of a run of a job expected to change nothing: counts, then samples per model."""
    changed = sync_run.created + sync_run.updated + sync_run.deleted
    subject = ngettext(
        "[djsync] %(job)s: run #%(run)s changed %(changed)s row",
        "[djsync] %(job)s: run #%(run)s changed %(changed)s rows",
        changed,
    ) % {"job": sync_run.job.name, "run": sync_run.pk, "changed": changed}
    lines = [
        report.summary_line(sync_run),
        report.times_line(sync_run),
        "",
        _("Job %(name)r is set to warn on change; this run changed the target.")
        % {"name": sync_run.job.name},
    ]
    limit = int(settings.SAMPLE_CHANGES)
    models = sync_run.stats or {}
    for model in sorted(models) or sorted(set(sync_run.changes.values_list("model", flat=True))):
        counts = {k: models.get(model, {}).get(k, 0) for k in report_counts()}
        total = counts["created"] + counts["updated"] + counts["deleted"]
        lines += ["", f"{model}: {report.counts_text(counts)}"]
        changes = sync_run.changes.filter(model=model).order_by("pk")[:limit]
        lines += [f"  {report.change_text(change)}" for change in changes]
        if total > limit:
            lines.append(_("  … and %(total)s more") % {"total": total - limit})
    return subject, "\n".join(lines) + "\n"


def report_counts() -> tuple[str, ...]:
    return ("created", "updated", "deleted", "unchanged", "errors")
