"""Admin pages of a run, one short view per step: upload → progress → preview → apply or discard.

Views check permissions, call a service and render a template. What a page shows is
computed by the ``*_context`` functions below (plain data: pages of changes, cells old →
new), so computing a preview and rendering it stay apart. Pages never load a whole plan:
changes and row errors are fetched one page at a time by (run, action) and primary key.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.admin import AdminSite
from django.core.exceptions import ImproperlyConfigured, PermissionDenied
from django.core.paginator import Page, Paginator
from django.db import models, transaction
from django.db.models import Q
from django.db.models.functions import Cast
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.http.multipartparser import MultiPartParserError
from django.middleware.csrf import CsrfViewMiddleware
from django.shortcuts import redirect
from django.template.defaultfilters import filesizeformat
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from djsync import permissions, queue
from djsync.conf import settings
from djsync.exceptions import DjsyncError, QueueError
from djsync.exports.files import neutralize
from djsync.forms import UploadForm
from djsync.mapping.registry import get_importer_class
from djsync.models import SyncChange, SyncJob, SyncRun
from djsync.runs import report
from djsync.runs.lifecycle import NOT_APPLIED
from djsync.runs.report import key_text, requests
from djsync.uploads import LimitedUploadHandler, display_name, expire_uploads, release_upload

#: Changes and row errors per page of the run page.
PER_PAGE = 50
#: The steps a progress page can follow, with its title.
STEPS = {
    "preview": gettext_lazy("Preparing the preview"),
    "apply": gettext_lazy("Applying the plan"),
    "run": gettext_lazy("Running the job"),
}
#: At most this many changed keys go into the "show the changed rows" changelist link.
MAX_LINKED_KEYS = 200
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
    form = make_form(request.POST, request.FILES)
    if not form.is_valid():
        return page(form)
    job = get_job(form)
    if not permissions.can_preview(request.user, job):
        raise PermissionDenied
    data = form.cleaned_data
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
    limit = settings.MAX_UPLOAD_SIZE
    length = _content_length(request)
    if length is None:
        return Refusal(411, _("An upload needs a Content-Length header; nothing was stored."))
    if length > limit + FORM_OVERHEAD:
        return Refusal(413, too_large(length))
    handler = LimitedUploadHandler(request, limit)
    request.upload_handlers.insert(0, handler)  # type: ignore[union-attr]  # a list until read
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


def _content_length(request: HttpRequest) -> int | None:
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
    }
    return TemplateResponse(request, "admin/djsync/progress.html", context)


def status(request: HttpRequest, admin_site: AdminSite, run: SyncRun) -> JsonResponse:
    """The run's state as JSON, for the progress page."""
    require_view(request, run)
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
    start(request, lambda: queue_apply(run, request.user))
    return redirect(progress_url(run, "apply", admin_site))


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
    # One statement decides between this discard and an apply (another tab) or a second one.
    if run.status == SyncRun.Status.PREVIEWED and SyncRun.objects.discard(run):
        release_upload(run)
        messages.success(request, _("Run #%s discarded; nothing was written.") % run.pk)
    else:
        messages.error(request, _("Only a previewed run can be discarded."))
    return redirect(run_url(run, "change", admin_site))


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

    With an eager Celery (the embedded default) the work runs right at commit and may
    raise; the run has recorded the failure by then, so its page shows it. A failure
    before any run exists becomes a message.
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


def queue_apply(run: SyncRun, user: Any) -> SyncRun:
    from djsync.tasks import apply_run

    # An earlier attempt refused because the job was busy left a note; this is a new try.
    # The worker's apply claims the preview (previewed → applying) under the job's lock.
    SyncRun.objects.clear_preview_note(run)

    def send() -> None:
        try:
            queue.publish(apply_run, run.pk, user.pk)
        except QueueError as exc:  # the preview stays, to apply once the broker answers
            SyncRun.objects.keep_preview(run, exc)

    transaction.on_commit(send)
    return run


def queue_job_run(job: SyncJob, user: Any) -> SyncRun:
    return queue.queue_run(job, trigger=SyncRun.Trigger.ADMIN, user=user)


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


def may_cancel(user: Any, run: SyncRun) -> bool:
    return permissions.may_decide(user, run) and permissions.can_preview(user, run.job)


def owner_name(run: SyncRun) -> str:
    return str(run.user) if run.user_id else _("nobody (a command or a schedule)")


def require_post(request: HttpRequest) -> None:
    if request.method != "POST":
        raise PermissionDenied(_("This page only accepts POST."))


# -- URLs --------------------------------------------------------------------------------
def run_url(run: SyncRun, name: str, admin_site: AdminSite) -> str:
    return reverse(f"{admin_site.name}:djsync_syncrun_{name}", args=[run.pk])


def progress_url(run: SyncRun | None, step: str, admin_site: AdminSite) -> str:
    if run is None:
        return reverse(f"{admin_site.name}:djsync_syncrun_changelist")
    return f"{run_url(run, 'progress', admin_site)}?step={step}"


def changelist_url(model: type[models.Model], admin_site: AdminSite) -> str | None:
    opts = model._meta
    try:
        return reverse(f"{admin_site.name}:{opts.app_label}_{opts.model_name}_changelist")
    except NoReverseMatch:
        return None


def _step(request: HttpRequest) -> str:
    step = request.GET.get("step", "")
    return step if step in STEPS else "preview"


# -- what the pages show -----------------------------------------------------------------
def status_data(run: SyncRun, step: str, admin_site: AdminSite) -> dict[str, Any]:
    """A preview is done once the run is no longer active; an apply or a run once it has
    finished, or when the apply was refused because another run of the job was active."""
    if step == "preview":
        done = run.status not in SyncRun.ACTIVE
    else:
        done = run.is_done or run.error.startswith(NOT_APPLIED)
    return {
        "run": run.pk,
        "status": run.status,
        "label": str(run.get_status_display()),
        "rows_read": run.rows_read,
        "rows_applied": run.rows_applied,
        "counts": run.counts,
        "error": run.error,
        "done": done,
        "url": run_url(run, "change", admin_site),
    }


@dataclass
class Cell:
    """One field of a change: its value before and after (None: the field was empty)."""

    name: str
    old: Any = None
    new: Any = None
    changed: bool = False


@dataclass
class ChangeRow:
    action: str
    row: int | None
    key: str
    object_pk: str
    cells: list[Cell] = field(default_factory=list)
    #: For a target that is not a model: the request the apply sends (``PATCH …/17/``).
    request: str = ""
    #: The target's answer when it refused this change.
    refused: str = ""


def change_row(
    change: SyncChange, fields: list[str], targets: dict[str, Any] | None = None
) -> ChangeRow:
    """Updates show only their changed fields, old → new; creates and deletes every value,
    in the importer's field order; for a target that is not a model, what will be sent."""
    row = ChangeRow(change.action, change.row, key_text(change.key), change.object_pk)
    row.refused = change.error
    target = (targets or {}).get(change.model)
    if target is not None:
        row.request = target.describe(change.action, tuple(change.key), change.object_pk)
    before, after = change.before or {}, change.after or {}
    if change.action == SyncChange.Action.UPDATE:
        row.cells = [
            Cell(name, before.get(name), after.get(name), True) for name in change.changed_fields
        ]
    else:
        values = after if change.action == SyncChange.Action.CREATE else before
        order = {name: i for i, name in enumerate(fields)}
        names = sorted(values, key=lambda name: (order.get(name, len(order)), name))
        row.cells = [Cell(name, new=values[name]) for name in names]
    return row


def field_order(job: SyncJob) -> list[str]:
    """The importer's mapped fields, in declaration order (stored JSON may reorder keys)."""
    try:
        importer = get_importer_class(job.importer)
    except ImproperlyConfigured:
        return []
    return list(importer().bound_fields)


def paginate(queryset: models.QuerySet, request: HttpRequest, param: str) -> Page:
    """One page of an ordered queryset: a COUNT and a LIMIT/OFFSET query, never the whole."""
    return Paginator(queryset, PER_PAGE).get_page(request.GET.get(param))


def page_link(request: HttpRequest, **params: Any) -> str:
    query = request.GET.copy()
    for name, value in params.items():
        if value in (None, ""):
            query.pop(name, None)
        else:
            query[name] = value
    return f"?{query.urlencode()}" if query else "?"


def run_context(request: HttpRequest, run: SyncRun, admin_site: AdminSite) -> dict[str, Any]:
    """Everything the run page shows, computed page by page."""
    action = request.GET.get("action", "")
    if action not in SyncChange.Action.values:
        action = ""
    changes = run.changes.order_by("pk")
    if action:
        changes = changes.filter(action=action)
    fields = field_order(run.job)
    search = request.GET.get("q", "").strip()[:200]
    changed = request.GET.get("field", "")
    changed_choices = changed_field_choices(run, fields)
    if changed not in changed_choices:
        changed = ""
    changes = filter_changes(changes, search=search, field=changed)
    changes_page = paginate(changes, request, "page")
    errors_page = paginate(run.row_errors.order_by("pk"), request, "errors_page")
    targets = requests(run)
    return {
        "title": _("Run #%(pk)s of %(job)s") % {"pk": run.pk, "job": run.job.name},
        "run": run,
        "opts": SyncRun._meta,
        "action": action,
        "action_tabs": action_tabs(request, run, action),
        "search": search,
        "changed_field": changed,
        "changed_fields": changed_choices,
        "filtered": bool(search or changed),
        "changes_page": changes_page,
        "change_rows": [
            change_row(c, fields, targets) for c in changes_page.object_list
        ],
        "changes_pages": page_links(request, changes_page, "page"),
        "errors_page": errors_page,
        "errors_pages": page_links(request, errors_page, "errors_page"),
        "errors_csv_url": run_url(run, "errors_csv", admin_site),
        "paths": report.paths(run),  # staged: postgresql, generic: <why> (djsync.backends)
        **decision_context(request, run, admin_site),
        **result_context(request, run, admin_site),
    }


def filter_changes(changes: models.QuerySet, *, search: str, field: str) -> models.QuerySet:
    """The changes whose key contains ``search`` (any part of it, any case), and that
    change ``field`` (an update's changed fields; a create sets every field). On the stored
    JSON as text: the same query on PostgreSQL and SQLite."""
    if search:
        found = Q()
        # SQLite folds the case of ASCII letters only, and may store the key escaped.
        for form in {search, search.lower(), search.upper()}:
            found |= Q(key_text__icontains=form) | Q(key_text__icontains=json.dumps(form)[1:-1])
        changes = changes.annotate(key_text=Cast("key", models.TextField())).filter(found)
    if field:
        quoted = json.dumps(field)  # '"price"': a whole name, not a part of another
        changes = changes.annotate(
            changed_text=Cast("changed_fields", models.TextField())
        ).filter(changed_text__contains=quoted)
    return changes


def changed_field_choices(run: SyncRun, fields: list[str]) -> list[str]:
    """The fields a run's changes may change: the importer's, else those it compared."""
    compared: list[str] = []
    for counts in (run.stats or {}).values():
        if isinstance(counts, dict):
            compared += [f for f in counts.get("fields", []) if f not in compared]
    return fields or compared


def action_tabs(request: HttpRequest, run: SyncRun, current: str) -> list[dict[str, Any]]:
    counts = run.counts
    tabs = [
        {"label": _("all changes"), "action": "", "count": run.created + run.updated + run.deleted}
    ]
    for action, key in (("create", "created"), ("update", "updated"), ("delete", "deleted")):
        tabs.append(
            {"label": str(SyncChange.Action(action).label), "action": action, "count": counts[key]}
        )
    for tab in tabs:
        tab["url"] = page_link(request, action=tab["action"], page=None)
        tab["current"] = tab["action"] == current
    return tabs


def page_links(request: HttpRequest, page: Page, param: str) -> dict[str, str | None]:
    def link(number: int) -> str:
        return page_link(request, **{param: number})

    return {
        "first": link(1) if page.number > 2 else None,
        "previous": link(page.previous_page_number()) if page.has_previous() else None,
        "next": link(page.next_page_number()) if page.has_next() else None,
        "last": link(page.paginator.num_pages)
        if page.number < page.paginator.num_pages - 1
        else None,
    }


def decision_context(request: HttpRequest, run: SyncRun, admin_site: AdminSite) -> dict[str, Any]:
    """Whether Apply and Discard are offered, and why not."""
    previewed = run.status == SyncRun.Status.PREVIEWED
    decide = permissions.may_decide(request.user, run)
    missing = permissions.missing_apply_permissions(request.user, run) if previewed else []
    return {
        "owner": owner_name(run),
        "is_owner": permissions.owns_run(request.user, run),
        "not_yours": previewed and not decide,
        "can_apply": previewed and decide and not missing,
        "missing_permissions": missing if decide else [],
        "can_discard": previewed and decide and permissions.can_preview(request.user, run.job),
        "apply_url": run_url(run, "apply", admin_site),
        "discard_url": run_url(run, "discard", admin_site),
        "can_cancel": run.status in SyncRun.ACTIVE and may_cancel(request.user, run),
        "cancel_url": run_url(run, "cancel", admin_site),
        "progress_url": progress_url(run, "preview" if run.dry_run else "run", admin_site),
    }


def result_context(request: HttpRequest, run: SyncRun, admin_site: AdminSite) -> dict[str, Any]:
    """Links to the target's changelist, and to just the rows this run created or updated."""
    model = permissions.target_model(run.job)
    url = changelist_url(model, admin_site) if model is not None else None
    if url is None or model is None:
        return {"target_url": None, "changed_url": None, "target_name": ""}
    changed = changed_filter(run, model) if run.status == SyncRun.Status.SUCCEEDED else None
    return {
        "target_url": url,
        "changed_url": f"{url}?{urlencode(changed)}" if changed else None,
        "target_name": str(model._meta.verbose_name_plural),
    }


def changed_filter(run: SyncRun, model: type[models.Model]) -> dict[str, str] | None:
    """``{"sku__in": "A1,B2"}`` when the key is one plain field and the changes are few."""
    keys = list(get_importer_class(run.job.importer).keys)
    total = run.created + run.updated
    if len(keys) != 1 or not 0 < total <= MAX_LINKED_KEYS:
        return None
    if model._meta.get_field(keys[0]).is_relation:
        return None
    wanted = run.changes.exclude(action=SyncChange.Action.DELETE).values_list("key", flat=True)
    values = [str(key[0]) for key in wanted[:MAX_LINKED_KEYS]]
    if any("," in value for value in values):
        return None
    return {f"{keys[0]}__in": ",".join(values)}


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
