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
from typing import TYPE_CHECKING, Any

from django.db import models

from ..exceptions import ConflictError
from ..store import CHANGE_COLUMNS, change_column, changes_table

if TYPE_CHECKING:
    from ..models import SyncRun
    from .staged import StagedSqlPlan

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
            values.append(sql), olds.append(sql)
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
    pk_type = plan.importer.model._meta.pk.rel_db_type(plan.connection)
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
    plan.run, plan.stored_limit, plan.restaged = run, None, True
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


def _differs(plan: StagedSqlPlan, i: int, a: str, b: str) -> str:
    """SQL: a value the preview saw (``a``) is not the target's now (``b``). Times compare
    to the millisecond: the stored JSON keeps no more."""
    field = plan.value_field(plan.fields[i])
    if plan.connection.vendor == "sqlite":
        if isinstance(field, models.DateTimeField):
            return f"substr({a}, 1, 23) IS NOT substr({b}, 1, 23)"
        if isinstance(field, models.TimeField):
            return f"substr({a}, 1, 12) IS NOT substr({b}, 1, 12)"
        if isinstance(field, models.JSONField):
            return f"({a} IS NOT {b} AND NOT djsync_json_same({a}, {b}))"
        return f"{a} IS NOT {b}"
    if isinstance(field, models.DateTimeField):
        return f"date_trunc('milliseconds', {a}) IS DISTINCT FROM date_trunc('milliseconds', {b})"
    if isinstance(field, models.TimeField):
        return (
            f"date_trunc('milliseconds', date '2000-01-01' + {a}) IS DISTINCT FROM "
            f"date_trunc('milliseconds', date '2000-01-01' + {b})"
        )
    return f"{a} IS DISTINCT FROM {b}"


def check_stale(plan: StagedSqlPlan) -> None:
    """Raise ConflictError naming the keys whose target rows changed since the preview: a
    row appeared under a key it creates, or a row it updates or deletes is gone or no
    longer holds the values the preview saw. One query against the target in scope."""
    sqlite = plan.connection.vendor == "sqlite"
    if sqlite:
        from .sqlite import _json_same

        plan.connection.connection.create_function(
            "djsync_json_same", 2, _json_same, deterministic=True
        )
        target, params = plan.target_cte()  # type: ignore[attr-defined]
        head, source = target, "t"
    else:
        source, params = plan.target_sql()
        head = ""
    keys = plan.key_positions()
    others = [i for i in range(len(plan.fields)) if i not in keys]
    join_src = "s.rowid = a._src" if sqlite else "s._row = a._row"
    on = " AND ".join(f"s.c{k} = t.c{k}" for k in keys)
    keydiff = " OR ".join(_differs(plan, k, f"a.o{k}", f"t.c{k}") for k in keys)
    has = (
        (lambda name: f"instr(a.changed, {_text(json.dumps(name))})")
        if sqlite
        else (lambda name: f"{_text(name)} = ANY(a.changed)")
    )
    olddiff = " OR ".join(
        f"((a.act = 'd' OR {has(plan.names[i])}) AND {_differs(plan, i, f'a.o{i}', f't.c{i}')})"
        for i in others
    )
    created = (
        f"SELECT 'created by someone else' AS why, {_cols('s', keys)} FROM {plan.act} a "
        f"JOIN {plan.src} s ON {join_src} JOIN {source} ON {on} WHERE a.act = 'c'"
    )
    moved = (
        f"SELECT CASE WHEN t._pk IS NULL OR {keydiff} THEN 'gone' ELSE 'changed' END, "
        f"{_cols('a', keys, 'o')} FROM {plan.act} a LEFT JOIN {source} ON t._pk = a._pk "
        f"WHERE a.act IN ('u', 'd') AND (t._pk IS NULL OR {keydiff}"
        f"{f' OR {olddiff}' if olddiff else ''})"
    )
    query = f"{created} UNION ALL {moved}"
    with plan.connection.cursor() as cursor:
        cursor.execute(f"{head}SELECT * FROM ({query}) x LIMIT {SHOWN + 1}", [*params, *params])
        found = cursor.fetchall()
        if not found:
            return
        total = len(found)
        if total > SHOWN:
            cursor.execute(f"{head}SELECT count(*) FROM ({query}) x", [*params, *params])
            total = cursor.fetchone()[0]
    raise stale_error(plan.model, [(_key(key), why) for why, *key in found[:SHOWN]], total)


def stale_error(model: str, conflicts: list[tuple[str, str]], total: int) -> ConflictError:
    """The one error of a stale preview: the first conflicting keys, and how many more."""
    shown = ", ".join(f"{key} ({why})" for key, why in conflicts)
    more = f" and {total - len(conflicts)} more" if total > len(conflicts) else ""
    return ConflictError(
        f"{model}: the target changed since the preview: {shown}{more}. "
        "Nothing written; preview again."
    )


def resolve_parents(plan: StagedSqlPlan, cursor: Any) -> None:
    """Fill the primary key of every foreign key whose value is a parent's natural key not
    resolved yet (a stored preview, or a parent this run creates), by a join on the parent
    table; a parent that is not there (deleted since) fails the apply before any write."""
    qn = plan.qn
    sqlite = plan.connection.vendor == "sqlite"
    for i in plan.parents:
        f = plan.fields[i]
        related = f.model_field.related_model
        parent = qn(related._meta.db_table)
        lookup = qn(related._meta.get_field(f.lookup).column)
        target = qn(f.model_field.target_field.column)
        if sqlite:
            cursor.execute(
                f"UPDATE {plan.src} SET p{i} = (SELECT r.{target} FROM {parent} r "
                f"WHERE r.{lookup} = {plan.src}.c{i}) WHERE p{i} IS NULL AND c{i} IS NOT NULL"
            )
        else:
            cursor.execute(
                f"UPDATE {plan.src} s SET p{i} = r.{target} FROM {parent} r "
                f"WHERE s.p{i} IS NULL AND s.c{i} IS NOT NULL AND r.{lookup} = s.c{i}"
            )
        cursor.execute(
            f"SELECT s.c{i} FROM {plan.src} s WHERE s.p{i} IS NULL AND s.c{i} IS NOT NULL "
            f"AND NOT s._skip LIMIT {SHOWN + 1}"
        )
        missing = [row[0] for row in cursor.fetchall()]
        if missing:
            name = related._meta.verbose_name
            raise stale_error(
                plan.model,
                [(str(value), f"no {name} with {f.lookup} {value!r}") for value in missing[:SHOWN]],
                len(missing),
            )


def _cols(alias: str, positions: list[int], prefix: str = "c") -> str:
    return ", ".join(f"{alias}.{prefix}{i}" for i in positions)


def _text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _key(key: list[Any]) -> str:
    return str(key[0]) if len(key) == 1 else str(tuple(key))
