"""PostgreSQL fast path: COPY the source into a staging table, diff and apply it in SQL.

The converted source rows are streamed with COPY (psycopg 3) into a temporary staging
table; one join against the importer's scope classifies every row (new key, changed
values — ``IS DISTINCT FROM`` per field — or target row missing from the source) into a
second temporary table of actions. Counts come back to Python, the recorded changes are
written to ``SyncChange`` by ``INSERT … SELECT`` inside the database, and applying is one
``INSERT … SELECT``, one ``UPDATE … FROM`` and one ``DELETE`` in the run's transaction.
Neither side of the sync is held in Python's memory.

:func:`fast_plan` decides per importer: the fast path is used only where it gives the same
result as the generic path (see :func:`unsupported`), otherwise ``None`` sends the run
down the generic path.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator
from itertools import chain
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from django.conf import settings as django_settings
from django.core.exceptions import EmptyResultSet
from django.db import connections, models, transaction
from django.db.models.deletion import Collector
from django.utils import timezone

from ..conf import settings
from ..diff import Plan, RowError, _duplicate_error
from ..exceptions import ConflictError, TargetError
from ..models import SyncChange
from .rows import Converted, RowConverter

if TYPE_CHECKING:
    from ..importers import BaseImporter, Switches
    from ..models import SyncRun
    from ..sources.base import Source

Progress = Callable[[int], None]
#: One SQL statement and its parameters.
Select = tuple[str, list[Any]]

#: Rows per COPY statement; progress is reported between two statements.
COPY_CHUNK = 50_000
#: Staged rows from which statistics and a larger work_mem pay for themselves.
LARGE = 20_000
#: Sets of changed fields up to which updates are one UPDATE per set (as on the generic path).
UPDATE_GROUPS = 16
#: Prefix of the temporary tables; leftovers of an interrupted run are dropped on next use.
PREFIX = "djsync_stage_"
#: Staging tables on this session, by any plan (a leftover of an interrupted run, or a live
#: plan of an earlier step of the same multi-model run).
STAGING_TABLES = (
    "SELECT relname FROM pg_class WHERE relnamespace = pg_my_temp_schema() "
    "AND relkind = 'r' AND relname LIKE 'djsync\\_stage\\_%%'"
)
#: Names of the staging tables of plans not closed yet (never dropped as leftovers).
LIVE: set[str] = set()


#: Staging column types whose equality PostgreSQL and Python agree on (no collation that
#: folds case, no float NaN): strictly increasing keys of these types are all distinct.
ORDERABLE = frozenset(
    {"varchar", "text", "smallint", "integer", "bigint", "numeric", "date", "uuid", "boolean"}
    | {"timestamp with time zone", "timestamp", "time"}
)


class _Lowest:
    """Less than any key: the start of the order check."""

    def __lt__(self, other: object) -> bool:
        return True


_LOWEST = _Lowest()


# -- when the fast path applies -----------------------------------------------------------
def fast_plan(
    importer: BaseImporter,
    source: Source,
    switches: Switches,
    *,
    progress: Progress | None = None,
) -> PostgresPlan | None:
    """A staged plan for ``importer``, or None when the generic path must be used."""
    if unsupported(importer) is not None:
        return None
    if source.database is not None and source.database == importer.using:
        # COPY holds the connection that the source's server-side cursor still reads from:
        # both would wait on each other for ever.
        return None
    return build_plan(importer, source, switches, progress=progress)


def unsupported(importer: BaseImporter) -> str | None:
    """Why the fast path cannot serve ``importer`` (None: it can)."""
    return staging_unsupported(
        importer, vendor="postgresql", label="PostgreSQL", json_for=json_sql, extra=_psycopg3
    )


def _psycopg3(importer: BaseImporter) -> str | None:
    from django.db.backends.postgresql.psycopg_any import is_psycopg3

    return None if is_psycopg3 else "the fast path needs psycopg 3"


def staging_unsupported(
    importer: BaseImporter,
    *,
    vendor: str,
    label: str,
    json_for: Callable[[models.Field], str | None],
    extra: Callable[[BaseImporter], str | None],
    path: str = "fast path",
) -> str | None:
    """Why a staged path (this one, or SQLite's) cannot serve ``importer``: the checks both
    share, with the database's own JSON rendering (``json_for``) and ``extra`` checks."""
    if not settings.FAST_PATH:
        return "the FAST_PATH setting is off"
    if not getattr(importer, "fast_path", True):
        return "this run amends the plan (multi-model step or incremental read)"
    from django.db import router

    if importer.using != router.db_for_write(SyncChange):
        return "the target database is not the one that records the run's changes"
    connection = connections[importer.using]
    if connection.vendor != vendor:
        return f"the target database is {connection.vendor}, not {label}"
    from ..importers import BaseImporter

    cls = type(importer)
    for name in ("read_target", "normalize_target_row", "build_plan", "to_model_values", "key_of"):
        if getattr(cls, name) is not getattr(BaseImporter, name):
            return f"the importer overrides {name}()"
    reason = extra(importer)
    if reason is not None:
        return reason
    for f in importer.bound_fields.values():
        if f.is_relation:
            related = f.model_field.related_model._meta.get_field(f.lookup)
            if not (related.unique or related.primary_key):
                return f"field {f.name!r}: the lookup {f.lookup!r} is not unique"
            value_field = related
        else:
            value_field = f.model_field
        if json_for(value_field) is None:
            return f"field {f.name!r}: {type(value_field).__name__} is not supported"
    if not unique_key(importer.model, importer.keys):
        return "the key is not unique in the model (no unique field or constraint on it)"
    always = {n for n, f in importer.bound_fields.items() if _always_active(importer, f)}
    for mf in importer.model._meta.concrete_fields:
        if mf.name not in always and insert_default(mf) is None:
            return f"field {mf.name!r} has a default the {path} cannot fill"
    return None


def _always_active(importer: BaseImporter, f: Any) -> bool:
    from ..fields import NOT_PROVIDED

    return f.name in importer.keys or f.spec.required is not False or f.default is not NOT_PROVIDED


def unique_key(model: type[models.Model], keys: Iterable[str]) -> bool:
    """Whether the model guarantees one row per key (so a join matches like a dict)."""
    names = set(keys)
    opts = model._meta
    if any(opts.get_field(n).unique for n in names):
        return True
    groups = [set(g) for g in opts.unique_together]
    groups += [set(c.fields) for c in opts.total_unique_constraints]
    return any(g and g <= names for g in groups)


_DATETIME_TAIL = (
    " || CASE WHEN mod(date_part('microseconds', {0})::bigint, 1000000) <> 0"
    " THEN '.' || lpad((mod(date_part('microseconds', {0})::bigint, 1000000) / 1000)::text,"
    " 3, '0') ELSE '' END"
)


def json_sql(field: models.Field) -> str | None:
    """SQL turning a column of ``field``'s type into the JSON ``DjangoJSONEncoder`` writes
    for the Python value (so stored changes match the generic path), or None."""
    if isinstance(field, models.DecimalField):
        # str(Decimal) switches to exponent notation below 1e-6; numeric::text never does.
        return "to_jsonb(({0})::text)" if (field.decimal_places or 0) <= 6 else None
    if isinstance(field, models.DateTimeField):
        zone = " || 'Z'" if django_settings.USE_TZ else ""
        return (
            "to_jsonb(to_char(({0})::timestamp, 'YYYY-MM-DD\"T\"HH24:MI:SS')"
            + _DATETIME_TAIL
            + zone
            + ")"
        )
    if isinstance(field, models.DateField):
        return "to_jsonb(to_char({0}, 'YYYY-MM-DD'))"
    if isinstance(field, models.TimeField):
        return "to_jsonb(to_char(date '2000-01-01' + {0}, 'HH24:MI:SS')" + _DATETIME_TAIL + ")"
    if isinstance(field, models.UUIDField):
        return "to_jsonb(({0})::text)"
    if isinstance(field, models.JSONField):
        return "{0}" if field.decoder is None else None
    if isinstance(
        field,
        models.CharField
        | models.TextField
        | models.BooleanField
        | models.IntegerField
        | models.FloatField,
    ):
        return "to_jsonb({0})"
    return None


def insert_default(mf: models.Field) -> tuple[str, Any] | None:
    """How a created row fills a model field the source does not provide.

    ``("omit", None)`` leaves it to the database (auto primary key, ``db_default``);
    ``("sql", expr)``; ``("now", None)``: the apply's timestamp; ``("value", v)``; None when
    only per-row Python code could compute it (another callable default).
    """
    if isinstance(mf, models.AutoField):
        return ("omit", None)
    if getattr(mf, "auto_now", False) or getattr(mf, "auto_now_add", False):
        return ("now", None)
    db_default = getattr(mf, "db_default", models.NOT_PROVIDED)
    if db_default is not models.NOT_PROVIDED and not mf.has_default():
        return ("omit", None)
    if not mf.has_default():
        return ("value", mf.get_default())  # None, or "" for text the database keeps
    default = mf.default
    if default is uuid.uuid4:
        return ("sql", "gen_random_uuid()")
    if default is timezone.now:
        return ("now", None)
    if callable(default):
        return None
    return ("value", mf.get_default())


# -- the plan -------------------------------------------------------------------------------
class StoredActions:
    """A plan's creates, updates or deletes kept in the database: exact ``len()``; iterating
    reads them back from the run's stored changes."""

    def __init__(self, plan: PostgresPlan, attribute: str, count: int) -> None:
        self.plan, self.attribute, self.count = plan, attribute, count

    def __len__(self) -> int:
        return self.count

    def __bool__(self) -> bool:
        return self.count > 0

    def __iter__(self) -> Iterator[Any]:
        if not self.count:
            return iter(())
        if self.plan.run is None:
            raise TargetError("a staged plan's actions can be read once the run stored them")
        limit = self.plan.stored_limit
        if limit is not None and self.count > limit:
            raise TargetError(
                f"only {limit} of the plan's {self.count} {self.attribute} were stored"
            )
        from ..store import load_plan

        return iter(getattr(load_plan(self.plan.run, self.plan.importer), self.attribute))


class PostgresPlan(Plan):
    """A plan whose actions live in temporary tables of the run's connection until stored
    (:meth:`change_selects`, by the store) and applied (:meth:`apply_actions`)."""

    def __init__(self, importer: BaseImporter, switches: Switches) -> None:
        super().__init__(model=importer.label)
        self.importer = importer
        self.switches = switches
        self.connection = connections[importer.using]
        self.fields = list(importer.active_fields)
        self.names = [f.name for f in self.fields]
        tag = uuid.uuid4().hex[:12]
        self.src = f"{PREFIX}{tag}_src"
        self.act = f"{PREFIX}{tag}_act"
        LIVE.update((self.src, self.act))
        self.run: SyncRun | None = None
        self.stored_limit: int | None = None  # most changes stored per action
        self.missing = 0  # target rows in scope the source lacks
        self.good = 0  # staged source rows that take part in the diff
        self.new = 0  # of which new keys
        self.error_without_key = False
        self.closed = False
        self.work_mem = ""  # the session's own setting, restored by close()
        #: Rebuilt from a stored preview (djsync.targets.stored), not from a source.
        self.restaged = False
        #: Positions of foreign keys whose primary keys are resolved by a join when the
        #: apply starts (a stored preview, or parents created by the same run).
        self.parents: list[int] = []

    # -- SQL pieces ---------------------------------------------------------------------
    def qn(self, name: str) -> str:
        return self.connection.ops.quote_name(name)

    def value_field(self, f: Any) -> models.Field:
        if f.is_relation:
            return f.model_field.related_model._meta.get_field(f.lookup)
        return f.model_field

    def key_positions(self) -> list[int]:
        return [self.names.index(k) for k in self.importer.keys]

    def target_sql(self) -> tuple[str, list[Any]]:
        """The importer's rows in scope, as Django would read them for the generic diff."""
        importer = self.importer
        paths = [f.target_path for f in self.fields]
        qs = importer.get_scope(importer.get_queryset()).order_by().values_list("pk", *paths)
        aliases = ", ".join(["_pk", *(f"c{i}" for i in range(len(self.fields)))])
        try:
            sql, params = qs.query.get_compiler(using=importer.using).as_sql()
        except EmptyResultSet:
            pk_type = importer.model._meta.pk.rel_db_type(self.connection)
            cols = ", ".join(f"c{i}" for i in range(len(self.fields)))
            return (
                f"(SELECT NULL::{pk_type}, {cols} FROM {self.src} WHERE false) AS t({aliases})",
                [],
            )
        return f"({sql}) AS t({aliases})", list(params)

    # -- staging --------------------------------------------------------------------------
    #: SQL type of the staging table's ``_skip`` flag.
    skip_type = "boolean"

    def src_columns(self, row_type: str = "integer") -> list[str]:
        """DDL of the staging table: row number, skip flag, one column per field (the
        lookup value for a foreign key) and the primary key of each foreign key."""
        fields, connection = self.fields, self.connection
        columns = [f"_row {row_type}", f"_skip {self.skip_type}"]
        columns += [f"c{i} {self.value_field(f).db_type(connection)}" for i, f in enumerate(fields)]
        relations = [i for i, f in enumerate(fields) if f.is_relation]
        columns += [f"p{i} {fields[i].model_field.db_type(connection)}" for i in relations]
        return columns

    def create_src(self, cursor: Any, row_type: str = "integer") -> None:
        """Create the staging table (dropping what an interrupted run left on this session)."""
        cursor.execute(STAGING_TABLES, [])
        for (leftover,) in cursor.fetchall():
            if leftover not in LIVE:
                cursor.execute(f"DROP TABLE IF EXISTS {self.qn(leftover)}")
        columns = ", ".join(self.src_columns(row_type))
        cursor.execute(f"CREATE TEMP TABLE {self.src} ({columns})")

    def stage(self, items: Iterable[Converted | RowError], progress: Progress | None) -> None:
        """COPY the converted rows into the staging table; keep the row errors."""
        fields, connection = self.fields, self.connection
        relations = [i for i, f in enumerate(fields) if f.is_relation]
        with connection.cursor() as cursor:
            self.create_src(cursor)
            raw = cursor.cursor
            prepare = self._preparer(relations)
            keys = self.key_positions()
            width = len(fields) + len(relations)
            good = 0
            items = iter(items)
            # Keys that arrive strictly increasing (many exports are sorted) cannot repeat:
            # then the duplicate check in SQL is skipped.
            ordered, last, key_of = self._orderable(), _LOWEST, itemgetter(*keys)
            copy_sql = f"COPY {self.src} FROM STDIN"
            more = True
            while more:
                more = False
                with raw.copy(copy_sql) as copy:
                    write = copy.write_row
                    n = 0
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
                            if prepare is None:
                                write((number, False, *values))
                            else:
                                write((number, False, *prepare(values)))
                            good += 1
                        else:
                            self.errors.append(item)
                            if item.key is not None:  # a bad row keeps its target row
                                ordered = False  # its key takes part in the duplicate check
                                cells: list[Any] = [None] * width
                                for position, value in zip(keys, item.key, strict=True):
                                    cells[position] = value
                                write((item.row, True, *cells))
                            else:
                                self.error_without_key = True
                        n += 1
                        if n >= COPY_CHUNK:
                            more = True
                            break
                if progress is not None:
                    progress(self.importer.rows_read)
            if good >= LARGE:
                cursor.execute(f"ANALYZE {self.src}")
                # Joins, sorts and the duplicate check of a large load stay in memory.
                cursor.execute(
                    "SELECT current_setting('work_mem'), set_config('work_mem', %s, false)",
                    [settings.FAST_PATH_WORK_MEM],
                )
                self.work_mem = cursor.fetchone()[0]
            self.good = good - (0 if ordered else self._mark_duplicates(cursor))

    def _orderable(self) -> bool:
        """Whether key values that compare strictly increasing in Python are distinct in
        the staging table too (types whose equality is the same on both sides)."""
        for i in self.key_positions():
            db_type = self.value_field(self.fields[i]).db_type(self.connection) or ""
            if db_type.split("(")[0] not in ORDERABLE:
                return False
        return True

    def _preparer(self, relations: list[int]) -> Callable[[tuple], tuple] | None:
        """Values as the database takes them: foreign keys by primary key, JSON adapted."""
        connection = self.connection
        json_fields = [
            (i, f.model_field)
            for i, f in enumerate(self.fields)
            if isinstance(f.model_field, models.JSONField)
        ]
        if not relations and not json_fields:
            return None
        lookups = [(i, self.importer.lookups[self.fields[i].name]) for i in relations]

        def prepare(values: tuple) -> tuple:
            out = list(values)
            for i, mf in json_fields:
                if out[i] is not None:
                    out[i] = mf.get_db_prep_save(out[i], connection)
            return (
                *out,
                *(None if values[i] is None else lookup[values[i]] for i, lookup in lookups),
            )

        return prepare

    def _mark_duplicates(self, cursor: Any) -> int:
        """Every occurrence of a key seen twice is a row error, and its target row is left
        alone (the staging rows become protected rows). Returns how many rows that is."""
        keys = ", ".join(f"c{i}" for i in self.key_positions())
        # Bad rows with a readable key count too: their key is shared with the good rows.
        twice = f"SELECT {keys} FROM {self.src} GROUP BY {keys} HAVING count(*) > 1"
        cursor.execute(twice + " LIMIT 1")  # a hash aggregate: no sort of the whole source
        if cursor.fetchone() is None:
            return 0
        cursor.execute(
            f"UPDATE {self.src} SET _skip = true WHERE NOT _skip AND ({keys}) IN ({twice}) "
            f"RETURNING _row, {keys}"
        )
        marked = sorted(cursor.fetchall())
        for number, *key in marked:
            self.errors.append(_duplicate_error(tuple(key), number))
        self.errors.sort(key=lambda e: (e.row is None, e.row or 0))
        rows = len(marked)
        return rows

    # -- classifying ----------------------------------------------------------------------
    def classify(self) -> None:
        """One join of staging and target rows in scope → the table of actions; counts."""
        switches = self.switches
        keys = self.key_positions()
        others = [i for i in range(len(self.fields)) if i not in keys]
        target, params = self.target_sql()
        on = " AND ".join(f"s.c{i} = t.c{i}" for i in keys)
        distinct = " OR ".join(f"s.c{i} IS DISTINCT FROM t.c{i}" for i in others) or "false"
        changed = ", ".join(
            f"CASE WHEN s.c{i} IS DISTINCT FROM t.c{i} THEN '{self.names[i]}' END" for i in others
        )
        changed_sql = f"array_remove(ARRAY[{changed}]::text[], NULL)" if others else "'{}'::text[]"
        old = "".join(f", t.c{i} AS o{i}" for i in range(len(self.fields)))
        join = "FULL JOIN" if switches.delete else "LEFT JOIN"
        gone = "s._row IS NULL OR " if switches.delete else ""
        with self.connection.cursor() as cursor:
            cursor.execute(
                f"CREATE TEMP TABLE {self.act} AS SELECT s._row, t._pk, "
                "CASE WHEN s._row IS NULL THEN 'd' WHEN t._pk IS NULL THEN 'c' ELSE 'u' END "
                f"AS act{old}, CASE WHEN s._row IS NOT NULL AND t._pk IS NOT NULL "
                f"THEN {changed_sql} END AS changed "
                f"FROM {self.src} s {join} {target} ON {on} "
                f"WHERE {gone}(NOT s._skip AND (t._pk IS NULL OR {distinct}))",
                params,
            )
            cursor.execute(
                f"SELECT act, count(*) FROM {self.act} GROUP BY act "
                f"UNION ALL SELECT 'scope', count(*) FROM {target}",
                params,
            )
            found = dict(cursor.fetchall())
            self.rows_in_scope = found.get("scope", 0)
        self.count_actions(found)

    def count_actions(self, found: dict[str, int]) -> None:
        """Counts from the classified actions (``found``: act → rows); the plan's lazy lists."""
        switches = self.switches
        new, changed_rows = found.get("c", 0), found.get("u", 0)
        self.new = new
        self.missing = found.get("d", 0)
        self.unchanged = self.good - new - changed_rows
        self.rows_read = self.importer.rows_read
        deletes = self.missing if switches.delete else 0
        if deletes and self.error_without_key:
            self.warnings.append(
                f"{deletes} target rows are missing from the source, but some bad "
                "rows have no readable key, so nothing is deleted"
            )
            deletes = 0
        self.set_counts(
            new if switches.create else 0, changed_rows if switches.update else 0, deletes
        )

    def set_counts(self, creates: int, updates: int, deletes: int) -> None:
        """The plan's actions: lazy lists of exact length, read back from the stored run."""
        self.creates = StoredActions(self, "creates", creates)  # type: ignore[assignment]
        self.updates = StoredActions(self, "updates", updates)  # type: ignore[assignment]
        self.deletes = StoredActions(self, "deletes", deletes)  # type: ignore[assignment]

    # -- storing the changes ----------------------------------------------------------------
    def _json(self, i: int, column: str) -> str:
        return json_sql(self.value_field(self.fields[i])).format(column)

    def _object(self, prefix: str, alias: str) -> str:
        pairs = ", ".join(
            f"'{name}', {self._json(i, f'{alias}.{prefix}{i}')}"
            for i, name in enumerate(self.names)
        )
        return f"jsonb_build_object({pairs})"

    def change_selects(self, run: SyncRun, *, limit: int | None = None) -> list[Select]:
        """The SELECTs that give this plan's actions as stored changes (the columns of
        :data:`djsync.store.CHANGE_COLUMNS`, in order), run by the store inside the database
        (no round trip per row): at most ``limit`` per action, the first by source row,
        deletes by primary key, as :func:`djsync.store.audited` picks them."""
        self.run, self.stored_limit = run, limit
        cap = "" if limit is None else f" LIMIT {int(limit)}"
        keys = self.key_positions()
        selects: list[Select] = []
        label = self.model
        if self.creates:
            source_key = ", ".join(self._json(i, f"s.c{i}") for i in keys)
            selects.append(
                (
                    f"SELECT %s, %s, 'create', jsonb_build_array({source_key}), '', "
                    f"s._row, NULL, {self._object('c', 's')}, %s::jsonb "
                    f"FROM {self._created(limit)} ORDER BY s._row",
                    [run.pk, label, _json_list(self.names)],
                )
            )
        if self.updates:
            source_key = ", ".join(self._json(i, f"s.c{i}") for i in keys)
            selects.append(
                (
                    f"SELECT %s, %s, 'update', jsonb_build_array({source_key}), "
                    f"a._pk::text, s._row, {_only('a', self._object('o', 'a'))}, "
                    f"{_only('a', self._object('c', 's'))}, to_jsonb(a.changed) "
                    f"FROM {self.act} a JOIN {self.src} s ON s._row = a._row "
                    f"WHERE a.act = 'u' ORDER BY a._row{cap}",
                    [run.pk, label],
                )
            )
        if self.deletes:
            target_key = ", ".join(self._json(i, f"a.o{i}") for i in keys)
            selects.append(
                (
                    f"SELECT %s, %s, 'delete', jsonb_build_array({target_key}), "
                    f"a._pk::text, NULL, {self._object('o', 'a')}, NULL, '[]'::jsonb "
                    f"FROM {self.act} a WHERE a.act = 'd' ORDER BY a._pk{self._pk_order()}{cap}",
                    [run.pk, label],
                )
            )
        return selects

    def _created(self, limit: int | None = None) -> str:
        """FROM clause of the staged rows to create (alias ``s``), the first ``limit`` ones."""
        cap = "" if limit is None else f" ORDER BY _row LIMIT {int(limit)}"
        if self.new == self.good:  # every staged row is new (an initial load): no join
            return f"(SELECT * FROM {self.src} WHERE NOT _skip{cap}) s"
        return (
            f"(SELECT _row FROM {self.act} WHERE act = 'c'{cap}) a "
            f"JOIN {self.src} s ON s._row = a._row"
        )

    def _pk_order(self) -> str:
        """Text primary keys sort by code point, as Python sorts them (not by collation)."""
        pk = self.importer.model._meta.pk
        return ' COLLATE "C"' if isinstance(pk, models.CharField | models.TextField) else ""

    # -- applying -------------------------------------------------------------------------
    def values_of(self, action: str, name: str) -> Iterator[Any]:
        """The values of field ``name`` in the rows this plan creates (``"create"``) or
        deletes (``"delete"``), read from staging in batches: a later step of the same job
        looks its foreign keys up among them."""
        if name not in self.names:
            return
        i = self.names.index(name)
        if action == "create":
            sql = f"SELECT s.c{i} FROM {self._created()}"
        else:
            sql = f"SELECT a.o{i} FROM {self.act} a WHERE a.act = 'd'"
        if not (self.creates if action == "create" else self.deletes):
            return
        python = self.value_field(self.fields[i]).to_python  # SQLite's stored forms too
        with self.connection.cursor() as cursor:
            cursor.execute(sql)
            while rows := cursor.fetchmany(settings.BATCH_SIZE):
                for (value,) in rows:
                    yield None if value is None else python(value)

    def check_stale(self) -> None:
        """Raise ConflictError if the target moved since this (stored) plan was previewed."""
        from .stored import check_stale

        check_stale(self)

    def apply_actions(
        self,
        *,
        progress: Progress | None = None,
        actions: tuple[str, ...] = ("create", "update", "delete"),
        done: int = 0,
    ) -> int:
        """INSERT the creates, UPDATE the changed fields, DELETE the missing rows; call it
        inside the run's transaction. A count that differs from the plan rolls back.
        ``actions`` picks some of them (a multi-model job writes parents' creates first and
        their deletes last); the staging tables go once the deletes are written. Returns
        ``done`` plus the rows written, for progress across several calls."""
        last = "delete" in actions
        try:
            with self.connection.cursor() as cursor:
                if self.parents and ("create" in actions or "update" in actions):
                    from .stored import resolve_parents

                    resolve_parents(self, cursor)
                if self.creates and "create" in actions:
                    done += self._check(self._insert(cursor), len(self.creates), "created")
                    _tick(progress, done)
                if self.updates and "update" in actions:
                    done += self._check(self._update(cursor), len(self.updates), "updated")
                    _tick(progress, done)
                if self.deletes and last:
                    done += self._check(self._delete(cursor), len(self.deletes), "deleted")
                    _tick(progress, done)
        except BaseException:
            self.close()
            raise
        if last:
            self.close()
        return done

    def _check(self, count: int, expected: int, what: str) -> int:
        if count != expected:
            raise ConflictError(
                f"{self.model}: the target changed while the run was planned ({count} rows "
                f"{what} instead of {expected}); nothing written, run again"
            )
        return count

    def _insert(self, cursor: Any) -> int:
        model = self.importer.model
        columns, values, params = [], [], []
        for i, f in enumerate(self.fields):
            columns.append(self.qn(f.model_field.column))
            values.append(f"s.p{i}" if f.is_relation else f"s.c{i}")
        active = {f.name for f in self.fields}
        now = timezone.now()
        for mf in model._meta.concrete_fields:
            if mf.name in active:
                continue
            how, value = insert_default(mf) or ("missing", None)
            if how == "omit":
                continue
            columns.append(self.qn(mf.column))
            if how == "sql":
                values.append(value)
                continue
            if how == "now":
                value = now.date() if type(mf) is models.DateField else now
            elif how != "value":
                raise TargetError(f"{self.model}: cannot fill field {mf.name!r}")
            values.append("%s")
            params.append(mf.get_db_prep_save(value, self.connection))
        cursor.execute(
            f"INSERT INTO {self.qn(model._meta.db_table)} ({', '.join(columns)}) "
            f"SELECT {', '.join(values)} FROM {self._created()} ORDER BY s._row",
            params,
        )
        return cursor.rowcount

    def _update(self, cursor: Any) -> int:
        """One UPDATE per set of changed fields, touching only those columns; past
        ``UPDATE_GROUPS`` sets, one UPDATE that keeps unchanged columns with CASE."""
        model = self.importer.model
        cursor.execute(
            f"SELECT DISTINCT changed FROM {self.act} WHERE act = 'u' LIMIT {UPDATE_GROUPS + 1}"
        )
        groups = [row[0] for row in cursor.fetchall()]
        by_name = {f.name: i for i, f in enumerate(self.fields)}
        table, pk = self.qn(model._meta.db_table), self.qn(model._meta.pk.column)
        head = f"UPDATE {table} AS x SET "
        tail = (
            f" FROM {self.act} a JOIN {self.src} s ON {self._source_of_action} WHERE a.act = 'u' "
        )
        tail += f"AND x.{pk} = a._pk"

        def new(name: str) -> tuple[str, str]:
            i = by_name[name]
            f = self.fields[i]
            return self.qn(f.model_field.column), f"s.p{i}" if f.is_relation else f"s.c{i}"

        if len(groups) > UPDATE_GROUPS:
            keys = set(self.importer.keys)
            sets = [
                f"{column} = CASE WHEN {self._changes(name)} THEN {value} ELSE x.{column} END"
                for name in self.names
                if name not in keys
                for column, value in [new(name)]
            ]
            cursor.execute(head + ", ".join(sets) + tail)
            return cursor.rowcount
        count = 0
        for changed in groups:
            sets = [f"{column} = {value}" for column, value in map(new, self._names(changed))]
            cursor.execute(head + ", ".join(sets) + tail + " AND a.changed = %s", [changed])
            count += cursor.rowcount
        return count

    #: How an action row finds its staged source row (the dialect hooks of ``_update``).
    _source_of_action = "s._row = a._row"

    def _changes(self, name: str) -> str:
        """SQL: the action's ``changed`` list holds field ``name``."""
        return f"'{name}' = ANY(a.changed)"

    def _names(self, changed: Any) -> list[str]:
        """The field names of one stored ``changed`` value."""
        return list(changed)

    def _delete(self, cursor: Any) -> int:
        """One DELETE when Django would fast-delete too; else the ORM, in batches, so that
        cascades, ``on_delete`` rules and delete signals hold as on the generic path."""
        model = self.importer.model
        manager = model._base_manager.db_manager(self.importer.using)
        if Collector(using=self.importer.using, origin=None).can_fast_delete(manager.all()):
            pk = self.qn(model._meta.pk.column)
            cursor.execute(
                f"DELETE FROM {self.qn(model._meta.db_table)} WHERE {pk} IN "
                f"(SELECT _pk FROM {self.act} WHERE act = 'd')"
            )
            return cursor.rowcount
        deleted, last = 0, None
        size = settings.BATCH_SIZE
        while True:
            after = "" if last is None else "AND _pk > %s "
            cursor.execute(
                f"SELECT _pk FROM {self.act} WHERE act = 'd' {after}ORDER BY _pk LIMIT {size}",
                [] if last is None else [last],
            )
            pks = [row[0] for row in cursor.fetchall()]
            if not pks:
                return deleted
            manager.filter(pk__in=pks).delete()
            deleted += len(pks)
            last = pks[-1]

    def close(self) -> None:
        """Drop the staging tables (idempotent)."""
        if self.closed:
            return
        self.closed = True
        LIVE.difference_update((self.src, self.act))
        try:
            with self.connection.cursor() as cursor:
                cursor.execute(f"DROP TABLE IF EXISTS {self.src}, {self.act}")
                if self.work_mem:
                    cursor.execute("SELECT set_config('work_mem', %s, false)", [self.work_mem])
        except Exception:  # noqa: BLE001 - an aborted transaction: the session drops them
            pass


def _only(alias: str, obj: str) -> str:
    """The jsonb object ``obj`` with only the changed fields of the action row."""
    return (
        f"(SELECT jsonb_object_agg(e.key, e.value) FROM jsonb_each({obj}) e "
        f"WHERE e.key = ANY({alias}.changed))"
    )


def _json_list(names: list[str]) -> str:
    import json

    return json.dumps(names)


def _tick(progress: Progress | None, done: int) -> None:
    if progress is not None:
        progress(done)


# -- building -------------------------------------------------------------------------------
def build_plan(
    importer: BaseImporter,
    source: Source,
    switches: Switches,
    *,
    progress: Progress | None = None,
    plan_class: type[PostgresPlan] | None = None,
) -> PostgresPlan:
    """Read the source into staging and classify it against the target in scope
    (``plan_class`` is the database's staged plan: this one, or a subclass such as
    :class:`djsync.targets.sqlite.SqlitePlan`)."""
    rows = source.read_rows() if reads_rows(source) else None
    records: Iterator[Any] = source.read() if rows is None else rows
    close = getattr(records, "close", lambda: None)  # a SQL source's cursor: close it now
    try:
        first = next(records, None)  # reads the header
        importer.match_columns(source.columns or [], source)
        importer.load_lookups()
    except BaseException:
        close()
        raise
    plan = (plan_class or PostgresPlan)(importer, switches)
    stream = chain([first], records) if first is not None else iter(())
    converter = RowConverter(importer)
    items = converter.rows(stream, source) if rows is None else converter.cell_rows(stream, source)
    try:
        # A savepoint: a source error in the middle of COPY must not leave the caller's
        # transaction aborted (the failed run could not be recorded).
        with transaction.atomic(using=importer.using):
            plan.stage(items, progress)
            plan.classify()
    except BaseException:
        plan.close()
        close()
        raise
    return plan


def reads_rows(source: Source) -> bool:
    """Whether ``source.read_rows()`` gives the records ``read()`` gives: not when a
    subclass overrides ``read()`` below the class that provides ``read_rows()``."""
    for klass in type(source).__mro__:
        if "read_rows" in vars(klass):
            return True
        if "read" in vars(klass):
            return False
    return False


#: The staged plan of this backend (djsync.backends).
plan_class = PostgresPlan

__all__ = ["PostgresPlan", "RowError", "build_plan", "fast_plan", "plan_class", "unsupported"]
