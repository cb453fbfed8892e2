"""Plan → target writes: limits first, then one transaction of batched statements.

Creates go through ``bulk_create``; updates are grouped by the set of fields they change
and sent as one ``executemany`` per group (Django's ``bulk_update`` builds a CASE per
field and is slower than that); deletes go through the ORM in batches so that cascades
and ``on_delete`` rules hold.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from itertools import islice
from typing import TYPE_CHECKING, TypeVar

from django.db import connections, transaction

from djsync.conf import settings
from djsync.engine.diff import Plan, StagedPlan, Update
from djsync.exceptions import DeleteGuardError, LimitExceeded, RowErrorsFound

if TYPE_CHECKING:
    from djsync.mapping.importers import BaseImporter, Switches

T = TypeVar("T")
Progress = Callable[[int], None]


def check_limits(plan: Plan, switches: Switches) -> None:
    """Raise before anything is written if the plan breaks a limit or the delete guard."""
    if plan.errors and switches.on_row_error == "fail":
        first = "; ".join(str(e) for e in plan.errors[:3])
        more = f" (and {len(plan.errors) - 3} more)" if len(plan.errors) > 3 else ""
        where = f" in {plan.source}" if getattr(plan, "source", "") else ""
        rows = plan.error_rows  # rows, not messages: a row with two bad cells is one
        raise RowErrorsFound(
            f"{plan.model}: {rows} bad row{'s' if rows != 1 else ''}"
            f"{where}, nothing written: {first}{more}"
        )
    counts = plan.counts
    for limit, count, what in (
        (switches.max_create, counts["created"], "creates"),
        (switches.max_update, counts["updated"], "updates"),
        (switches.max_delete, counts["deleted"], "deletes"),
        (switches.max_total, plan.total, "changes"),
    ):
        if limit is not None and count > limit:
            raise LimitExceeded(
                f"{plan.model}: the plan has {count} {what}, more than the limit of {limit}; "
                "nothing written"
            )
    guard = switches.delete_guard
    if plan.deletes and guard is not None and not switches.force and plan.rows_in_scope:
        share = len(plan.deletes) / plan.rows_in_scope
        if share > guard:
            raise DeleteGuardError(
                f"{plan.model}: the plan deletes {len(plan.deletes)} of {plan.rows_in_scope} "
                f"rows in scope ({share:.0%}), more than the delete guard of {guard:.0%}. "
                "Is the source empty or truncated? Nothing written; force the run to allow it."
            )


#: Every action of a plan, in the order they are written.
ALL = ("create", "update", "delete")


def apply_plan(
    plan: Plan,
    importer: BaseImporter,
    *,
    progress: Progress | None = None,
    actions: tuple[str, ...] = ALL,
) -> None:
    """Write the plan (or only its ``actions``: a multi-model job writes parents' creates
    first and their deletes last) to the importer's target inside one transaction."""
    using = importer.using
    with transaction.atomic(using=using):
        if isinstance(plan, StagedPlan):  # planned in staging tables: applied in SQL
            plan.apply_actions(progress=progress, actions=actions)
            return
        if actions != ALL:
            plan = replace(
                plan,
                creates=plan.creates if "create" in actions else [],
                updates=plan.updates if "update" in actions else [],
                deletes=plan.deletes if "delete" in actions else [],
            )
        apply_generic(plan, importer, progress=progress)


def apply_generic(plan: Plan, importer: BaseImporter, *, progress: Progress | None = None) -> None:
    """The portable path: works on every database Django supports."""
    done = 0
    size = settings.BATCH_SIZE
    model = importer.model
    manager = model._base_manager.db_manager(importer.using)
    for batch in batched(plan.creates, size):
        manager.bulk_create(
            [model(**importer.to_model_values(a.values)) for a in batch], batch_size=size
        )
        done += len(batch)
        _tick(progress, done)
    done = write_updates(plan.updates, importer, progress=progress, done=done)
    for gone in batched(plan.deletes, size):
        manager.filter(pk__in=[a.pk for a in gone]).delete()
        done += len(gone)
        _tick(progress, done)


def write_updates(
    updates: Sequence[Update], importer: BaseImporter, *, progress: Progress | None, done: int
) -> int:
    """``UPDATE … SET changed fields WHERE pk = %s``, one executemany per set of fields."""
    if not updates:
        return done
    model = importer.model
    connection = connections[importer.using]
    qn = connection.ops.quote_name
    pk_field = model._meta.pk
    groups: dict[tuple[str, ...], list[Update]] = defaultdict(list)
    for action in updates:
        groups[tuple(sorted(action.new))].append(action)
    with connection.cursor() as cursor:
        for names, actions in groups.items():
            model_fields = [importer.bound_fields[n].model_field for n in names]
            sets = ", ".join(f"{qn(f.column)} = %s" for f in model_fields)
            sql = f"UPDATE {qn(model._meta.db_table)} SET {sets} WHERE {qn(pk_field.column)} = %s"
            for batch in batched(actions, settings.BATCH_SIZE):
                params = []
                for action in batch:
                    values = importer.to_model_values(action.new)
                    params.append(
                        [f.get_db_prep_save(values[f.attname], connection) for f in model_fields]
                        + [pk_field.get_db_prep_value(action.pk, connection)]
                    )
                cursor.executemany(sql, params)
                done += len(batch)
                _tick(progress, done)
    return done


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def _tick(progress: Progress | None, done: int) -> None:
    if progress is not None:
        progress(done)
