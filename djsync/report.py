"""Plain-text and JSON renderings of a run, for the command line and for e-mails."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .memberships import membership_label
from .models import SyncChange, SyncRun

SYMBOL = {"create": "+", "update": "~", "delete": "-"}
#: How a change of a many-to-many through table reads (see djsync.memberships).
MEMBERSHIP_VERB = {"create": "add", "update": "update", "delete": "remove"}


def counts_text(counts: dict[str, int]) -> str:
    return (
        f"{counts['created']} created, {counts['updated']} updated, {counts['deleted']} deleted, "
        f"{counts['unchanged']} unchanged, {counts['errors']} row error"
        f"{'' if counts['errors'] == 1 else 's'}"
    )


def summary_line(run: SyncRun) -> str:
    mode = " (dry run)" if run.dry_run else ""
    took = f" in {run.duration:.2f} s" if run.duration is not None else ""
    exported = [s for s in (run.stats or {}).values() if isinstance(s, dict) and "exported" in s]
    if exported:
        done = "; ".join(f"exported {s['exported']} rows to {s['path']}" for s in exported)
        return f"{run.job.name}: {run.status}{took} — {done}"
    line = f"{run.job.name}: {run.status}{mode}{took} — {counts_text(run.counts)}"
    for model, counts in (run.stats or {}).items():
        membership = membership_label(model) if isinstance(counts, dict) else None
        if membership is not None and "created" in counts:
            line += (
                f"; memberships of {membership}: {counts['created']} added, "
                f"{counts['deleted']} removed"
            )
    return line


def key_text(key: list[Any]) -> str:
    return ", ".join(str(k) for k in key)


def change_text(change: SyncChange) -> str:
    membership = membership_label(change.model)
    if membership is not None:  # a link of a many-to-many field: "+ add membership …"
        verb = MEMBERSHIP_VERB[change.action]
        head = f"{SYMBOL[change.action]} {verb} membership {membership} [{key_text(change.key)}]"
        if change.action != SyncChange.Action.UPDATE:
            return head
    else:
        head = f"{SYMBOL[change.action]} {change.action} {change.model} [{key_text(change.key)}]"
    if change.action == SyncChange.Action.UPDATE:
        fields = "; ".join(
            f"{name}: {change.before.get(name)!r} → {change.after.get(name)!r}"
            for name in change.changed_fields
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
    for change in qs.iterator(chunk_size=2000):
        yield change_text(change)


def error_lines(run: SyncRun, limit: int | None = None) -> Iterator[str]:
    qs = run.row_errors.all()
    if limit is not None:
        qs = qs[:limit]
    for error in qs:
        yield f"! {run.source_name or 'source'}, {error}"


def run_as_dict(run: SyncRun, *, changes: bool = False, error_limit: int = 100) -> dict[str, Any]:
    data: dict[str, Any] = {
        "job": run.job.name,
        "run": run.pk,
        "status": run.status,
        "dry_run": run.dry_run,
        "source": run.source_name,
        "counts": run.counts,
        "per_model": run.stats,
        "duration": run.duration,
        "error": run.error or None,
        "warnings": run.warnings,
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
