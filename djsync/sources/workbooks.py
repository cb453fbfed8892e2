"""Reading workbooks: XLSX (streamed, its shared strings parsed in C), XLS and ODS, each
bounded as it is read (zip members, rows, cells; djsync.sources.bounds)."""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator, Sequence
from typing import IO, TYPE_CHECKING, Any

from django.utils.translation import gettext

from djsync.conf import settings
from djsync.exceptions import SourceError
from djsync.exports.files import unneutralize_cells
from djsync.sources.base import Source
from djsync.sources.bounds import (
    check_zip,
    limit,
    read_whole,
    seekable_copy,
)


class WorkbookReading(Source):
    """The XLSX, XLS and ODS readers of :class:`djsync.sources.files.FileSource`."""

    #: Read the chosen sheet no further than its header row (the admin's header check,
    #: djsync.admin_columns): an ODS workbook, parsed whole for a run, is then parsed only
    #: up to that row, whatever the size of the sheet.
    header_only = False

    if TYPE_CHECKING:  # given by FileSource and StructuredReading, mixed in with this
        sheet: str | int | None

        def _error(
            self, message: str, row: int | None = None, column: str | None = None
        ) -> SourceError: ...
        def _header(self, cells: Sequence[Any], row: int = 1) -> list[str]: ...
        def _cell_too_long(self, row: int | None, column: str | None) -> SourceError: ...

    def _read_xlsx(self, handle: IO[bytes]) -> Iterator[dict[str, Any]]:
        """openpyxl reads the workbook's parts (shared strings, styles, sheet names); the
        chosen sheet is then streamed here, by its row numbers (:meth:`_xlsx_rows`)."""
        from openpyxl.reader.excel import ExcelReader
        from openpyxl.styles.stylesheet import apply_stylesheet

        handle = seekable_copy(handle, self._error)
        check_zip(handle, self._error, kind="XLSX")
        try:
            reader = ExcelReader(handle, read_only=True, data_only=True)
        except Exception as exc:  # noqa: BLE001 - openpyxl raises anything on a bad file
            raise self._error(
                gettext("not a readable XLSX workbook (%(one_line)s)")
                % {"one_line": _one_line(exc)}
            ) from None
        with reader.archive:
            try:
                reader.read_manifest()
                reader.shared_strings = _shared_strings(reader)
                reader.read_workbook()
                apply_stylesheet(reader.archive, reader.wb)
                paths = {
                    sheet.name: rel.target
                    for sheet, rel in reader.parser.find_sheets()
                    if rel.target in reader.valid_files and "chartsheet" not in rel.Type
                }
            except Exception as exc:  # noqa: BLE001 - openpyxl raises anything on a bad file
                raise self._error(
                    gettext("not a readable XLSX workbook (%(one_line)s)")
                    % {"one_line": _one_line(exc)}
                ) from None
            if not paths:
                raise self._error(gettext("the workbook has no sheet"))
            path = self._pick_sheet(list(paths), paths)
            yield from self._sheet_rows(self._xlsx_rows(reader, path))

    def _xlsx_rows(self, reader: Any, path: str) -> Iterator[tuple[int, Sequence[Any]]]:
        """A sheet's rows by their row numbers: no blank row made up for a gap, no row
        widened to a ``<dimension>`` the sheet declares, rows dropped once read. Cells are
        read by openpyxl's sheet parser; the XML by the C parser (DTDs were refused)."""
        from xml.etree.ElementTree import iterparse

        from openpyxl.worksheet._reader import DATA_TAG, ROW_TAG, WorkSheetParser

        max_rows, max_columns = settings.MAX_SHEET_ROWS, settings.MAX_COLUMNS
        wb = reader.wb
        number = 0
        with reader.archive.open(path) as src:
            cells_of = WorkSheetParser(
                src,
                reader.shared_strings,
                data_only=True,
                epoch=wb.epoch,
                date_formats=wb._date_formats,
                timedelta_formats=wb._timedelta_formats,
            )
            data = None
            try:
                for event, element in iterparse(src, events=("start", "end")):
                    if event == "start":
                        if element.tag == DATA_TAG:
                            data = element
                        continue
                    if element.tag != ROW_TAG:
                        continue
                    if len(element) or not element.get("r", "1").isdigit():
                        # openpyxl's stubs want a narrower element than the ElementTree
                        # one its own reader passes here.
                        number, cells = cells_of.parse_row(element)  # type: ignore[arg-type]
                    else:  # a blank row, the commonest kind of padding: no call
                        r = element.get("r")
                        number = cells_of.row_counter = int(r) if r else number + 1
                        cells = None
                    element.clear()
                    if data is not None:
                        del data[:]
                    if number > max_rows:
                        raise self._error(
                            gettext("the sheet goes on past %(limit)s")
                            % {"limit": limit("MAX_SHEET_ROWS")},
                            row=number,
                        )
                    if not cells:
                        continue  # blank
                    width = max(c["column"] for c in cells)
                    if width > max_columns:
                        raise self._error(
                            gettext("the sheet has a cell in column %(width)s, past %(limit)s")
                            % {"width": format(width, ","), "limit": limit("MAX_COLUMNS")},
                            row=number,
                        )
                    values: list[Any] = [None] * width
                    for cell in cells:
                        values[cell["column"] - 1] = cell["value"]
                    yield number, values
            except (SourceError, GeneratorExit):
                raise
            except Exception as exc:  # noqa: BLE001 - a bad cell in a bad file
                raise self._error(
                    gettext("not a readable XLSX workbook (%(one_line)s)")
                    % {"one_line": _one_line(exc)},
                    row=number + 1,
                ) from None

    def _pick_sheet(self, names: list[str], book: Any) -> Any:
        if self.sheet is None:
            return book[names[0]]
        if isinstance(self.sheet, int):
            if not 0 <= self.sheet < len(names):
                raise self._error(
                    gettext("no sheet number %(sheet)s (the workbook has %(names)s)")
                    % {"sheet": self.sheet, "names": len(names)}
                )
            return book[names[self.sheet]]
        if self.sheet not in names:
            raise self._error(
                gettext("no sheet %(sheet)r (sheets: %(names)s)")
                % {"sheet": self.sheet, "names": ", ".join(names)}
            )
        return book[self.sheet]

    def _sheet_rows(self, rows: Iterable[tuple[int, Sequence[Any]]]) -> Iterator[dict[str, Any]]:
        """Records from numbered sheet rows: the first is the header; blank rows skipped,
        and every row held to MAX_SHEET_ROWS, MAX_COLUMNS and MAX_CELL_SIZE."""
        max_rows, max_columns, max_cell = (
            settings.MAX_SHEET_ROWS,
            settings.MAX_COLUMNS,
            settings.MAX_CELL_SIZE,
        )
        rows = iter(rows)
        first = next(rows, None)
        if first is None:
            raise self._error(gettext("the sheet is empty: no header row"), row=1)
        self.columns = header = self._header(first[1], row=first[0])
        width = len(header)
        for row, cells in rows:
            if row > max_rows:
                raise self._error(
                    gettext("the sheet goes on past %(limit)s")
                    % {"limit": limit("MAX_SHEET_ROWS")},
                    row=row,
                )
            if len(cells) > max_columns:
                raise self._error(
                    gettext("the row has %(cells)s cells, more than %(limit)s")
                    % {"cells": format(len(cells), ","), "limit": limit("MAX_COLUMNS")},
                    row=row,
                )
            blank = True
            for i, c in enumerate(cells):
                if c.__class__ is str:
                    if len(c) > max_cell:
                        column = header[i] if i < width else None
                        raise self._cell_too_long(row, column)
                    if c.strip():
                        blank = False
                elif c is not None:
                    blank = False
            if blank:
                continue
            if any(c not in (None, "") for c in cells[width:]):
                raise self._error(
                    gettext("a value stands right of the last header column"), row=row
                )
            record = dict(zip(header, unneutralize_cells(list(cells)), strict=False))
            for name in header[len(cells) :]:
                record[name] = None
            self.row = row
            yield record

    def _read_xls(self, handle: IO[bytes]) -> Iterator[dict[str, Any]]:
        data = read_whole(handle, self._error, fmt="XLS")
        if self.header_only:
            yield from self._sheet_rows(self._xls_head(data))
            return
        yield from self._read_tablib(io.BytesIO(data), "xls")

    def _xls_head(self, data: bytes) -> Iterator[tuple[int, Sequence[Any]]]:
        """The chosen sheet's first row as tablib reads it (``row_values(0)``: raw values,
        "" for a missing cell), and nothing more: xlrd loads the workbook's globals (sheet
        names, shared strings) and the sheet's records are read until a cell of the second
        row comes (cells come by row), none of them kept but the first row's."""
        import xlrd
        from xlrd.biffh import XL_WORKSHEET
        from xlrd.sheet import Sheet

        try:
            book = xlrd.open_workbook(file_contents=data, on_demand=True, logfile=io.StringIO())
        except Exception as exc:  # noqa: BLE001 - xlrd raises anything on a bad file
            raise self._error(
                gettext("not a readable %(upper)s file (%(one_line)s)")
                % {"upper": "XLS", "one_line": _one_line(exc)}
            ) from None
        first: dict[int, Any] = {}

        def put_cell(rowx: int, colx: int, ctype: Any, value: Any, xf_index: Any) -> None:
            if rowx > 0 or colx >= settings.MAX_COLUMNS:
                raise _Enough
            first[colx] = value

        try:
            names = book.sheet_names()
            if not names:
                raise self._error(gettext("the workbook has no sheet"))
            index = self._pick_sheet(names, {name: i for i, name in enumerate(names)})
            book._position = book._sh_abs_posn[index]
            book.getbof(XL_WORKSHEET)
            sheet = Sheet(book, book._position, names[index], index)
            sheet.put_cell = put_cell  # stops the read at the second row
            sheet.read(book)
        except _Enough:
            pass  # the first row is in
        except SourceError:
            raise
        except Exception as exc:  # noqa: BLE001 - xlrd raises anything on a bad file
            raise self._error(
                gettext("not a readable %(upper)s file (%(one_line)s)")
                % {"upper": "XLS", "one_line": _one_line(exc)}
            ) from None
        finally:
            book.release_resources()
        width = max(first, default=-1) + 1
        yield 1, [first.get(i, "") for i in range(width)]

    def _read_ods(self, handle: IO[bytes]) -> Iterator[dict[str, Any]]:
        handle = seekable_copy(handle, self._error)
        check_zip(handle, self._error, kind="ODS", whole_limit="MAX_IN_MEMORY_FILE_SIZE")
        from odf import opendocument

        try:
            if self.header_only:
                sheets = _ods_head(handle, self.sheet)
            else:
                spreadsheet = opendocument.load(handle).spreadsheet
                sheets = [s for s in spreadsheet.childNodes if s.qname[1] == "table"]
        except Exception as exc:  # noqa: BLE001 - odfpy raises anything on a bad file
            raise self._error(
                gettext("not a readable ODS file (%(one_line)s)") % {"one_line": _one_line(exc)}
            ) from None
        if not sheets:
            raise self._error(gettext("the workbook has no sheet"))
        names = [s.getAttribute("name") for s in sheets]
        sheet = self._pick_sheet(names, dict(zip(names, sheets, strict=False)))
        yield from self._sheet_rows(self._ods_rows(sheet))

    def _ods_rows(self, sheet: Any) -> Iterator[tuple[int, Sequence[Any]]]:
        """An ODS sheet's rows by number, with ``table:number-columns-repeated`` and
        ``table:number-rows-repeated`` honoured (LibreOffice writes equal neighbours once)
        but never inflated: blank repeats only move the count, and a repeat that would go
        past MAX_COLUMNS or MAX_SHEET_ROWS is refused before anything is made of it."""
        from tablib.formats._ods import ODSFormat

        max_rows, max_columns = settings.MAX_SHEET_ROWS, settings.MAX_COLUMNS
        number = 0
        for row in sheet.childNodes:
            if getattr(row, "tagName", None) != "table:table-row":
                continue
            try:
                times = _repeat(row.getAttribute("numberrowsrepeated"))
                cells: list[Any] = []
                blanks = 0
                for cell in row.childNodes:
                    if getattr(cell, "tagName", None) not in (
                        "table:table-cell",
                        "table:covered-table-cell",
                    ):
                        continue
                    repeat = _repeat(cell.getAttribute("numbercolumnsrepeated"))
                    value = ODSFormat.read_cell(cell)
                    if value is None or value == "":
                        blanks += repeat  # trailing blanks are never made
                        continue
                    if len(cells) + blanks + repeat > max_columns:
                        raise self._error(
                            gettext("the sheet has a cell in column %(cells)s, past %(limit)s")
                            % {
                                "cells": format(len(cells) + blanks + repeat, ","),
                                "limit": limit("MAX_COLUMNS"),
                            },
                            row=number + 1,
                        )
                    cells.extend([""] * blanks + [value] * repeat)
                    blanks = 0
            except SourceError:
                raise
            except Exception as exc:  # noqa: BLE001 - a bad cell in a bad file
                raise self._error(
                    gettext("not a readable ODS file (%(one_line)s)")
                    % {"one_line": _one_line(exc)},
                    row=number + 1,
                ) from None
            if not cells:
                number += times
                continue
            if number + times > max_rows:
                raise self._error(
                    gettext("the sheet goes on past %(limit)s")
                    % {"limit": limit("MAX_SHEET_ROWS")},
                    row=max_rows + 1,
                )
            for _ in range(times):
                number += 1
                yield number, cells

    def _read_tablib(self, handle: IO[bytes], fmt: str) -> Iterator[dict[str, Any]]:
        import tablib

        try:
            book = tablib.Databook().load(handle, format=fmt)
        except Exception as exc:  # noqa: BLE001 - tablib's readers raise anything
            raise self._error(
                gettext("not a readable %(upper)s file (%(one_line)s)")
                % {"upper": fmt.upper(), "one_line": _one_line(exc)}
            ) from None
        sheets = book.sheets()
        if not sheets:
            raise self._error(gettext("the workbook has no sheet"))
        names = [s.title for s in sheets]
        sheet = self._pick_sheet(names, {s.title: s for s in sheets})
        header = sheet.headers or []
        rows = _chain([tuple(header)], (tuple(r) for r in sheet))
        yield from self._sheet_rows(enumerate(rows, start=1))


#: Rows the header check of an ODS sheet passes over (blank, or in another sheet) before it
#: gives up: it only advises, the run reads on.
HEAD_ROWS = 10_000


class _Enough(Exception):
    """The header row is in (or the header check gave up)."""


def _ods_head(handle: IO[bytes], wanted: str | int | None) -> list[Any]:
    """The sheets of an ODS workbook (odfpy's nodes, as :func:`odf.opendocument.load`
    makes them) with ``wanted``'s rows up to the first that holds a cell (``wanted``: a
    sheet name, an index, None for the first). content.xml is parsed as it is inflated
    and the parse stops there; rows of other sheets and blank rows are dropped as they
    end, and a row past MAX_COLUMNS cells, or HEAD_ROWS rows without a header, give up —
    so the memory is a header row's whatever the sheet's size."""
    import zipfile
    from xml.sax import handler

    from defusedxml.sax import make_parser
    from odf.load import LoadParser
    from odf.namespaces import TABLENS
    from odf.opendocument import OpenDocument
    from tablib.formats._ods import ODSFormat

    table, row_tag, cell_tags = (
        (TABLENS, "table"),
        (TABLENS, "table-row"),
        {
            (TABLENS, "table-cell"),
            (TABLENS, "covered-table-cell"),
        },
    )
    doc = OpenDocument("application/vnd.oasis.opendocument.spreadsheet", add_generator=False)
    doc._parsing = "content.xml"
    tables: list[Any] = []
    passed = cells = 0

    def is_wanted(index: int, name: str) -> bool:
        return index == (wanted or 0) if not isinstance(wanted, str) else name == wanted

    class Head(LoadParser):
        def startElementNS(self, tag: Any, qname: Any, attrs: Any) -> None:
            nonlocal cells
            super().startElementNS(tag, qname, attrs)
            if tag == table and self.parse:
                tables.append(self.curr)
            elif tag in cell_tags:
                cells += 1
                if cells > settings.MAX_COLUMNS:
                    raise _Enough
            elif tag == row_tag:
                cells = 0

        def endElementNS(self, tag: Any, qname: Any) -> None:
            nonlocal passed
            row = self.curr if tag == row_tag and self.parse else None
            super().endElementNS(tag, qname)
            if row is None:
                return
            direct = bool(tables) and row.parentNode is tables[-1]  # as the run reads rows
            if direct and is_wanted(len(tables) - 1, tables[-1].getAttribute("name")):
                cells_of = (c for c in row.childNodes if getattr(c, "qname", None) in cell_tags)
                if any(ODSFormat.read_cell(c) not in (None, "") for c in cells_of):
                    raise _Enough
            row.parentNode.removeChild(row)
            passed += 1
            if passed > HEAD_ROWS:
                raise _Enough

    parser = make_parser()
    parser.setFeature(handler.feature_namespaces, 1)
    parser.setFeature(handler.feature_external_ges, 0)
    parser.setContentHandler(Head(doc))
    with zipfile.ZipFile(handle) as archive, archive.open("content.xml") as content:
        try:
            parser.parse(content)
        except _Enough:
            pass
    return tables


def _repeat(text: str | None) -> int:
    """An ODS ``number-*-repeated`` attribute: 1 when absent, at least 1."""
    return max(int(text), 1) if text else 1


def _shared_strings(reader: Any) -> list[str]:
    """An XLSX workbook's shared strings table, read as openpyxl reads it (a string's
    text and its rich-text runs, phonetic runs left out) but by the C XML parser, the
    table's elements dropped as they are read: openpyxl's own reader spends seconds on a
    table of 200,000 strings. The part was scanned (no DTD) and bounded by size before."""
    from xml.etree.ElementTree import iterparse

    from openpyxl.xml.constants import SHARED_STRINGS, SHEET_MAIN_NS

    part = reader.package.find(SHARED_STRINGS)
    if part is None:
        return []
    si, t, r = (f"{{{SHEET_MAIN_NS}}}{tag}" for tag in ("si", "t", "r"))
    strings: list[str] = []
    root = None
    with reader.archive.open(part.PartName[1:]) as src:
        for event, element in iterparse(src, events=("start", "end")):
            if event == "start":
                if root is None:
                    root = element
                continue
            if element.tag != si:
                continue
            plain = element.find(t)
            parts = [plain.text or ""] if plain is not None else []
            for run in element.iterfind(r):
                text = run.find(t)
                if text is not None:
                    parts.append(text.text or "")
            strings.append("".join(parts).replace("x005F_", ""))
            element.clear()
            if root is not None:
                del root[:]
    return strings


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] or type(exc).__name__


def _chain(first: Iterable[Any], rest: Iterable[Any]) -> Iterator[Any]:
    yield from first
    yield from rest
