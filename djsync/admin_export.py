"""Export from a model's changelist: the selected rows (an action) or the filtered list (a
button) as a CSV, XLSX or JSON download, written by :func:`djsync.exports.jobs.export_queryset`.

The file follows the model's importer mapping when it has one (so it can be edited and
synced back), cells a spreadsheet would run as formulas are neutralized, and the rows are
streamed to a temporary file and from there to the browser, never held in memory.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from django.contrib import admin
from django.core.exceptions import ImproperlyConfigured, PermissionDenied
from django.db import router
from django.db.models import QuerySet
from django.http import FileResponse, HttpRequest, HttpResponse, HttpResponseBadRequest
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.text import slugify
from django.utils.translation import gettext_lazy as _

from djsync.exports.jobs import export_queryset
from djsync.mapping.registry import get_importer_class, importer_names

#: The GET parameter of the export view that names the format (the others are the
#: changelist's filters, search and ordering).
FORMAT_VAR = "_djsync_format"


class SyncExportMixin:
    """Adds "Export selected to CSV/XLSX/JSON" actions and export buttons for the filtered
    changelist to a ModelAdmin. Needs view permission on the model.

    Part of :class:`djsync.admin.SyncImportMixin`; usable on its own too:
    ``class ProductAdmin(SyncExportMixin, admin.ModelAdmin): ...``
    """

    #: Formats offered, in this order.
    sync_export_formats: Sequence[str] = ("csv", "xlsx", "json")
    #: Name of the importer whose mapping the file follows. None: the model's first
    #: registered importer (``get_sync_importers()`` with SyncImportMixin), else every
    #: concrete field.
    sync_export_importer: str | None = None

    def has_sync_export_permission(self, request: HttpRequest) -> bool:
        return bool(self.has_view_permission(request))  # type: ignore[attr-defined]

    def get_sync_export_importer(self) -> Any:
        """An instance of the importer whose mapping the export follows, or None."""
        model = self.model  # type: ignore[attr-defined]
        name = self.sync_export_importer
        if name is None:
            candidates = (
                self.get_sync_importers()
                if hasattr(self, "get_sync_importers")
                else [n for n in importer_names() if get_importer_class(n).model is model]
            )
            name = next(
                (n for n in candidates if "," not in n and get_importer_class(n).model is model),
                None,
            )
        if name is None:
            return None
        cls = get_importer_class(name)
        if cls.model is not model:
            raise ImproperlyConfigured(
                _("sync_export_importer %(name)r does not import %(model)s")
                % {"name": name, "model": model}
            )
        return cls(using=cls.database or router.db_for_read(model))

    # -- actions -------------------------------------------------------------------------
    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)  # type: ignore[misc]
        if self.has_sync_export_permission(request):
            for fmt in self.sync_export_formats:
                name = f"djsync_export_{fmt}"
                description = _("Export selected to %(format)s") % {"format": fmt.upper()}
                actions[name] = (_export_action(fmt), name, description)
        return actions

    def sync_export_response(self, request: HttpRequest, queryset: QuerySet, fmt: str) -> Any:
        """The download of ``queryset`` as a ``fmt`` file."""
        if not self.has_sync_export_permission(request):
            raise PermissionDenied
        opts = queryset.model._meta
        stamp = timezone.localtime().strftime("%Y-%m-%d-%H%M")
        filename = f"{slugify(opts.verbose_name_plural)}-{stamp}.{fmt}"
        return download(queryset, fmt, filename, importer=self.get_sync_export_importer())

    # -- the button: the filtered changelist ---------------------------------------------
    def get_urls(self) -> list[URLPattern]:
        opts = self.model._meta  # type: ignore[attr-defined]
        view = self.admin_site.admin_view(self.sync_export_view)  # type: ignore[attr-defined]
        name = f"{opts.app_label}_{opts.model_name}_sync_export"
        return [path("sync-export/", view, name=name), *super().get_urls()]  # type: ignore[misc]

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> Any:
        extra_context = dict(extra_context or {})
        if self.has_sync_export_permission(request):
            opts = self.model._meta  # type: ignore[attr-defined]
            url = reverse(
                f"{self.admin_site.name}:{opts.app_label}_{opts.model_name}_sync_export"  # type: ignore[attr-defined]
            )
            links = []
            for fmt in self.sync_export_formats:
                params = request.GET.copy()
                params[FORMAT_VAR] = fmt
                links.append((fmt.upper(), f"{url}?{params.urlencode()}"))
            extra_context["djsync_export_links"] = links
        return super().changelist_view(request, extra_context)  # type: ignore[misc]

    def sync_export_view(self, request: HttpRequest) -> HttpResponse:
        """Everything the changelist shows with the same filters, search and ordering."""
        if not self.has_sync_export_permission(request):
            raise PermissionDenied
        params = request.GET.copy()
        fmt = params.pop(FORMAT_VAR, ["csv"])[-1]
        if fmt not in self.sync_export_formats:
            return HttpResponseBadRequest(_("cannot export to %(fmt)r") % {"fmt": fmt})
        # The changelist reads its filters from here; the stubs allow only immutable ones.
        request.GET = params  # type: ignore[assignment]
        changelist = self.get_changelist_instance(request)  # type: ignore[attr-defined]
        return self.sync_export_response(request, changelist.get_queryset(request), fmt)


def _export_action(fmt: str) -> Callable[..., Any]:
    def export(modeladmin: Any, request: HttpRequest, queryset: QuerySet) -> Any:
        return modeladmin.sync_export_response(request, queryset, fmt)

    export.__name__ = f"djsync_export_{fmt}"
    return admin.action(permissions=["view"])(export)


def download(queryset: QuerySet, fmt: str, filename: str, *, importer: Any = None) -> FileResponse:
    """Write the export to a private temporary directory and stream it from there; the file
    is gone from the disk as soon as it is open (it lives on until the response is sent)."""
    folder = tempfile.mkdtemp(prefix="djsync-export-")
    try:
        result = export_queryset(
            queryset, Path(folder) / f"export.{fmt}", format=fmt, importer=importer
        )
        handle = open(result.path, "rb")  # noqa: SIM115 - closed by FileResponse
    finally:
        shutil.rmtree(folder, ignore_errors=True)  # an open file lives on (POSIX)
    return FileResponse(handle, as_attachment=True, filename=filename)
