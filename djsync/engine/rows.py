"""Source records → row tuples at speed, with the importer's own code for every bad row.

Converting values in Python is the client-side cost of a large sync, so the fast path does
not build a ``SourceRow`` per record: it converts each cell with the field's converter
(remembering the result for low-cardinality columns such as categories and dates), and
hands any record that raises to :meth:`BaseImporter._convert_one`, which produces exactly
the row errors the generic path reports.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from django.db import models
from django.utils.translation import gettext as _

from djsync.engine.diff import RowError, SourceRow
from djsync.mapping.converters import encodable
from djsync.mapping.fields import BoundField, concrete_field, related_model

if TYPE_CHECKING:
    from djsync.mapping.importers import BaseImporter
    from djsync.sources.base import Source

#: Records seen before deciding which columns are worth remembering converted values for.
WARMUP = 5000
#: Most distinct values remembered per column (bounded memory).
MEMO_LIMIT = 100_000
_MISS = object()

#: One converted record: (row number, field values in ``importer.active_fields`` order).
Converted = tuple[int, tuple[Any, ...]]
#: What a record that the fast path cannot convert raises: it is then handed to the
#: importer's own code, which reports the row error (a MISSING cell of a short CSV row has
#: no ``strip()``: AttributeError) or raises the real exception.
HANDED_OVER = (ValueError, KeyError, AttributeError, TypeError)


def _memoizable(f: BoundField) -> bool:
    """Built-in converters are pure functions of a string cell; custom ones may not be."""
    if f.spec.converter is not None or isinstance(f.model_field, models.JSONField):
        return False
    mf = f.model_field
    if callable(f.default) or (mf.has_default() and callable(mf.default)):
        return False
    return f.source_column is not None


def plain_text(f: BoundField) -> tuple[bool, int | None]:
    """Whether ``f`` converts text cells by stripping them (a text field with the built-in
    converter, no choices and no validators of its own), and its length limit. A plain
    cell is still checked for its length, a NUL character and the field's null tokens."""
    field = (
        concrete_field(related_model(f.model_field), f.lookup)
        if f.is_relation and f.lookup
        else f.model_field
    )
    plain = (
        f.spec.converter is None
        and isinstance(field, models.CharField | models.TextField)
        and not field.choices
        and not f.validators
    )
    return plain, field.max_length


def text_converter(f: BoundField) -> Callable[[str], Any]:
    """``f.convert`` for a text cell, in fewer calls: the same value or the same error.

    ``f.convert`` checks emptiness, then runs the converter; for a ``str`` cell emptiness is
    ``not cell.strip()``. Plain text fields (built-in converter, no choices) are stripped
    and length-checked right here; anything unusual goes through ``f.convert`` itself.
    """
    convert, converter, tokens = f.convert, f.converter, f.null_tokens
    plain, limit = plain_text(f)
    if plain and not tokens:

        def text(cell: str) -> Any:
            value = cell.strip()
            if (
                value
                and (limit is None or len(value) <= limit)
                and "\x00" not in value
                and (value.isascii() or encodable(value))  # JSON's "\udc80": not storable
            ):
                return value
            return convert(cell)  # empty, too long, NUL: the field's own answer

        return text
    if plain:

        def text_or_token(cell: str) -> Any:
            value = cell.strip()
            if (
                value
                and (limit is None or len(value) <= limit)
                and "\x00" not in value
                and value not in tokens
                and (value.isascii() or encodable(value))
            ):
                return value
            return convert(cell)  # the field's own answer, a null token's too

        return text_or_token
    if not tokens:

        def other(cell: str) -> Any:
            return converter(cell) if cell.strip() else convert(cell)

        return other

    def other_or_token(cell: str) -> Any:
        value = cell.strip()
        return converter(cell) if value and value not in tokens else convert(cell)

    return other_or_token


class RowConverter:
    """Converts raw records for ``importer`` into tuples; yields RowErrors for bad records."""

    def __init__(self, importer: BaseImporter) -> None:
        self.importer = importer
        self.fields = list(importer.active_fields)
        self.names = [f.name for f in self.fields]
        self.key_index = [self.names.index(k) for k in importer.keys]
        self.memos: list[dict[str, Any] | None] = [
            {} if _memoizable(f) else None for f in self.fields
        ]
        self.texts = [text_converter(f) for f in self.fields]
        self.lookups = [importer.lookups.get(f.name) for f in self.fields]
        #: (position, lookup) of the foreign keys, checked after conversion.
        self.related = [(i, lk) for i, lk in enumerate(self.lookups) if lk is not None]
        cls = type(importer)
        from djsync.mapping.importers import BaseImporter

        #: A ``prepare_record`` of the importer's own: records go through it, then through
        #: the same converters (the compiled cell converter needs the raw cells).
        self.prepared = cls.prepare_record is not BaseImporter.prepare_record
        #: A ``normalize_source_row``: every record goes through the importer's own code.
        self.hooked = cls.normalize_source_row is not BaseImporter.normalize_source_row

    def _finish_warmup(self) -> None:
        for i, memo in enumerate(self.memos):
            if memo is not None and len(memo) > WARMUP // 2:
                self.memos[i] = None  # mostly distinct values: remembering costs more

    def _check(self, out: list[Any]) -> tuple[Any, ...]:
        """Foreign keys that resolve and a non-empty key, or the error the importer reports."""
        for i, lookup in self.related:
            value = out[i]
            if value is not None and value not in lookup:
                raise KeyError(value)
        for i in self.key_index:
            value = out[i]
            if value is None or value == "":
                raise ValueError(_("the key is empty"))
        return tuple(out)

    def convert_record(self, record: dict[str, Any]) -> tuple[Any, ...]:
        """The converted values of a good record; raises on anything the generic path
        would turn into a row error."""
        out: list[Any] = []
        append = out.append
        for f, memo, text in zip(self.fields, self.memos, self.texts, strict=True):
            column = f.source_column
            raw = record.get(column) if column is not None else None
            if type(raw) is not str:
                value = f.convert(raw)
            elif memo is None:
                value = text(raw)
            else:
                value = memo.get(raw, _MISS)
                if value is _MISS:
                    value = text(raw)
                    if len(memo) < MEMO_LIMIT:
                        memo[raw] = value
            append(value)
        return self._check(out)

    def compile_cells(self, columns: list[str]) -> Callable[[list[str]], tuple[Any, ...]]:
        """:meth:`convert_record` for a row of text cells in ``columns`` order
        (:meth:`Source.read_rows`), written out field by field and compiled: no dict per
        record, no loop over the fields, no call for a plain text cell. Each step is the
        one :meth:`convert_record` takes for that field; the source is kept in
        ``convert.source`` for reading."""
        where = {c: i for i, c in enumerate(columns)}
        names: dict[str, Any] = {"MISS": _MISS}
        lines = ["def convert(cells):"]
        for i, (f, memo) in enumerate(zip(self.fields, self.memos, strict=True)):
            names[f"convert{i}"] = f.convert
            if f.source_column is None:
                lines.append(f"    v{i} = convert{i}(None)")
                continue
            lines.append(f"    raw = cells[{where[f.source_column]}]")
            if memo is not None:
                names[f"memo{i}"] = memo
                names[f"remember{i}"] = _remember(memo, self.texts[i])
                lines += [
                    f"    v{i} = memo{i}.get(raw, MISS)",
                    f"    if v{i} is MISS:",
                    f"        v{i} = remember{i}(raw)",
                ]
                continue
            plain, limit = plain_text(f)
            token = ""
            if f.null_tokens:
                names[f"tokens{i}"] = f.null_tokens
                token = f" or v{i} in tokens{i}"
            if plain:
                too_long = "" if limit is None else f" or len(v{i}) > {int(limit)}"
                lines += [
                    f"    v{i} = raw.strip()",
                    f'    if not v{i}{too_long} or "\\x00" in v{i}{token}:',
                    f"        v{i} = convert{i}(raw)",
                ]
            elif token:
                names[f"converter{i}"] = f.converter
                lines += [
                    f"    v{i} = raw.strip()",
                    f"    v{i} = convert{i}(raw) if not v{i}{token} else converter{i}(raw)",
                ]
            else:
                names[f"converter{i}"] = f.converter
                lines.append(f"    v{i} = converter{i}(raw) if raw.strip() else convert{i}(raw)")
        for i, lookup in self.related:
            names[f"lookup{i}"] = lookup
            lines += [
                f"    if v{i} is not None and v{i} not in lookup{i}:",
                f"        raise KeyError(v{i})",
            ]
        for i in self.key_index:
            lines += [
                f'    if v{i} is None or v{i} == "":',
                '        raise ValueError("empty key")',
            ]
        lines.append(f"    return ({''.join(f'v{i}, ' for i in range(len(self.fields)))[:-1]})")
        source = "\n".join(lines) + "\n"
        exec(compile(source, "<djsync.engine.rows>", "exec"), names)  # noqa: S102
        convert = names["convert"]
        convert.source = source
        return convert

    def rows(
        self, records: Iterable[dict[str, Any]], source: Source
    ) -> Iterator[Converted | RowError]:
        """Converted rows and row errors, in source order, as ``importer.convert`` would."""
        importer = self.importer
        if self.hooked:
            yield from self._through_importer(records, source)
            return
        fields = [(f, f.source_column, importer.lookups.get(f.name)) for f in self.fields]
        row = source.first_row
        seen = 0
        convert = self.convert_record
        prepare = importer.prepare_record if self.prepared else None
        for record in records:
            seen += 1
            importer.rows_read += 1
            number = source.row or row
            row += 1
            if seen == WARMUP:
                self._finish_warmup()
            try:
                if prepare is None:
                    yield number, convert(record)
                    continue
                prepared = prepare(dict(record))  # a copy: a bad row is prepared again below
                if prepared is not None:  # None: the importer skips the record
                    yield number, convert(prepared)
            except HANDED_OVER:  # the importer's own code reports the row error (or raises)
                yield from self._handed_over(record, number, fields)

    def cell_rows(
        self, rows: Iterable[list[str]], source: Source
    ) -> Iterator[Converted | RowError]:
        """:meth:`rows` for lists of text cells in ``source.columns`` order; a bad row is
        handed to the importer as the dict :meth:`Source.read` would have yielded."""
        importer = self.importer
        columns = list(source.columns or [])
        if self.hooked or self.prepared:  # the hooks take records: dicts, as read() gives
            records = (dict(zip(columns, cells, strict=True)) for cells in rows)
            yield from self.rows(records, source)
            return
        fields = [(f, f.source_column, importer.lookups.get(f.name)) for f in self.fields]
        convert = self.compile_cells(columns)
        row = source.first_row
        seen = 0
        for cells in rows:
            seen += 1
            importer.rows_read += 1
            number = source.row or row
            row += 1
            if seen == WARMUP:
                self._finish_warmup()
                convert = self.compile_cells(columns)
            try:
                yield number, convert(cells)
            except HANDED_OVER:
                record = dict(zip(columns, cells, strict=True))
                yield from self._handed_over(record, number, fields)

    def _handed_over(
        self, record: dict[str, Any], number: int, fields: list[Any]
    ) -> Iterator[Converted | RowError]:
        """A record the fast converter refused, through the importer's own code: its row
        errors, or (should that code accept it after all) its converted tuple."""
        for item in self.importer._convert_one(record, number, fields):
            if isinstance(item, SourceRow):
                yield item.row, tuple(item.values[n] for n in self.names)
            else:
                yield item

    def _through_importer(
        self, records: Iterable[dict[str, Any]], source: Source
    ) -> Iterator[Converted | RowError]:
        names = self.names
        row = source.first_row
        fields = [(f, f.source_column, self.importer.lookups.get(f.name)) for f in self.fields]
        for record in records:
            self.importer.rows_read += 1
            for item in self.importer._convert_one(record, source.row or row, fields):
                if isinstance(item, SourceRow):
                    yield item.row, tuple(item.values[n] for n in names)
                else:
                    yield item
            row += 1


def _remember(memo: dict[str, Any], text: Callable[[str], Any]) -> Callable[[str], Any]:
    """Convert a cell not seen yet, and remember it while the memo has room."""

    def remember(cell: str) -> Any:
        value = text(cell)
        if len(memo) < MEMO_LIMIT:
            memo[cell] = value
        return value

    return remember


def as_source_row(importer: BaseImporter, names: list[str]) -> Callable[[Converted], SourceRow]:
    """Turn a converted tuple back into a SourceRow (for the generic diff)."""
    keys = [names.index(k) for k in importer.keys]

    def make(item: Converted) -> SourceRow:
        number, values = item
        return SourceRow(
            row=number,
            key=tuple(values[i] for i in keys),
            values=dict(zip(names, values, strict=True)),
        )

    return make
