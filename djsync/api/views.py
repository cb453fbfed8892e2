"""The HTTP API's endpoints: jobs, queuing a run or a preview, a run's state, changes and
row errors, apply, discard, cancel, and the OpenAPI schema.

Each endpoint checks the admin's permissions (djsync.api.permissions), then calls the
functions the admin's pages call (djsync.queue, djsync.views, the run lifecycle): the API
has no lifecycle of its own. A request's body is bounded before it is read: an upload by
``DJSYNC["MAX_UPLOAD_SIZE"]`` as in the admin, anything else by a few kilobytes.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from django.db import transaction
from django.db.models import OuterRef, QuerySet, Subquery
from django.utils.datastructures import MultiValueDict
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.renderers import (
    OpenApiJsonRenderer,
    OpenApiJsonRenderer2,
    OpenApiYamlRenderer,
    OpenApiYamlRenderer2,
)
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from drf_spectacular.views import SpectacularAPIView
from rest_framework import status
from rest_framework.authentication import SessionAuthentication, TokenAuthentication
from rest_framework.exceptions import APIException, NotFound, ValidationError
from rest_framework.generics import GenericAPIView
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

import djsync
from djsync import queue
from djsync import views as admin_views
from djsync.api import permissions as api_permissions
from djsync.api.pagination import JobPages, NewestFirst, Pages
from djsync.api.serializers import (
    ApplyRequestSerializer,
    ChangeSerializer,
    JobSerializer,
    RowErrorSerializer,
    RunRequestSerializer,
    RunSerializer,
    api_url,
)
from djsync.exceptions import (
    ConfigurationError,
    ConflictError,
    DjsyncError,
    RunLocked,
    RunStateError,
)
from djsync.forms import UploadForm
from djsync.models import SyncChange, SyncJob, SyncRun
from djsync.run_page import blocked_by, changed_field_choices, field_order, filter_changes
from djsync.runs.orchestrator import check_options
from djsync.uploads import LimitedUploadHandler, display_name, expire_uploads

#: Exceptions of an apply that leave the preview as it was, or found it stale: a 409.
CONFLICTS = (ConflictError, RunLocked, RunStateError)
#: The longest key search (as in the admin's run page).
MAX_SEARCH = 200
#: The largest run id a database keeps (a larger one is no run, not an overflow).
MAX_ID = 2**63 - 1


def documented(**kwargs: Any) -> Callable[[Any], Any]:
    """drf-spectacular's ``extend_schema`` on a view method, based on its AutoSchema
    whatever the project's DEFAULT_SCHEMA_CLASS is (djsync asks for no DRF setting)."""

    def decorate(method: Any) -> Any:
        method.schema = AutoSchema
        return extend_schema(**kwargs)(method)

    return decorate


class Refused(APIException):
    """A request refused before its body was read (411, 413), or a conflict (409)."""

    def __init__(self, status_code: int, detail: Any) -> None:
        self.status_code = status_code
        super().__init__(detail)


# -- the base of every endpoint ---------------------------------------------------------
class DjsyncAPIView(GenericAPIView):
    """Token or session authentication (the session's with CSRF), staff users only, JSON
    in and out; bodies bounded before they are read (:meth:`bound_body`)."""

    authentication_classes = [TokenAuthentication, SessionAuthentication]
    permission_classes = [api_permissions.IsStaff]
    renderer_classes = [JSONRenderer]
    parser_classes = [JSONParser, FormParser]
    schema = AutoSchema()
    #: Whether the endpoint takes a file (multipart), bounded by MAX_UPLOAD_SIZE.
    takes_upload = False
    upload_handler: LimitedUploadHandler | None = None

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        self.bound_body(request)  # before authentication: a session's CSRF check reads it
        super().initial(request, *args, **kwargs)

    def bound_body(self, request: Request) -> None:
        """Refuse a body past its limit before anything reads it: an upload past
        MAX_UPLOAD_SIZE (and stop one that grows past it while it streams in), any other
        body past FORM_OVERHEAD (a run's options are a few lines of JSON)."""
        if request.method not in ("POST", "PUT", "PATCH"):
            return
        content_type = request.META.get("CONTENT_TYPE", "")
        if self.takes_upload and content_type.startswith("multipart/form-data"):
            bounded = admin_views.bound_upload(request._request)
            if isinstance(bounded, admin_views.Refusal):
                raise Refused(bounded.status, bounded.message)
            self.upload_handler = bounded
            return
        length = admin_views.content_length(request._request) or 0
        if length > admin_views.FORM_OVERHEAD:
            message = _(
                "The body is %(length)s bytes; this endpoint takes at most %(most)s (a file "
                "goes as multipart/form-data, to POST jobs/NAME/runs/)."
            ) % {"length": length, "most": admin_views.FORM_OVERHEAD}
            raise Refused(413, message)

    def data(self, request: Request) -> Any:
        """The parsed body; an upload that grew past MAX_UPLOAD_SIZE is a 413."""
        data = request.data
        if self.upload_handler is not None and self.upload_handler.exceeded:
            raise Refused(413, admin_views.too_large(None))
        return data

    # -- lookups -------------------------------------------------------------------------
    def get_job(self, name: str) -> SyncJob:
        job = SyncJob.objects.filter(name=name[:100]).first()
        if job is None:
            raise NotFound(_("No job named %(name)s.") % {"name": repr(name[:100])})
        return job

    def get_run(self, run_id: str) -> SyncRun:
        """The run by id, if the user may see it (404 for no such run, 403 for a run they
        may not see)."""
        plain = run_id.isascii() and run_id.isdigit() and len(run_id) < 20
        pk = int(run_id) if plain else None
        found = None
        if pk is not None and pk <= MAX_ID:
            found = SyncRun.objects.select_related("job", "user").filter(pk=pk).first()
        if found is None:
            raise NotFound(_("No run #%(run)s.") % {"run": run_id[:30]})
        api_permissions.require_view_run(self.request.user, found)
        return found

    def run_response(self, run: SyncRun, code: int = status.HTTP_200_OK, **extra: Any) -> Response:
        data = RunSerializer(run, context=self.get_serializer_context()).data
        return Response({**extra, "run": data} if extra else data, status=code)


def start(begin: Callable[[], SyncRun]) -> tuple[SyncRun, Exception | None]:
    """Queue work (``begin`` queues it on commit) and return its run, with the exception
    its work raised if an eager Celery ran it right here (the run recorded it). A failure
    before any run exists is a 400 (a ConfigurationError) or raised."""
    expire_uploads()
    try:
        with transaction.atomic():
            return begin(), None
    except Exception as exc:
        run = getattr(exc, "run", None)
        if run is None:
            if isinstance(exc, ConfigurationError):
                raise ValidationError({"detail": str(exc)}) from None
            raise
        run.refresh_from_db()
        return run, exc


# -- jobs -------------------------------------------------------------------------------
class JobList(DjsyncAPIView):
    serializer_class = JobSerializer
    pagination_class = JobPages

    def get_queryset(self) -> QuerySet[SyncJob]:
        latest = SyncRun.objects.filter(job=OuterRef("pk")).order_by("-created_at", "-pk")
        return SyncJob.objects.annotate(last_pk=Subquery(latest.values("pk")[:1]))

    @documented(summary=gettext_lazy("The jobs, by name"), responses=JobSerializer(many=True))
    def get(self, request: Request) -> Response:
        api_permissions.require_view_jobs(request.user)
        page = self.paginate_queryset(self.get_queryset()) or []
        pks = [job.last_pk for job in page if job.last_pk is not None]  # type: ignore[attr-defined]
        last = {run.job_id: run for run in SyncRun.objects.filter(pk__in=pks)}
        context = {**self.get_serializer_context(), "last_runs": last}
        return self.get_paginated_response(JobSerializer(page, many=True, context=context).data)


class JobDetail(DjsyncAPIView):
    serializer_class = JobSerializer

    @documented(summary=gettext_lazy("A job"))
    def get(self, request: Request, name: str) -> Response:
        api_permissions.require_view_jobs(request.user)
        return Response(self.get_serializer(self.get_job(name)).data)


class JobRuns(DjsyncAPIView):
    """A job's runs, newest first; POST queues a new one."""

    serializer_class = RunSerializer
    pagination_class = NewestFirst
    parser_classes = [JSONParser, FormParser, MultiPartParser]
    takes_upload = True

    @documented(summary=gettext_lazy("A job's runs, newest first"))
    def get(self, request: Request, name: str) -> Response:
        job = self.get_job(name)
        api_permissions.require_view_runs(request.user, job)
        runs = self.paginate_queryset(job.runs.select_related("job", "user")) or []
        return self.get_paginated_response(self.get_serializer(runs, many=True).data)

    @documented(
        summary=gettext_lazy("Queue a run or a preview"),
        description=gettext_lazy(
            "JSON, or multipart/form-data with a `file` read instead of the job's source (at "
            "most MAX_UPLOAD_SIZE bytes). Poll the run's URL (`Location`) until `active` is "
            "false."
        ),
        request={
            "application/json": RunRequestSerializer,
            "multipart/form-data": RunRequestSerializer,
        },
        responses={
            202: RunSerializer,
            400: OpenApiResponse(description=gettext_lazy("Bad options or file")),
        },
    )
    def post(self, request: Request, name: str) -> Response:
        job = self.get_job(name)
        body = RunRequestSerializer(data=self.data(request))
        body.is_valid(raise_exception=True)
        options = body.options()
        try:
            check_options(options)
        except ConfigurationError as exc:
            raise ValidationError({"detail": str(exc)}) from None
        dry_run = body.validated_data["dry_run"]
        api_permissions.require_start(request.user, job, dry_run=dry_run, options=options)
        partitions = body.validated_data.get("partitions")
        if partitions is not None:
            try:
                queue.check_partitions(job, partitions)
            except ConfigurationError as exc:
                raise ValidationError({"partitions": [str(exc)]}) from None
        upload, fmt = self.upload(body.validated_data)
        kwargs = {
            "partitions": partitions,
            "upload": upload,
            "upload_name": display_name(upload.name) if upload is not None else None,
            "format": fmt,
            "user": request.user,
            "trigger": SyncRun.Trigger.API,
            **options,
        }
        enqueue = queue.queue_preview if dry_run else queue.queue_run
        begin = partial(enqueue, job, **kwargs)
        run, _error = start(begin)
        response = self.run_response(run, status.HTTP_202_ACCEPTED)
        response["Location"] = api_url(request, "run", run.pk)
        return response

    def upload(self, data: dict[str, Any]) -> tuple[Any, str | None]:
        """The uploaded file and its format, checked by the admin's upload form."""
        if data.get("file") is None:
            if data.get("format"):
                raise ValidationError({"format": [_("A format goes with a file.")]})
            return None, None
        files = MultiValueDict({"file": [data["file"]]})
        form = UploadForm({"format": data.get("format") or ""}, files)
        if not form.is_valid():
            errors = form.errors.get_json_data()
            raise ValidationError({k: [e["message"] for e in v] for k, v in errors.items()})
        return form.cleaned_data["file"], form.cleaned_data["format"]


# -- runs -------------------------------------------------------------------------------
class RunDetail(DjsyncAPIView):
    serializer_class = RunSerializer

    @documented(summary=gettext_lazy("A run: status, progress, counts, path, times, decision"))
    def get(self, request: Request, run_id: str) -> Response:
        return self.run_response(self.get_run(run_id))


class RunChanges(DjsyncAPIView):
    serializer_class = ChangeSerializer
    pagination_class = Pages

    @documented(
        summary=gettext_lazy("A run's changes, a page at a time"),
        parameters=[
            OpenApiParameter("action", enum=list(SyncChange.Action.values)),
            OpenApiParameter(
                "field", description=gettext_lazy("Only changes that set this field.")
            ),
            OpenApiParameter("search", description=gettext_lazy("Part of the key, any case.")),
            OpenApiParameter("page_size", int),
        ],
    )
    def get(self, request: Request, run_id: str) -> Response:
        run = self.get_run(run_id)
        params = request.query_params
        changes = run.changes.all()
        action = params.get("action", "")
        if action:
            if action not in SyncChange.Action.values:
                raise ValidationError({"action": [_("One of create, update, delete.")]})
            changes = changes.filter(action=action)
        search = params.get("search", "").strip()
        if len(search) > MAX_SEARCH:
            message = ngettext(
                "At most %(most)s character.", "At most %(most)s characters.", MAX_SEARCH
            ) % {"most": MAX_SEARCH}
            raise ValidationError({"search": [message]})
        changed = params.get("field", "")
        if changed:
            choices = changed_field_choices(run, field_order(run.job))
            if changed not in choices:
                fields = {"fields": ", ".join(choices)}
                raise ValidationError({"field": [_("One of %(fields)s.") % fields]})
        changes = filter_changes(changes, search=search, field=changed)
        page = self.paginate_queryset(changes) or []
        return self.get_paginated_response(self.get_serializer(page, many=True).data)


class RunErrors(DjsyncAPIView):
    serializer_class = RowErrorSerializer
    pagination_class = Pages

    @documented(summary=gettext_lazy("A run's row errors, a page at a time"))
    def get(self, request: Request, run_id: str) -> Response:
        run = self.get_run(run_id)
        page = self.paginate_queryset(run.row_errors.all()) or []
        return self.get_paginated_response(self.get_serializer(page, many=True).data)


class RunApply(DjsyncAPIView):
    serializer_class = RunSerializer

    @documented(
        summary=gettext_lazy("Apply a preview"),
        description=gettext_lazy(
            "Exactly the previewed plan, if the target has not moved since (else 409 and "
            "nothing is written). Poll the run until `finished`."
        ),
        request=ApplyRequestSerializer,
        responses={
            202: RunSerializer,
            409: OpenApiResponse(description=gettext_lazy("Not a preview, blocked, stale or busy")),
        },
    )
    def post(self, request: Request, run_id: str) -> Response:
        run = self.get_run(run_id)
        body = ApplyRequestSerializer(data=self.data(request))
        body.is_valid(raise_exception=True)
        user = request.user
        api_permissions.require_apply(user, run)
        if run.status != SyncRun.Status.PREVIEWED:
            message = _("Only a previewed run can be applied; this one is %(status)s.")
            raise Refused(409, message % {"status": run.get_status_display()})
        given = body.validated_data
        options = admin_views.apply_options(
            user,
            run,
            skip_errors=given["skip_errors"],
            force=given["force"],
            confirm=given.get("confirm"),
        )
        if isinstance(options, str):
            raise ValidationError({"confirm": [options]})
        self.check_blocked(run, options)
        run, error = start(lambda: queue.queue_apply(run, user, options=options))
        if isinstance(error, CONFLICTS):
            return self.run_response(run, status.HTTP_409_CONFLICT, detail=str(error))
        return self.run_response(run, status.HTTP_202_ACCEPTED)

    def check_blocked(self, run: SyncRun, options: dict[str, Any]) -> None:
        """A 409 (the preview kept) for what would fail the apply: row errors its job fails
        on, deletes past the guard."""
        errors, breaches = blocked_by(run, options)
        if errors:
            message = ngettext(
                "Run #%(run)s has %(errors)s row error and its job fails on row errors; apply "
                "with skip_errors to write the good rows only.",
                "Run #%(run)s has %(errors)s row errors and its job fails on row errors; apply "
                "with skip_errors to write the good rows only.",
                run.errors,
            ) % {"run": run.pk, "errors": run.errors}
            raise Refused(409, message)
        if breaches:
            going = sum(b["deleted"] for b in breaches)
            message = ngettext(
                "Run #%(run)s deletes %(going)s row, past the delete guard; apply with force "
                "and confirm=%(going)s.",
                "Run #%(run)s deletes %(going)s rows, past the delete guard; apply with force "
                "and confirm=%(going)s.",
                going,
            ) % {"run": run.pk, "going": going}
            raise Refused(409, message)


class RunDiscard(DjsyncAPIView):
    serializer_class = RunSerializer

    @documented(
        summary=gettext_lazy("Discard a preview"),
        request=None,
        responses={
            200: RunSerializer,
            409: OpenApiResponse(description=gettext_lazy("Not a preview")),
        },
    )
    def post(self, request: Request, run_id: str) -> Response:
        run = self.get_run(run_id)
        api_permissions.require_discard(request.user, run)
        if not admin_views.discard_preview(run):
            run.refresh_from_db()
            message = _("Only a previewed run can be discarded; this one is %(status)s.")
            raise Refused(409, message % {"status": run.get_status_display()})
        run.refresh_from_db()
        return self.run_response(run)


class RunCancel(DjsyncAPIView):
    serializer_class = RunSerializer

    @documented(
        summary=gettext_lazy("Cancel a queued or running run (it writes nothing)"),
        request=None,
        responses={
            200: RunSerializer,
            409: OpenApiResponse(description=gettext_lazy("Already finished")),
        },
    )
    def post(self, request: Request, run_id: str) -> Response:
        from djsync.runs.monitor import cancel

        run = self.get_run(run_id)
        api_permissions.require_cancel(request.user, run)
        try:
            run = cancel(run)
        except DjsyncError as exc:
            raise Refused(409, str(exc)) from None
        return self.run_response(run)


# -- the OpenAPI schema -----------------------------------------------------------------
def only_djsync(endpoints: list[tuple[Any, ...]], **kwargs: Any) -> list[tuple[Any, ...]]:
    """drf-spectacular's preprocessing hook: djsync's endpoints only, whatever else the
    project's URLconf serves."""
    return [e for e in endpoints if issubclass(getattr(e[3], "cls", object), DjsyncAPIView)]


class Schema(SpectacularAPIView):
    """The API's OpenAPI 3 schema (JSON, or YAML with ``?format=yaml``)."""

    renderer_classes = [
        OpenApiJsonRenderer,
        OpenApiJsonRenderer2,
        OpenApiYamlRenderer,
        OpenApiYamlRenderer2,
    ]

    custom_settings = {
        "TITLE": "djsync API",
        "DESCRIPTION": gettext_lazy("Jobs, runs, previews and their changes (docs/api.md)."),
        "VERSION": djsync.__version__,
        "PREPROCESSING_HOOKS": ["djsync.api.views.only_djsync"],
    }
