"""Plain-text and JSON renderings of a run, for the command line and for e-mails."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from djsync.display import duration, when
from djsync.engine.row_errors import group_errors
from djsync.mapping.memberships import membership_label
from djsync.models import SyncChange, SyncRun
from djsync.store import REFUSED

SYMBOL = {"create": "+", "update": "~", "delete": "-"}
#: How a change of a many-to-many through table reads (see djsync.mapping.memberships).
MEMBERSHIP_VERB = {"create": "add", "update": "update", "delete": "remove"}


def counts_text(counts: dict[str, int]) -> str:
    return ngettext(
        "%(created)s created, %(updated)s updated, %(deleted)s deleted, %(unchanged)s unchanged, "
        "%(errors)s row error",
        "%(created)s created, %(updated)s updated, %(deleted)s deleted, %(unchanged)s unchanged, "
        "%(errors)s row errors",
        counts["errors"],
    ) % {k: counts[k] for k in ("created", "updated", "deleted", "unchanged", "errors")}


#: Statuses of a run that wrote nothing to its target: its counts are what it would have done.
WROTE_NOTHING = (SyncRun.Status.FAILED, SyncRun.Status.CANCELLED, SyncRun.Status.DISCARDED)


def wrote_nothing(run: SyncRun) -> bool:
    """A failed, cancelled or discarded run: its one transaction rolled back (or never
    began), so its counts and changes are a plan that was not applied — unless it wrote to
    a target that is not transactional before it stopped (``rows_applied``)."""
    return run.status in WROTE_NOTHING and not run.rows_applied


def would_text(counts: dict[str, int]) -> str:
    """The counts of a plan that was not applied, worded as such."""
    errors = counts["errors"]
    return ngettext(
        "the plan would have created %(created)s, updated %(updated)s, deleted %(deleted)s "
        "(%(unchanged)s unchanged, %(errors)s row error)",
        "the plan would have created %(created)s, updated %(updated)s, deleted %(deleted)s "
        "(%(unchanged)s unchanged, %(errors)s row errors)",
        errors,
    ) % {k: counts[k] for k in ("created", "updated", "deleted", "unchanged", "errors")}


def outcome_text(run: SyncRun) -> str:
    """What the run did, after the dash of its summary line: the counts of a run that
    wrote (or a dry run), "nothing written" and what the plan would have done otherwise.
    The admin's run list and page use it too."""
    if run.status in WROTE_NOTHING and run.rows_applied:  # an API target kept what it took
        total = run.created + run.updated + run.deleted
        return _(
            "%(rows_applied)s of %(total)s changes written before it stopped; %(would_text)s"
        ) % {"rows_applied": run.rows_applied, "total": total, "would_text": would_text(run.counts)}
    if not wrote_nothing(run):
        return counts_text(run.counts)
    if not _has_plan(run):
        return _("nothing written")
    return _("nothing written; %(would_text)s") % {"would_text": would_text(run.counts)}


def _has_plan(run: SyncRun) -> bool:
    """Whether the run got as far as a plan (its counts were recorded)."""
    return any(isinstance(s, dict) and "created" in s for s in (run.stats or {}).values())


def paths(run: SyncRun) -> dict[str, str]:
    """The path each model of the run took (``staged: postgresql``, ``generic: <why>``;
    djsync.backends), as the run recorded it."""
    return {
        model: stats["path"]
        for model, stats in (run.stats or {}).items()
        if isinstance(stats, dict) and stats.get("path")
    }


def path_line(run: SyncRun) -> str | None:
    """``path: staged: postgresql``, or one ``model: path`` per model of a multi-model run."""
    found = paths(run)
    if not found:
        return None
    if len(found) == 1:
        return _("path: %(path)s") % {"path": next(iter(found.values()))}
    return _("paths: ") + "; ".join(f"{model}: {path}" for model, path in found.items())


def summary_line(run: SyncRun) -> str:
    mode = _(" (dry run)") if run.dry_run and not wrote_nothing(run) else ""
    took = (
        _(" in %(duration)s") % {"duration": duration(run.duration)}
        if run.duration is not None
        else ""
    )
    files = [s for s in (run.stats or {}).values() if isinstance(s, dict) and _file_of(s)]
    if files and not run.dry_run and not wrote_nothing(run):
        done = "; ".join(_export_text(s) for s in files)
        return f"{run.job.name}: {run.get_status_display()}{took} — {done}"
    line = f"{run.job.name}: {run.get_status_display()}{mode}{took} — {outcome_text(run)}"
    if wrote_nothing(run):
        return line
    for model, counts in (run.stats or {}).items():
        membership = membership_label(model) if isinstance(counts, dict) else None
        if membership is not None and "created" in counts:
            line += _("; memberships of %(membership)s: %(created)s added, %(deleted)s removed") % {
                "membership": membership,
                "created": counts["created"],
                "deleted": counts["deleted"],
            }
    return line


def _file_of(stats: dict[str, Any]) -> str | None:
    """The file an export wrote (runs before file targets kept it under ``path``)."""
    return stats.get("file") or (stats.get("path") if "exported" in stats else None)


def _export_text(stats: dict[str, Any]) -> str:
    """``exported 1200 rows to exports/p.csv (12 created, …)``, or nothing to change."""
    if "exported" not in stats:
        return _("nothing to change in %(path)s") % {"path": _file_of(stats)}
    line = ngettext(
        "exported %(exported)s row to %(path)s",
        "exported %(exported)s rows to %(path)s",
        stats["exported"],
    ) % {"exported": stats["exported"], "path": _file_of(stats)}
    whole = stats.get("whole")
    if isinstance(whole, dict) and not whole.get("new"):  # no counts per row to show
        line += _(" (rewritten whole, not compared row by row)")
    elif "created" in stats:
        line += f" ({counts_text({'errors': 0, **stats})})"
    return line


def times_line(run: SyncRun) -> str:
    """When the run was queued, started and finished, in the site's time zone and format."""
    parts = [_("queued %(when)s") % {"when": when(run.created_at)}]
    if run.started_at:
        parts.append(_("started %(when)s") % {"when": when(run.started_at)})
    if run.finished_at:
        parts.append(_("finished %(when)s") % {"when": when(run.finished_at)})
    return ", ".join(parts)


def key_text(key: list[Any]) -> str:
    return ", ".join(str(k) for k in key)


def requests(run: SyncRun) -> dict[str, Any]:
    """The targets of a run that are not models, by label: their preview lines say what
    will be sent (``PATCH https://…/accounts/17/``)."""
    from django.core.exceptions import ImproperlyConfigured

    from djsync.exceptions import ConfigurationError
    from djsync.mapping.registry import importers_of
    from djsync.runs.steps import exported_to, make_steps

    try:
        export = exported_to(run)
        if export is not None:  # an export: its file says which rows change
            return {
                s.importer.label: s.importer.target for s in make_steps(run.job, {}, export=export)
            }
        importers = importers_of(run.job.importer, job=run.job.name)
    except (ConfigurationError, ImproperlyConfigured):  # an importer gone since: plain lines
        return {}
    return {i.label: i.target for i in importers if not i.writes_model}


def change_text(
    change: SyncChange, *, written: bool = True, targets: dict[str, Any] | None = None
) -> str:
    """One change as a line: ``+ create app.Model [key] …``; a change that was not
    written (its run failed) reads ``+ would create …``; for a target that is not a
    model, what is sent (``→ POST https://…``); a change the target refused, its answer."""
    line = _change_text(change, written=written)
    target = (targets or {}).get(change.model)
    if target is not None:
        line += f" → {target.describe(change.action, tuple(change.key), change.object_pk)}"
    if change.error:
        line += _(" ✗ refused: %(error)s") % {"error": change.error}
    return line


def _change_text(change: SyncChange, *, written: bool = True) -> str:
    would = "" if written else "would "
    membership = membership_label(change.model)
    if membership is not None:  # a link of a many-to-many field: "+ add membership …"
        verb = MEMBERSHIP_VERB[change.action]
        head = (
            f"{SYMBOL[change.action]} {would}{verb} membership {membership} "
            f"[{key_text(change.key)}]"
        )
        if change.action != SyncChange.Action.UPDATE:
            return head
    else:
        head = (
            f"{SYMBOL[change.action]} {would}{change.action} {change.model} "
            f"[{key_text(change.key)}]"
        )
    if change.action == SyncChange.Action.UPDATE:
        before, after = change.before or {}, change.after or {}
        fields = "; ".join(
            f"{name}: {before.get(name)!r} → {after.get(name)!r}" for name in change.changed_fields
        )
        return f"{head} {fields}"
    if change.action == SyncChange.Action.CREATE:
        values = ", ".join(f"{k}={v!r}" for k, v in (change.after or {}).items())
        return f"{head} {values}"
    return head


def change_lines(run: SyncRun, limit: int | None = None) -> Iterator[str]:
    qs = run.changes.order_by("pk")
    if limit is not None:
        qs = qs[:limit]
    written = not wrote_nothing(run)
    targets = requests(run)
    for change in qs.iterator(chunk_size=2000):
        yield change_text(change, written=written, targets=targets)


def error_lines(run: SyncRun, limit: int | None = None) -> Iterator[str]:
    """Every stored row error, one a line (row, column, message)."""
    qs = run.row_errors.all()
    if limit is not None:
        qs = qs[:limit]
    for error in qs:
        yield f"! {run.source_name or _('source')}, {error}"


def error_groups(run: SyncRun) -> list[dict[str, Any]]:
    """The run's row errors grouped by column and message, largest first, with a
    ``model`` each: as counted over every error when the run was planned (exact even when
    MAX_ROW_ERRORS kept some out), else from the stored ones."""
    groups: list[dict[str, Any]] = []
    stats = run.stats or {}
    planned = False
    for model, counts in stats.items():
        if isinstance(counts, dict) and "error_groups" in counts:
            planned = True
            groups += [{**g, "model": model} for g in counts["error_groups"]]
    stored = run.row_errors.order_by("model", "row", "pk")
    if not planned and run.errors:
        models = list(run.row_errors.order_by("model").values_list("model", flat=True).distinct())
        for model in models:
            rows = stored.filter(model=model).iterator(chunk_size=2000)
            groups += [{**g, "model": model} for g in group_errors(rows)]
    elif planned:  # what targets refused when applied came after the plan's groups
        for model, counts in stats.items():
            if isinstance(counts, dict) and counts.get("refused"):
                rows = stored.filter(model=model, message__startswith=REFUSED).iterator(
                    chunk_size=2000
                )
                groups += [{**g, "model": model} for g in group_errors(rows)]
    return sorted(groups, key=lambda g: -g["rows"])


def group_text(group: dict[str, Any], *, model: str | None = None) -> str:
    """``721 rows, column 'tailnum': no plane with tailnum … ('N123', 'N456', …) — first
    at row 5``."""
    rows = group["rows"]
    where = _(", column %(column)r") % {"column": group["column"]} if group.get("column") else ""
    on = f" ({model})" if model else ""
    samples = ", ".join(repr(v) for v in group["samples"])
    if samples and rows > len(group["samples"]):
        samples += ", …"
    tail = f" ({samples})" if samples else ""
    first = group.get("first_row")
    if first is not None:
        tail += (_(" — first at row %(row)s") if rows > 1 else _(" — at row %(row)s")) % {
            "row": first
        }
    return ngettext(
        "%(rows)s row%(on)s%(where)s: %(message)s%(tail)s",
        "%(rows)s rows%(on)s%(where)s: %(message)s%(tail)s",
        rows,
    ) % {"rows": rows, "on": on, "where": where, "message": group["message"], "tail": tail}


def error_group_lines(run: SyncRun, limit: int | None = None) -> Iterator[str]:
    """The run's row errors grouped, one line a group (``! 721 rows, column …``)."""
    groups = error_groups(run)
    several = len({g["model"] for g in groups}) > 1
    for group in groups if limit is None else groups[:limit]:
        yield "! " + group_text(group, model=group["model"] if several else None)
    if limit is not None and len(groups) > limit:
        yield _("! … and %(groups)s more kinds of row error") % {"groups": len(groups) - limit}


def run_as_dict(run: SyncRun, *, changes: bool = False, error_limit: int = 100) -> dict[str, Any]:
    data: dict[str, Any] = {
        "job": run.job.name,
        "run": run.pk,
        "status": run.status,
        "dry_run": run.dry_run,
        # False when the run wrote nothing (failed, cancelled, discarded, or a dry run):
        # its counts are then what the plan would have done.
        "written": not run.dry_run and not wrote_nothing(run),
        "source": run.source_name,
        "counts": run.counts,
        "per_model": run.stats,
        "paths": paths(run),
        "duration": run.duration,
        # ISO 8601 in the site's time zone, its offset given: never UTC read as local.
        "queued_at": _iso(run.created_at),
        "started_at": _iso(run.started_at),
        "finished_at": _iso(run.finished_at),
        "error": run.error or None,
        "warnings": run.warnings,
        "error_groups": error_groups(run),
        "row_errors": [
            {
                "row": e.row,
                "column": e.column or None,
                "key": e.key,
                "message": e.message,
                "value": e.value,
            }
            for e in run.row_errors.all()[:error_limit]
        ],
    }
    if changes:
        data["changes"] = [
            {
                "action": c.action,
                "model": c.model,
                "key": c.key,
                "before": c.before,
                "after": c.after,
                "changed": c.changed_fields,
            }
            for c in run.changes.order_by("pk").iterator(chunk_size=2000)
        ]
    return data


def _iso(value: datetime | None) -> str | None:
    return None if value is None else timezone.localtime(value).isoformat()
