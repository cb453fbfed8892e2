"""File sources: every tablib format plus JSON lines, from a path or an uploaded file.

CSV, TSV, JSON lines and XLSX stream record by record; the other formats (xls, ods, json,
yaml) are parsed whole by tablib or the json module, as their file structure requires.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import zipfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from ..conf import settings
from ..exceptions import SourceError
from .base import Source

FORMATS = ("csv", "tsv", "jsonl", "json", "xlsx", "xls", "ods", "yaml")
_ALIASES = {"ndjson": "jsonl", "yml": "yaml", "txt": "csv"}

csv.field_size_limit(2**31 - 1)


def format_from_name(name: str) -> str | None:
    suffix = Path(name).suffix.lower().lstrip(".")
    suffix = _ALIASES.get(suffix, suffix)
    return suffix if suffix in FORMATS else None


class FileSource(Source):
    """Reads a file by path or from an open binary file (e.g. a Django ``UploadedFile``).

    Options: ``format`` (default: from the file's extension), ``encoding`` (default UTF-8,
    a byte-order mark is skipped), ``delimiter`` for CSV (``"auto"`` sniffs it), ``sheet``
    (name or 0-based index) for workbooks.
    """

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        file: IO[bytes] | None = None,
        name: str | None = None,
        format: str | None = None,
        encoding: str | None = None,
        delimiter: str | None = None,
        sheet: str | int | None = None,
    ) -> None:
        if (path is None) == (file is None):
            raise SourceError("give a file source either a path or an open file")
        self.path = Path(path) if path is not None else None
        self.file = file
        self.name = name or (str(path) if path is not None else getattr(file, "name", "upload"))
        fmt = (format or "").lower().lstrip(".") or format_from_name(self.name)
        fmt = _ALIASES.get(fmt, fmt)
        if fmt not in FORMATS:
            raise SourceError(
                f"cannot tell the file format from the name; pass format= one of "
                f"{', '.join(FORMATS)}",
                source=self.name,
            )
        self.format = fmt
        self.encoding = encoding or settings.ENCODING
        try:
            codecs.lookup(self.encoding)
        except LookupError:
            raise SourceError(f"unknown encoding {self.encoding!r}", source=self.name) from None
        self.delimiter = delimiter or ("\t" if fmt == "tsv" else ",")
        self.sheet = sheet
        self.first_row = 1 if fmt in ("json", "jsonl", "yaml") else 2
        self.columns = None
        self.row: int | None = None

    # -- opening -------------------------------------------------------------------------
    @contextmanager
    def _open(self) -> Iterator[IO[bytes]]:
        if self.path is not None:
            try:
                handle = self.path.open("rb")
            except FileNotFoundError:
                raise SourceError("file not found", source=self.name) from None
            except OSError as exc:
                raise SourceError(
                    f"cannot open the file: {exc.strerror}", source=self.name
                ) from None
            with handle:
                yield handle
        else:
            assert self.file is not None
            if hasattr(self.file, "seek"):
                self.file.seek(0)
            yield self.file

    def _error(
        self, message: str, row: int | None = None, column: str | None = None
    ) -> SourceError:
        return SourceError(message, source=self.name, row=row, column=column)

    # -- reading -------------------------------------------------------------------------
    def read(self) -> Iterator[dict[str, Any]]:
        reader = getattr(self, f"_read_{self.format}")
        with self._open() as handle:
            yield from reader(handle)

    def _decoded_lines(self, handle: IO[bytes]) -> Iterator[str]:
        """Decode line by line so a bad byte is reported at its line."""
        encoding = "utf-8-sig" if codecs.lookup(self.encoding).name == "utf-8" else self.encoding
        decoder = codecs.getincrementaldecoder(encoding)()
        line_no = 0
        for line_no, raw in enumerate(handle, start=1):  # noqa: B007
            try:
                yield decoder.decode(raw)
            except UnicodeDecodeError as exc:
                raise self._error(
                    f"line {line_no} is not valid {self.encoding} "
                    f"(byte {exc.object[exc.start : exc.end]!r}); "
                    f'set the source\'s encoding option (e.g. "latin-1" or "cp1252")',
                    row=line_no,
                ) from None
        try:
            tail = decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise self._error(
                f"the file ends inside a {self.encoding} character", row=line_no
            ) from None
        if tail:
            yield tail

    def _header(self, cells: Iterable[Any], row: int = 1) -> list[str]:
        header = ["" if c is None else str(c).strip() for c in cells]
        while header and header[-1] == "":
            header.pop()
        if not header:
            raise self._error("the file is empty: no header row", row=row)
        for i, name in enumerate(header):
            if not name:
                raise self._error(f"the header's cell {i + 1} is empty", row=row)
        seen: set[str] = set()
        for name in header:
            if name in seen:
                raise self._error(f"the header names column {name!r} twice", row=row)
            seen.add(name)
        return header

    def read_rows(self) -> Iterator[list[Any]] | None:
        """CSV and TSV records as lists of text cells in :attr:`columns` order (the fast
        path reads them so); None for the other formats."""
        if self.format not in ("csv", "tsv"):
            return None
        return self._csv_rows()

    def _csv_rows(self) -> Iterator[list[str]]:
        with self._open() as handle:
            yield from self._csv_cells(handle)

    def _read_csv(self, handle: IO[bytes]) -> Iterator[dict[str, Any]]:
        header: list[str] = []
        for cells in self._csv_cells(handle):
            header = header or list(self.columns or ())
            yield dict(zip(header, cells, strict=True))

    def _csv_cells(self, handle: IO[bytes]) -> Iterator[list[str]]:
        """Rows of exactly as many cells as the header has columns (short rows padded with
        empty cells), blank lines skipped. Decoded by a TextIOWrapper at C speed; a bad byte
        sends the file through :meth:`_decoded_lines` again to report its line."""
        encoding = "utf-8-sig" if codecs.lookup(self.encoding).name == "utf-8" else self.encoding
        text = io.TextIOWrapper(handle, encoding=encoding, newline="")
        try:
            yield from self._parse_csv(text)
        except UnicodeDecodeError:
            bad = True
        else:
            bad = False
        finally:
            text.detach()  # the caller's file stays open
        if bad:
            raise self._decoding_error()

    def _decoding_error(self) -> SourceError:
        """The error naming the line where the file stops being valid text."""
        try:
            with self._open() as handle:
                for _ in self._decoded_lines(handle):
                    pass
        except SourceError as exc:
            return exc
        return self._error(f"the file is not valid {self.encoding}")

    def _parse_csv(self, lines: IO[str]) -> Iterator[list[str]]:
        delimiter = self.delimiter
        source: Iterable[str] = lines
        if delimiter == "auto":
            first = lines.readline()
            try:
                delimiter = csv.Sniffer().sniff(first, delimiters=",;\t|").delimiter
            except csv.Error:
                delimiter = ","
            source = _chain([first], lines)
        reader = csv.reader(source, delimiter=delimiter, strict=True)
        row = 1
        try:
            first_cells = next(reader, None)
            if first_cells is None:
                raise self._error("the file is empty: no header row", row=1)
            self.columns = header = self._header(first_cells)
            width = len(header)
            for cells in reader:
                row += 1
                if len(cells) != width or width == 1:
                    if not cells or (len(cells) == 1 and not cells[0].strip()):
                        continue  # blank line
                    if len(cells) > width:
                        extra = [c for c in cells[width:] if c.strip()]
                        if extra:
                            raise self._error(
                                f"{len(cells)} cells but the header has {width} columns "
                                f"(is the delimiter {delimiter!r} right, or a quote unclosed?)",
                                row=row,
                            )
                        del cells[width:]
                    elif len(cells) < width:
                        cells.extend([""] * (width - len(cells)))
                self.row = row
                yield cells
        except csv.Error as exc:
            raise self._error(f"malformed CSV: {exc}", row=row + 1) from None

    _read_tsv = _read_csv

    def _read_jsonl(self, handle: IO[bytes]) -> Iterator[dict[str, Any]]:
        columns: dict[str, None] = {}
        self.columns = []
        empty = True
        for row, line in enumerate(self._decoded_lines(handle), start=1):
            if not line.strip():
                continue
            empty = False
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise self._error(
                    f"malformed JSON: {exc.msg} at character {exc.colno}", row=row
                ) from None
            if not isinstance(record, dict):
                raise self._error("each line must hold a JSON object", row=row)
            for key in record:
                if key not in columns:
                    columns[key] = None
                    self.columns.append(key)
            self.row = row
            yield record
        if empty:
            raise self._error("the file is empty")

    def _read_json(self, handle: IO[bytes]) -> Iterator[dict[str, Any]]:
        text = "".join(self._decoded_lines(handle))
        if not text.strip():
            raise self._error("the file is empty")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise self._error(
                f"malformed JSON: {exc.msg} at line {exc.lineno}, character {exc.colno}"
            ) from None
        yield from self._records(data)

    def _records(self, data: Any) -> Iterator[dict[str, Any]]:
        if isinstance(data, dict):
            lists = [v for v in data.values() if isinstance(v, list)]
            if len(lists) != 1:
                raise self._error("expected a list of objects (or an object holding one list)")
            data = lists[0]
        if not isinstance(data, list):
            raise self._error("expected a list of objects")
        columns: dict[str, None] = {}
        for record in data:
            if isinstance(record, dict):
                columns.update(dict.fromkeys(record))
        self.columns = list(columns)
        for row, record in enumerate(data, start=1):
            if not isinstance(record, dict):
                raise self._error(f"expected an object, got {type(record).__name__}", row=row)
            self.row = row
            yield record

    def _read_yaml(self, handle: IO[bytes]) -> Iterator[dict[str, Any]]:
        import yaml

        text = "".join(self._decoded_lines(handle))
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise self._error(f"malformed YAML: {exc}") from None
        if data is None:
            raise self._error("the file is empty")
        yield from self._records(data)

    def _read_xlsx(self, handle: IO[bytes]) -> Iterator[dict[str, Any]]:
        from openpyxl import load_workbook

        try:
            workbook = load_workbook(_seekable(handle), read_only=True, data_only=True)
        except (zipfile.BadZipFile, KeyError, OSError, ValueError) as exc:
            raise self._error(f"not a readable XLSX workbook ({exc})") from None
        try:
            sheet = self._pick_sheet(workbook.sheetnames, workbook)
            yield from self._sheet_rows(sheet.iter_rows(values_only=True))
        finally:
            workbook.close()

    def _pick_sheet(self, names: list[str], book: Any) -> Any:
        if self.sheet is None:
            return book[names[0]]
        if isinstance(self.sheet, int):
            if not 0 <= self.sheet < len(names):
                raise self._error(f"no sheet number {self.sheet} (the workbook has {len(names)})")
            return book[names[self.sheet]]
        if self.sheet not in names:
            raise self._error(f"no sheet {self.sheet!r} (sheets: {', '.join(names)})")
        return book[self.sheet]

    def _sheet_rows(self, rows: Iterable[tuple[Any, ...]]) -> Iterator[dict[str, Any]]:
        rows = iter(rows)
        first = next(rows, None)
        if first is None:
            raise self._error("the sheet is empty: no header row", row=1)
        self.columns = header = self._header(first)
        width = len(header)
        for row, cells in enumerate(rows, start=2):
            if all(c is None or (isinstance(c, str) and not c.strip()) for c in cells):
                continue
            if any(c not in (None, "") for c in cells[width:]):
                raise self._error("a value stands right of the last header column", row=row)
            record = dict(zip(header, cells, strict=False))
            for name in header[len(cells) :]:
                record[name] = None
            self.row = row
            yield record

    def _read_xls(self, handle: IO[bytes]) -> Iterator[dict[str, Any]]:
        yield from self._read_tablib(handle, "xls")

    def _read_ods(self, handle: IO[bytes]) -> Iterator[dict[str, Any]]:
        yield from self._read_tablib(handle, "ods")

    def _read_tablib(self, handle: IO[bytes], fmt: str) -> Iterator[dict[str, Any]]:
        import tablib

        try:
            book = tablib.Databook().load(_seekable(handle), format=fmt)
        except Exception as exc:  # noqa: BLE001 - tablib's readers raise anything
            raise self._error(f"not a readable {fmt.upper()} file ({exc})") from None
        sheets = book.sheets()
        if not sheets:
            raise self._error("the workbook has no sheet")
        names = [s.title for s in sheets]
        sheet = self._pick_sheet(names, {s.title: s for s in sheets})
        header = sheet.headers or []
        yield from self._sheet_rows(_chain([tuple(header)], (tuple(r) for r in sheet)))


def _seekable(handle: IO[bytes]) -> IO[bytes]:
    if getattr(handle, "seekable", lambda: False)():
        return handle
    return io.BytesIO(handle.read())


def _chain(first: Iterable[Any], rest: Iterable[Any]) -> Iterator[Any]:
    yield from first
    yield from rest
