"""PostgreSQL's staged path: COPY the source into a staging table, diff and apply in SQL.

The converted source rows are streamed with COPY (psycopg 3) into a temporary staging
table; one join against the importer's scope classifies every row (new key, changed
values — ``IS DISTINCT FROM`` per field — or target row missing from the source) into a
second temporary table of actions. Counts come back to Python, the store copies the
actions into ``SyncChange`` with ``INSERT … SELECT`` built from :meth:`change_selects`,
and applying is one ``INSERT … SELECT``, one ``UPDATE … FROM`` per set of changed fields
and one ``DELETE`` in the run's transaction (djsync.backends.staged).

:func:`unsupported` says when only the generic path gives the same result
(djsync.backends consults it).
"""

from __future__ import annotations

import json
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Sequence
from operator import itemgetter
from typing import TYPE_CHECKING, Any, cast

from django.core.exceptions import EmptyResultSet
from django.db import models

from djsync.backends import bulkload, rawcsv, staged
from djsync.backends.copytext import DONE, Renderer, TextRows, increases, renderable
from djsync.backends.pgjson import json_sql, only_changed
from djsync.backends.staged import (
    LIVE,
    Lowest,
    Progress,
    Select,
    StagedSqlPlan,
    reads_rows,
    staging_unsupported,
)
from djsync.conf import settings
from djsync.engine.diff import RowError, _duplicate_error
from djsync.engine.rows import WARMUP, Converted, RowConverter

if TYPE_CHECKING:
    from djsync.mapping.importers import BaseImporter, Switches
    from djsync.models import SyncRun
    from djsync.sources.base import Source

#: Rows per COPY statement; progress is reported between two statements.
COPY_CHUNK = 50_000


#: Rows of COPY text sent in one write.
TEXT_BATCH = 1000


#: Staged rows from which statistics and a larger work_mem pay for themselves.
LARGE = 20_000


#: Staging tables on this session, by any plan (a leftover of an interrupted run, or a live
#: plan of an earlier step of the same multi-model run).
STAGING_TABLES = (
    "SELECT relname FROM pg_class WHERE relnamespace = pg_my_temp_schema() "
    "AND relkind = 'r' AND relname LIKE 'djsync\\_stage\\_%%'"
)


#: Staging column types whose equality PostgreSQL and Python agree on (no collation that
#: folds case, no float NaN): strictly increasing keys of these types are all distinct.
ORDERABLE = frozenset(
    {"varchar", "text", "smallint", "integer", "bigint", "numeric", "date", "uuid", "boolean"}
    | {"timestamp with time zone", "timestamp", "time"}
)


# -- when the staged path applies -----------------------------------------------------------
def unsupported(importer: BaseImporter) -> str | None:
    """Why the fast path cannot serve ``importer`` (None: it can)."""
    return staging_unsupported(
        importer, vendor="postgresql", label="PostgreSQL", json_for=json_sql, extra=_psycopg3
    )


def _psycopg3(importer: BaseImporter) -> str | None:
    from django.db.backends.postgresql.psycopg_any import is_psycopg3

    return None if is_psycopg3 else "the fast path needs psycopg 3"


# -- the plan -------------------------------------------------------------------------------
class PostgresPlan(StagedSqlPlan):
    """Staging by COPY, classifying by one FULL JOIN, changes as jsonb, in PostgreSQL."""

    # -- staging --------------------------------------------------------------------------
    #: SQL type of the staging table's ``_skip`` flag.
    skip_type = "boolean"
    #: Staged rows that keep their target row (bad rows with a key, duplicate keys).
    skipped = 0
    #: (good rows staged so far, the row number they end at), as staging went.
    marks: tuple[Sequence[int], Sequence[int]] = ((), ())
    #: The first and last key staged, when they arrived strictly increasing (the order
    #: check's first and last key).
    span: tuple[Any, Any] = (None, None)
    #: Whether other connections see the staging table as this plan does (a partitioned
    #: run's, unchanged by the last step): then its creates are streamed (bulkload).
    readable = False
    #: Whether the duplicate check of the staged keys waits for the classifying join.
    unchecked = False
    #: How a CSV file was read: "staged" (its bytes parsed by PostgreSQL,
    #: djsync.backends.rawcsv), "refused: <why>" (then read in Python), or "" (not tried).
    raw_csv = ""

    def create_src(self, cursor: Any, row_type: str = "integer") -> None:
        """Create the staging table (dropping what an interrupted run left on this session)."""
        cursor.execute(STAGING_TABLES, [])
        for (leftover,) in cursor.fetchall():
            if leftover not in LIVE:
                cursor.execute(f"DROP TABLE IF EXISTS {self.qn(leftover)}")
        columns = ", ".join(self.src_columns(row_type))
        cursor.execute(f"CREATE TEMP TABLE {self.src} ({columns})")

    def target_sql(self) -> tuple[str, list[Any]]:
        """The importer's rows in scope, as Django would read them for the generic diff."""
        importer = self.importer
        paths = [f.target_path for f in self.fields]
        qs = importer.scoped_queryset().order_by().values_list("pk", *paths)
        aliases = ", ".join(["_pk", *(f"c{i}" for i in range(len(self.fields)))])
        try:
            sql, params = qs.query.get_compiler(using=importer.using).as_sql()
        except EmptyResultSet:
            # Every Field has rel_db_type(); django-stubs declares it on integer fields only.
            pk_type = importer.model._meta.pk.rel_db_type(self.connection)  # type: ignore[attr-defined]
            cols = ", ".join(f"c{i}" for i in range(len(self.fields)))
            return (
                f"(SELECT NULL::{pk_type}, {cols} FROM {self.src} WHERE false) AS t({aliases})",
                [],
            )
        return f"({sql}) AS t({aliases})", list(params)

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
            good = bad = 0
            items = iter(items)
            # Keys that arrive strictly increasing (many exports are sorted) cannot repeat:
            # then the duplicate check in SQL is skipped.
            ordered, last, key_of = self._orderable(), Lowest(), itemgetter(*keys)
            start = last
            copy_sql = f"COPY {self.src} FROM STDIN"
            ahead = self.read_ahead
            more = True
            while more:
                more = False
                batch: Iterable[Converted | RowError] = items
                if ahead is not None:  # foreign keys: the parents load before COPY starts
                    batch = ahead.take(items)  # one chunk's items: its parents are loaded
                    more = bool(batch)
                with raw.copy(copy_sql) as copy:
                    write = copy.write_row
                    n = 0
                    for item in batch:
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
                            item = cast("RowError", item)  # not a converted tuple
                            self.errors.append(item)
                            if item.key is not None:  # a bad row keeps its target row
                                ordered = False  # its key takes part in the duplicate check
                                cells: list[Any] = [None] * width
                                for position, value in zip(keys, item.key, strict=True):
                                    cells[position] = value
                                write((item.row, True, *cells))
                                bad += 1
                            else:
                                self.error_without_key = True
                        n += 1
                        if n >= COPY_CHUNK and ahead is None:
                            more = True
                            break
                if progress is not None:
                    progress(self.importer.rows_read)
            self.span = (start.first, last)
            self._staged(cursor, good, ordered, bad)

    def _staged(self, cursor: Any, good: int, ordered: bool, bad: int) -> None:
        """After COPY of ``good`` rows and ``bad`` rows with a key: statistics and work_mem
        for a large load, the duplicate keys marked unless the keys arrived strictly
        increasing (``ordered``)."""
        if good >= LARGE:
            cursor.execute(f"ANALYZE {self.src}")
            # Joins, sorts and the duplicate check of a large load stay in memory.
            cursor.execute(
                "SELECT current_setting('work_mem'), set_config('work_mem', %s, false)",
                [settings.FAST_PATH_WORK_MEM],
            )
            self.work_mem = cursor.fetchone()[0]
        self.good, self.skipped = good, bad
        # Every row good and the run deleting: the classifying join says whether a key
        # may repeat, without hashing every staged key here (:meth:`_repeats`).
        self.unchecked = not ordered and not bad and self.switches.delete
        if not ordered and not self.unchecked:
            self._skip_duplicates(cursor)

    def _skip_duplicates(self, cursor: Any) -> None:
        """Mark the rows of keys staged twice as skipped, as row errors."""
        marked = self._mark_duplicates(cursor)
        self.good -= marked
        self.skipped += marked
        if marked:
            self.marks = ((), ())  # some good rows became skipped: the marks no longer hold

    def stage_source(
        self,
        records: Iterator[Any],
        source: Source,
        converter: RowConverter,
        *,
        cells: bool,
        progress: Progress | None,
    ) -> None:
        """Rows of text cells go to COPY as text written by one compiled function
        (djsync.backends.copytext); anything else through :meth:`stage`. A CSV file
        whose rows PostgreSQL reads as written is COPY'd as it is (djsync.backends.rawcsv)."""
        if cells and rawcsv.applies(source, self, converter):
            copied = rawcsv.copy_file(self, source)
            self.raw_csv = copied if isinstance(copied, str) else "staged"
            if not isinstance(copied, str):
                with self.connection.cursor() as cursor:  # keys unseen: duplicates in SQL
                    self._staged(cursor, copied, False, 0)
                staged._tick(progress, self.importer.rows_read)
                return
            records = source.read_rows() or iter(())  # read again, in Python
        if cells and not (converter.hooked or converter.prepared) and renderable(self.fields):
            self._stage_text(records, source, converter, progress)
        else:
            super().stage_source(records, source, converter, cells=cells, progress=progress)

    def _stage_text(
        self,
        rows: Iterator[list[str]],
        source: Source,
        converter: RowConverter,
        progress: Progress | None,
    ) -> None:
        """:meth:`stage` for lists of text cells, without a Python value per cell where
        PostgreSQL reads the cell itself to the same value; the same rows, the same row
        errors (a record the compiled function refuses goes through the importer)."""
        importer = self.importer
        columns = list(source.columns or [])
        with self.connection.cursor() as cursor:
            self.create_src(cursor)
            goods: list[int] = []
            numbers: list[int] = []
            self.marks = (goods, numbers)
            raw = cursor.cursor
            text = TextRows(converter, Renderer(raw), importer.using)
            stage = text.compile(columns)
            ordered, last = self._orderable(), Lowest()
            start = last
            good = bad = seen = 0
            row, read, chunk_end, warm = source.first_row, importer.rows_read, COPY_CHUNK, False
            copy_sql = f"COPY {self.src} FROM STDIN"
            refused: Any = None
            ahead = self.read_ahead  # foreign keys: parents load between two COPYs
            while refused is not DONE:
                if ahead is not None:
                    ahead.ensure()
                with raw.copy(copy_sql) as copy:
                    out: list[str] = []
                    while refused is not DONE and seen < chunk_end:
                        if ahead is not None and ahead.must_load():
                            break
                        stop = min(seen + TEXT_BATCH, chunk_end)
                        if not warm:
                            stop = min(stop, WARMUP)
                        if ahead is not None and ahead.left:
                            stop = min(stop, seen + ahead.left)
                        before = seen
                        refused, number, row, seen, ordered, last = stage(
                            rows, source, row, seen, stop, out.append, ordered, last
                        )
                        good += seen - before - (refused is not None and refused is not DONE)
                        if refused is not None and refused is not DONE:
                            for key, written, error in text.handed_over(columns, refused, number):
                                if error is not None:
                                    self.errors.append(error)
                                if written is None:  # a row error without a key: not staged
                                    self.error_without_key = True
                                    continue
                                out.append(written)
                                if error is not None:
                                    ordered = False  # its key takes part in the duplicate check
                                    bad += 1
                                else:
                                    good += 1
                                    ordered = ordered and increases(last, key)
                                    last = key
                        if refused is not DONE:  # good rows so far, and the row they end at
                            goods.append(good)
                            numbers.append(number)
                        if not warm and seen >= WARMUP:
                            warm = True
                            text.finish_warmup()
                            stage = text.compile(columns)
                        if out:
                            copy.write("".join(out))
                            out.clear()
                chunk_end = seen + COPY_CHUNK  # progress between two statements
                importer.rows_read = read + seen
                if progress is not None:
                    progress(importer.rows_read)
            self.span = (start.first, last)
            self._staged(cursor, good, ordered, bad)

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
        return len(marked)

    # -- classifying ----------------------------------------------------------------------
    def classify(self) -> None:
        """One join of staging and target rows in scope → the table of actions; counts."""
        target, params = self.target_sql()
        with self.connection.cursor() as cursor:
            # An empty target in scope (an initial load): every staged row is new, and
            # the creates are read from staging itself (``_created``), so the table of
            # actions stays empty instead of holding a row per source row.
            cursor.execute(f"SELECT EXISTS (SELECT FROM {target})", params)
            empty = not cursor.fetchone()[0]
            if empty and self.unchecked:  # no join to tell: the check over staging
                self.unchecked = False
                self._skip_duplicates(cursor)
            found = self._act(cursor, target, params, empty)
            if self.unchecked:
                self.unchecked = False
                if self._repeats(cursor, found):  # rare: check, mark, classify again
                    cursor.execute(f"DROP TABLE {self.act}")
                    self._skip_duplicates(cursor)
                    found = self._act(cursor, target, params, empty)
        if empty:
            found["c"] = self.good  # the staged rows not skipped
        self.rows_in_scope = found.get("scope", self.good - found.get("c", 0) + found.get("d", 0))
        # An action finds its staged row by the row's address: a TID lookup per action,
        # not a scan of the whole staging table (nothing moves staged rows after this).
        self._source_of_action = "s.ctid = a._tid"
        self.count_actions(found)

    def _act(self, cursor: Any, target: str, params: list[Any], empty: bool) -> dict[str, int]:
        """Create the table of actions; the count of each action (and ``scope``, the
        target rows in scope, unless the actions tell it)."""
        switches = self.switches
        keys = self.key_positions()
        others = [i for i in range(len(self.fields)) if i not in keys]
        on = " AND ".join(f"s.c{i} = t.c{i}" for i in keys)
        distinct = " OR ".join(f"s.c{i} IS DISTINCT FROM t.c{i}" for i in others) or "false"
        changed = ", ".join(
            f"CASE WHEN s.c{i} IS DISTINCT FROM t.c{i} THEN '{self.names[i]}' END" for i in others
        )
        changed_sql = f"array_remove(ARRAY[{changed}]::text[], NULL)" if others else "'{}'::text[]"
        old = "".join(f", t.c{i} AS o{i}" for i in range(len(self.fields)))
        join = "FULL JOIN" if switches.delete else "LEFT JOIN"
        gone = "s._row IS NULL OR " if switches.delete else ""
        where = "false" if empty else f"{gone}(NOT s._skip AND (t._pk IS NULL OR {distinct}))"
        cursor.execute(
            f"CREATE TEMP TABLE {self.act} AS SELECT s._row, s.ctid AS _tid, t._pk, "
            "CASE WHEN s._row IS NULL THEN 'd' WHEN t._pk IS NULL THEN 'c' ELSE 'u' END "
            f"AS act{old}, CASE WHEN s._row IS NOT NULL AND t._pk IS NOT NULL "
            f"THEN {changed_sql} END AS changed "
            f"FROM {self.src} s {join} {target} ON {on} WHERE {where}",
            params,
        )
        # Without skipped rows each target row in scope either matches one staged row
        # or is missing from the source: no second read of the target to count them
        # (unless the keys' duplicate check waits for these counts).
        counted = empty or (switches.delete and not self.skipped and not self.unchecked)
        scope = "" if counted else f" UNION ALL SELECT 'scope', count(*) FROM {target}"
        cursor.execute(
            f"SELECT act, count(*) FROM {self.act} GROUP BY act{scope}",
            [] if counted else params,
        )
        return dict(cursor.fetchall())

    def _repeats(self, cursor: Any, found: dict[str, int]) -> bool:
        """Whether a key may be staged twice (False: none is), from the actions of a run
        that deletes and stages no bad row: a key matching one target row more than once
        (more staged rows match than target rows are matched) or a new key staged twice."""
        new = found.get("c", 0)
        if self.good - new != found["scope"] - found.get("d", 0):
            return True
        keys = ", ".join(f"s.c{i}" for i in self.key_positions())
        cursor.execute(
            f"SELECT FROM {self.act} a JOIN {self.src} s ON s.ctid = a._tid WHERE a.act = 'c' "
            f"GROUP BY {keys} HAVING count(*) > 1 LIMIT 1"
        )
        return cursor.fetchone() is not None

    # -- storing the changes ----------------------------------------------------------------
    def _json(self, i: int, column: str) -> str:
        sql = json_sql(self.value_field(self.fields[i]))
        assert sql is not None  # unsupported() refuses a field without it
        return sql.format(column)

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
                    [run.pk, label, json.dumps(self.names)],
                )
            )
        if self.updates:
            source_key = ", ".join(self._json(i, f"s.c{i}") for i in keys)
            before = only_changed("a", self._object("o", "a"), self.names)
            after = only_changed("a", self._object("c", "s"), self.names)
            selects.append(
                (
                    f"SELECT %s, %s, 'update', jsonb_build_array({source_key}), "
                    f"a._pk::text, s._row, {before}, {after}, to_jsonb(a.changed) "
                    f"FROM {self.act} a JOIN {self.src} s ON {self._source_of_action} "
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
            return f"(SELECT * FROM {self.src} WHERE NOT _skip{self._first(limit)}{cap}) s"
        return (
            f"(SELECT * FROM {self.act} WHERE act = 'c'{cap}) a "
            f"JOIN {self.src} s ON {self._source_of_action}"
        )

    def _first(self, limit: int | None) -> str:
        """SQL: a bound on the row numbers of the first ``limit`` good staged rows, from the
        marks staging left (at least that many good rows end at that row), so that only
        those rows are sorted; nothing when there are no marks that far."""
        goods, numbers = self.marks
        if limit is None:
            return ""
        at = bisect_left(goods, limit)
        return f" AND _row <= {int(numbers[at])}" if at < len(goods) else ""

    # -- a stored preview's checks (djsync.backends.staged) -----------------------------
    def _stale_target(self) -> tuple[str, str, list[Any]]:
        source, params = self.target_sql()
        return "", source, params

    def _differs_ms(self, i: int, a: str, b: str) -> str:
        field = self.value_field(self.fields[i])
        if isinstance(field, models.DateTimeField):
            return (
                f"date_trunc('milliseconds', {a}) IS DISTINCT FROM date_trunc('milliseconds', {b})"
            )
        if isinstance(field, models.TimeField):
            return (
                f"date_trunc('milliseconds', date '2000-01-01' + {a}) IS DISTINCT FROM "
                f"date_trunc('milliseconds', date '2000-01-01' + {b})"
            )
        return f"{a} IS DISTINCT FROM {b}"

    def _pk_order(self) -> str:
        """Text primary keys sort by code point, as Python sorts them (not by collation)."""
        pk = self.importer.model._meta.pk
        return ' COLLATE "C"' if isinstance(pk, models.CharField | models.TextField) else ""

    #: How a new row gets a random UUID (``uuid.uuid4`` as a field's default).
    uuid4_sql = "gen_random_uuid()"
    #: A large initial load builds the table's indexes after its rows.
    write_creates = bulkload.insert

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


def build_plan(
    importer: BaseImporter,
    source: Source,
    switches: Switches,
    *,
    progress: Progress | None = None,
) -> PostgresPlan:
    """Read the source into staging and classify it against the target in scope."""
    plan = staged.build_plan(importer, source, switches, progress=progress, plan_class=PostgresPlan)
    assert isinstance(plan, PostgresPlan)
    return plan


#: The staged plan of this backend (djsync.backends).
plan_class = PostgresPlan

__all__ = ["PostgresPlan", "build_plan", "json_sql", "plan_class", "reads_rows", "unsupported"]
