"""A stored preview back on the staged path: its changes become staging tables, in SQL.

A preview stores every action of its plan as ``SyncChange`` rows (key, before, after, the
changed fields). Applying it later — from the admin, ``runsync --apply`` or a task — must
write exactly those actions, and only if the target still holds what the preview saw.
Here both happen where the data is: :func:`restage` rebuilds a staged plan's two tables
(``src``: the values to write; ``act``: one row per action with the values it expects to
find) with ``INSERT … SELECT`` from the stored changes, :func:`check_stale` compares them
with the target in one query, and the plan's own ``apply_actions`` writes them. No row
passes through Python, so the apply costs what a direct run's apply costs, in flat memory.

Foreign keys are stored by the parent's natural key; :func:`resolve_parents` turns them
into primary keys by a join when the apply starts, so a child finds the parents that the
same transaction just created (multi-model jobs).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from django.db import models

from djsync.store import CHANGE_COLUMNS, change_column, changes_table

if TYPE_CHECKING:
    from djsync.backends.staged import StagedSqlPlan
    from djsync.models import SyncRun

#: Conflicting keys named in the error of a stale preview.
SHOWN = 10


def stored_fields(run: SyncRun, label: str) -> list[str] | None:
    """The fields a preview of ``label`` compared, as it recorded them (None: a preview
    recorded before djsync kept them, applied on the generic path)."""
    stats = (run.stats or {}).get(label)
    fields = stats.get("fields") if isinstance(stats, dict) else None
    return list(fields) if isinstance(fields, list) else None


def restage(plan: StagedSqlPlan, run: SyncRun) -> None:
    """Fill ``plan``'s staging tables from the changes stored on ``run`` for its model."""
    sqlite = plan.connection.vendor == "sqlite"
    keys = plan.key_positions()
    col = {name: f"ch.{change_column(name)}" for name in (*CHANGE_COLUMNS, "id")}
    values, olds, params, old_params = [], [], [], []
    for i, name in enumerate(plan.names):
        if i in keys:  # the key comes from the stored key, for every action
            sql, p = _stored(plan, i, col["key"], keys.index(i))
            values.append(sql)
            olds.append(sql)
            params += p
            old_params += p
        else:
            sql, p = _stored(plan, i, col["after"], name)
            values.append(sql)
            params += p
            sql, p = _stored(plan, i, col["before"], name)
            olds.append(sql)
            old_params += p
    table = changes_table()
    mine = f"{col['run']} = %s AND {col['model']} = %s"
    width = len(plan.fields)
    relations = [i for i, f in enumerate(plan.fields) if f.is_relation]
    # Every Field has rel_db_type(); django-stubs declares it on integer fields only.
    pk_type = plan.importer.model._meta.pk.rel_db_type(plan.connection)  # type: ignore[attr-defined]
    columns = [f"c{i}" for i in range(width)]
    with plan.connection.cursor() as cursor:
        plan.create_src(cursor, row_type="bigint")
        rowid = "rowid, " if sqlite else ""
        ids = f"{col['id']}, {col['id']}, " if sqlite else f"{col['id']}, "
        cursor.execute(
            f"INSERT INTO {plan.src} ({rowid}_row, _skip, {', '.join(columns)}) "
            f"SELECT {ids}{'0' if sqlite else 'false'}, "
            f"{', '.join(values)} FROM {table} ch WHERE {mine} AND {col['action']} <> 'delete'",
            [*params, run.pk, plan.model],
        )
        olds_ddl = ", ".join(
            f"o{i} {plan.value_field(f).db_type(plan.connection)}"
            for i, f in enumerate(plan.fields)
        )
        changed_type = "text" if sqlite else "text[]"
        src_column = "_src bigint, " if sqlite else ""
        cursor.execute(
            f"CREATE TEMP TABLE {plan.act} ({src_column}_row bigint, _pk {pk_type}, "
            f"act varchar(1), {olds_ddl}, changed {changed_type})"
        )
        changed = (
            f"CAST({col['changed_fields']} AS text)"
            if sqlite
            else f"ARRAY(SELECT jsonb_array_elements_text({col['changed_fields']}))"
        )
        this_row = f"CASE WHEN {col['action']} = 'delete' THEN NULL ELSE {col['id']} END"
        cursor.execute(
            f"INSERT INTO {plan.act} SELECT {f'{this_row}, ' if sqlite else ''}{this_row}, "
            f"CAST(NULLIF({col['object_pk']}, '') AS {pk_type}), "
            f"CASE {col['action']} WHEN 'create' THEN 'c' WHEN 'update' THEN 'u' ELSE 'd' END, "
            f"{', '.join(olds)}, CASE WHEN {col['action']} = 'update' THEN {changed} END "
            f"FROM {table} ch WHERE {mine}",
            [*old_params, run.pk, plan.model],
        )
        cursor.execute(f"SELECT act, count(*) FROM {plan.act} GROUP BY act")
        found = dict(cursor.fetchall())
        if sum(found.values()) >= 20_000 and not sqlite:
            cursor.execute(f"ANALYZE {plan.src}")
            cursor.execute(f"ANALYZE {plan.act}")
        if sqlite:
            cursor.execute(f"CREATE INDEX {plan.act}_pk ON {plan.act} (_pk)")
    plan.run, plan.stored_limit = run, None
    plan.parents = relations
    creates, updates, deletes = found.get("c", 0), found.get("u", 0), found.get("d", 0)
    plan.good, plan.new, plan.missing = creates + updates, creates, deletes
    if sqlite:
        plan.all_new = creates == plan.good  # type: ignore[attr-defined]
    stats = (run.stats or {}).get(plan.model, {})
    plan.unchanged = stats.get("unchanged", 0)
    plan.rows_in_scope = stats.get("rows_in_scope", 0)
    plan.rows_read = stats.get("rows_read", 0)
    plan.set_counts(creates, updates, deletes)


def _stored(plan: StagedSqlPlan, i: int, document: str, member: str | int) -> tuple[str, list]:
    """SQL reading field ``i``'s value from a stored JSON ``document`` (a column of the
    change: key array, before or after object) as the database stores the field."""
    field = plan.value_field(plan.fields[i])
    connection = plan.connection
    if connection.vendor == "sqlite":  # the path inline: the forms below repeat it
        path = _text(f"$[{member}]" if isinstance(member, int) else f"$.{json.dumps(member)}")
        value = f"json_extract({document}, {path})"
        if isinstance(field, models.JSONField):
            return (
                f"CASE WHEN coalesce(json_type({document}, {path}), 'null') = 'null' THEN NULL "
                f"ELSE json_quote({value}) END",
                [],
            )
        return _sqlite_form(field, value), []
    if isinstance(field, models.JSONField):
        return f"NULLIF({document} -> %s, 'null'::jsonb)", [member]
    return f"CAST({document} ->> %s AS {field.db_type(connection)})", [member]


def _sqlite_form(field: models.Field, value: str) -> str:
    """SQL turning the JSON form of a value (``DjangoJSONEncoder``'s) into the form Django
    stores in SQLite for ``field``."""
    if isinstance(field, models.DateTimeField):  # "…T10:00:00.123Z" → "… 10:00:00.123000"
        text = f"strftime('%%Y-%%m-%%d %%H:%%M:%%f', {value})"
        return (
            f"CASE WHEN {value} IS NULL THEN NULL WHEN substr({text}, 20) = '.000' "
            f"THEN substr({text}, 1, 19) ELSE {text} || '000' END"
        )
    if isinstance(field, models.TimeField):  # "10:00:00.123" → "10:00:00.123000"
        return (
            f"CASE WHEN length({value}) > 8 THEN substr({value}, 1, 12) || '000' ELSE {value} END"
        )
    if isinstance(field, models.UUIDField):
        return f"replace({value}, '-', '')"
    if isinstance(field, models.DecimalField):
        return f"CAST({value} AS NUMERIC)"
    return value


def _text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"
