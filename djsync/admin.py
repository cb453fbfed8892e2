"""The admin of jobs and runs, and ``SyncImportMixin`` for any model with an importer.

Jobs: a list with each job's last run, the actions "Preview now" and "Run now", an upload
page per job. What a job reads and writes (importer, source, target) is read-only without
``djsync.change_syncjob_source``. Runs: a read-only history whose detail page is the preview
(Apply, Discard: its owner's) or the record of a finished run. The pages themselves live in
:mod:`djsync.views`. Upload pages are ``csrf_exempt`` only so that the view can bound the
body before reading it; :func:`djsync.views.receive_upload` checks the CSRF token itself.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any, TypedDict

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import ImproperlyConfigured, PermissionDenied
from django.db.models import OuterRef, QuerySet, Subquery
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.http.response import HttpResponseBase
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.views.decorators.csrf import csrf_exempt

from djsync import admin_realtime, permissions, queue, views
from djsync.admin_export import SyncExportMixin
from djsync.admin_realtime import pause_realtime, resume_realtime
from djsync.display import duration, when
from djsync.forms import ModelUploadForm, SyncJobForm, UploadForm
from djsync.mapping.registry import get_importer_class, importer_names
from djsync.mapping.switches import job_fieldset_rows
from djsync.models import SyncJob, SyncRun
from djsync.runs.report import counts_text

#: Columns of the last run that the job list shows, fetched with the jobs in one query.
LAST_RUN_FIELDS = ("pk", "status", "created_at", "created", "updated", "deleted", "errors")


class LastRun(TypedDict):
    """A job row's LAST_RUN_FIELDS annotations; ``last_pk`` is None when the job has no
    run, and the others are read only when it is not."""

    last_pk: int | None
    last_status: str
    last_created_at: datetime
    last_created: int
    last_updated: int
    last_deleted: int
    last_errors: int


if TYPE_CHECKING:
    from django_stubs_ext import WithAnnotations

    JobWithLastRun = WithAnnotations[SyncJob, LastRun]


def counts_html(created: int, updated: int, deleted: int, errors: int) -> str:
    return format_html(
        '<span class="djsync-counts"><span class="djsync-create">+{}</span> '
        '<span class="djsync-update">~{}</span> <span class="djsync-delete">−{}</span>'
        "{}</span>",
        created,
        updated,
        deleted,
        format_html(' <span class="djsync-error">!{}</span>', errors) if errors else "",
    )


def next_run_at(schedule: str, last_run_at: datetime | None) -> datetime | None:
    """When beat will next run a schedule (None if it cannot be read)."""
    from djsync.extras import require

    crontab = require("celery.schedules", "a job's schedule").crontab

    from djsync.runs.cron import parse_schedule

    try:
        kind, values = parse_schedule(schedule)
    except ValueError:
        return None
    now = timezone.localtime()
    if kind == "interval":
        step = timedelta(**{values["period"]: values["every"]})
        return max(timezone.localtime(last_run_at or now) + step, now)
    remaining = crontab(**values, nowfun=timezone.localtime).remaining_estimate(now)
    return (now + remaining + timedelta(seconds=1)).replace(second=0, microsecond=0)


@admin.register(SyncJob)
class SyncJobAdmin(admin.ModelAdmin):
    form = SyncJobForm
    list_display = ["name", "importer", "enabled", "schedule_text", "last_run", "upload_link"]
    list_filter = ["enabled", "importer"]
    search_fields = ["name", "description", "importer"]
    actions = ["preview_now", "run_now", pause_realtime, resume_realtime]
    readonly_fields = ["realtime_lag"]
    fieldsets = [
        (None, {"fields": ["name", "description", "importer", "source", "target", "enabled"]}),
        (
            _("Switches and limits"),
            {
                "description": _("Empty means: as the importer says."),
                "fields": tuple(job_fieldset_rows()),
            },
        ),
        (
            _("Schedule and notifications"),
            {"fields": ["schedule", "watch", "notify_on_failure", "warn_on_change", "partitions"]},
        ),
        admin_realtime.FIELDSET,
        (
            _("Column mapping"),
            {
                "description": _(
                    "Saved by the upload's mapping step: for each set of headers, the header "
                    "of the file that feeds each field. Empty it to forget them."
                ),
                "fields": ["column_mapping"],
            },
        ),
    ]

    class Media:
        css = {"all": ["djsync/admin.css"]}

    def get_queryset(self, request: HttpRequest) -> QuerySet[SyncJob]:
        runs = SyncRun.objects.filter(job=OuterRef("pk")).order_by("-created_at", "-pk")
        annotations = {f"last_{name}": Subquery(runs.values(name)[:1]) for name in LAST_RUN_FIELDS}
        return super().get_queryset(request).annotate(**annotations)

    # -- what a job reads and writes: a permission of its own ------------------------------
    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        fields = list(super().get_readonly_fields(request, obj))
        if not permissions.can_change_source(request.user):
            fields += [name for name in permissions.SOURCE_FIELDS if name not in fields]
        return fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        """A new job's importer and source are what it reads and writes."""
        return super().has_add_permission(request) and permissions.can_change_source(request.user)

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: Any = None,
    ) -> Any:
        """A POST that changes the importer, source or target without the permission is
        refused whole (nothing saved), not just stripped of those fields."""
        if (
            request.method == "POST"
            and object_id is not None
            and not permissions.can_change_source(request.user)
        ):
            job = self.get_object(request, unquote(object_id))
            if job is not None and (changed := source_fields_changed(request.POST, job)):
                raise PermissionDenied(
                    _("Changing %(fields)s needs the permission %(perm)s.")
                    % {"fields": ", ".join(changed), "perm": permissions.CHANGE_SOURCE}
                )
        return super().changeform_view(request, object_id, form_url, extra_context)

    def get_urls(self) -> list[URLPattern]:
        upload = self.admin_site.admin_view(csrf_exempt(self.upload_view))
        return [
            path("<path:object_id>/upload/", upload, name="djsync_syncjob_upload"),
            *super().get_urls(),
        ]

    # -- list columns --------------------------------------------------------------------
    @admin.display(description=_("lag"))
    def realtime_lag(self, job: SyncJob) -> str:
        return admin_realtime.realtime_lag(job)

    @admin.display(description=_("schedule (next run)"), ordering="schedule")
    def schedule_text(self, job: JobWithLastRun) -> str:
        if not job.schedule:
            return "—"
        try:
            next_at = next_run_at(job.schedule, job.last_created_at) if job.enabled else None
        except ImproperlyConfigured:  # no Celery beat to run it: say so, as the form does
            return format_html("{} ({})", job.schedule, _("not run: needs djsync[celery]"))
        if next_at is None:
            return job.schedule
        return format_html("{} ({})", job.schedule, when(next_at, "SHORT_DATETIME_FORMAT"))

    @admin.display(description=_("last run"), ordering="last_created_at")
    def last_run(self, job: JobWithLastRun) -> str:
        if job.last_pk is None:
            return "—"
        return format_html(
            '<a href="{}" class="djsync-status djsync-status-{}">{}</a> {} {}',
            reverse(f"{self.admin_site.name}:djsync_syncrun_change", args=[job.last_pk]),
            job.last_status,
            SyncRun.Status(job.last_status).label,
            when(job.last_created_at, "SHORT_DATETIME_FORMAT"),
            counts_html(job.last_created, job.last_updated, job.last_deleted, job.last_errors),
        )

    @admin.display(description=_("upload"))
    def upload_link(self, job: SyncJob) -> str:
        url = reverse(f"{self.admin_site.name}:djsync_syncjob_upload", args=[job.pk])
        return format_html('<a href="{}">{}</a>', url, _("Upload a file…"))

    # -- actions -------------------------------------------------------------------------
    @admin.action(description=_("Preview now (dry run of the job's source)"))
    def preview_now(self, request: HttpRequest, queryset: QuerySet[SyncJob]) -> Any:
        started = []
        for job in queryset:
            if not permissions.can_preview(request.user, job):
                messages.error(request, _("You may not preview %s.") % job)
                continue
            started.append(views.start(request, partial(self._queue_preview, request, job)))
        runs = [run for run in started if run is not None]
        if len(runs) == 1:
            return HttpResponseRedirect(views.progress_url(runs[0], "preview", self.admin_site))
        for run in runs:
            messages.info(
                request,
                format_html("{} {}", _("Preview queued:"), views.run_link(run, self.admin_site)),
            )
        return None

    def _queue_preview(self, request: HttpRequest, job: SyncJob) -> SyncRun:
        return queue.queue_preview(job, user=request.user, trigger=SyncRun.Trigger.ADMIN)

    @admin.action(description=_("Run now (preview and apply in one go)"))
    def run_now(self, request: HttpRequest, queryset: QuerySet[SyncJob]) -> Any:
        runs = []
        for job in queryset:
            missing = permissions.missing_run_permissions(request.user, job)
            if missing:
                messages.error(
                    request,
                    _("You may not run %(job)s: %(why)s") % {"job": job, "why": ", ".join(missing)},
                )
                continue
            run = views.start(request, partial(views.queue_job_run, job, request.user))
            if run is not None:
                runs.append(run)
        if len(runs) == 1:
            return HttpResponseRedirect(views.progress_url(runs[0], "run", self.admin_site))
        for run in runs:
            messages.info(
                request,
                format_html("{} {}", _("Run queued:"), views.run_link(run, self.admin_site)),
            )
        return None

    # -- upload page ---------------------------------------------------------------------
    def upload_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Who may upload is checked before the body is read (see views.receive_upload)."""
        job = self.get_object(request, unquote(object_id))
        if job is None:
            raise Http404
        if not permissions.can_preview(request.user, job):
            raise PermissionDenied
        back = reverse(f"{self.admin_site.name}:djsync_syncjob_changelist")
        title = _("Upload a file for %s") % job
        return views.upload(
            request,
            self.admin_site,
            make_form=UploadForm,
            get_job=lambda form: job,
            title=title,
            back_url=back,
        )


@admin.register(SyncRun)
class SyncRunAdmin(admin.ModelAdmin):
    """Run history: read-only; a run's page is its preview or its record."""

    list_display = ["number", "job", "outcome", "started_by", "created_at", "counts", "took"]
    list_display_links = ["number"]
    list_filter = ["job", "status", "trigger", "dry_run", "created_at"]
    list_select_related = ["job", "user"]
    date_hierarchy = "created_at"
    search_fields = ["job__name", "source_name"]

    class Media:
        css = {"all": ["djsync/admin.css"]}

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description=_("run"), ordering="pk")
    def number(self, run: SyncRun) -> str:
        return f"#{run.pk}"

    @admin.display(description=_("status"), ordering="status")
    def outcome(self, run: SyncRun) -> str:
        """The status, and "dry run" where the status does not say it already."""
        label = str(run.get_status_display())
        if run.dry_run and run.status not in (SyncRun.Status.PREVIEWED, SyncRun.Status.DISCARDED):
            label += f" ({_('dry run')})"
        return label

    @admin.display(description=_("started by"), ordering="trigger")
    def started_by(self, run: SyncRun) -> str:
        """How the run began, and who began it: "admin (alice)", "schedule"."""
        trigger = str(run.get_trigger_display())
        return f"{trigger} ({run.user})" if run.user_id else trigger

    @admin.display(description=_("changes"))
    def counts(self, run: SyncRun) -> str:
        return format_html(
            '<span title="{}">{}</span>',
            counts_text(run.counts),
            counts_html(run.created, run.updated, run.deleted, run.errors),
        )

    @admin.display(description=_("took"))
    def took(self, run: SyncRun) -> str:
        return duration(run.duration)

    def get_urls(self) -> list[URLPattern]:
        def page(view: Callable[..., HttpResponseBase], suffix: str, name: str) -> URLPattern:
            wrapped = self.admin_site.admin_view(self._run_view(view))
            return path(f"<path:object_id>/{suffix}", wrapped, name=f"djsync_syncrun_{name}")

        return [
            page(views.progress, "progress/", "progress"),
            page(views.status, "status/", "status"),
            page(views.apply, "apply/", "apply"),
            page(views.discard, "discard/", "discard"),
            page(views.cancel, "cancel/", "cancel"),
            page(views.errors_csv, "row-errors.csv", "errors_csv"),
            *super().get_urls(),
        ]

    def _run_view(self, view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
        def run_view(request: HttpRequest, object_id: str) -> HttpResponseBase:
            return view(request, self.admin_site, self._get_run(object_id))

        return run_view

    def _get_run(self, object_id: str) -> SyncRun:
        pk = _int(object_id)
        runs = SyncRun.objects.select_related("job", "user")
        run = runs.filter(pk=pk).first() if pk is not None else None
        if run is None:
            raise Http404
        return run

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        return views.run_page(request, self.admin_site, self._get_run(unquote(object_id)))


class SyncImportMixin(SyncExportMixin):
    """Adds "Import / sync from file" to a ModelAdmin's changelist (needs a registered importer),
    and the export actions and buttons of :class:`djsync.admin_export.SyncExportMixin`.

    ``class ProductAdmin(SyncImportMixin, admin.ModelAdmin): ...`` The upload runs through a
    job of one of the model's importers (chosen on the page; a job is created on the first
    upload if the importer has none), then the usual preview and apply.
    """

    #: Names of the importers offered; None: every importer registered for the model.
    sync_importers: Sequence[str] | None = None
    change_list_template = "admin/djsync/change_list_import.html"

    def get_sync_importers(self) -> list[str]:
        if self.sync_importers is not None:
            return list(self.sync_importers)
        model = self.model  # type: ignore[attr-defined]
        return [name for name in importer_names() if get_importer_class(name).model is model]

    def has_sync_import_permission(self, request: HttpRequest) -> bool:
        model = self.model  # type: ignore[attr-defined]
        user = request.user
        return bool(
            self.get_sync_importers()
            and permissions.is_staff(user)
            and user.has_perms(["djsync.add_syncrun", "djsync.view_syncrun"])
            and user.has_perm(permissions.model_perm(model, "view"))
        )

    def get_urls(self) -> list[URLPattern]:
        opts = self.model._meta  # type: ignore[attr-defined]
        view = self.admin_site.admin_view(csrf_exempt(self.sync_import_view))  # type: ignore[attr-defined]
        name = f"{opts.app_label}_{opts.model_name}_sync_import"
        return [path("sync-import/", view, name=name), *super().get_urls()]

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> Any:
        extra_context = dict(extra_context or {})
        if self.has_sync_import_permission(request):
            opts = self.model._meta  # type: ignore[attr-defined]
            extra_context["djsync_import_url"] = reverse(
                f"{self.admin_site.name}:{opts.app_label}_{opts.model_name}_sync_import"  # type: ignore[attr-defined]
            )
        return super().changelist_view(request, extra_context)

    def sync_import_view(self, request: HttpRequest) -> HttpResponse:
        """Who may upload is checked before the body is read (see views.receive_upload)."""
        if not self.has_sync_import_permission(request):
            raise PermissionDenied
        opts = self.model._meta  # type: ignore[attr-defined]
        site = self.admin_site  # type: ignore[attr-defined]
        importers = self.get_sync_importers()
        back = reverse(f"{site.name}:{opts.app_label}_{opts.model_name}_changelist")
        title = _("Import / sync %s from a file") % opts.verbose_name_plural
        return views.upload(
            request,
            site,
            make_form=lambda *data: ModelUploadForm(*data, importers=importers),
            get_job=lambda form: form.get_job(),
            title=title,
            back_url=back,
        )


def source_fields_changed(data: Any, job: SyncJob) -> list[str]:
    """The fields among importer, source and target whose posted value differs from the
    job's (a value that does not parse counts as a change)."""
    changed = []
    for name in permissions.SOURCE_FIELDS:
        if name not in data:
            continue
        if name == "importer":
            sent = [part.strip() for value in data.getlist(name) for part in value.split(",")]
            current = [part.strip() for part in job.importer.split(",")]
            # The same importers, whatever the order the form posts them in (a multi-model
            # job runs them in dependency order anyway).
            if sorted(p for p in sent if p) != sorted(p for p in current if p):
                changed.append(name)
            continue
        text = data.get(name) or ""
        try:
            value = json.loads(text) if text.strip() else {}
        except ValueError:
            changed.append(name)
            continue
        if value != (getattr(job, name) or {}):
            changed.append(name)
    return changed


def _int(value: str) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
