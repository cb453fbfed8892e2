"""Plans kept in the database: a run's actions as SyncChange rows, its row errors as SyncRowError.

Stored plans are what the admin pages through and what a later apply writes, so loading
one converts each stored value back through the importer's converters.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from .apply import batched
from .conf import settings
from .diff import Action, Create, Delete, Plan, RowError, Update
from .models import SyncChange, SyncRowError, SyncRun

if TYPE_CHECKING:
    from .importers import BaseImporter


def audit_limit(run: SyncRun) -> int | None:
    """How many changes per action and model ``run`` stores: every one for a dry run
    (applying a preview reads them back), else the ``AUDIT_CHANGES`` setting (None: all)."""
    return None if run.dry_run else settings.AUDIT_CHANGES


def save_plan(run: SyncRun, plan: Plan) -> None:
    """Store the actions of ``plan`` on ``run`` (bounded by :func:`audit_limit`) and every
    row error, in batches. Actions left out are named in a warning added to the plan."""
    size = settings.BATCH_SIZE
    limit = audit_limit(run)
    save_changes = getattr(plan, "save_changes", None)
    if save_changes is not None:  # a staged plan stores its actions inside the database
        save_changes(run, limit=limit)
    actions = () if save_changes else plan.actions if limit is None else audited(plan, limit)
    for batch in batched(actions, size):
        SyncChange.objects.bulk_create(
            [_change(run, plan.model, a) for a in batch], batch_size=size
        )
    for batch in batched(plan.errors, size):
        SyncRowError.objects.bulk_create(
            [_row_error(run, plan.model, e) for e in batch], batch_size=size
        )
    note = audit_note(plan, limit)
    if note:
        plan.warnings.append(note)


def audited(plan: Plan, limit: int) -> Iterator[Action]:
    """The actions a run stores under ``limit`` per action: the first creates and updates by
    source row, the first deletes by primary key (the PostgreSQL fast path picks the same)."""
    for actions, order in (
        (plan.creates, _by_row),
        (plan.updates, _by_row),
        (plan.deletes, _by_pk),
    ):
        yield from actions if len(actions) <= limit else heapq.nsmallest(limit, actions, key=order)


def _by_row(action: Action) -> tuple[bool, int]:
    row = getattr(action, "row", None)
    return (row is None, row or 0)


def _by_pk(action: Action) -> Any:
    return action.pk


def audit_note(plan: Plan, limit: int | None) -> str | None:
    """The warning of a run whose stored changes leave some actions out, or None."""
    if limit is None:
        return None
    cut = [
        f"{len(actions):,} {what}"
        for what, actions in (
            ("creates", plan.creates),
            ("updates", plan.updates),
            ("deletes", plan.deletes),
        )
        if len(actions) > limit
    ]
    if not cut:
        return None
    return (
        f"only the first {limit:,} changes per action are stored for audit "
        f"(of {', '.join(cut)}; the AUDIT_CHANGES setting); the counts are exact"
    )


def _change(run: SyncRun, model: str, action: Action) -> SyncChange:
    if isinstance(action, Create):
        before, after, pk = None, action.values, ""
    elif isinstance(action, Update):
        before, after, pk = action.old, action.new, action.pk
    else:
        before, after, pk = action.old, None, action.pk
    return SyncChange(
        run=run,
        model=model,
        action=action.action,
        key=list(action.key),
        object_pk="" if pk in ("", None) else str(pk),
        row=getattr(action, "row", None),
        before=before,
        after=after,
        changed_fields=action.changed,
    )


def _row_error(run: SyncRun, model: str, error: RowError) -> SyncRowError:
    return SyncRowError(
        run=run,
        model=model,
        row=error.row,
        key=list(error.key) if error.key is not None else None,
        column=error.column or "",
        message=error.message,
        value="" if error.value is None else str(error.value),
        raw=_jsonable(error.raw),
    )


def _jsonable(raw: dict[str, Any] | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    return {
        str(k): v if isinstance(v, str | int | float | bool | type(None)) else str(v)
        for k, v in raw.items()
    }


def load_plan(run: SyncRun, importer: BaseImporter) -> Plan:
    """Rebuild the plan stored on ``run`` for ``importer``'s model, values converted back."""
    plan = Plan(model=importer.label)
    changes = run.changes.filter(model=importer.label).order_by("pk")
    for change in changes.iterator(chunk_size=settings.BATCH_SIZE):
        key = tuple(_convert(importer, dict(zip(importer.keys, change.key, strict=True))).values())
        if change.action == SyncChange.Action.CREATE:
            plan.creates.append(
                Create(key=key, values=_convert(importer, change.after), row=change.row)
            )
        elif change.action == SyncChange.Action.UPDATE:
            plan.updates.append(
                Update(
                    key=key,
                    pk=_pk(importer, change.object_pk),
                    old=_convert(importer, change.before),
                    new=_convert(importer, change.after),
                    row=change.row,
                )
            )
        else:
            plan.deletes.append(
                Delete(
                    key=key,
                    pk=_pk(importer, change.object_pk),
                    old=_convert(importer, change.before),
                )
            )
    stats = (run.stats or {}).get(importer.label, {})
    plan.unchanged = stats.get("unchanged", 0)
    plan.rows_in_scope = stats.get("rows_in_scope", 0)
    plan.rows_read = stats.get("rows_read", 0)
    return plan


def _convert(importer: BaseImporter, values: dict[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in (values or {}).items():
        field = importer.bound_fields[name]
        out[name] = None if value is None else field.restore(value)
    return out


def _pk(importer: BaseImporter, value: str) -> Any:
    return importer.model._meta.pk.to_python(value)


def iter_changes(run: SyncRun, action: str | None = None) -> Iterator[SyncChange]:
    qs = run.changes.all()
    if action:
        qs = qs.filter(action=action)
    return qs.iterator(chunk_size=settings.BATCH_SIZE)


def error_rows(run: SyncRun) -> Iterable[SyncRowError]:
    return run.row_errors.all()
