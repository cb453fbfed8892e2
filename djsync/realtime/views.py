"""The webhook endpoint: ``POST <djsync urls>/webhooks/<job>/`` takes a signed delivery of
changed records and applies it as one small run of the job, in the request.

A plain Django view (no REST framework: it works without the ``api`` extra). Checks, in
order, each refusing before anything is applied: a declared webhook (404, as an unknown
job), the body's size (413, Content-Length first), the signature and its timestamp (401),
the body (400, 413), the job's state (503), a replay (409). Then the run: 200 when it
succeeded, 422 when the delivery's rows were refused (row errors, a limit), 500 when the
target failed, 503 while another run holds the job; a failed run wrote nothing, and the
sender may send the delivery again. docs/realtime.md, "Webhooks".
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from djsync.conf import settings
from djsync.exceptions import (
    ConflictError,
    LimitExceeded,
    MappingError,
    RowErrorsFound,
    RunLocked,
    SourceError,
)
from djsync.exports.step import is_export
from djsync.models import SyncJob, SyncRun
from djsync.realtime import webhooks
from djsync.realtime.deliveries import DeliveredRows, parse, start_run
from djsync.realtime.webhooks import Refused
from djsync.runs import locks, orchestrator
from djsync.runs.steps import is_multi
from djsync.sources.bounds import size

__all__ = ["webhook"]

#: Row errors a response lists (the run keeps them all, up to MAX_ROW_ERRORS).
ROW_ERRORS_SHOWN = 50
#: Failures that are the delivery's rows, not the server: the sender should not retry as is.
REFUSED_ROWS = (RowErrorsFound, LimitExceeded, MappingError, SourceError, ConflictError)
#: Seconds a sender is asked to wait when the job is busy, paused or disabled.
RETRY_AFTER = 30


@csrf_exempt  # a sender has no CSRF token: the signature authenticates it
@require_POST
@transaction.non_atomic_requests  # the run records itself, failed or not
def webhook(request: HttpRequest, name: str) -> JsonResponse:
    """Receive one delivery for the job ``name`` (see the module's docstring)."""
    try:
        return _receive(request, name[:100])
    except Refused as refused:
        response = JsonResponse({"error": refused.message}, status=refused.status)
        if refused.retry_after is not None:
            response["Retry-After"] = str(refused.retry_after)
        return response


def _receive(request: HttpRequest, name: str) -> JsonResponse:
    hook = webhooks.declared(name)
    job = SyncJob.objects.filter(name=name).first() if hook is not None else None
    if hook is None or job is None:  # the same answer: which jobs exist is not told
        raise Refused(404, _("no webhook for job %(name)r") % {"name": name})
    body = _read(request)
    timestamp = webhooks.verify(hook, request.headers.get(webhooks.SIGNATURE_HEADER), body)
    delivery = parse(body)
    _check_job(job)
    known_as = webhooks.delivery_id(delivery.id, timestamp, body)
    claimed = webhooks.claim(job, known_as, timestamp)
    try:
        if locks.job_lock(job.pk).holder():  # a full run of the job: send again after it
            raise _busy(job)
        run = start_run(job)
    except BaseException:
        webhooks.forget(claimed)
        raise
    webhooks.attach(claimed, run)
    shown = delivery.id or known_as[:19]  # a digest's first 12 hex digits tell it apart
    named = _("webhook delivery %(id)s") % {"id": shown}
    try:
        orchestrator.execute(run, source=DeliveredRows(delivery, name=named[:300]))
    except RunLocked:  # lost the race for the lock: no run to keep, nothing written
        webhooks.forget(claimed)
        SyncRun.objects.filter(pk=run.pk).delete()
        raise _busy(job) from None
    except Exception as exc:  # noqa: BLE001 - recorded on the run, answered below
        webhooks.forget(claimed)
        return _answer(run, 422 if isinstance(exc, REFUSED_ROWS) else 500, delivery.id)
    webhooks.settle(claimed, run)
    return _answer(run, 200, delivery.id)


def _read(request: HttpRequest) -> bytes:
    """The body, at most WEBHOOK_MAX_BODY bytes: a larger Content-Length is refused before
    a byte is read, and the read stops one byte past the limit (a body without a
    Content-Length, as an ASGI server passes a chunked one)."""
    most = int(settings.WEBHOOK_MAX_BODY)
    try:
        length: int | None = int(request.META.get("CONTENT_LENGTH") or "")
    except ValueError:
        length = None
    if length is not None and length > most:
        raise _too_large(length)
    body = request.read(most + 1)
    if len(body) > most:
        raise _too_large(None)
    if not body and length is None:  # a WSGI server passes no chunked body to Django
        raise Refused(411, _("a delivery needs a Content-Length header"))
    return body


def _too_large(length: int | None) -> Refused:
    most = size(int(settings.WEBHOOK_MAX_BODY))
    if length is None:
        message = _(
            'the delivery is larger than DJSYNC["WEBHOOK_MAX_BODY"] (%(most)s); it was not read '
            "further: send fewer records at a time"
        ) % {"most": most}
    else:
        message = _(
            'the delivery has %(size)s, more than DJSYNC["WEBHOOK_MAX_BODY"] (%(most)s); it was '
            "not read: send fewer records at a time"
        ) % {"size": size(length), "most": most}
    return Refused(413, message)


def _check_job(job: SyncJob) -> None:
    """A job that cannot take the delivery now (503: the sender keeps it and tries again
    once someone fixed the job)."""
    problem = None
    if not job.enabled:
        problem = _("job %(name)r is disabled")
    elif job.realtime_paused:
        problem = _("job %(name)r is paused")
    elif is_multi(job):
        problem = _("job %(name)r has several importers; a webhook feeds a job of one")
    elif is_export(job):
        problem = _("job %(name)r is an export; a webhook feeds a job that imports")
    if problem is not None:
        message = _("%(problem)s: the delivery was not applied") % {
            "problem": problem % {"name": job.name}
        }
        raise Refused(503, message, retry_after=RETRY_AFTER)


def _busy(job: SyncJob) -> Refused:
    return Refused(
        503,
        _("another run of job %(name)r is under way: the delivery was not applied")
        % {"name": job.name},
        retry_after=RETRY_AFTER,
    )


def _answer(run: SyncRun, status: int, delivery: str | None) -> JsonResponse:
    """The run as the sender needs it: id, status, counts, error and the first row errors
    (``record`` is the index in ``records``)."""
    errors = [
        {
            "record": e.row,
            "column": e.column or None,
            "message": e.message,
            "value": e.value or None,
        }
        for e in run.row_errors.all()[:ROW_ERRORS_SHOWN]
    ]
    data: dict[str, Any] = {
        "run": run.pk,
        "status": run.status,
        "delivery": delivery,
        "created": run.created,
        "updated": run.updated,
        "deleted": run.deleted,
        "unchanged": run.unchanged,
        "errors": run.errors,
        "row_errors": errors,
        "warnings": list(run.warnings or []),
    }
    if run.error:
        data["error"] = run.error
    return JsonResponse(data, status=status)
