"""SQLite staged path: the source in a temporary table, diffed and applied in SQL, bounded memory.

The SQLite counterpart of :mod:`djsync.backends.postgresql`: converted source rows go into a
TEMP staging table on the run's connection (``executemany`` in batches), one join with the
importer's scope classifies them into a second temporary table of actions, the changes are
written to ``SyncChange`` by ``INSERT … SELECT`` in the JSON forms the generic path writes,
and applying is ``INSERT … SELECT``, ``UPDATE … FROM`` and ``DELETE`` in the run's
transaction. Neither the target nor the plan is held in Python's memory.

:class:`SqlitePlan` is a :class:`djsync.backends.staged.StagedSqlPlan` (lazy
``StoredActions``, counts, limits, the ORM delete of models with cascades) with SQLite's SQL.
:func:`unsupported` says when only the generic path gives the same result (djsync.backends
consults it).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from operator import itemgetter
from typing import TYPE_CHECKING, Any, cast

from django.conf import settings as django_settings
from django.core.exceptions import EmptyResultSet
from django.db import models

from djsync.backends import staged
from djsync.backends.staged import LIVE, Lowest, StagedSqlPlan, staging_unsupported
from djsync.engine.diff import RowError, _duplicate_error
from djsync.engine.rows import Converted

if TYPE_CHECKING:
    from djsync.mapping.importers import BaseImporter, Switches
    from djsync.models import SyncRun
    from djsync.sources.base import Source

Progress = Callable[[int], None]
#: One SQL statement and its parameters.
Select = tuple[str, list[Any]]

#: Rows per ``executemany``; progress is reported between two batches.
STAGE_CHUNK = 10_000
#: Pages of the temporary database's cache while a run stages and joins (negative: KiB).
TEMP_CACHE_KIB = 64 * 1024
#: A random version 4 UUID in Django's SQLite form (32 lowercase hex digits).
UUID4_SQL = (
    "lower(hex(randomblob(6))) || '4' || substr(lower(hex(randomblob(2))), 2) || "
    "substr('89ab', 1 + (abs(random()) %% 4), 1) || substr(lower(hex(randomblob(8))), 2)"
)
#: Key types whose strictly increasing Python values are distinct in SQLite too.
ORDERABLE = (
    models.CharField,
    models.TextField,
    models.IntegerField,
    models.DateField,
    models.DecimalField,
)


# -- when the staged path applies -----------------------------------------------------------
def unsupported(importer: BaseImporter) -> str | None:
    """Why the SQLite staged path cannot serve ``importer`` (None: it can)."""
    return staging_unsupported(
        importer,
        vendor="sqlite",
        label="SQLite",
        json_for=json_text,
        extra=_pk_type,
        path="staged path",
    )


def _pk_type(importer: BaseImporter) -> str | None:
    pk = importer.model._meta.pk
    if not isinstance(pk, models.IntegerField | models.CharField | models.TextField):
        return f"the primary key is a {type(pk).__name__}"
    return None


def _null(expression: str) -> str:
    return f"CASE WHEN {{0}} IS NULL THEN 'null' ELSE {expression} END"


def json_text(field: models.Field) -> str | None:
    """SQL template turning a column of ``field`` as Django stores it in SQLite into the JSON
    text ``DjangoJSONEncoder`` writes for the Python value (``'null'`` for NULL), or None.
    A literal ``%`` is written ``%%``: run the SQL with a parameter list, even an empty one."""
    if isinstance(field, models.DecimalField):
        places = field.decimal_places or 0
        # Django reads SQLite decimals through a float with 15 significant digits.
        if places > 6 or (field.max_digits or 99) > 15:
            return None
        return _null(f"'\"' || printf('%%.{places}f', {{0}}) || '\"'")
    if isinstance(field, models.DateTimeField):
        zone = "Z" if django_settings.USE_TZ else ""
        return _null(
            "'\"' || replace(substr({0}, 1, 19), ' ', 'T') || "
            f"CASE WHEN length({{0}}) > 19 THEN substr({{0}}, 20, 4) ELSE '' END || '{zone}\"'"
        )
    if isinstance(field, models.DateField):
        return "json_quote({0})"
    if isinstance(field, models.TimeField):
        return _null("'\"' || substr({0}, 1, 12) || '\"'")
    if isinstance(field, models.UUIDField):
        parts = " || '-' || ".join(
            f"substr({{0}}, {start}, {length})"
            for start, length in ((1, 8), (9, 4), (13, 4), (17, 4), (21, 12))
        )
        return _null(f"'\"' || lower({parts}) || '\"'")
    if isinstance(field, models.JSONField):
        return "coalesce({0}, 'null')" if field.decoder is None else None
    if isinstance(field, models.BooleanField):
        return "CASE WHEN {0} IS NULL THEN 'null' WHEN {0} THEN 'true' ELSE 'false' END"
    if isinstance(field, models.FloatField):
        # Python writes the shortest text that reads back as the same float: 15 digits
        # when they do, else 17 (always exact).
        return (
            "CASE WHEN {0} IS NULL THEN 'null' WHEN {0} = 9e999 THEN 'Infinity' "
            "WHEN {0} = -9e999 THEN '-Infinity' "
            "WHEN CAST(printf('%%!.15g', {0}) AS REAL) = {0} THEN printf('%%!.15g', {0}) "
            "ELSE printf('%%!.17g', {0}) END"
        )
    if isinstance(field, models.CharField | models.TextField | models.IntegerField):
        if getattr(field, "db_collation", None):
            return None
        return "json_quote({0})"
    return None


def _json_same(a: str | None, b: str | None) -> bool:
    """Two stored JSON values that Python reads as equal (key order and spacing aside)."""
    if a is None or b is None:
        return a is b
    return json.loads(a) == json.loads(b)


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


# -- the plan -------------------------------------------------------------------------------
class SqlitePlan(StagedSqlPlan):
    """A plan whose actions live in temporary tables of the run's SQLite connection until
    stored (:meth:`change_selects`, by the store) and applied (:meth:`apply_actions`)."""

    def __init__(self, importer: BaseImporter, switches: Switches) -> None:
        super().__init__(importer, switches)
        self.all_new = False  # the target in scope is empty: every staged row is a create
        self.cache_size: int | None = None  # the temporary database's own, restored by close()

    # -- SQL pieces ---------------------------------------------------------------------
    def target_cte(self) -> tuple[str, list[Any]]:
        """``WITH t(_pk, c0, …) AS (…)``: the importer's rows in scope, as Django reads them."""
        importer = self.importer
        paths = [f.target_path for f in self.fields]
        qs = importer.scoped_queryset().order_by().values_list("pk", *paths)
        aliases = ", ".join(["_pk", *(f"c{i}" for i in range(len(self.fields)))])
        try:
            sql, params = qs.query.get_compiler(using=importer.using).as_sql()
        except EmptyResultSet:
            cols = ", ".join(f"c{i}" for i in range(len(self.fields)))
            return f"WITH t({aliases}) AS (SELECT NULL, {cols} FROM {self.src} WHERE 0) ", []
        return f"WITH t({aliases}) AS ({sql}) ", list(params)

    def _text(self, i: int, column: str) -> str:
        sql = json_text(self.value_field(self.fields[i]))
        assert sql is not None  # unsupported() refuses a field without it
        return sql.format(column)

    def _differs(self, i: int, a: str, b: str) -> str:
        """SQL: the two values of field ``i`` compare different in Python."""
        if isinstance(self.value_field(self.fields[i]), models.JSONField):
            return f"({a} IS NOT {b} AND NOT djsync_json_same({a}, {b}))"
        return f"{a} IS NOT {b}"

    def _object(self, prefix: str, alias: str, only_changed: str | None = None) -> str:
        """SQL: the JSON text of an object of every field (or, with ``only_changed`` the
        alias of an action row, of the fields it changes)."""
        parts = []
        for i, name in enumerate(self.names):
            member = (
                _sql_text(f",{json.dumps(name)}:") + " || " + self._text(i, f"{alias}.{prefix}{i}")
            )
            if only_changed is None:
                parts.append(member)
            else:
                hit = _sql_text(json.dumps(name))
                parts.append(
                    f"CASE WHEN instr({only_changed}.changed, {hit}) THEN {member} ELSE '' END"
                )
        return "'{' || substr(" + " || ".join(parts) + ", 2) || '}'"

    def _key(self, prefix: str, alias: str) -> str:
        texts = " || ',' || ".join(
            self._text(i, f"{alias}.{prefix}{i}") for i in self.key_positions()
        )
        return f"'[' || {texts} || ']'"

    # -- staging --------------------------------------------------------------------------
    skip_type = "integer"

    def create_src(self, cursor: Any, row_type: str = "integer") -> None:
        """Create the staging table, with a larger cache for the temporary database while the
        run works (dropping what an interrupted run left on this connection)."""
        cursor.execute(
            "SELECT name FROM sqlite_temp_master WHERE type = 'table' "
            "AND name LIKE 'djsync\\_stage\\_%' ESCAPE '\\'"
        )
        for (leftover,) in cursor.fetchall():  # an earlier run that died on this connection
            if leftover not in LIVE:  # not an earlier step's of this run
                cursor.execute(f"DROP TABLE IF EXISTS temp.{self.qn(leftover)}")
        cursor.execute("PRAGMA temp.cache_size")
        self.cache_size = cursor.fetchone()[0]
        cursor.execute(f"PRAGMA temp.cache_size = {-TEMP_CACHE_KIB}")
        columns = ", ".join(self.src_columns(row_type))
        cursor.execute(f"CREATE TEMP TABLE {self.src} ({columns})")

    def stage(self, items: Iterable[Converted | RowError], progress: Progress | None) -> None:
        """Insert the converted rows into the staging table; keep the row errors."""
        fields = self.fields
        columns = self.src_columns()
        relations = [i for i, f in enumerate(fields) if f.is_relation]
        keys = self.key_positions()
        with self.connection.cursor() as cursor:
            self.create_src(cursor)
            raw = cursor.cursor  # the sqlite3 cursor: no placeholder rewriting per batch
            insert = f"INSERT INTO {self.src} VALUES ({', '.join(['?'] * (len(columns)))})"
            prepare = self._preparer(relations)
            prepare_key = self._key_preparer()
            width = len(fields) + len(relations)
            ordered = all(isinstance(self.value_field(fields[i]), ORDERABLE) for i in keys)
            last, key_of = Lowest(), itemgetter(*keys)
            good = 0
            batch: list[tuple[Any, ...]] = []
            append = batch.append
            staged_bad: set[int | None] = set()
            for item in items:
                if type(item) is tuple:
                    number, values = item
                    if ordered:
                        key = key_of(values)
                        try:
                            ordered = last < key
                        except TypeError:
                            ordered = False
                        last = key
                    append(
                        (number, 0, *values) if prepare is None else (number, 0, *prepare(values))
                    )
                    good += 1
                else:
                    item = cast("RowError", item)  # not a converted tuple
                    self.errors.append(item)
                    if item.key is None:
                        self.error_without_key = True
                    elif item.row not in staged_bad:  # a bad row keeps its target row
                        staged_bad.add(item.row)
                        ordered = False  # its key takes part in the duplicate check
                        cells: list[Any] = [None] * width
                        for position, value in zip(keys, prepare_key(item.key), strict=True):
                            cells[position] = value
                        append((item.row, 1, *cells))
                if len(batch) >= STAGE_CHUNK:
                    raw.executemany(insert, batch)
                    batch.clear()
                    if progress is not None:
                        progress(self.importer.rows_read)
            if batch:
                raw.executemany(insert, batch)
                batch.clear()
            if progress is not None:
                progress(self.importer.rows_read)
            key_columns = ", ".join(f"c{i}" for i in keys)
            if self.switches.delete or not ordered:
                cursor.execute(f"CREATE INDEX {self.src}_key ON {self.src} ({key_columns})")
            self.good = good - (0 if ordered else self._mark_duplicates(cursor))

    def _preparer(self, relations: list[int]) -> Callable[[tuple], tuple] | None:
        """Values as Django stores them in SQLite: foreign keys by primary key; datetimes,
        times, UUIDs and JSON through the field. Text, numbers, decimals and dates go as
        they are (the driver's adapters give Django's forms)."""
        connection = self.connection
        prepared = [
            (i, self.value_field(f))
            for i, f in enumerate(self.fields)
            if _needs_prep(self.value_field(f))
        ]
        if not relations and not prepared:
            return None
        lookups = []
        for i in relations:
            pk = cast("models.ForeignKey[Any, Any]", self.fields[i].model_field).target_field
            lookups.append((i, self.importer.lookups[self.fields[i].name], pk))

        def prepare(values: tuple) -> tuple:
            out = list(values)
            for i, mf in prepared:
                if out[i] is not None:
                    out[i] = mf.get_db_prep_save(out[i], connection)
            pks = []
            for i, lookup, pk in lookups:
                value = values[i]
                pks.append(
                    None if value is None else pk.get_db_prep_save(lookup[value], connection)
                )
            return (*out, *pks)

        return prepare

    def _key_preparer(self) -> Callable[[tuple], list[Any]]:
        connection = self.connection
        fields = [self.value_field(self.fields[i]) for i in self.key_positions()]

        def prepare(key: tuple) -> list[Any]:
            return [
                mf.get_db_prep_save(v, connection) if v is not None and _needs_prep(mf) else v
                for mf, v in zip(fields, key, strict=True)
            ]

        return prepare

    def _mark_duplicates(self, cursor: Any) -> int:
        """Every good occurrence of a key seen twice (good or bad rows) is a row error, and
        its target row is left alone. Returns how many rows that is."""
        keys = ", ".join(f"c{i}" for i in self.key_positions())
        twice = f"SELECT {keys} FROM {self.src} GROUP BY {keys} HAVING count(*) > 1"
        cursor.execute(twice + " LIMIT 1")
        if cursor.fetchone() is None:
            return 0
        cursor.execute(
            f"UPDATE {self.src} SET _skip = 1 WHERE NOT _skip AND ({keys}) IN ({twice}) "
            f"RETURNING _row, {self._key('c', self.src)}",
            [],  # with parameters, so "%%" in the SQL reads as "%"
        )
        marked = sorted(cursor.fetchall())
        bound = [self.importer.bound_fields[k] for k in self.importer.keys]
        for number, text in marked:
            key = tuple(
                None if v is None else f.restore(v)
                for f, v in zip(bound, json.loads(text), strict=True)
            )
            self.errors.append(_duplicate_error(key, number))
        self.errors.sort(key=lambda e: (e.row is None, e.row or 0))
        return len(marked)

    # -- classifying ----------------------------------------------------------------------
    def classify(self) -> None:
        """Creates and updates: one join of staging with the target in scope; deletes: the
        target rows no staged key matches. Written to the table of actions; counts."""
        switches = self.switches
        keys = self.key_positions()
        others = [i for i in range(len(self.fields)) if i not in keys]
        with_target, params = self.target_cte()
        n = len(self.fields)
        olds = ", ".join(f"NULL AS o{i}" for i in range(n))
        with self.connection.cursor() as cursor:
            self.connection.connection.create_function(
                "djsync_json_same", 2, _json_same, deterministic=True
            )
            cursor.execute(with_target + "SELECT count(*) FROM t", params)
            self.rows_in_scope = cursor.fetchone()[0]
            cursor.execute(
                f"CREATE TEMP TABLE {self.act} AS SELECT 0 AS _src, 0 AS _row, NULL AS _pk, "
                f"'' AS act, {olds}, '' AS changed WHERE 0"
            )
            found: dict[str, int] = {}
            if not self.rows_in_scope:
                self.all_new = True
                found["c"] = self.good
            else:
                on = " AND ".join(f"s.c{i} = t.c{i}" for i in keys)
                distinct = " OR ".join(self._differs(i, f"s.c{i}", f"t.c{i}") for i in others)
                changed = " || ".join(
                    f"CASE WHEN {self._differs(i, f's.c{i}', f't.c{i}')} "
                    f"THEN {_sql_text(',' + json.dumps(self.names[i]))} ELSE '' END"
                    for i in others
                )
                changed_sql = f"'[' || substr({changed}, 2) || ']'" if others else "'[]'"
                old = "".join(f", t.c{i}" for i in range(n))
                cursor.execute(
                    with_target + f"INSERT INTO {self.act} SELECT s.rowid, s._row, t._pk, "
                    f"CASE WHEN t._pk IS NULL THEN 'c' ELSE 'u' END{old}, "
                    f"CASE WHEN t._pk IS NOT NULL THEN {changed_sql} END "
                    f"FROM {self.src} s LEFT JOIN t ON {on} "
                    f"WHERE NOT s._skip AND (t._pk IS NULL OR {distinct or '0'})",
                    params,
                )
                if switches.delete:
                    match = " AND ".join(f"s.c{i} = t.c{i}" for i in keys)
                    old = "".join(f", t.c{i}" for i in range(n))
                    cursor.execute(
                        with_target + f"INSERT INTO {self.act} SELECT NULL, NULL, t._pk, 'd'"
                        f"{old}, NULL FROM t WHERE NOT EXISTS "
                        f"(SELECT 1 FROM {self.src} s WHERE {match})",
                        params,
                    )
                cursor.execute(f"SELECT act, count(*) FROM {self.act} GROUP BY act")
                found = dict(cursor.fetchall())
        self.count_actions(found)

    # -- storing the changes ----------------------------------------------------------------
    def change_selects(self, run: SyncRun, *, limit: int | None = None) -> list[Select]:
        """The SELECTs that give this plan's actions as stored changes (the columns of
        :data:`djsync.store.CHANGE_COLUMNS`, in order), run by the store inside the database
        (no round trip per row): at most ``limit`` per action, the first by source row,
        deletes by primary key, as :func:`djsync.store.audited` picks them."""
        self.run, self.stored_limit = run, limit
        cap = "" if limit is None else f" LIMIT {int(limit)}"
        selects: list[Select] = []
        label = self.model
        if self.creates:
            selects.append(
                (
                    f"SELECT %s, %s, 'create', {self._key('c', 's')}, '', s._row, NULL, "
                    f"{self._object('c', 's')}, %s FROM {self._created(limit)} ORDER BY s._row",
                    [run.pk, label, json.dumps(self.names)],
                )
            )
        if self.updates:
            selects.append(
                (
                    f"SELECT %s, %s, 'update', {self._key('c', 's')}, "
                    f"CAST(a._pk AS TEXT), s._row, {self._object('o', 'a', 'a')}, "
                    f"{self._object('c', 's', 'a')}, a.changed "
                    f"FROM {self.act} a JOIN {self.src} s ON s.rowid = a._src "
                    f"WHERE a.act = 'u' ORDER BY a._row{cap}",
                    [run.pk, label],
                )
            )
        if self.deletes:
            selects.append(
                (
                    f"SELECT %s, %s, 'delete', {self._key('o', 'a')}, "
                    f"CAST(a._pk AS TEXT), NULL, {self._object('o', 'a')}, NULL, '[]' "
                    f"FROM {self.act} a WHERE a.act = 'd' ORDER BY a._pk{cap}",
                    [run.pk, label],
                )
            )
        return selects

    def _created(self, limit: int | None = None) -> str:
        """FROM clause of the staged rows to create (alias ``s``), the first ``limit`` ones."""
        cap = "" if limit is None else f" ORDER BY _row LIMIT {int(limit)}"
        if self.all_new:  # an initial load: no join
            return f"(SELECT * FROM {self.src} WHERE NOT _skip{cap}) s"
        return (
            f"(SELECT _src FROM {self.act} WHERE act = 'c'{cap}) a "
            f"JOIN {self.src} s ON s.rowid = a._src"
        )

    # -- a stored preview's checks (djsync.backends.staged) -----------------------------
    def _stale_target(self) -> tuple[str, str, list[Any]]:
        self.connection.connection.create_function(
            "djsync_json_same", 2, _json_same, deterministic=True
        )
        cte, params = self.target_cte()
        return cte, "t", params

    def _differs_ms(self, i: int, a: str, b: str) -> str:
        field = self.value_field(self.fields[i])
        if isinstance(field, models.DateTimeField):
            return f"substr({a}, 1, 23) IS NOT substr({b}, 1, 23)"
        if isinstance(field, models.TimeField):
            return f"substr({a}, 1, 12) IS NOT substr({b}, 1, 12)"
        return self._differs(i, a, b)

    def _pk_order(self) -> str:
        return ""  # SQLite's BINARY collation orders text by code point, as Python does

    # -- applying -------------------------------------------------------------------------
    #: How a new row gets a random UUID (``uuid.uuid4`` as a field's default).
    uuid4_sql = UUID4_SQL

    # ``_update`` is the shared plan's; these are where SQLite's tables differ.
    _source_of_action = "s.rowid = a._src"

    def _changes(self, name: str) -> str:
        return f"instr(a.changed, {_sql_text(json.dumps(name))})"

    def _names(self, changed: Any) -> list[str]:
        return json.loads(changed)

    def close(self) -> None:
        """Drop the staging tables (idempotent)."""
        if self.closed:
            return
        self.closed = True
        LIVE.difference_update((self.src, self.act))
        try:
            with self.connection.cursor() as cursor:
                cursor.execute(f"DROP TABLE IF EXISTS temp.{self.src}")
                cursor.execute(f"DROP TABLE IF EXISTS temp.{self.act}")
                if self.cache_size is not None:
                    cursor.execute(f"PRAGMA temp.cache_size = {int(self.cache_size)}")
        except Exception:  # noqa: BLE001 - a closed connection drops them itself
            pass


def _needs_prep(field: models.Field) -> bool:
    """Types the SQLite driver would not store in Django's form on its own."""
    return isinstance(
        field, models.DateTimeField | models.TimeField | models.UUIDField | models.JSONField
    )


# -- building -------------------------------------------------------------------------------
def build_plan(
    importer: BaseImporter,
    source: Source,
    switches: Switches,
    *,
    progress: Progress | None = None,
) -> SqlitePlan:
    """Read the source into staging and classify it against the target in scope: the same
    steps as on PostgreSQL, with SQLite's plan."""
    plan = staged.build_plan(importer, source, switches, progress=progress, plan_class=SqlitePlan)
    assert isinstance(plan, SqlitePlan)
    return plan


#: The staged plan of this backend (djsync.backends).
plan_class = SqlitePlan

__all__ = ["SqlitePlan", "build_plan", "json_text", "plan_class", "unsupported"]
