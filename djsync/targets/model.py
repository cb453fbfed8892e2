"""The Django model target: rows of a model on a database alias, written in one transaction.

It is the main target, and the only one with staged paths (djsync.backends): the
orchestrator sends a model step there when it can; this module is the generic path, on
any database Django supports. The importer's ``get_queryset``/``get_scope`` hooks say
which rows are in scope.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, Protocol, cast

from django.db import connections, models

from djsync.conf import settings
from djsync.engine.apply import batched
from djsync.engine.diff import Key, Plan, TargetRow, Update
from djsync.targets.base import Mapper, Target, WriteResult
from djsync.targets.notify import Notifier

Progress = Callable[[int], None]


class ModelMapper(Mapper, Protocol):
    """What the model target asks of its importer: the rows in scope, and values as the
    model takes them (foreign keys by primary key)."""

    model: type[models.Model]
    bound_fields: dict[str, Any]

    def get_queryset(self) -> models.QuerySet[Any]: ...

    def get_scope(self, queryset: models.QuerySet[Any]) -> models.QuerySet[Any]: ...

    def scoped_queryset(self) -> models.QuerySet[Any]: ...

    def to_model_values(self, values: dict[str, Any]) -> dict[str, Any]: ...


class ModelTarget(Target):
    """``model``'s rows on the database ``using``."""

    transactional = True

    def __init__(self, model: type[models.Model], using: str) -> None:
        super().__init__()
        self.model = model
        self.using = using
        self.label = model._meta.label

    def get_field(self, name: str) -> models.Field[Any, Any]:
        return cast("models.Field[Any, Any]", self.model._meta.get_field(name))

    def field_names(self) -> list[str]:
        return [
            f.name
            for f in self.model._meta.concrete_fields
            if f.editable and not (f.primary_key and isinstance(f, models.AutoField))
        ]

    def restore_pk(self, text: str) -> Any:
        return self.model._meta.pk.to_python(text)

    def describe(self, action: str, key: Key, pk: Any) -> str:
        shown = key[0] if len(key) == 1 else key
        return f"{action} {self.label} {shown!r}" + (f" (pk {pk})" if pk not in (None, "") else "")

    def read_rows(self, importer: Mapper) -> dict[Key, TargetRow]:
        """The rows in scope, by key, holding only the fields this run compares."""
        importer = cast(ModelMapper, importer)
        fields = importer.active_fields
        paths = [f.target_path for f in fields]
        qs = importer.scoped_queryset().values_list("pk", *paths)
        rows: dict[Key, TargetRow] = {}
        for pk, *cells in qs.iterator(chunk_size=settings.BATCH_SIZE):
            values = importer.normalize_target_row(
                dict(zip((f.name for f in fields), cells, strict=True))
            )
            rows[importer.key_of(values)] = TargetRow(pk=pk, values=values)
        return rows

    def write(
        self,
        plan: Plan,
        importer: Mapper,
        *,
        progress: Callable[[int], None] | None = None,
        actions: tuple[str, ...] = ("create", "update", "delete"),
        result: WriteResult | None = None,
    ) -> WriteResult:
        """Bulk creates, grouped updates, batched deletes (:func:`apply_generic`); an error
        undoes the whole transaction, so nothing is ever refused item by item."""
        importer = cast(ModelMapper, importer)
        if actions != ("create", "update", "delete"):
            plan = replace(
                plan,
                creates=plan.creates if "create" in actions else [],
                updates=plan.updates if "update" in actions else [],
                deletes=plan.deletes if "delete" in actions else [],
            )
        apply_generic(plan, importer, progress=progress)
        result = result if result is not None else WriteResult()
        result.written += plan.total
        return result


def apply_generic(plan: Plan, importer: ModelMapper, *, progress: Progress | None = None) -> None:
    """The portable path: works on every database Django supports. Receivers of
    ``batch_applied`` hear of each batch (djsync.targets.notify)."""
    done = 0
    size = settings.BATCH_SIZE
    model = importer.model
    manager = model._base_manager.db_manager(importer.using)
    told = Notifier(importer)
    for batch in batched(plan.creates, size):
        told.created(
            manager.bulk_create(
                [model(**importer.to_model_values(a.values)) for a in batch], batch_size=size
            )
        )
        done += len(batch)
        _tick(progress, done)
    done = write_updates(plan.updates, importer, progress=progress, done=done, told=told)
    for gone in batched(plan.deletes, size):
        pks = [a.pk for a in gone]
        told.deleting(pks)
        manager.filter(pk__in=pks).delete()
        told.applied(deleted=pks)
        done += len(gone)
        _tick(progress, done)


def write_updates(
    updates: Sequence[Update],
    importer: ModelMapper,
    *,
    progress: Progress | None,
    done: int,
    told: Notifier | None = None,
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
                if told:
                    told.applied(updated=[action.pk for action in batch])
                done += len(batch)
                _tick(progress, done)
    return done


def _tick(progress: Progress | None, done: int) -> None:
    if progress is not None:
        progress(done)
