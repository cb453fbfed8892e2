"""Importers: the declarative mapping of a source onto one target (a model, or any
:class:`djsync.targets.Target`).

``BaseImporter`` holds the logic (convert records, read the target, build a plan);
``Importer`` adds the metaclass (djsync.mapping.options) that collects ``Field``
declarations, the way Django forms do, and reads the options from an inner ``class Meta``
(``ImporterOptions``), so a field may have any name and subclasses read as a description
of the mapping.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, ClassVar

from django.core.exceptions import ImproperlyConfigured
from django.db import models
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from djsync.conf import settings
from djsync.engine.diff import Key, Plan, RowError, SourceRow, StagedPlan, TargetRow, diff
from djsync.exceptions import MappingError
from djsync.mapping.columns import match, saved_for
from djsync.mapping.fields import NOT_PROVIDED, BoundField, Field, null_token_set, related_model
from djsync.mapping.options import ImporterMetaclass, ImporterOptions
from djsync.mapping.switches import IMPORTER_SWITCHES, OnRowError, Switches
from djsync.sources.base import MISSING, Source
from djsync.targets.base import Target
from djsync.targets.model import ModelTarget

__all__ = ["BaseImporter", "Importer", "ImporterMetaclass", "ImporterOptions", "Switches"]


class BaseImporter:
    """Maps source records onto ``model`` rows identified by the natural key ``keys``.

    Override the ``normalize_*`` and ``get_*`` methods to adapt it; every one of them is a
    no-op or the obvious default, so an importer states only what differs. The options
    below are declared in the importer's ``class Meta`` (see :class:`ImporterOptions`);
    the metaclass copies them onto the class, where the engine reads them.
    """

    #: The resolved ``class Meta`` (set by the metaclass).
    _meta: ClassVar[ImporterOptions]
    #: Registered name; set by ``djsync.register`` (from ``Meta.name``, else the model).
    name: ClassVar[str]
    #: The target model (or ``target``: a system that is not a Django model).
    model: ClassVar[type[models.Model]]
    #: A :class:`djsync.targets.Target` class to write to instead of ``model``: an HTTP
    #: API, another system (docs/targets.md).
    target_class: ClassVar[type[Target] | None] = None
    #: Field names that identify a row in both source and target (the natural key).
    keys: ClassVar[Sequence[str]] = ()
    #: Model fields mapped from columns of the same name, or ``"__all__"``.
    fields: ClassVar[Sequence[str] | str] = ()
    #: Filter (queryset ``filter()`` keywords) of the target rows this source is the truth
    #: for. Deletes happen only inside the scope. See also :meth:`get_scope`.
    scope: ClassVar[dict[str, Any] | None] = None
    #: Default source options for jobs that use this importer, e.g. ``{"path": "x.csv"}``.
    source: ClassVar[dict[str, Any] | None] = None
    #: Querysets a job's queryset source may pick by name, e.g. ``{"active": lambda:
    #: Product.objects.filter(active=True).values("sku", "price")}``: each a callable taking
    #: no argument that returns a queryset (called per run). A job gives ``{"kind":
    #: "queryset", "queryset": "active"}`` and can reach nothing else (docs/security.md).
    querysets: ClassVar[dict[str, Callable[[], models.QuerySet]]] = {}
    #: Database alias of the target (None: the router's choice for ``model``); set it to
    #: keep e.g. a ``reporting`` copy of a table in sync with ``default``.
    database: ClassVar[str | None] = None
    #: Database aliases a job may pick for this importer's model (``{"database": "…"}`` in
    #: its target): a job is data, so it chooses only among what code allows.
    databases: ClassVar[Sequence[str]] = ()
    #: False keeps this importer on the generic (Python) diff and apply path. Multi-model
    #: steps and incremental reads set it on their instance: their plans are amended
    #: (pending parent keys, deletes of marked records) after they are computed.
    fast_path: bool = True
    #: True writes django-simple-history records of the rows this importer creates, updates
    #: and deletes (the model must be registered with ``HistoricalRecords``; djsync.history).
    history: ClassVar[bool] = False

    #: Behaviour switches and limits (a job or a run may override each).
    create: ClassVar[bool] = True
    update: ClassVar[bool] = True
    delete: ClassVar[bool] = False
    max_create: ClassVar[int | None] = None
    max_update: ClassVar[int | None] = None
    max_delete: ClassVar[int | None] = None
    max_total: ClassVar[int | None] = None
    #: Share of the rows in scope a run may delete without ``force`` (None: the setting).
    delete_guard: ClassVar[float | None] = None
    #: ``"fail"``: a bad row fails the run, nothing is written. ``"skip"``: apply the rest.
    on_row_error: ClassVar[OnRowError] = "fail"

    #: Formats date and datetime fields accept besides ISO 8601, e.g. ``["%d/%m/%Y"]``
    #: (None: the DATE_FORMATS / DATETIME_FORMATS settings; a Field's own win).
    date_formats: ClassVar[Sequence[str] | None] = None
    datetime_formats: ClassVar[Sequence[str] | None] = None
    #: Cells that count as empty in every field, e.g. ``["NA", "\\N"]``, with the source's
    #: own ``null_tokens`` option; a Field's ``null_tokens=`` replaces both for that field.
    null_tokens: ClassVar[Sequence[str]] = ()

    declared_fields: ClassVar[dict[str, Field]] = {}

    def __init__(self, *, using: str = "default") -> None:
        self.using = using
        #: Where this importer writes: the model on ``using``, or the declared target.
        self.target: Target = self.get_target()
        self.bound_fields = self.get_fields()
        missing = [k for k in self.keys if k not in self.bound_fields]
        if not self.keys or missing:
            raise ImproperlyConfigured(
                f"{type(self).__name__}: keys must name mapped fields (missing: {missing})"
            )
        self.lookups: dict[str, dict[Any, Any]] = {}
        #: Plans of related models that run before this one in the same job (parents):
        #: rows they create count as existing for foreign key lookups, rows they delete not.
        self.pending_plans: list[Plan] = []
        self.active_fields: list[BoundField] = list(self.bound_fields.values())
        self.rows_read = 0
        #: The job's saved column mappings for this importer (``SyncJob.column_mapping``,
        #: set by djsync.runs.steps): one applies when a file has exactly its headers.
        self.column_mappings: list[dict[str, Any]] = []
        #: The run being applied (set by the orchestrator before it writes): receivers of
        #: djsync.signals.batch_applied get it.
        self.run: Any = None
        #: The keys this run is the truth for, inside the scope (None: the whole scope). A
        #: source that holds only some rows says which (djsync.realtime: the changed rows),
        #: so that the target rows of other keys are neither read nor deleted.
        self.only_keys: set[Key] | None = None

    # -- declarations --------------------------------------------------------------------
    @classmethod
    def prepare_options(cls, opts: ImporterOptions) -> None:
        """Derive options from others when the class is made (a resource importer takes
        ``model`` and ``keys`` from its resource); ``opts.given`` says what was declared.
        A no-op here."""

    @classmethod
    def default_switches(cls) -> Switches:
        values = {name: getattr(cls, name) for name in IMPORTER_SWITCHES}
        if values["delete_guard"] is None:
            values["delete_guard"] = settings.DELETE_GUARD
        return Switches(**values)

    def get_target(self) -> Target:
        """The target of this importer's writes (a new one per importer instance)."""
        if self.target_class is not None:
            return self.target_class()
        return ModelTarget(self.model, self.using)

    @property
    def writes_model(self) -> bool:
        """True when the target is a Django model (the staged paths need one)."""
        return isinstance(self.target, ModelTarget)

    def get_fields(self) -> dict[str, BoundField]:
        """The mapped fields, by target field name: ``fields`` plus declared ``Field``s."""
        names: list[str]
        if self.fields == "__all__":
            names = self.target.field_names()
        else:
            names = list(self.fields)
        for key in self.keys:
            if key not in names and key not in self.declared_fields:
                names.insert(0, key)
        bound: dict[str, BoundField] = {}
        specs = [(name, self.declared_fields.get(name, Field())) for name in names]
        specs += [(n, spec) for n, spec in self.declared_fields.items() if n not in names]
        for name, spec in specs:
            bound[name] = spec.bind(
                name,
                self.model if self.writes_model else self.target,
                using=self.using,
                date_formats=self.date_formats,
                datetime_formats=self.datetime_formats,
            )
        return bound

    @property
    def label(self) -> str:
        return self.target.label

    # -- hooks ---------------------------------------------------------------------------
    def get_queryset(self) -> models.QuerySet:
        """All rows of the target model this importer may see."""
        return self.model._base_manager.using(self.using).all()

    def get_scope(self, queryset: models.QuerySet) -> models.QuerySet:
        """The rows this source is the truth for; override for scopes a dict cannot say."""
        return queryset.filter(**self.scope) if self.scope else queryset

    def prepare_record(self, record: dict[str, Any]) -> dict[str, Any] | None:
        """The raw source record before conversion; return None to skip it."""
        return record

    def normalize_source_row(self, values: dict[str, Any]) -> dict[str, Any]:
        """A converted source row, by field name, before it is compared."""
        return values

    def normalize_target_row(self, values: dict[str, Any]) -> dict[str, Any]:
        """A target row, by field name, before it is compared."""
        return values

    # -- reading the target --------------------------------------------------------------
    def key_of(self, values: dict[str, Any]) -> Key:
        return tuple(values[k] for k in self.keys)

    def scoped_queryset(self) -> models.QuerySet:
        """The target model's rows in scope (:meth:`get_scope`), narrowed to
        :attr:`only_keys` when a source holds only some keys."""
        queryset = self.get_scope(self.get_queryset())
        if self.only_keys is None:
            return queryset
        paths = [self.bound_fields[k].target_path for k in self.keys]
        if len(paths) == 1:
            return queryset.filter(**{f"{paths[0]}__in": [key[0] for key in self.only_keys]})
        match = models.Q(pk__in=[])
        for key in self.only_keys:
            match |= models.Q(**dict(zip(paths, key, strict=True)))
        return queryset.filter(match)

    def read_target(self) -> dict[Key, TargetRow]:
        """The rows in scope, by key, holding only the fields this run compares."""
        rows = self.target.read_rows(self)
        if self.only_keys is None:
            return rows
        return {key: row for key, row in rows.items() if key in self.only_keys}

    def load_lookups(self) -> None:
        """One query per foreign key: natural key value → primary key of the related row."""
        for f in self.active_fields:
            if f.is_relation and f.lookup is not None:
                related = related_model(f.model_field)
                manager = related._base_manager.using(self.using)
                qs = manager.values_list(f.lookup, f.target_attname())
                self.lookups[f.name] = dict(qs.iterator(chunk_size=settings.BATCH_SIZE))
                for plan in self.pending_plans:
                    if plan.model == related._meta.label:
                        pending_lookups(self.lookups[f.name], plan, f.lookup)

    # -- reading the source --------------------------------------------------------------
    def requires(self, f: BoundField) -> bool:
        """True when a file must hold ``f``'s column: a key, or a field with no default
        that is not declared ``required=False``."""
        return (
            f.name in self.keys
            or f.spec.required is True
            or (f.spec.required is None and f.default is NOT_PROVIDED)
        )

    def match_columns(self, columns: Sequence[str], source: Source) -> None:
        """Bind each field to a source column (djsync.mapping.columns: the job's saved
        mapping for these headers, the column, its aliases); a missing required column is
        an error."""
        found = match(self.bound_fields.values(), columns, saved_for(self.column_mappings, columns))
        active: list[BoundField] = []
        missing: list[str] = []
        for f in self.bound_fields.values():
            column = found.get(f.name)
            if column is not None:
                f.source_column = column
                active.append(f)
            elif self.requires(f):
                missing.append(f.column)
            elif f.default is not NOT_PROVIDED:
                f.source_column = None
                active.append(f)
        if missing:
            have = ", ".join(repr(_cut(c)) for c in columns[:50]) or _("none")
            if len(columns) > 50:
                have += _(" and %(count)s more") % {"count": f"{len(columns) - 50:,}"}
            raise MappingError(
                ngettext(
                    "%(source)s: missing column %(missing)s (the file has: %(have)s)",
                    "%(source)s: missing columns %(missing)s (the file has: %(have)s)",
                    len(missing),
                )
                % {"source": source, "missing": ", ".join(repr(m) for m in missing), "have": have}
            )
        tokens = null_token_set([*self.null_tokens, *(getattr(source, "null_tokens", ()) or ())])
        for f in active:
            f.null_tokens = tokens if f.spec.null_tokens is None else f.spec.null_tokens
        self.active_fields = active

    def convert(
        self, records: Iterable[dict[str, Any]], source: Source
    ) -> Iterator[SourceRow | RowError]:
        """Turn raw records into converted rows, or row errors naming row and column."""
        iterator = iter(records)
        first = next(iterator, None)
        if first is None and source.may_be_empty and not source.columns:
            return  # e.g. an incremental read with nothing new: not a missing column
        self.match_columns(source.columns or [], source)
        self.load_lookups()
        if first is None:
            return
        fields = [(f, f.source_column, self.lookups.get(f.name)) for f in self.active_fields]
        row = source.first_row
        for record in _chain_one(first, iterator):
            self.rows_read += 1
            # Sources that skip blank lines say which row this record stands on.
            yield from self._convert_one(record, source.row or row, fields)
            row += 1

    def _convert_one(
        self, record: dict[str, Any], row: int, fields: list[tuple[BoundField, str | None, Any]]
    ) -> Iterator[SourceRow | RowError]:
        try:
            prepared = self.prepare_record(record)
        except (ValueError, TypeError, KeyError) as exc:
            yield RowError(row=row, message=str(exc), raw=record)
            return
        if prepared is None:
            return
        values: dict[str, Any] = {}
        errors: list[RowError] = []
        for f, column, lookup in fields:
            raw = prepared.get(column) if column is not None else None
            if raw is MISSING:
                errors.append(_short_row(prepared, row, column or f.column))
                continue
            try:
                value = f.convert(raw)
            except ValueError as exc:
                errors.append(
                    RowError(row=row, message=str(exc), column=column or f.column, value=raw)
                )
                continue
            if lookup is not None and value is not None and value not in lookup:
                related = related_model(f.model_field)._meta.verbose_name
                errors.append(
                    RowError(
                        row=row,
                        message=_("no %(related)s with %(lookup)s %(value)r")
                        % {"related": related, "lookup": f.lookup, "value": value},
                        column=column,
                        value=raw,
                    )
                )
                continue
            values[f.name] = value
        key: Key | None = None
        if all(k in values for k in self.keys):
            key = self.key_of(values)
            if any(v is None or v == "" for v in key):
                errors.append(
                    RowError(row=row, message=_("the key is empty"), column=self._key_column())
                )
                key = None
        if not errors:
            try:
                values = self.normalize_source_row(values)
                yield SourceRow(row=row, key=self.key_of(values), values=values)
                return
            except (ValueError, TypeError, KeyError) as exc:
                errors.append(RowError(row=row, message=str(exc)))
        for error in errors:
            error.key, error.raw = key, record
            yield error

    def _key_column(self) -> str:
        return ", ".join(self.bound_fields[k].column for k in self.keys)

    # -- planning ------------------------------------------------------------------------
    def build_plan(
        self, source: Source, switches: Switches, *, progress: Callable[[int], None] | None = None
    ) -> Plan:
        """Read the source and the target in scope and compute the plan on the generic path
        (in Python, on any database). The orchestrator sends a step down a staged path
        instead where one gives the same result (djsync.backends.choose)."""
        records = source.read()
        try:
            converted = self.convert(records, source)
            first = next(converted, None)  # reads the header, binds columns, loads lookups
            target = self.read_target()
            stream = _chain_one(first, converted) if first is not None else iter(())
            if progress is not None:
                stream = _report(stream, progress, lambda: self.rows_read)
            plan = diff(
                stream,
                target,
                model=self.label,
                create=switches.create,
                update=switches.update,
                delete=switches.delete,
            )
        finally:
            # Close the source now, not when the garbage collector gets to it: a SQL
            # source's server-side cursor must close inside this run's transaction.
            getattr(records, "close", lambda: None)()
        plan.rows_read = self.rows_read
        return plan

    # -- applying ------------------------------------------------------------------------
    def to_model_values(self, values: dict[str, Any]) -> dict[str, Any]:
        """Field values as the model takes them: foreign keys by primary key (``attname``)."""
        out: dict[str, Any] = {}
        for name, value in values.items():
            f = self.bound_fields[name]
            if f.is_relation:
                out[f.model_field.attname] = None if value is None else self.lookups[name][value]
            else:
                out[f.model_field.attname] = value
        return out


def _cut(name: str, most: int = 80) -> str:
    """A header as an error message shows it: a hostile megabyte-long one cut short."""
    return name if len(name) <= most else name[: most - 1] + "…"


def _short_row(record: dict[str, Any], row: int, column: str) -> RowError:
    """A CSV row with fewer cells than its header: a row error, never the field's default."""
    have = sum(1 for v in record.values() if v is not MISSING)
    return RowError(
        row=row,
        message=(
            ngettext(
                "the row has %(have)s cell, the header has %(header)s: column %(column)r is "
                "missing",
                "the row has %(have)s cells, the header has %(header)s: column %(column)r is "
                "missing",
                have,
            )
            % {"have": have, "header": len(record), "column": column}
        ),
        column=column,
        value=None,
    )


def pending_lookups(lookup: dict[Any, Any], plan: Plan, field: str) -> None:
    """Add the keys a parent's plan creates (pk not known yet: None), drop those it deletes."""
    if isinstance(plan, StagedPlan):  # read from its staging tables, in batches
        for value in plan.values_of("create", field):
            lookup.setdefault(value, None)
        for value in plan.values_of("delete", field):
            lookup.pop(value, None)
        return
    for action in plan.creates:
        if field in action.values:
            lookup.setdefault(action.values[field], None)
    for gone in plan.deletes:
        if field in gone.old:
            lookup.pop(gone.old[field], None)


def _chain_one(first: Any, rest: Iterator[Any]) -> Iterator[Any]:
    yield first
    yield from rest


def _report(
    stream: Iterator[Any], progress: Callable[[int], None], count: Callable[[], int]
) -> Iterator[Any]:
    every = 1000
    last = 0
    for item in stream:
        yield item
        done = count()
        if done - last >= every:
            progress(done)
            last = done
    progress(count())


class Importer(BaseImporter, metaclass=ImporterMetaclass):
    """Subclass this to declare an importer; see :class:`ImporterOptions` for ``Meta``."""

    #: The class that reads ``Meta``; a helper with options of its own subclasses it.
    options_class: ClassVar[type[ImporterOptions]] = ImporterOptions
