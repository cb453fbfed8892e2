"""Converted rows as PostgreSQL's COPY text, written by one compiled loop per source.

Staging a million rows spent most of its client time turning text cells into Python
values (``Decimal``, ``int``, ``date``) that psycopg then turned back into text for COPY.
Here the staging loop is compiled with each field's conversion written out (as
djsync.engine.rows compiles its converter) and writes the COPY line itself: a cell the
field's built-in converter takes as written (a plain text cell once stripped, a decimal or
whole number in the column's range written plainly, :func:`verbatim`) goes to COPY as it
is, and PostgreSQL's input function reads the value the converter would have made; the
values a column remembers (categories, dates) are remembered as their COPY text; any other
cell is converted in Python and written by :class:`Renderer`. Keys and foreign keys keep
their Python values (the order check, the lookup). A record the converter refuses is
handed to the importer's own code, as before, so row errors are unchanged.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal, getcontext
from typing import TYPE_CHECKING, Any, cast

from django.db import models

from djsync.engine.rows import _MISS, HANDED_OVER, MEMO_LIMIT, WARMUP, _remember, plain_text
from djsync.mapping.converters import integer_range
from djsync.mapping.fields import BoundField

if TYPE_CHECKING:
    from djsync.engine.diff import RowError
    from djsync.engine.rows import RowConverter

#: COPY text's NULL.
NULL = "\\N"

#: What the compiled staging loop returns once the rows end.
DONE = object()


def escape(text: str) -> str:
    """``text`` as a COPY text field: backslash, tab, newline and carriage return escaped."""
    if "\\" in text:
        text = text.replace("\\", "\\\\")
    return text.replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _bool(value: bool) -> str:
    return "t" if value else "f"


def _hex(value: uuid.UUID) -> str:
    return value.hex


#: How each converter result type is written (what psycopg's text dumpers write).
_RENDER: dict[type, Callable[[Any], str]] = {
    str: escape,
    int: str,
    bool: _bool,
    Decimal: str,
    float: repr,
    dt.date: dt.date.isoformat,
    dt.datetime: str,
    dt.time: dt.time.isoformat,
    uuid.UUID: _hex,
}


class Renderer:
    """Python values → COPY text fields; a type not in :data:`_RENDER` (a custom
    converter's result) goes through psycopg's own dumper, as ``write_row`` would."""

    def __init__(self, raw_cursor: Any) -> None:
        self.cursor = raw_cursor
        self.encoding = raw_cursor.connection.info.encoding

    def __call__(self, value: Any) -> str:
        if value is None:
            return NULL
        how = _RENDER.get(type(value))
        if how is not None:
            return how(value)
        from psycopg.adapt import PyFormat, Transformer

        dumped = Transformer(self.cursor).get_dumper(value, PyFormat.TEXT).dump(value)
        return NULL if dumped is None else escape(bytes(dumped).decode(self.encoding))


def renderable(fields: list[BoundField]) -> bool:
    """Whether rows of ``fields`` can be written as COPY text here: JSON values need
    psycopg's adaptation (``write_row``)."""
    for f in fields:
        value_field = f.lookup_field() if f.is_relation else f.model_field
        if isinstance(value_field, models.JSONField) or isinstance(f.model_field, models.JSONField):
            return False
    return True


def as_written(f: BoundField) -> bool:
    """Whether field ``f`` may take a cell as written: its value is the built-in
    converter's alone (no relation, custom converter, validators, null tokens or choices)
    and it reads a source column. The COPY text here and a CSV file's own bytes
    (djsync.backends.rawcsv) both ask it first."""
    mf = f.model_field
    return not (
        f.is_relation
        or f.spec.converter is not None
        or f.validators
        or f.null_tokens
        or mf.choices
        or f.source_column is None
    )


def number_pattern(f: BoundField, using: str) -> str | None:
    """The regular expression of a number the field's converter takes as written and that
    PostgreSQL reads to the same value (digits in the column's range, no sign but ``-``,
    no exponent, no more decimal places than the field's), or None (not a number field,
    or no such form)."""
    mf = f.model_field
    if isinstance(mf, models.DecimalField):
        places, digits = mf.decimal_places, mf.max_digits
        if places is None or digits is None or digits - places < 1:
            return None
        if digits > getcontext().prec:  # Python's quantize() refuses what PostgreSQL takes
            return None
        tail = rf"(?:\.[0-9]{{1,{places}}})?" if places else ""
        return rf"-?[0-9]{{1,{digits - places}}}{tail}"
    if isinstance(mf, models.IntegerField) and not isinstance(mf, models.AutoField):
        low, high = integer_range(mf, using)
        width = len(str(min(high, -low if low < 0 else high))) - 1
        if width < 1:
            return None
        return ("-?" if low < 0 else "") + rf"[0-9]{{1,{width}}}"
    return None


def verbatim(f: BoundField, using: str) -> Callable[[str], Any] | None:
    """A test that a stripped cell is a number the field takes as written
    (:func:`number_pattern`), or None."""
    pattern = number_pattern(f, using) if as_written(f) else None
    return None if pattern is None else re.compile(pattern).fullmatch


class TextRows:
    """COPY lines of records of text cells for one run: the staging loop compiled for the
    source's columns (:meth:`compile`), the remembered texts, and the importer's own code
    for a record the loop refuses (:meth:`handed_over`)."""

    def __init__(self, converter: RowConverter, render: Renderer, using: str) -> None:
        self.converter = converter
        self.render = render
        fields = converter.fields
        typed = set(converter.key_index) | {i for i, _ in converter.related}
        #: Positions whose Python value is needed (keys: order check; foreign keys: lookup).
        self.typed = typed
        #: Remembered COPY text of the other memoizable columns.
        self.memos: list[dict[str, str] | None] = [
            None if i in typed or memo is None else {} for i, memo in enumerate(converter.memos)
        ]
        self.verbatim = [verbatim(f, using) for f in fields]

    def finish_warmup(self) -> None:
        self.converter._finish_warmup()
        for i, memo in enumerate(self.memos):
            if memo is not None and len(memo) > WARMUP // 2:
                self.memos[i] = None

    def render_values(self, values: tuple[Any, ...]) -> str:
        """The COPY fields of a converted tuple (the importer's own result for a record
        the fast converter refused), foreign keys' primary keys appended."""
        render = self.render
        out = [render(v) for v in values]
        out += [
            render(None if values[i] is None else lk[values[i]]) for i, lk in self.converter.related
        ]
        return "\t".join(out)

    def handed_over(
        self, columns: list[str], cells: list[str], number: int
    ) -> Iterator[tuple[Any, str | None, RowError | None]]:
        """A record the compiled loop refused, through the importer's own code:
        ``(key, line, None)`` for its converted row, ``(None, line, error)`` for a row
        error with a key (the line keeps that key's target row), ``(None, None, error)``
        for one without."""
        conv = self.converter
        keys, lookups = conv.key_index, conv.importer.lookups
        handed = [(f, f.source_column, lookups.get(f.name)) for f in conv.fields]
        record = dict(zip(columns, cells, strict=True))
        for item in conv._handed_over(record, number, handed):
            if type(item) is tuple:
                values = item[1]
                key = values[keys[0]] if len(keys) == 1 else tuple(values[k] for k in keys)
                yield key, f"{number}\tf\t{self.render_values(values)}\n", None
                continue
            error = cast("RowError", item)
            if error.key is None:
                yield None, None, error
                continue
            bad: list[Any] = [None] * (len(conv.fields) + len(conv.related))
            for position, value in zip(keys, error.key, strict=True):
                bad[position] = value
            fields = "\t".join(map(self.render, bad))
            yield None, f"{error.row}\tt\t{fields}\n", error

    def compile(self, columns: list[str]) -> Callable[..., tuple[Any, int, int, int, bool, Any]]:
        """The staging loop for records of cells in ``columns`` order, compiled with each
        field's conversion written out (as djsync.engine.rows compiles its converter):
        ``stage(rows, source, row, seen, stop, append, ordered, last)`` appends the COPY
        line of each record to ``append`` until ``stop`` records are seen, the rows end
        (:data:`DONE`) or a record is refused (returned, for the importer's own code), and
        returns ``(refused, number, row, seen, ordered, last)``: ``ordered`` tells whether
        the keys so far increase strictly, ``last`` is the last key."""
        conv = self.converter
        where = {c: i for i, c in enumerate(columns)}
        names: dict[str, Any] = {"MISS": _MISS, "render": self.render, "NULL": NULL}
        names |= {"HANDED_OVER": HANDED_OVER, "DONE": DONE}
        body: list[str] = []
        for i, f in enumerate(conv.fields):
            names[f"convert{i}"] = f.convert
            names[f"converter{i}"] = f.converter
            if f.source_column is None:
                body += [f"    v{i} = convert{i}(None)", f"    t{i} = render(v{i})"]
                continue
            body.append(f"    raw = cells[{where[f.source_column]}]")
            if i in self.typed:
                body += self._typed(i, f, names)
            else:
                body += self._text(i, f, names)
        for i, lookup in conv.related:
            names[f"lookup{i}"] = lookup
            body += [
                f"    if v{i} is None:",
                f"        p{i} = NULL",
                f"    elif v{i} in lookup{i}:",
                f"        p{i} = render(lookup{i}[v{i}])",
                "    else:",
                f"        raise KeyError(v{i})",
            ]
        for i in conv.key_index:
            body += [f'    if v{i} is None or v{i} == "":', '        raise ValueError("empty key")']
        keys = conv.key_index
        key = f"v{keys[0]}" if len(keys) == 1 else "(" + "".join(f"v{k}, " for k in keys) + ")"
        parts = [f"{{t{i}}}" for i in range(len(conv.fields))]
        parts += [f"{{p{i}}}" for i, _ in conv.related]
        fields = "\\t".join(parts)
        lines = [
            "def stage(rows, source, row, seen, stop, append, ordered, last):",
            "    for cells in rows:",
            "        seen += 1",
            "        number = source.row or row",
            "        row += 1",
            "        try:",
            *("        " + line for line in body),
            "        except HANDED_OVER:",
            "            return cells, number, row, seen, ordered, last",
            "        if ordered:",
            f"            key = {key}",
            "            try:",
            "                ordered = last < key",
            "            except TypeError:",
            "                ordered = False",
            "            last = key",
            f'        append(f"{{number}}\\tf\\t{fields}\\n")',
            "        if seen >= stop:",
            "            return None, number, row, seen, ordered, last",
            "    return DONE, 0, row, seen, ordered, last",
        ]
        source = "\n".join(lines) + "\n"
        exec(compile(source, "<djsync.backends.copytext>", "exec"), names)  # noqa: S102
        stage = names["stage"]
        stage.source = source
        return stage

    def _typed(self, i: int, f: BoundField, names: dict[str, Any]) -> list[str]:
        """A key or foreign key: its Python value (``v``) as the fast converter makes it,
        then its COPY text (``t``)."""
        conv = self.converter
        memo = conv.memos[i]
        plain, limit = plain_text(f)
        if memo is not None:
            names[f"memo{i}"] = memo
            names[f"remember{i}"] = _remember(memo, conv.texts[i])
            lines = [
                f"    v{i} = memo{i}.get(raw, MISS)",
                f"    if v{i} is MISS:",
                f"        v{i} = remember{i}(raw)",
            ]
        elif plain:  # as written, unless the cell needs the converter
            return [
                f"    v{i} = raw.strip()",
                *_plain_check(i, f, limit, f"v{i}", names),
                f"        v{i} = convert{i}(raw)",
                f"        t{i} = render(v{i})",
                "    else:",
                f"        t{i} = v{i}",
            ]
        else:
            lines = self._converted(i, f, names, f"v{i}")
        return [
            *lines,
            f'    if type(v{i}) is str and v{i}.isprintable() and "\\\\" not in v{i}:',
            f"        t{i} = v{i}",
            "    else:",
            f"        t{i} = render(v{i})",
        ]

    def _text(self, i: int, f: BoundField, names: dict[str, Any]) -> list[str]:
        """Any other field: its COPY text only (``t``)."""
        memo = self.memos[i]
        if memo is not None:
            names[f"tmemo{i}"] = memo
            names[f"tremember{i}"] = _remember_text(memo, self.converter.texts[i], self.render)
            return [
                f"    t{i} = tmemo{i}.get(raw, MISS)",
                f"    if t{i} is MISS:",
                f"        t{i} = tremember{i}(raw)",
            ]
        plain, limit = plain_text(f)
        if plain:
            return [
                f"    t{i} = raw.strip()",
                *_plain_check(i, f, limit, f"t{i}", names),
                f"        t{i} = render(convert{i}(raw))",
            ]
        test = self.verbatim[i]
        if test is not None:
            names[f"verbatim{i}"] = test
            return [
                f"    t{i} = raw.strip()",
                f"    if not verbatim{i}(t{i}):",
                f"        t{i} = render(convert{i}(raw))",
            ]
        return [*self._converted(i, f, names, f"v{i}"), f"    t{i} = render(v{i})"]

    def _converted(self, i: int, f: BoundField, names: dict[str, Any], v: str) -> list[str]:
        """``v`` = the field's converter on the cell, as the fast converter calls it."""
        if f.null_tokens:
            names[f"tokens{i}"] = f.null_tokens
            return [
                f"    {v} = raw.strip()",
                f"    {v} = convert{i}(raw) if not {v} or {v} in tokens{i} else converter{i}(raw)",
            ]
        return [f"    {v} = converter{i}(raw) if raw.strip() else convert{i}(raw)"]


def increases(last: Any, key: Any) -> bool:
    """Whether ``key`` follows ``last`` strictly (keys that do not compare: no)."""
    try:
        return bool(last < key)
    except TypeError:
        return False


def _plain_check(
    i: int, f: BoundField, limit: int | None, v: str, names: dict[str, Any]
) -> list[str]:
    """The test a stripped plain text cell ``v`` fails unless it goes as written: empty,
    too long, a null token, not printable (NUL, tab, line break…) or holding a backslash."""
    too_long = "" if limit is None else f" or len({v}) > {int(limit)}"
    token = ""
    if f.null_tokens:
        names[f"tokens{i}"] = f.null_tokens
        token = f" or {v} in tokens{i}"
    return [f'    if not {v}{too_long}{token} or not {v}.isprintable() or "\\\\" in {v}:']


def _remember_text(
    memo: dict[str, str], text: Callable[[str], Any], render: Renderer
) -> Callable[[str], str]:
    def remember(cell: str) -> str:
        value = render(text(cell))
        if len(memo) < MEMO_LIMIT:
            memo[cell] = value
        return value

    return remember
