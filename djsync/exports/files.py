"""File targets (exports): a queryset written to a file in any tablib format, streamed.

CSV, TSV, JSON lines, JSON and XLSX are written row by row, so a million-row export never
sits in memory; the other tablib formats (xls, ods, yaml, html…) are built whole by tablib.
Every export is written to a temporary file beside the destination and renamed into place
only when complete: a failed export never leaves a half-written file.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import re
import string
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext as _

from djsync.conf import settings
from djsync.exceptions import ConfigurationError, TargetError

#: Formats written row by row; the others go through a tablib Dataset held in memory.
STREAMED = ("csv", "tsv", "jsonl", "json", "xlsx")
#: Formats a spreadsheet opens, where a cell starting with one of FORMULA_STARTS would run.
SPREADSHEET = frozenset({"csv", "tsv", "xlsx", "xls", "ods", "html"})
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_ALIASES = {"ndjson": "jsonl", "yml": "yaml", "txt": "csv", "htm": "html"}


def export_formats() -> list[str]:
    """Every format an export can be written in: the streamed ones plus tablib's."""
    import tablib

    names = {f.title for f in tablib.formats.registry.formats()} | set(STREAMED)
    return sorted(names)


def format_for(path: str | Path, format: str | None = None) -> str:
    fmt = (format or Path(path).suffix).lower().lstrip(".")
    fmt = _ALIASES.get(fmt, fmt)
    if fmt not in export_formats():
        raise ConfigurationError(
            _("cannot export to %(value)r: pass a format, one of %(export_formats)s")
            % {
                "value": fmt or "a file without extension",
                "export_formats": ", ".join(export_formats()),
            }
        )
    return fmt


def render_path(template: str | Path, *, job: str = "", now: dt.datetime | None = None) -> Path:
    """Fill ``{date}``, ``{date:%Y%m%d}``, ``{datetime}`` and ``{job}`` in an export path."""
    now = timezone.localtime(now or timezone.now())
    values = {"date": now.date(), "datetime": now, "job": job}
    template = str(template)
    parts = []
    try:
        # Only the names above, no attribute or index (``{job.__class__}``), no conversion,
        # a short strftime format for dates and none for {job} (``{job:>999999999}``).
        for literal, name, spec, conversion in string.Formatter().parse(template):
            parts.append(literal)
            if name is None:
                continue
            if name not in values or conversion or "{" in (spec or "") or len(spec or "") > 40:
                raise ValueError(f"{{{name}{'!' + conversion if conversion else ''}}}")
            if name == "job" and spec:
                raise ValueError(f"{{job:{spec}}}")
            parts.append(format(values[name], spec or ""))
    except ValueError as exc:
        raise ConfigurationError(
            _(
                "export path %(template)r: bad placeholder (%(exc)s); use {date}, "
                "{date:%%Y-%%m-%%d}, {datetime:%%Y%%m%%d-%%H%%M} or {job}"
            )
            % {"template": template[:200], "exc": str(exc)[:60]}
        ) from None
    return Path("".join(parts)).expanduser()


#: A plain number after a leading sign: "-5", "+3.25", "-1e6" (a spreadsheet reads it as
#: that number, which is what the text says; nothing to run).
_PLAIN_NUMBER = re.compile(r"[+-](?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def _formula_like(text: str) -> bool:
    """Whether a spreadsheet would evaluate ``text`` (OWASP CSV injection): it starts with
    = + - @ tab or CR, and is not a plain signed number."""
    return text.startswith(FORMULA_STARTS) and not _PLAIN_NUMBER.fullmatch(text)


def neutralize(value: Any) -> Any:
    """A text cell a spreadsheet would run as a formula, prefixed with ``'`` so it stays
    text (``=HYPERLINK(…)`` → ``'=HYPERLINK(…)``, ``-5 degrees`` → ``'-5 degrees``); plain
    numbers (``-5``) and every other value unchanged.

    Exports to spreadsheet formats and the row-errors CSV go through it; file sources of the
    same formats undo it with :func:`unneutralize`, so an export reads back to the values it
    was written from. A value that already starts with quotes before a formula (``'=x``)
    gets one more, so that undoing it gives the value back exactly."""
    if isinstance(value, str) and value and _formula_like(value.lstrip("'")):
        return "'" + value
    return value


def unneutralize(value: Any) -> Any:
    """The value :func:`neutralize` was given: one ``'`` taken off exactly the neutralized
    form (quotes, then a formula); every other value unchanged."""
    if isinstance(value, str) and value.startswith("'") and _formula_like(value.lstrip("'")):
        return value[1:]
    return value


def unneutralize_cells(cells: list[Any]) -> list[Any]:
    """A row of cells with :func:`unneutralize` applied; a row without any ``'`` (the common
    case, checked at C speed) is returned as it is."""
    try:
        if "'" not in "".join(cells):
            return cells
    except TypeError:  # not all text (a workbook row): check each cell
        pass
    return [unneutralize(c) for c in cells]


@dataclass
class Columns:
    """What an export writes: header names and the queryset paths that fill them."""

    headers: list[str]
    paths: list[str]
    #: Per column, a function that turns a value into the file's representation (None: as
    #: read), e.g. a django-import-export widget's date format.
    renderers: list[Any] | None = None

    @classmethod
    def for_model(cls, model: type[models.Model]) -> Columns:
        """Every concrete field; a foreign key as its raw id (``category_id``)."""
        fields = model._meta.concrete_fields
        return cls([f.attname for f in fields], [f.attname for f in fields])

    @classmethod
    def for_importer(cls, importer: Any) -> Columns:
        """The importer's mapping in reverse: the file it writes can be imported again."""
        fields = list(importer.bound_fields.values())
        renderers = [getattr(f, "render", None) for f in fields]
        return cls(
            [f.column for f in fields],
            [f.target_path for f in fields],
            renderers if any(renderers) else None,
        )


@dataclass
class ExportResult:
    path: Path
    format: str
    rows: int


def export_queryset(
    queryset: models.QuerySet,
    path: str | Path,
    *,
    format: str | None = None,
    importer: Any = None,
    columns: Columns | None = None,
    neutralize_formulas: bool = True,
    job: str = "",
) -> ExportResult:
    """Write ``queryset`` to ``path`` (placeholders filled) and return where and how many.

    Columns come from ``columns``, else the ``importer``'s mapping (so the file can be
    synced back), else every concrete field. The call the admin's export action makes.
    """
    target = render_path(path, job=job)
    fmt = format_for(target, format)
    columns = columns or (
        Columns.for_importer(importer) if importer else Columns.for_model(queryset.model)
    )
    rows = queryset.values_list(*columns.paths).iterator(chunk_size=settings.BATCH_SIZE)
    if columns.renderers:
        rows = _rendered(rows, columns.renderers)
    count = write_rows(target, fmt, columns.headers, rows, neutralize_formulas=neutralize_formulas)
    return ExportResult(path=target, format=fmt, rows=count)


def _rendered(rows: Iterable[Sequence[Any]], renderers: list[Any]) -> Iterator[list[Any]]:
    for row in rows:
        yield [v if r is None or v is None else r(v) for r, v in zip(renderers, row, strict=True)]


def write_rows(
    path: Path,
    fmt: str,
    headers: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    neutralize_formulas: bool = True,
) -> int:
    """Write ``rows`` to ``path`` atomically: a temporary file, renamed when complete."""
    clean = neutralize_formulas and fmt in SPREADSHEET
    if clean:
        rows = ([neutralize(v) for v in row] for row in rows)
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - renamed or removed below
            mode="wb", dir=path.parent, prefix=f".{path.name}.", suffix=".part", delete=False
        )
    except OSError as exc:
        raise TargetError(
            _("%(path)s: cannot write the export there: %(value)s")
            % {"path": path, "value": exc.strerror or exc}
        ) from None
    temp = Path(handle.name)
    try:
        with handle:
            count = WRITERS.get(fmt, _write_tablib)(handle, fmt, list(headers), rows)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except OSError as exc:
        temp.unlink(missing_ok=True)
        raise TargetError(
            _("%(path)s: writing the export failed: %(value)s")
            % {"path": path, "value": exc.strerror or exc}
        ) from None
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return count


# -- writers: each returns the number of rows written ----------------------------------------


def _text(handle: IO[bytes]) -> Any:
    import io

    return io.TextIOWrapper(handle, encoding="utf-8", newline="", write_through=False)


def _cell(value: Any) -> Any:
    """A value as a text file shows it: ISO dates, true/false, JSON for structures."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dict | list):
        return json.dumps(value, cls=DjangoJSONEncoder)
    return value


def _text_cell(value: Any) -> Any:
    value = _cell(value)
    return str(value) if isinstance(value, Decimal) else value


def _write_csv(handle: IO[bytes], fmt: str, headers: list[str], rows: Iterable[Any]) -> int:
    text = _text(handle)
    writer = csv.writer(text, delimiter="\t" if fmt == "tsv" else ",", lineterminator="\r\n")
    writer.writerow(headers)
    count = 0
    for row in rows:
        writer.writerow([_cell(v) for v in row])
        count += 1
    text.flush()
    text.detach()
    return count


def _json_records(headers: list[str], rows: Iterable[Any]) -> Iterator[str]:
    encoder = DjangoJSONEncoder(ensure_ascii=False)
    for row in rows:
        yield encoder.encode(dict(zip(headers, row, strict=True)))


def _write_jsonl(handle: IO[bytes], fmt: str, headers: list[str], rows: Iterable[Any]) -> int:
    count = 0
    for line in _json_records(headers, rows):
        handle.write(line.encode() + b"\n")
        count += 1
    return count


def _write_json(handle: IO[bytes], fmt: str, headers: list[str], rows: Iterable[Any]) -> int:
    count = 0
    handle.write(b"[")
    for line in _json_records(headers, rows):
        handle.write((b",\n" if count else b"\n") + line.encode())
        count += 1
    handle.write(b"\n]\n" if count else b"]\n")
    return count


def _xlsx_cell(value: Any) -> Any:
    if isinstance(value, dt.datetime) and timezone.is_aware(value):
        return timezone.make_naive(value)  # spreadsheets have no time zones: local time
    if isinstance(value, dict | list):
        return json.dumps(value, cls=DjangoJSONEncoder)
    if isinstance(value, Decimal | int | float | bool | str | dt.date | dt.time) or value is None:
        return value
    return str(value)


def _write_xlsx(handle: IO[bytes], fmt: str, headers: list[str], rows: Iterable[Any]) -> int:
    from openpyxl import Workbook

    book = Workbook(write_only=True)
    sheet = book.create_sheet("export")
    sheet.append(headers)
    count = 0
    for row in rows:
        sheet.append([_xlsx_cell(v) for v in row])
        count += 1
    book.save(handle)
    return count


def _write_tablib(handle: IO[bytes], fmt: str, headers: list[str], rows: Iterable[Any]) -> int:
    import tablib

    data = tablib.Dataset(headers=headers)
    for row in rows:
        if fmt in ("xls", "ods"):
            data.append([_xlsx_cell(v) for v in row])
        else:  # text formats (yaml, html…) get text: YAML cannot represent a Decimal
            data.append([_text_cell(v) for v in row])
    out = data.export(fmt)
    handle.write(out.encode() if isinstance(out, str) else out)
    return len(data)


WRITERS = {
    "csv": _write_csv,
    "tsv": _write_csv,
    "jsonl": _write_jsonl,
    "json": _write_json,
    "xlsx": _write_xlsx,
}
