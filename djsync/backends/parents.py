"""Foreign keys of a staged run, looked up one chunk of source records at a time.

The generic path looks a foreign key up in a dict of the whole parent table (natural key →
primary key), loaded before the first row: its memory grows with the parent table. A
staged run reads the source ahead by one chunk (``BATCH_SIZE`` records), converts the
chunk's foreign-key cells, and asks the database for those parents only: per foreign key,
one query that joins the chunk's distinct natural keys with the parent's unique column,
and, in a multi-model job, one on the staging tables of each earlier step of the parent's
model (the rows it creates count, the rows it deletes do not). The importer's lookup for
that foreign key then holds the parents of the chunk being staged (and up to :data:`KEEP`
found for earlier chunks, so that a small parent table is read once), so the converters,
the COPY text and the importer's own row errors (message, column, value, raw record) work
as they did; memory is bounded by the chunk and :data:`KEEP`, not by the parent table.
Parents that the same run creates have no primary key yet; the apply looks them up by a
join (djsync.backends.staged).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import TYPE_CHECKING, Any, cast

from django.db import connections
from django.db.models import BooleanField, Q
from django.db.models.expressions import RawSQL

from djsync.conf import settings
from djsync.engine.diff import StagedPlan
from djsync.engine.rows import HANDED_OVER, text_converter
from djsync.mapping.fields import related_model

if TYPE_CHECKING:
    from djsync.mapping.fields import BoundField
    from djsync.mapping.importers import BaseImporter
    from djsync.sources.base import Source

#: Parents found kept per foreign key across chunks (small parent tables are then read
#: once; a large one costs at most this many entries): memory bounded by this, not by the
#: parent table.
KEEP = 50_000
#: Most natural keys in one query (PostgreSQL plans an index scan for lists this long).
IN_LIST = 500


class ReadAhead:
    """The source as the staging loop sees it while records are read a chunk ahead: ``row``
    is the row of the record last handed on, not of the one the source read last."""

    def __init__(self, source: Source) -> None:
        self.source = source
        self.row: int | None = source.row

    def __getattr__(self, name: str) -> Any:
        return getattr(self.source, name)

    def __str__(self) -> str:
        return str(self.source)


class ChunkParents:
    """The source's records read a chunk ahead, and the importer's foreign-key lookups
    holding that chunk's parents and up to :data:`KEEP` found before (the dicts stay the
    same objects, so compiled converters keep them). Iterate it for the records;
    :attr:`view` is the source as the consumer must see it. A consumer that streams into
    the connection (PostgreSQL's COPY) lets the next chunk load (:meth:`ensure`) while no
    statement is open on it."""

    def __init__(
        self,
        importer: BaseImporter,
        records: Iterator[Any],
        source: Source,
        columns: list[str] | None,
    ) -> None:
        self.importer = importer
        self.fields = [f for f in importer.active_fields if f.is_relation]
        for f in self.fields:
            importer.lookups[f.name] = {}
        prepare = type(importer).prepare_record
        from djsync.mapping.importers import BaseImporter

        #: The importer's ``prepare_record``: the chunk's cells are read after it, as the
        #: converters read them (a record it refuses or skips has no parent to find).
        self.prepare = None if prepare is BaseImporter.prepare_record else importer.prepare_record
        self._pending: dict[tuple[int, str, str], set[Any]] = {}
        #: Each foreign key's converter for a text cell (djsync.engine.rows: f.convert's
        #: value or error, in fewer calls).
        self.texts = {f.name: text_converter(f) for f in self.fields}
        self.records, self.source, self.columns = records, source, columns
        self.view = cast("Source", ReadAhead(source))
        self.chunk: list[Any] = []
        self.rows: list[int | None] = []
        self.at = 0  # the next record of the chunk
        self.exhausted = False

    @classmethod
    def over(
        cls, importer: BaseImporter, records: Iterator[Any], source: Source, columns: Any
    ) -> ChunkParents | None:
        """A reader of ``records`` (lists of cells in ``columns`` order, or dicts when
        ``columns`` is None) for ``importer``, or None when it has no foreign key."""
        if not any(f.is_relation for f in importer.active_fields):
            return None
        return cls(importer, records, source, columns)

    def __iter__(self) -> ChunkParents:
        return self

    def __next__(self) -> Any:
        if self.at >= len(self.chunk):
            self.ensure()
            if not self.chunk:
                raise StopIteration
        at = self.at
        self.at += 1
        self.view.row = self.rows[at]
        return self.chunk[at]

    @property
    def left(self) -> int:
        """Records of the loaded chunk not taken yet: taking them queries nothing."""
        return len(self.chunk) - self.at

    def must_load(self) -> bool:
        """Whether the next record taken would load a chunk (query the database)."""
        return not self.left and not self.exhausted

    def ensure(self) -> None:
        """Read the next chunk and load its parents, if the loaded one is all taken."""
        if self.left or self.exhausted:
            return
        self.chunk, self.rows, self.at = [], [], 0
        source = self.source
        for record in islice(self.records, settings.BATCH_SIZE):
            self.chunk.append(record)
            self.rows.append(source.row)
        if not self.chunk:
            self.exhausted = True
            return
        self.load(self.chunk, self.columns)

    def take(self, items: Iterator[Any]) -> list[Any]:
        """The ``items`` made from the records of one chunk (loaded now if need be),
        for a consumer that writes them to a statement open on the connection."""
        self.ensure()
        out: list[Any] = []
        for item in items:
            out.append(item)
            if self.must_load():
                break
        return out

    def load(self, chunk: list[Any], columns: list[str] | None) -> None:
        """Fill each foreign key's lookup with the parents the chunk's records name."""
        cells: Callable[[list[Any], BoundField], list[Any]]
        if columns is not None and self.prepare is None:
            where = {c: i for i, c in enumerate(columns)}

            def cells(records: list[Any], f: BoundField) -> list[Any]:
                at = where[f.source_column] if f.source_column else None
                return [None] if at is None else [r[at] for r in records]

        else:
            if columns is not None:
                chunk = [dict(zip(columns, c, strict=True)) for c in chunk]
            if self.prepare is not None:
                chunk = [self._prepared(record) for record in chunk]

            def cells(records: list[Any], f: BoundField) -> list[Any]:
                column = f.source_column
                return [None] if column is None else [r.get(column) for r in records]

        records = [r for r in chunk if r is not None]
        for f in self.fields:
            lookup = self.importer.lookups[f.name]
            values = _values(f, self.texts[f.name], cells(records, f))
            unknown = {v for v in values if v not in lookup}  # parents found before stay
            if len(lookup) + len(unknown) > KEEP:
                lookup.clear()
                unknown = values
            lookup.update(self.parents(f, unknown))

    def _prepared(self, record: dict[str, Any]) -> dict[str, Any] | None:
        assert self.prepare is not None
        try:
            return self.prepare(dict(record))  # a copy: the converter prepares it again
        except HANDED_OVER:
            return None

    def parents(self, f: BoundField, values: set[Any]) -> dict[Any, Any]:
        """Natural key → stored value (primary key or ``to_field``; None: a parent an
        earlier step creates) of the parents among ``values``, as the generic path's
        lookup would answer for them."""
        if not values:
            return {}
        related = related_model(f.model_field)
        manager = related._base_manager.using(self.importer.using)
        assert f.lookup is not None
        found: dict[Any, Any] = {}
        listed = list(values)
        connection = connections[self.importer.using]
        size = min(IN_LIST, connection.features.max_query_params or IN_LIST)
        for start in range(0, len(listed), size):
            qs = manager.filter(_among(f, listed[start : start + size], connection))
            found.update(qs.values_list(f.lookup, f.target_attname()))
        for plan in self.importer.pending_plans:  # earlier steps of the same job
            if plan.model == related._meta.label:
                for value in self._pending_values(plan, "create", f.lookup, values):
                    found.setdefault(value, None)
                for value in self._pending_values(plan, "delete", f.lookup, values):
                    found.pop(value, None)
        return found

    def _pending_values(self, plan: Any, action: str, name: str, values: set[Any]) -> set[Any]:
        """The values of field ``name`` among ``values`` in the rows ``plan`` creates or
        deletes: from its staging tables (a staged plan), else from its lists."""
        if isinstance(plan, StagedPlan):
            return set(plan.values_of(action, name, among=values))
        cache = (id(plan), action, name)
        if cache not in self._pending:
            if action == "create":
                rows: Iterable[Any] = (a.values for a in plan.creates)
            else:
                rows = (a.old for a in plan.deletes)
            self._pending[cache] = {row[name] for row in rows if name in row}
        return self._pending[cache] & values


def _values(f: BoundField, text: Callable[[str], Any], cells: list[Any]) -> set[Any]:
    """The distinct natural keys the cells convert to (``text``: the field's converter for
    a text cell); a cell the field refuses is the record's row error, found again when the
    record is converted."""
    try:
        distinct: Iterable[Any] = set(cells)
    except TypeError:  # an unhashable cell (a JSON list): the others still count
        distinct = cells
    out: set[Any] = set()
    for cell in distinct:
        try:
            value = text(cell) if type(cell) is str else f.convert(cell)
            if value is not None:
                out.add(value)
        except HANDED_OVER:
            continue
    return out


def _among(f: BoundField, values: list[Any], connection: Any) -> Q | RawSQL:
    """The condition that the parent's lookup is one of ``values``: on PostgreSQL one array
    parameter (``= ANY(%s)``: no statement text per value), elsewhere ``IN``."""
    if connection.vendor != "postgresql":
        return Q(**{f"{f.lookup}__in": values})
    field = f.lookup_field()
    column = f"{connection.ops.quote_name(field.model._meta.db_table)}."
    column += connection.ops.quote_name(field.column)
    prepared = [field.get_db_prep_value(v, connection) for v in values]
    return RawSQL(f"{column} = ANY(%s)", (prepared,), output_field=BooleanField())
