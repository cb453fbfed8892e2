"""What a run's admin page shows, as plain data computed page by page: the changes (cells
old → new, what an API target is sent), the filters and tabs, the decision to apply or
discard (and what stops an apply), links to the target. Pages never load a whole plan:
changes and row errors are fetched one page at a time by (run, action) and primary key."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from django.contrib.admin import AdminSite
from django.core.exceptions import ImproperlyConfigured
from django.core.paginator import Page, Paginator
from django.db import models
from django.db.models import Q
from django.db.models.functions import Cast
from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from djsync import permissions
from djsync.display import duration, estimate_data, progress_text, run_estimate
from djsync.exceptions import DjsyncError
from djsync.mapping.registry import get_importer_class
from djsync.models import SyncChange, SyncJob, SyncRun
from djsync.runs import report
from djsync.runs.lifecycle import NOT_APPLIED
from djsync.runs.report import key_text, requests

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


def may_cancel(user: Any, run: SyncRun) -> bool:
    return permissions.may_decide(user, run) and permissions.can_preview(user, run.job)


def owner_name(run: SyncRun) -> str:
    return str(run.user) if run.user_id else _("nobody (a command or a schedule)")


def blocked_by(
    run: SyncRun, options: dict[str, Any] | None = None
) -> tuple[bool, list[dict[str, Any]]]:
    """What stops a preview's apply as it is (or with ``options`` instead of its own): row
    errors its job fails on, and the models whose deletes break the delete guard (each
    with its counts)."""
    from djsync.runs.steps import make_steps

    try:
        todo = make_steps(run.job, (run.options or {}) if options is None else options)
    except (DjsyncError, ImproperlyConfigured):
        return False, []
    errors = bool(run.errors) and any(s.switches.on_row_error == "fail" for s in todo)
    breaches = []
    for step in todo:
        counts = (run.stats or {}).get(step.importer.label, {})
        deleted, in_scope = counts.get("deleted", 0), counts.get("rows_in_scope", 0)
        guard = step.switches.delete_guard
        if deleted and guard is not None and not step.switches.force and in_scope:
            if deleted / in_scope > guard:
                breaches.append(
                    {
                        "model": step.importer.label,
                        "deleted": deleted,
                        "in_scope": in_scope,
                        "guard": f"{guard:.0%}",
                    }
                )
    return errors, breaches


def guard_breaches(run: SyncRun) -> list[dict[str, Any]]:
    return blocked_by(run)[1]


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
        **estimate_data(run),
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


def run_columns(run: SyncRun) -> list[tuple[str, str]]:
    """The mapping this run's upload was read through, for this upload only (field → header,
    "" for "not in the file"), as the mapping step confirmed it."""
    mapping = run.column_mapping if isinstance(run.column_mapping, dict) else {}
    return [
        (str(field), str(header))
        for entries in mapping.values()
        if isinstance(entries, list)
        for entry in entries
        if isinstance(entry, dict) and isinstance(entry.get("columns"), dict)
        for field, header in entry["columns"].items()
    ]


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
        "change_rows": [change_row(c, fields, targets) for c in changes_page.object_list],
        "changes_pages": page_links(request, changes_page, "page"),
        "errors_page": errors_page,
        "errors_pages": page_links(request, errors_page, "errors_page"),
        "errors_csv_url": run_url(run, "errors_csv", admin_site),
        "run_columns": run_columns(run),
        "paths": report.paths(run),  # staged: postgresql, generic: <why> (djsync.backends)
        "took": {
            "run": duration(run.duration),
            "preview": duration(run.preview_duration),
            "apply": duration(run.apply_duration),
        },
        "progress_text": progress_text(run_estimate(run)),
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
        changes = changes.annotate(changed_text=Cast("changed_fields", models.TextField())).filter(
            changed_text__contains=quoted
        )
    return changes


def changed_field_choices(run: SyncRun, fields: list[str]) -> list[str]:
    """The fields a run's changes may change: the importer's, else those it compared."""
    if fields:
        return fields
    compared: list[str] = []
    for counts in (run.stats or {}).values():
        if isinstance(counts, dict):
            compared += [f for f in counts.get("fields", []) if f not in compared]
    return compared


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


def decision(user: Any, run: SyncRun) -> dict[str, Any]:
    """Whether ``user`` may apply and discard ``run``, and what stops an apply: the admin's
    buttons and the HTTP API's answers come from here."""
    previewed = run.status == SyncRun.Status.PREVIEWED
    decide = permissions.may_decide(user, run)
    missing = permissions.missing_apply_permissions(user, run) if previewed else []
    errors, breaches = blocked_by(run) if previewed else (False, [])
    allowed = previewed and decide and not missing
    return {
        "not_yours": previewed and not decide,
        "can_apply": allowed,
        "blocked_by_errors": errors,
        "guard_breaches": breaches,
        "deletes_going": sum(b["deleted"] for b in breaches),
        "can_skip_errors": allowed and errors and user.has_perm(permissions.SKIP_ERRORS),
        "can_force": allowed and bool(breaches) and user.has_perm(permissions.FORCE_GUARD),
        "missing_permissions": missing if decide else [],
        "can_discard": previewed and decide and permissions.can_preview(user, run.job),
        "can_cancel": run.status in SyncRun.ACTIVE and may_cancel(user, run),
    }


def decision_context(request: HttpRequest, run: SyncRun, admin_site: AdminSite) -> dict[str, Any]:
    """Whether Apply and Discard are offered, and why not."""
    return {
        **decision(request.user, run),
        "owner": owner_name(run),
        "is_owner": permissions.owns_run(request.user, run),
        "apply_url": run_url(run, "apply", admin_site),
        "discard_url": run_url(run, "discard", admin_site),
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
