"""Plans kept in the database: a run's actions as SyncChange rows, its row errors as SyncRowError.

Stored plans are what the admin pages through and what a later apply writes, so loading
one converts each stored value back through the importer's converters.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connections, router, transaction
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from djsync.conf import settings
from djsync.engine.apply import batched
from djsync.engine.diff import Action, Create, Delete, Plan, RowError, StagedPlan, Update
from djsync.engine.row_errors import ERROR_GROUPS
from djsync.mapping.fields import concrete_field
from djsync.models import SyncChange, SyncRowError, SyncRun

if TYPE_CHECKING:
    from djsync.mapping.importers import BaseImporter
    from djsync.targets.base import Refused


def audit_limit(run: SyncRun) -> int | None:
    """How many changes per action and model ``run`` stores: every one for a dry run
    (applying a preview reads them back), else the ``AUDIT_CHANGES`` setting (None: all)."""
    return None if run.dry_run else settings.AUDIT_CHANGES


def save_plan(run: SyncRun, plan: Plan) -> None:
    """Store the actions of ``plan`` on ``run`` (bounded by :func:`audit_limit`) and every
    row error, in batches. Actions left out are named in a warning added to the plan."""
    size = settings.BATCH_SIZE
    limit = audit_limit(run)
    actions: Iterable[Action] = ()
    if isinstance(plan, StagedPlan):  # from its staging tables to the history, in SQL
        for select, params in plan.change_selects(run, limit=limit):
            insert_changes(select, params, using=plan.connection.alias)
    else:
        actions = plan.actions if limit is None else audited(plan, limit)
    for batch in batched(actions, size):
        SyncChange.objects.bulk_create(
            [_change(run, plan.model, a) for a in batch], batch_size=size
        )
    save_row_errors(run, plan)
    note = audit_note(plan, limit)
    if note:
        plan.warnings.append(note)


#: The columns of a stored change, in the order a backend's SELECT gives them
#: (:meth:`djsync.engine.diff.StagedPlan.change_selects`).
CHANGE_COLUMNS = (
    "run",
    "model",
    "action",
    "key",
    "object_pk",
    "row",
    "before",
    "after",
    "changed_fields",
)


def change_column(name: str) -> str:
    """The quoted database column of the SyncChange field ``name``, for SQL of backends."""
    connection = connections[router.db_for_write(SyncChange)]
    return connection.ops.quote_name(concrete_field(SyncChange, name).column)


def changes_table() -> str:
    connection = connections[router.db_for_write(SyncChange)]
    return connection.ops.quote_name(SyncChange._meta.db_table)


def insert_changes(select: str, params: list[Any], *, using: str | None = None) -> None:
    """Store the changes a backend selects from its staging tables: ``INSERT … SELECT``
    inside the database, no row through Python; from staging in another database (a
    target on another alias), in batches through this process. The history schema stays
    here."""
    history = router.db_for_write(SyncChange)
    columns = ", ".join(change_column(name) for name in CHANGE_COLUMNS)
    if using is None or using == history:
        with connections[history].cursor() as cursor:
            cursor.execute(f"INSERT INTO {changes_table()} ({columns}) {select}", params)
        return
    connection = connections[history]
    json_columns = {"key", "before", "after", "changed_fields"}
    cast = "::jsonb" if connection.vendor == "postgresql" else ""
    marks = ", ".join(f"%s{cast}" if n in json_columns else "%s" for n in CHANGE_COLUMNS)
    insert = f"INSERT INTO {changes_table()} ({columns}) VALUES ({marks})"
    positions = [i for i, n in enumerate(CHANGE_COLUMNS) if n in json_columns]
    with connections[using].cursor() as source, connection.cursor() as cursor:
        source.execute(select, params)
        while rows := source.fetchmany(settings.BATCH_SIZE):
            batch = [list(row) for row in rows]
            for row in batch:
                for i in positions:
                    if row[i] is not None and not isinstance(row[i], str):
                        row[i] = json.dumps(row[i])
            cursor.executemany(insert, batch)


def save_row_errors(run: SyncRun, plan: Plan) -> None:
    """Store the plan's row errors, at most ``MAX_ROW_ERRORS`` per run (every model of a
    multi-model run together); the first ones found are kept, the counts stay exact and a
    warning added to the plan says how many were left out. Every path — generic, staged
    on PostgreSQL or SQLite — keeps its row errors on the plan and stores them here."""
    cap = settings.MAX_ROW_ERRORS
    errors = plan.errors
    if cap is not None:
        room = max(0, int(cap) - run.row_errors.count()) if errors else 0
        if len(errors) > room:
            plan.warnings.append(
                _(
                    "only %(room)s of the %(errors)s row error messages (%(error_rows)s rows) are "
                    "stored (the MAX_ROW_ERRORS setting, %(cap)s per run); the counts are exact"
                )
                % {
                    "room": format(room, ","),
                    "errors": format(len(errors), ","),
                    "error_rows": format(plan.error_rows, ","),
                    "cap": format(int(cap), ","),
                }
            )
            errors = errors[:room]
    size = settings.BATCH_SIZE
    for batch in batched(errors, size):
        SyncRowError.objects.bulk_create(
            [_row_error(run, plan.model, e) for e in batch], batch_size=size
        )


def error_stats(plan: Plan) -> dict[str, Any]:
    """What a run keeps in ``stats[model]`` about its row errors: the largest groups (exact
    row counts, over every error, stored or not) and how many groups there were."""
    if not plan.errors:
        return {}
    groups = plan.errors.groups.result()
    return {"error_groups": groups[:ERROR_GROUPS], "error_group_count": len(groups)}


def audited(plan: Plan, limit: int) -> Iterator[Action]:
    """The actions a run stores under ``limit`` per action: the first creates and updates by
    source row, the first deletes by primary key (the PostgreSQL fast path picks the same)."""
    kinds: tuple[tuple[Sequence[Action], Callable[[Any], Any]], ...] = (
        (plan.creates, _by_row),
        (plan.updates, _by_row),
        (plan.deletes, _by_pk),
    )
    for actions, order in kinds:
        yield from actions if len(actions) <= limit else heapq.nsmallest(limit, actions, key=order)


def _by_row(action: Action) -> tuple[bool, int]:
    row = getattr(action, "row", None)
    return (row is None, row or 0)


def _by_pk(action: Delete) -> Any:
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
    return _(
        "only the first %(limit)s changes per action are stored for audit (of %(cut)s; the "
        "AUDIT_CHANGES setting); the counts are exact"
    ) % {"limit": format(limit, ","), "cut": ", ".join(cut)}


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
        action = _action(importer, change)
        getattr(plan, f"{change.action}s").append(action)
    stats = (run.stats or {}).get(importer.label, {})
    plan.unchanged = stats.get("unchanged", 0)
    plan.rows_in_scope = stats.get("rows_in_scope", 0)
    plan.rows_read = stats.get("rows_read", 0)
    return plan


def load_actions(
    run: SyncRun, importer: BaseImporter, action: str, start: int, stop: int
) -> list[Action]:
    """The stored ``action``s (create, update or delete) of ``importer``'s model from
    position ``start`` to ``stop``, in the order they were stored: one page, not the plan."""
    changes = run.changes.filter(model=importer.label, action=action).order_by("pk")
    return [_action(importer, change) for change in changes[start:stop]]


def _action(importer: BaseImporter, change: SyncChange) -> Action:
    key = tuple(_convert(importer, dict(zip(importer.keys, change.key, strict=True))).values())
    if change.action == SyncChange.Action.CREATE:
        return Create(key=key, values=_convert(importer, change.after), row=change.row)
    if change.action == SyncChange.Action.UPDATE:
        return Update(
            key=key,
            pk=_pk(importer, change.object_pk),
            old=_convert(importer, change.before),
            new=_convert(importer, change.after),
            row=change.row,
        )
    return Delete(
        key=key, pk=_pk(importer, change.object_pk), old=_convert(importer, change.before)
    )


def _convert(importer: BaseImporter, values: dict[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in (values or {}).items():
        field = importer.bound_fields[name]
        out[name] = None if value is None else field.restore(value)
    return out


def _pk(importer: BaseImporter, value: str) -> Any:
    return importer.target.restore_pk(value)


#: How a row error of a change the target refused begins.
REFUSED = "the target refused"


def save_refusals(run: SyncRun, model: str, refused: Sequence[Refused]) -> None:
    """What a target refused item by item when a run was applied: a row error each (key,
    the field it blamed, its answer), and the answer on the stored change, at most
    ``MAX_ROW_ERRORS`` per run like every row error."""
    cap = settings.MAX_ROW_ERRORS
    room = len(refused) if cap is None else max(0, int(cap) - run.row_errors.count())
    kept = list(refused[:room])
    SyncRowError.objects.bulk_create(
        [
            SyncRowError(
                run=run,
                model=model,
                row=getattr(r.action, "row", None),
                key=list(r.action.key),
                column=r.field or "",
                message=f"{REFUSED} to {r.action.action} it: {r.message}",
            )
            for r in kept
        ],
        batch_size=settings.BATCH_SIZE,
    )
    # The answer on each refused change: one pass over the run's stored changes of each
    # action (by the (run, action) index), not one query per refusal.
    answers: dict[str, dict[str, str]] = {}
    for r in kept:
        answers.setdefault(r.action.action, {})[_key_json(r.action.key)] = r.message[:2000]
    for action, by_key in answers.items():
        hits = []
        changes = run.changes.filter(model=model, action=action).only("pk", "key")
        for change in changes.iterator(chunk_size=settings.BATCH_SIZE):
            answer = by_key.get(_key_json(change.key))
            if answer is not None:
                change.error = answer
                hits.append(change)
        SyncChange.objects.bulk_update(hits, ["error"], batch_size=settings.BATCH_SIZE)


def _key_json(key: Sequence[Any]) -> str:
    """A key as the history stores it (JSON), to match a plan's key with a stored one."""
    return json.dumps(list(key), cls=DjangoJSONEncoder)


def iter_changes(run: SyncRun, action: str | None = None) -> Iterator[SyncChange]:
    qs = run.changes.all()
    if action:
        qs = qs.filter(action=action)
    return qs.iterator(chunk_size=settings.BATCH_SIZE)


def error_rows(run: SyncRun) -> Iterable[SyncRowError]:
    return run.row_errors.all()


# -- pruning old history --------------------------------------------------------------------
#: Runs taken per batch while pruning; their changes and row errors go PRUNE_BATCH_SIZE rows
#: per statement.
RUNS_PER_BATCH = 200


@dataclass
class Pruned:
    """What :func:`prune_runs` removed (or, for a dry run, would remove)."""

    runs: int = 0
    changes: int = 0
    row_errors: int = 0
    uploads: int = 0

    def __str__(self) -> str:
        return _(
            "%(runs)s runs, %(changes)s changes, %(row_errors)s row errors, %(uploads)s uploaded "
            "files"
        ) % {
            "runs": format(self.runs, ","),
            "changes": format(self.changes, ","),
            "row_errors": format(self.row_errors, ","),
            "uploads": format(self.uploads, ","),
        }


def prunable_runs(older_than: timedelta, *, now: datetime | None = None) -> QuerySet[SyncRun]:
    """Runs queued more than ``older_than`` ago that may go: never an active run, never a
    preview still waiting for its apply (younger than ``UPLOAD_MAX_AGE``)."""
    now = now or timezone.now()
    fresh = now - timedelta(seconds=float(settings.UPLOAD_MAX_AGE))
    return (
        SyncRun.objects.filter(created_at__lt=now - older_than)
        .exclude(status__in=SyncRun.ACTIVE)
        .exclude(status=SyncRun.Status.PREVIEWED, created_at__gte=fresh)
    )


def prune_runs(
    older_than: timedelta,
    *,
    batch_size: int | None = None,
    dry_run: bool = False,
    now: datetime | None = None,
) -> Pruned:
    """Delete old runs with their changes, row errors and uploaded files, in bounded
    batches (each its own transaction): ``RUNS_PER_BATCH`` runs at a time, their changes
    and row errors ``batch_size`` (PRUNE_BATCH_SIZE) rows per statement."""
    from djsync.uploads import delete_upload

    size = int(batch_size or settings.PRUNE_BATCH_SIZE)
    runs = prunable_runs(older_than, now=now)
    done = Pruned()
    if dry_run:
        selected = runs.values("pk")
        done.runs = runs.count()
        done.changes = SyncChange.objects.filter(run_id__in=selected).count()
        done.row_errors = SyncRowError.objects.filter(run_id__in=selected).count()
        done.uploads = runs.exclude(upload="").count()
        return done
    last = 0
    while True:
        pks = runs.filter(pk__gt=last).order_by("pk").values_list("pk", flat=True)
        batch = list(pks[:RUNS_PER_BATCH])
        if not batch:
            return done
        last = batch[-1]
        # A preview older than the upload expiry is discarded first, so that an apply
        # starting now finds it taken; done runs never change status again.
        SyncRun.objects.filter(pk__in=batch).discard_previews()
        doomed = SyncRun.objects.filter(pk__in=batch, status__in=SyncRun.DONE)
        ids = list(doomed.values_list("pk", flat=True))
        done.changes += _delete_in_batches(SyncChange, ids, size)
        done.row_errors += _delete_in_batches(SyncRowError, ids, size)
        for name in doomed.exclude(upload="").values_list("upload", flat=True):
            delete_upload(name)
            done.uploads += 1
        done.runs += SyncRun.objects.filter(pk__in=ids).delete()[1].get(SyncRun._meta.label, 0)


def _delete_in_batches(
    model: type[SyncChange | SyncRowError], run_ids: list[int], size: int
) -> int:
    """Delete the rows of ``model`` that belong to ``run_ids``, ``size`` rows a statement."""
    deleted = 0
    rows = model._default_manager.filter(run_id__in=run_ids)
    while True:
        pks = list(rows.values_list("pk", flat=True)[:size])
        if not pks:
            return deleted
        with transaction.atomic(using=router.db_for_write(model)):
            model._default_manager.filter(pk__in=pks).delete()
        deleted += len(pks)
