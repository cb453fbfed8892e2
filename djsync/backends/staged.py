"""The staged path shared by every database backend: a plan whose actions live in tables.

A staged backend (djsync.backends.postgresql, djsync.backends.sqlite) reads the converted source
rows into a temporary staging table, classifies them against the target in scope with one
join into a second table of actions, and applies them with set-based SQL in the run's
transaction; the store copies the actions into the run's history with ``INSERT … SELECT``.
Neither side of the sync is held in Python's memory. :class:`StagedSqlPlan` holds what
does not depend on the database — the action counts, the apply (INSERT, one UPDATE per set
of changed fields, DELETE or the ORM's delete where cascades must run), the checks — and
each backend subclasses it with its SQL for staging, classifying and storing.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection, Iterable, Iterator
from itertools import chain
from typing import TYPE_CHECKING, Any, cast

from django.db import connections, models, transaction
from django.db.models.deletion import Collector
from django.utils import timezone
from django.utils.translation import gettext as _

from djsync.backends.actions import Notifier, StoredActions, tell
from djsync.backends.parents import ChunkParents
from djsync.conf import settings
from djsync.engine.diff import Plan, unkeyed_errors_note
from djsync.engine.rows import Converted, RowConverter
from djsync.exceptions import TargetError, changed_while_planned, stale_error
from djsync.mapping.fields import concrete_field, related_model

if TYPE_CHECKING:
    from djsync.engine.diff import RowError
    from djsync.mapping.importers import BaseImporter, Switches
    from djsync.models import SyncRun
    from djsync.sources.base import Source

Progress = Callable[[int], None]

#: One SQL statement and its parameters.
Select = tuple[str, list[Any]]

#: Sets of changed fields up to which updates are one UPDATE per set (as on the generic path).
UPDATE_GROUPS = 16


#: Prefix of the temporary tables; leftovers of an interrupted run are dropped on next use.
PREFIX = "djsync_stage_"


#: Names of the staging tables of plans not closed yet (never dropped as leftovers).
LIVE: set[str] = set()


class Lowest:
    """Less than any key: starts one order check, and keeps the first key (no cost a row)."""

    first: Any = None

    def __lt__(self, other: object) -> bool:
        self.first = other
        return True


# -- when a staged path applies -------------------------------------------------------------
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
    connection = connections[importer.using]
    if connection.vendor != vendor:
        return f"the target database is {connection.vendor}, not {label}"
    from djsync.mapping.importers import BaseImporter

    cls = type(importer)
    for name in ("read_target", "normalize_target_row", "build_plan", "to_model_values", "key_of"):
        if getattr(cls, name) is not getattr(BaseImporter, name):
            return f"the importer overrides {name}()"
    reason = extra(importer)
    if reason is not None:
        return reason
    for f in importer.bound_fields.values():
        if f.is_relation:
            related = f.lookup_field()
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
    from djsync.mapping.fields import NOT_PROVIDED

    return f.name in importer.keys or f.spec.required is not False or f.default is not NOT_PROVIDED


def unique_key(model: type[models.Model], keys: Iterable[str]) -> bool:
    """Whether the model guarantees one row per key (so a join matches like a dict)."""
    names = set(keys)
    opts = model._meta
    if any(concrete_field(model, n).unique for n in names):
        return True
    groups = [set(g) for g in opts.unique_together]
    groups += [set(c.fields) for c in opts.total_unique_constraints]
    return any(g and g <= names for g in groups)


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
class StagedSqlPlan(Plan):
    """A plan whose actions live in temporary tables of the run's connection until stored
    (:meth:`change_selects`, by the store) and applied (:meth:`apply_actions`). A backend
    subclass gives the SQL that differs between databases: ``create_src``, ``stage``,
    ``classify``, ``change_selects``, ``_created``, ``close``, ``uuid4_sql`` and
    the stored-preview hooks."""

    #: SQL type of the staging table's ``_skip`` flag.
    skip_type = "boolean"
    #: SQL of a random UUID, for ``uuid.uuid4`` defaults (each backend says its own).
    uuid4_sql = ""
    #: The source read a chunk ahead, when foreign keys load each chunk's parents.
    read_ahead: ChunkParents | None = None

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

    def src_columns(self, row_type: str = "integer") -> list[str]:
        """DDL of the staging table: row number, skip flag, one column per field (the
        lookup value for a foreign key) and the primary key of each foreign key."""
        fields, connection = self.fields, self.connection
        columns = [f"_row {row_type}", f"_skip {self.skip_type}"]
        columns += [f"c{i} {self.value_field(f).db_type(connection)}" for i, f in enumerate(fields)]
        relations = [i for i, f in enumerate(fields) if f.is_relation]
        columns += [f"p{i} {fields[i].model_field.db_type(connection)}" for i in relations]
        return columns

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
            self.warnings.append(unkeyed_errors_note(deletes))
            deletes = 0
        self.set_counts(
            new if switches.create else 0, changed_rows if switches.update else 0, deletes
        )

    def set_counts(self, creates: int, updates: int, deletes: int) -> None:
        """The plan's actions: lazy lists of exact length, read back from the stored run."""
        self.creates = StoredActions(self, "creates", creates)  # type: ignore[assignment]
        self.updates = StoredActions(self, "updates", updates)  # type: ignore[assignment]
        self.deletes = StoredActions(self, "deletes", deletes)  # type: ignore[assignment]

    # -- applying -------------------------------------------------------------------------
    def values_of(self, action: str, name: str, among: Collection | None = None) -> Iterator:
        """The values of field ``name`` (only those ``among`` some, if given) in the rows this
        plan creates or deletes (``action``), in batches: a later step's foreign keys' parents."""
        if name not in self.names or not (self.creates if action == "create" else self.deletes):
            return
        i = self.names.index(name)
        if action == "create":
            column, sql = f"s.c{i}", f"SELECT s.c{i} FROM {self._created()} WHERE 1 = 1"
        else:
            column, sql = f"a.o{i}", f"SELECT a.o{i} FROM {self.act} a WHERE a.act = 'd'"
        field = self.value_field(self.fields[i])
        params = [field.get_db_prep_save(v, self.connection) for v in among or ()]
        if among is not None:  # never empty (an empty IN list is no SQL)
            sql += f" AND {column} IN ({', '.join(['%s'] * len(params))})"
        python = field.to_python  # SQLite's stored forms too
        with self.connection.cursor() as cursor:
            cursor.execute(sql, params)
            while rows := cursor.fetchmany(settings.BATCH_SIZE):
                for (value,) in rows:
                    yield None if value is None else python(value)

    def check_stale(self) -> None:
        """Raise ConflictError naming the keys whose target rows changed since the preview:
        a row appeared under a key it creates, or a row it updates or deletes is gone or no
        longer holds the values the preview saw. One query against the target in scope."""
        head, source, params = self._stale_target()
        keys = self.key_positions()
        others = [i for i in range(len(self.fields)) if i not in keys]
        on = " AND ".join(f"s.c{k} = t.c{k}" for k in keys)
        keydiff = " OR ".join(self._differs_ms(k, f"a.o{k}", f"t.c{k}") for k in keys)
        olddiff = " OR ".join(
            f"((a.act = 'd' OR {self._changes(self.names[i])}) AND "
            f"{self._differs_ms(i, f'a.o{i}', f't.c{i}')})"
            for i in others
        )
        created = (
            f"SELECT 'created by someone else' AS why, {_cols('s', keys)} FROM {self.act} a "
            f"JOIN {self.src} s ON {self._source_of_action} JOIN {source} ON {on} "
            "WHERE a.act = 'c'"
        )
        moved = (
            f"SELECT CASE WHEN t._pk IS NULL OR {keydiff} THEN 'gone' ELSE 'changed' END, "
            f"{_cols('a', keys, 'o')} FROM {self.act} a LEFT JOIN {source} ON t._pk = a._pk "
            f"WHERE a.act IN ('u', 'd') AND (t._pk IS NULL OR {keydiff}"
            f"{f' OR {olddiff}' if olddiff else ''})"
        )
        query = f"{created} UNION ALL {moved}"
        with self.connection.cursor() as cursor:
            cursor.execute(f"{head}SELECT * FROM ({query}) x LIMIT {SHOWN + 1}", params * 2)
            found = cursor.fetchall()
            if not found:
                return
            total = len(found)
            if total > SHOWN:
                cursor.execute(f"{head}SELECT count(*) FROM ({query}) x", params * 2)
                total = cursor.fetchone()[0]
        raise stale_error(self.model, [(_key(key), why) for why, *key in found[:SHOWN]], total)

    def resolve_parents(self, cursor: Any) -> None:
        """Check, before anything is written, that every parent a foreign key names by its
        natural key and whose primary key is not staged yet (a stored preview, or a parent
        this run creates) is there; the writes then look it up (:meth:`_value`)."""
        for i in self.parents:
            f = self.fields[i]
            cursor.execute(
                f"SELECT s.c{i} FROM {self.src} s WHERE s.p{i} IS NULL AND s.c{i} IS NOT NULL "
                f"AND NOT s._skip AND {self._parent(i)} IS NULL LIMIT {SHOWN + 1}"
            )
            missing = [row[0] for row in cursor.fetchall()]
            if missing:
                name = related_model(f.model_field)._meta.verbose_name
                no = _("no %(name)s with %(lookup)s %(value)r")
                found = {"name": name, "lookup": f.lookup}
                shown = [(str(v), no % {**found, "value": v}) for v in missing[:SHOWN]]
                raise stale_error(self.model, shown, len(missing))

    def _parent(self, i: int) -> str:
        """SQL: the primary key of the parent that foreign key ``i`` names by natural key in
        the staged row ``s`` (one lookup by the parent's unique natural key)."""
        f = self.fields[i]
        parent = self.qn(related_model(f.model_field)._meta.db_table)
        lookup = self.qn(f.lookup_field().column)
        target = self.qn(cast("models.ForeignKey[Any, Any]", f.model_field).target_field.column)
        return f"(SELECT r.{target} FROM {parent} r WHERE r.{lookup} = s.c{i})"

    def _value(self, i: int) -> str:
        """SQL: the value field ``i`` writes from the staged row ``s``: a foreign key's
        primary key (looked up now when a parent's is not staged), else the value."""
        if not self.fields[i].is_relation:
            return f"s.c{i}"
        if i in self.parents:
            return f"COALESCE(s.p{i}, {self._parent(i)})"
        return f"s.p{i}"

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
        told = Notifier(self.importer)  # receivers of batch_applied: told after each write
        try:
            with self.connection.cursor() as cursor:
                if self.parents and ("create" in actions or "update" in actions):
                    self.resolve_parents(cursor)
                if self.creates and "create" in actions:
                    done += self._check(self._insert(cursor), len(self.creates), "created")
                    tell(self, told, "create")
                    _tick(progress, done)
                if self.updates and "update" in actions:
                    done += self._check(self._update(cursor), len(self.updates), "updated")
                    tell(self, told, "update")
                    _tick(progress, done)
                if self.deletes and last:
                    done += self._check(self._delete(cursor, told), len(self.deletes), "deleted")
                    _tick(progress, done)
        except BaseException:
            self.close()
            raise
        if last:
            self.close()
        return done

    def _check(self, count: int, expected: int, what: str) -> int:
        if count != expected:
            raise changed_while_planned(self.model, count, expected, what)
        return count

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
            return self.qn(f.model_field.column), self._value(i)

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

    def _delete(self, cursor: Any, told: Notifier) -> int:
        """One DELETE when Django would fast-delete too and nobody listens to ``told``; else
        the ORM, in batches, so that cascades, ``on_delete`` rules and signals hold."""
        if told:
            return told.delete(f"SELECT _pk FROM {self.act} WHERE act = 'd' ORDER BY _pk")
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

    def _insert(self, cursor: Any) -> int:
        """INSERT the creates from staging, with the defaults of the fields not mapped."""
        model = self.importer.model
        columns, values, params = [], [], []
        for i, f in enumerate(self.fields):
            columns.append(self.qn(f.model_field.column))
            values.append(self._value(i))
        active = {f.name for f in self.fields}
        now = timezone.now()
        for mf in model._meta.concrete_fields:
            if mf.name in active:
                continue
            default: tuple[str, Any] = insert_default(mf) or ("missing", None)
            how, value = default
            if how == "omit":
                continue
            columns.append(self.qn(mf.column))
            if how == "sql":  # uuid.uuid4: the database's own random UUID
                values.append(self.uuid4_sql)
                continue
            if how == "now":
                value = now.date() if type(mf) is models.DateField else now
            elif how != "value":
                raise TargetError(
                    _("%(model)s: cannot fill field %(name)r")
                    % {"model": self.model, "name": mf.name}
                )
            values.append("%s")
            params.append(mf.get_db_prep_save(value, self.connection))
        return self.write_creates(cursor, columns, values, params)

    def write_creates(self, cursor: Any, columns: list, values: list, params: list) -> int:
        """INSERT ``values`` (SQL over the staged rows to create, ``s``) into ``columns`` of
        the model's table, in row order (djsync.backends.bulkload on PostgreSQL)."""
        table = self.qn(self.importer.model._meta.db_table)
        select = f"SELECT {', '.join(values)} FROM {self._created()} ORDER BY s._row"
        cursor.execute(f"INSERT INTO {table} ({', '.join(columns)}) {select}", params)
        return cursor.rowcount

    # -- what each backend writes in its own SQL ----------------------------------------
    def create_src(self, cursor: Any, row_type: str = "integer") -> None:
        raise NotImplementedError

    def stage(self, items: Iterable[Converted | RowError], progress: Progress | None) -> None:
        raise NotImplementedError

    def stage_source(
        self,
        records: Iterator[Any],
        source: Source,
        converter: RowConverter,
        *,
        cells: bool,
        progress: Progress | None,
    ) -> None:
        """Stage the source's records (``cells``: lists of text cells in the order of
        ``source.columns``, as ``read_rows()`` gives them) converted by ``converter``."""
        items = converter.cell_rows(records, source) if cells else converter.rows(records, source)
        self.stage(items, progress)

    def classify(self) -> None:
        raise NotImplementedError

    def change_selects(self, run: SyncRun, *, limit: int | None = None) -> list[Select]:
        raise NotImplementedError

    def _created(self, limit: int | None = None) -> str:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def _stale_target(self) -> tuple[str, str, list[Any]]:
        """(SQL before the query, the target in scope as ``t``, its parameters)."""
        raise NotImplementedError

    def _differs_ms(self, i: int, a: str, b: str) -> str:
        """SQL: a value the preview saw (``a``) is not the target's now (``b``); times to
        the millisecond, the precision a stored preview keeps."""
        raise NotImplementedError


def _tick(progress: Progress | None, done: int) -> None:
    if progress is not None:
        progress(done)


def build_plan(
    importer: BaseImporter,
    source: Source,
    switches: Switches,
    *,
    progress: Progress | None = None,
    plan_class: type[StagedSqlPlan],
) -> StagedSqlPlan:
    """Read the source into staging and classify it against the target in scope with the
    database's staged plan (``plan_class``)."""
    rows = source.read_rows() if reads_rows(source) else None
    records: Iterator[Any] = source.read() if rows is None else rows
    close = getattr(records, "close", lambda: None)  # a SQL source's cursor: close it now
    try:
        first = next(records, None)  # reads the header
        importer.match_columns(source.columns or [], source)
    except BaseException:
        close()
        raise
    plan = plan_class(importer, switches)
    stream: Iterator[Any] = chain([first], records) if first is not None else iter(())
    ahead = ChunkParents.over(importer, stream, source, rows and source.columns)
    if ahead is not None:
        stream, source, plan.read_ahead = ahead, ahead.view, ahead
    converter = RowConverter(importer)
    try:
        # A savepoint: a source error in the middle of COPY must not leave the caller's
        # transaction aborted (the failed run could not be recorded).
        with transaction.atomic(using=importer.using):
            plan.stage_source(stream, source, converter, cells=rows is not None, progress=progress)
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


# -- conflicts ---------------------------------------------------------------------------
#: Conflicting keys named in the error of a stale preview.
SHOWN = 10


def _cols(alias: str, positions: list[int], prefix: str = "c") -> str:
    return ", ".join(f"{alias}.{prefix}{i}" for i in positions)


def _key(key: list[Any]) -> str:
    return str(key[0]) if len(key) == 1 else str(tuple(key))
