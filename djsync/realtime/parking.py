"""The mail about a real-time job's parked changes.

A failed attempt of a batch is a failed run, in the history, but not mailed: a change that
keeps failing would mail at each retry. Its recipients (the job's ``notify_on_failure``)
hear once its changes are parked, when a person must act: the job, how many changes, their
keys (the first ``MAIL_KEYS``), the last error and the admin's list of them. At most one
mail per job every ``REALTIME_PARKED_MAIL_INTERVAL`` seconds; each counts every change
parked at that time. Like every djsync mail, one that cannot be sent is logged, never raised.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings as django_settings
from django.core.mail import send_mail
from django.db.models import Q
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.http import urlencode
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from djsync.conf import settings
from djsync.models import PendingChange, SyncJob
from djsync.realtime import queue

logger = logging.getLogger("djsync")

__all__ = ["MAIL_KEYS", "compose", "parked"]

#: Keys a mail names; it counts the others.
MAIL_KEYS = 20


def parked(job: SyncJob, parking: queue.Parked, error: str) -> bool:
    """Changes of ``job`` were just parked: mail its recipients, unless a mail about its
    parked changes went less than REALTIME_PARKED_MAIL_INTERVAL ago. True if one was sent."""
    if not parking.changes or not job.notify_on_failure:
        return False
    try:
        now = timezone.now()
        since = now - timedelta(seconds=float(settings.REALTIME_PARKED_MAIL_INTERVAL))
        due = Q(realtime_mailed_at__isnull=True) | Q(realtime_mailed_at__lte=since)
        if not SyncJob.objects.filter(due, pk=job.pk).update(realtime_mailed_at=now):
            return False  # mailed lately (by this process or another)
        subject, body = compose(job, parking, error)
        send_mail(
            subject,
            body,
            settings.NOTIFY_FROM or django_settings.DEFAULT_FROM_EMAIL,
            list(job.notify_on_failure),
            fail_silently=False,
        )
        return True
    except Exception:
        logger.exception("djsync: could not send the mail about job %s's parked changes", job.pk)
        return False


def compose(job: SyncJob, parking: queue.Parked, error: str) -> tuple[str, str]:
    """Subject and body of the mail about ``job``'s changes parked now (``parking``)."""
    total = PendingChange.objects.filter(job=job, parked_at__isnull=False).count()
    subject = ngettext(
        "[djsync] %(name)s: %(count)s change parked",
        "[djsync] %(name)s: %(count)s changes parked",
        parking.changes,
    ) % {"name": job.name, "count": parking.changes}
    keys = parking.keys[:MAIL_KEYS]
    lines = [
        ngettext(
            "Job %(name)s could not apply %(count)s change after %(attempts)s attempts: "
            "it is parked until someone retries or discards it.",
            "Job %(name)s could not apply %(count)s changes after %(attempts)s attempts: "
            "they are parked until someone retries or discards them.",
            parking.changes,
        )
        % {"name": job.name, "count": parking.changes, "attempts": settings.REALTIME_MAX_ATTEMPTS},
        "",
        _("Keys (source primary keys): %(keys)s") % {"keys": ", ".join(keys)},
    ]
    if len(parking.keys) > len(keys):
        lines.append(_("  … and %(total)s more") % {"total": len(parking.keys) - len(keys)})
    lines += [
        "",
        _("Last error: %(error)s") % {"error": error or _("unknown")},
        "",
        _("Parked changes of the job now: %(total)s.") % {"total": total},
    ]
    link = admin_link(job)
    if link:
        lines.append(_("Retry or discard them: %(url)s") % {"url": link})
    return subject, "\n".join(lines) + "\n"


def admin_link(job: SyncJob) -> str:
    """The admin's list of the job's parked changes ("" without the admin)."""
    try:
        path = reverse("admin:djsync_pendingchange_changelist")
    except NoReverseMatch:
        return ""
    base = (settings.NOTIFY_BASE_URL or "").rstrip("/")
    return f"{base}{path}?{urlencode({'job__id__exact': str(job.pk), 'parked': 'yes'})}"
