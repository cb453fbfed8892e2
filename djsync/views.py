"""Admin pages of a run, one short view per step: upload → progress → preview → apply or discard.

Views check permissions, call a service and render a template. What a page shows is
computed in djsync.run_page (plain data: pages of changes, cells old → new), so computing
a preview and rendering it stay apart.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from django.contrib import messages
from django.contrib.admin import AdminSite
from django.core.exceptions import PermissionDenied
from django.db import DatabaseError, transaction
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.http.multipartparser import MultiPartParserError
from django.middleware.csrf import CsrfViewMiddleware
from django.shortcuts import redirect
from django.template.defaultfilters import filesizeformat
from django.template.response import TemplateResponse
from django.utils.html import format_html
from django.utils.translation import gettext as _

from djsync import admin_columns as columns
from djsync import permissions, queue
from djsync.conf import settings
from djsync.display import progress_text, run_estimate
from djsync.exceptions import DjsyncError
from djsync.exports.files import neutralize
from djsync.forms import UploadForm
from djsync.models import SyncJob, SyncRun
from djsync.run_page import (
    STEPS,
    guard_breaches,
    may_cancel,
    owner_name,
    progress_url,
    run_context,
    run_url,
    status_data,
)
from djsync.runs.monitor import is_stale, mark_dead
from djsync.runs.report import key_text
from djsync.uploads import (
    LimitedUploadHandler,
    delete_upload,
    display_name,
    expire_uploads,
    open_upload,
    release_upload,
)

logger = logging.getLogger("djsync")

#: Bytes of an upload's body besides the file (boundaries, part headers, the CSRF token,
#: the other fields): a Content-Length past MAX_UPLOAD_SIZE plus this is refused unread.
FORM_OVERHEAD = 64 * 1024


# -- steps -------------------------------------------------------------------------------
def upload(
    request: HttpRequest,
    admin_site: AdminSite,
    *,
    make_form: Callable[..., UploadForm],
    get_job: Callable[[Any], SyncJob],
    title: str,
    back_url: str,
) -> HttpResponse:
    """Show the upload form; a valid upload queues a preview and goes to its progress page.

    The caller checks who may upload and is wrapped in ``csrf_exempt``: the body is read
    only here, through :func:`receive_upload` (size first, then CSRF), so that a refused
    or oversized upload is never read whole. ``make_form(data, files)`` builds the form,
    ``get_job(form)`` the job a valid form chose.
    """

    def page(form: UploadForm, error: str = "", status: int = 200) -> HttpResponse:
        context = {
            **page_context(request, admin_site),
            "title": title,
            "form": form,
            "upload_error": error,
            "back_url": back_url,
            "max_upload_size": settings.MAX_UPLOAD_SIZE,
            "opts": SyncJob._meta,
        }
        return TemplateResponse(request, "admin/djsync/upload.html", context, status=status)

    if request.method != "POST":
        return page(make_form())
    refused = receive_upload(request)
    if isinstance(refused, HttpResponse):
        return refused
    if refused is not None:
        return page(make_form(), refused.message, refused.status)
    if columns.TOKEN_FIELD in request.POST:
        return map_columns(request, admin_site, title=title, back_url=back_url)
    form = make_form(request.POST, request.FILES)
    if not form.is_valid():
        return page(form)
    job = get_job(form)
    if not permissions.can_preview(request.user, job):
        raise PermissionDenied
    data = form.cleaned_data
    check = columns.check_upload(job, data["file"], data["format"])
    if check is not None:
        name = display_name(data["file"].name)
        token = columns.stash(job, request.user, data["file"], data["format"], name)
        step = columns.ColumnMappingForm(check=check)
        return columns_page(request, admin_site, job, step, token, title=title, back_url=back_url)
    run = start(
        request,
        lambda: queue.queue_preview(
            job,
            upload=data["file"],
            upload_name=display_name(data["file"].name),
            format=data["format"],
            user=request.user,
            trigger=SyncRun.Trigger.ADMIN,
        ),
    )
    return redirect(progress_url(run, "preview", admin_site))


def map_columns(
    request: HttpRequest, admin_site: AdminSite, *, title: str, back_url: str
) -> HttpResponse:
    """The mapping step's answer: save the mapping on the job (who may change it, unless
    they ask for this upload only), then preview the kept upload through it — the run
    reads the job's saved mapping, as ``runsync`` and Celery runs of the job will. A
    mapping for this upload only is kept on the run instead, the job left as it was."""
    kept = columns.pending(request.POST.get(columns.TOKEN_FIELD, ""), request.user)
    job = SyncJob.objects.filter(pk=kept.job).first()
    if job is None or not permissions.can_preview(request.user, job):
        raise PermissionDenied
    saving = columns.may_save(request.user, job) and columns.ONCE_FIELD not in request.POST
    mapping: dict[str, Any] = {}
    try:
        with open_upload(kept.upload) as handle:
            check = columns.check_upload(job, handle, kept.format)
    except FileNotFoundError:
        raise PermissionDenied(_("This mapping step has expired; upload the file again.")) from None
    if check is not None:
        step = columns.ColumnMappingForm(request.POST, check=check)
        if check.problem or not step.is_valid():
            token = request.POST[columns.TOKEN_FIELD]
            return columns_page(
                request, admin_site, job, step, token, title=title, back_url=back_url
            )
        if saving:
            columns.save_mapping(job, check, step.columns())
        else:
            mapping = columns.for_this_upload(check, step.columns())
    with open_upload(kept.upload) as handle:
        run = start(
            request,
            lambda: queue.queue_preview(
                job,
                upload=handle,
                upload_name=kept.name,
                format=kept.format,
                user=request.user,
                trigger=SyncRun.Trigger.ADMIN,
                column_mapping=mapping,
            ),
        )
    delete_upload(kept.upload)
    return redirect(progress_url(run, "preview", admin_site))


def columns_page(
    request: HttpRequest,
    admin_site: AdminSite,
    job: SyncJob,
    step: columns.ColumnMappingForm,
    token: str,
    *,
    title: str,
    back_url: str,
) -> HttpResponse:
    """The mapping step: a header per column of the importer, proposed and correctable."""
    context = {
        **page_context(request, admin_site),
        **columns.step_context(step.check, step, token),
        "title": title,
        "job": job,
        "may_save": columns.may_save(request.user, job),
        "back_url": back_url,
        "opts": SyncJob._meta,
    }
    return TemplateResponse(request, "admin/djsync/columns.html", context)


@dataclass
class Refusal:
    """Why an upload was refused before its form was looked at."""

    status: int
    message: str


def receive_upload(request: HttpRequest) -> Refusal | HttpResponse | None:
    """Read an upload's body within DJSYNC["MAX_UPLOAD_SIZE"], then check its CSRF token.

    The Content-Length is checked first (too big: refused without reading the body); then
    :class:`~djsync.uploads.LimitedUploadHandler` counts the file's bytes as they stream
    in and stops past the limit. Returns a refusal, the CSRF failure page, or None.
    """
    handler = bound_upload(request)
    if isinstance(handler, Refusal):
        return handler
    middleware = CsrfViewMiddleware(lambda request: HttpResponse())
    middleware.process_request(request)
    failure = middleware.process_view(request, lambda request: HttpResponse(), (), {})
    if failure is not None:
        return failure
    try:
        request.FILES  # noqa: B018 - parse the body now (the CSRF check may not have)
    except MultiPartParserError as exc:
        return Refusal(400, _("The upload could not be read: %s") % exc)
    if handler.exceeded:
        return Refusal(413, too_large(None))
    return None


def bound_upload(request: HttpRequest) -> Refusal | LimitedUploadHandler:
    """Before an upload's body is read: refuse it when its Content-Length is missing or past
    DJSYNC["MAX_UPLOAD_SIZE"] (plus the form's overhead), else install the handler that
    stops it past the limit while it streams in (check its ``exceeded`` once parsed)."""
    limit = settings.MAX_UPLOAD_SIZE
    length = content_length(request)
    if length is None:
        return Refusal(411, _("An upload needs a Content-Length header; nothing was stored."))
    if length > limit + FORM_OVERHEAD:
        return Refusal(413, too_large(length))
    handler = LimitedUploadHandler(request, limit)
    request.upload_handlers.insert(0, handler)  # type: ignore[union-attr]  # a list until read
    return handler


def too_large(size: int | None) -> str:
    limit = filesizeformat(settings.MAX_UPLOAD_SIZE)
    if size is None:
        return _(
            'The file is larger than DJSYNC["MAX_UPLOAD_SIZE"] (%(limit)s); the upload was '
            "stopped and nothing was stored."
        ) % {"limit": limit}
    return _(
        'The upload is %(size)s, larger than DJSYNC["MAX_UPLOAD_SIZE"] (%(limit)s); it was '
        "refused before it was read and nothing was stored."
    ) % {"size": filesizeformat(size), "limit": limit}


def content_length(request: HttpRequest) -> int | None:
    try:
        length = int(request.META.get("CONTENT_LENGTH") or "")
    except ValueError:
        return None
    return length if length >= 0 else None


def progress(request: HttpRequest, admin_site: AdminSite, run: SyncRun) -> HttpResponse:
    """A page that polls :func:`status` until the step is done, then shows the run."""
    require_view(request, run)
    step = _step(request)
    context = {
        **page_context(request, admin_site),
        "title": f"{STEPS[step]} — {_('run')} #{run.pk}",
        "run": run,
        "step": step,
        "status_url": f"{run_url(run, 'status', admin_site)}?step={step}",
        "run_url": run_url(run, "change", admin_site),
        "cancel_url": run_url(run, "cancel", admin_site),
        "can_cancel": may_cancel(request.user, run),
        "opts": SyncRun._meta,
        "estimate": run_estimate(run),
        "progress_text": progress_text(run_estimate(run)),
    }
    return TemplateResponse(request, "admin/djsync/progress.html", context)


def status(request: HttpRequest, admin_site: AdminSite, run: SyncRun) -> JsonResponse:
    """The run's state as JSON, for the progress page. A running run without a heartbeat
    for STALE_AFTER seconds whose lock is free (its thread or worker died) is marked
    failed here, so that the page never waits for ever."""
    from djsync.tasks import working_on

    require_view(request, run)
    if is_stale(run) and not working_on(run.pk):
        try:
            mark_dead(run)
        except DatabaseError:  # SQLite busy with a long apply: the next poll looks again
            logger.info("djsync: could not mark run %s dead", run.pk, exc_info=True)
    return JsonResponse(status_data(run, _step(request), admin_site))


def run_page(request: HttpRequest, admin_site: AdminSite, run: SyncRun) -> HttpResponse:
    """The run's page: the preview with Apply and Discard, or the record of a finished run."""
    require_view(request, run)
    context = {
        **page_context(request, admin_site),
        **run_context(request, run, admin_site),
    }
    return TemplateResponse(request, "admin/djsync/run.html", context)


def apply(request: HttpRequest, admin_site: AdminSite, run: SyncRun) -> HttpResponse:
    """Queue the apply of exactly the previewed plan (the worker checks it is not stale)."""
    require_post(request)
    require_owner(request, run)
    if permissions.missing_apply_permissions(request.user, run):
        raise PermissionDenied
    if run.status != SyncRun.Status.PREVIEWED:
        messages.error(
            request, _("Only a previewed run can be applied; this one is %s.") % run.status
        )
        return redirect(run_url(run, "change", admin_site))
    options = apply_overrides(request, run)
    if options is None:
        return redirect(run_url(run, "change", admin_site))
    start(request, lambda: queue.queue_apply(run, request.user, options=options, background=True))
    return redirect(progress_url(run, "apply", admin_site))


def apply_overrides(request: HttpRequest, run: SyncRun) -> dict[str, Any] | None:
    """The run's options for this apply (:func:`apply_options`); None: refused, with a
    message."""
    options = apply_options(
        request.user,
        run,
        skip_errors=bool(request.POST.get("skip_errors")),
        force=bool(request.POST.get("force")),
        confirm=request.POST.get("confirm", ""),
    )
    if isinstance(options, str):
        messages.error(request, options)
        return None
    return options


def apply_options(
    user: Any, run: SyncRun, *, skip_errors: bool, force: bool, confirm: str | int | None
) -> dict[str, Any] | str:
    """The run's options for an apply: as previewed, or past what stops it — its row
    errors (``skip_errors``: the good rows only) or the delete guard (``force``, confirmed
    by giving how many rows go), each with its own permission (PermissionDenied without
    it). A string: why the apply is refused."""
    options = dict(run.options or {})
    if skip_errors:
        if not user.has_perm(permissions.SKIP_ERRORS):
            raise PermissionDenied(_("Skipping row errors needs %s.") % permissions.SKIP_ERRORS)
        options["on_row_error"] = "skip"
    if force:
        if not user.has_perm(permissions.FORCE_GUARD):
            why = _("Passing the delete guard needs %s.") % permissions.FORCE_GUARD
            raise PermissionDenied(why)
        going = sum(b["deleted"] for b in guard_breaches(run))
        if str(confirm if confirm is not None else "").strip() != str(going):
            return _("Type %(n)s, the number of rows this apply deletes, to confirm it.") % {
                "n": going
            }
        options["force"] = True
    return options


def cancel(request: HttpRequest, admin_site: AdminSite, run: SyncRun) -> HttpResponse:
    """Stop a queued or running run; it writes nothing (see djsync.runs.monitor.cancel)."""
    from djsync.runs.monitor import cancel as cancel_run

    require_post(request)
    if not may_cancel(request.user, run):
        raise PermissionDenied
    try:
        cancel_run(run)
    except DjsyncError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(
            request, _("Run #%s is being cancelled; nothing will be written.") % run.pk
        )
    return redirect(run_url(run, "change", admin_site))


def discard(request: HttpRequest, admin_site: AdminSite, run: SyncRun) -> HttpResponse:
    """Drop a preview: status "discarded", uploaded file deleted, nothing written."""
    require_post(request)
    require_owner(request, run)
    if not permissions.can_preview(request.user, run.job):
        raise PermissionDenied
    if discard_preview(run):
        messages.success(request, _("Run #%s discarded; nothing was written.") % run.pk)
    else:
        messages.error(request, _("Only a previewed run can be discarded."))
    return redirect(run_url(run, "change", admin_site))


def discard_preview(run: SyncRun) -> bool:
    """Discard a preview and delete its uploaded file; False if it was no preview (any
    more). One statement decides between this discard and an apply (another tab, another
    door) or a second one."""
    if run.status == SyncRun.Status.PREVIEWED and SyncRun.objects.discard(run):
        release_upload(run)
        return True
    return False


def errors_csv(request: HttpRequest, admin_site: AdminSite, run: SyncRun) -> StreamingHttpResponse:
    """Every row error of the run as CSV: row, column, key, message, value, raw row."""
    require_view(request, run)
    response = StreamingHttpResponse(error_csv_lines(run), content_type="text/csv; charset=utf-8")
    name = f"{run.job.name}-run-{run.pk}-row-errors.csv"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


def page_context(request: HttpRequest, admin_site: AdminSite) -> dict[str, Any]:
    request.current_app = admin_site.name
    return admin_site.each_context(request)


# -- starting work -----------------------------------------------------------------------
def start(request: HttpRequest, begin: Callable[[], SyncRun | None]) -> SyncRun | None:
    """Run ``begin`` (which queues work on commit) and return its run.

    With an eager Celery (the embedded default) the work goes to a background thread at
    commit (djsync.queue.in_background); with ``BACKGROUND_THREADS`` off it runs right at
    commit and may raise: the run has recorded the failure by then, so its page shows it.
    A failure before any run exists becomes a message.
    """
    expire_uploads()
    try:
        with transaction.atomic():
            return begin()
    except Exception as exc:
        run = getattr(exc, "run", None)
        if run is not None:
            return run
        if isinstance(exc, DjsyncError):
            messages.error(request, str(exc))
            return None
        raise


def queue_job_run(job: SyncJob, user: Any) -> SyncRun:
    return queue.queue_run(job, trigger=SyncRun.Trigger.ADMIN, user=user, background=True)


# -- permissions -------------------------------------------------------------------------
def require_view(request: HttpRequest, run: SyncRun) -> None:
    if not permissions.can_view_run(request.user, run):
        raise PermissionDenied


def require_owner(request: HttpRequest, run: SyncRun) -> None:
    """Only a run's owner, or a user with djsync.apply_any_preview, decides on it."""
    if not permissions.may_decide(request.user, run):
        raise PermissionDenied(
            _("Run #%(pk)s belongs to %(owner)s; you may not apply, discard or cancel it.")
            % {"pk": run.pk, "owner": owner_name(run)}
        )


def require_post(request: HttpRequest) -> None:
    if request.method != "POST":
        raise PermissionDenied(_("This page only accepts POST."))


def _step(request: HttpRequest) -> str:
    step = request.GET.get("step", "")
    return step if step in STEPS else "preview"


# -- row errors as CSV -------------------------------------------------------------------
class _Echo:
    def write(self, value: str) -> str:
        return value


def error_csv_lines(run: SyncRun) -> Iterator[str]:
    """The rows of the row-errors CSV. Every text cell goes through the exports'
    :func:`~djsync.exports.files.neutralize`: a value from the source such as ``=HYPERLINK(…)``
    stays text when a spreadsheet opens the file."""
    writer = csv.writer(_Echo())
    yield "\ufeff" + writer.writerow(["row", "column", "key", "message", "value", "raw row"])
    for error in run.row_errors.order_by("pk").iterator(chunk_size=2000):
        cells = [
            error.column,
            "" if error.key is None else key_text(error.key),
            error.message,
            error.value,
            "" if error.raw is None else json.dumps(error.raw, ensure_ascii=False),
        ]
        row = "" if error.row is None else error.row
        yield writer.writerow([row, *(neutralize(cell) for cell in cells)])


def run_link(run: SyncRun, admin_site: AdminSite) -> str:
    return format_html('<a href="{}">#{}</a>', run_url(run, "change", admin_site), run.pk)
