"""A real-time job's target down: its changes wait, none is parked, one mail per outage.

A batch can fail for its rows (a row error with ``on_row_error = "fail"``, a limit, an item
the target refuses): then its keys count attempts and are parked in the end
(djsync.realtime.queue). It can also fail whatever its rows are — the target is down, its
credentials are refused, it is past its deadline (:class:`TargetUnavailable`, or a
database that cannot be reached): parking every change that arrives while an API is down
for ten minutes would leave a person to retry them all. Then the batch goes back untouched
and the job waits: its next try after ``REALTIME_BACKOFF`` seconds, doubled at each failure
in a row (at most ``REALTIME_BACKOFF_MAX``); no change is claimed meanwhile, so an outage
costs one failed run per try, not one per change. The first failure of an outage mails the
job's ``notify_on_failure``; the first batch applied after it ends the outage.

The outage is kept in ``SyncJob.state["realtime_outage"]``: since, failures, the last
error and the next try.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings as django_settings
from django.core.mail import send_mail
from django.db import InterfaceError, OperationalError, router, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext as _

from djsync.conf import settings
from djsync.exceptions import TargetUnavailable
from djsync.models import SyncJob
from djsync.realtime import queue

logger = logging.getLogger("djsync")

__all__ = ["KEY", "failed", "recovered", "state", "unavailable", "waiting_until"]

#: Where a job's outage is kept in ``SyncJob.state``.
KEY = "realtime_outage"


def unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) says the target as a whole is unavailable: a
    :class:`TargetUnavailable`, or a database that cannot be reached or is locked
    (``OperationalError``, ``InterfaceError``; never a row's ``IntegrityError`` or
    ``DataError``)."""
    seen: set[int] = set()
    error: BaseException | None = exc
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, TargetUnavailable | OperationalError | InterfaceError):
            return True
        error = error.__cause__ or error.__context__
    return False


def state(job: SyncJob) -> dict[str, Any] | None:
    """The job's outage, as kept on it (None: none)."""
    outage = (job.state or {}).get(KEY)
    return outage if isinstance(outage, dict) else None


def waiting_until(job: SyncJob) -> datetime | None:
    """When the job's next try is due, while it waits out an outage (else None)."""
    outage = state(job)
    when = parse_datetime(str(outage.get("retry_at") or "")) if outage else None
    return when if when is not None and when > timezone.now() else None


def failed(job: SyncJob, batch: queue.Batch, error: str) -> dict[str, Any]:
    """The batch failed because the target is unavailable: give it back untouched, note
    the outage on the job (one failure more) and mail at its first failure."""
    now = timezone.now()
    with transaction.atomic(using=router.db_for_write(SyncJob)):
        locked = SyncJob.objects.select_for_update().get(pk=job.pk)
        outage = state(locked) or {"since": now.isoformat(), "failures": 0}
        outage["failures"] = int(outage.get("failures") or 0) + 1
        delay = queue.backoff(outage["failures"])
        outage["error"] = error[:2000]
        outage["retry_at"] = (now + timedelta(seconds=delay)).isoformat()
        locked.state = {**(locked.state or {}), KEY: outage}
        SyncJob.objects.filter(pk=job.pk).update(state=locked.state)
    job.state = locked.state
    queue.release(batch, delay=delay)
    logger.warning(
        "djsync: job %s: the target is unavailable (failure %s in a row, next try in %s s): %s",
        job.name,
        outage["failures"],
        int(delay),
        error,
    )
    if outage["failures"] == 1:
        _mail(job, outage)
    return outage


def recovered(job: SyncJob) -> None:
    """A batch was applied: the job's outage, if any, is over."""
    if state(job) is None:
        return
    with transaction.atomic(using=router.db_for_write(SyncJob)):
        locked = SyncJob.objects.select_for_update().get(pk=job.pk)
        kept = {k: v for k, v in (locked.state or {}).items() if k != KEY}
        SyncJob.objects.filter(pk=job.pk).update(state=kept)
    job.state = kept
    logger.info("djsync: job %s: the target is available again", job.name)


def _mail(job: SyncJob, outage: dict[str, Any]) -> None:
    """Tell the job's recipients that its changes wait for the target (logged, never raised)."""
    if not job.notify_on_failure:
        return
    subject = _("[djsync] %(name)s: the target is unavailable; changes wait") % {"name": job.name}
    body = "\n".join(
        [
            _(
                "Job %(name)s cannot reach its target. Its real-time changes are kept and "
                "tried again, less and less often (at most every %(most)s seconds); none is "
                "parked for this. No other mail is sent until the target is back."
            )
            % {"name": job.name, "most": settings.REALTIME_BACKOFF_MAX},
            "",
            _("Error: %(error)s") % {"error": outage.get("error") or _("unknown")},
        ]
    )
    try:
        send_mail(
            subject,
            body + "\n",
            settings.NOTIFY_FROM or django_settings.DEFAULT_FROM_EMAIL,
            list(job.notify_on_failure),
            fail_silently=False,
        )
    except Exception:
        logger.exception("djsync: could not send the mail about job %s's target", job.pk)
