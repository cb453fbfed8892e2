"""File sources: every tablib format plus JSON lines, from a path or an uploaded file.

CSV, TSV, JSON lines, JSON and XLSX stream record by record; xls and yaml are parsed
whole, as their file structure requires, and so is ods (by tablib). Every reader has a
bounded cost, each limit a setting (djsync/sources/bounds.py, docs/security.md).
"""

from __future__ import annotations

import codecs
import csv
import io
import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from ..conf import settings
from ..exceptions import SourceError
from ..targets.files import unneutralize_cells
from .base import MISSING, Source
from .bounds import (
    CHUNK,
    CountedReader,
    check_open_file,
    check_zip,
    limit,
    open_regular,
    read_whole,
    seekable_copy,
    size,
)

FORMATS = ("csv", "tsv", "jsonl", "json", "xlsx", "xls", "ods", "yaml")
_ALIASES = {"ndjson": "jsonl", "yml": "yaml", "txt": "csv"}
_STARTS = frozenset({"start_map", "start_array"})
_ENDS = frozenset({"end_map", "end_array"})
_JSON_TYPES = {"string": "str", "boolean": "bool", "null": "NoneType", "start_array": "list"}


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

    #: Set (True) on a source built from a job whose path was checked: it is opened without
    #: following a symlink swapped in since. Unset otherwise.
    checked_path: bool

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
        fmt = _ALIASES.get(fmt, fmt) if fmt is not None else None
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
        #: Row number of the last blank line skipped: progress the length check sees.
        self._blank: int | None = None

    # -- opening -------------------------------------------------------------------------
    @contextmanager
    def _open(self) -> Iterator[IO[bytes]]:
        if self.path is not None:
            follow = not getattr(self, "checked_path", False)
            with open_regular(self.path, self._error, follow=follow) as handle:
                yield handle
        else:
            assert self.file is not None
            check_open_file(self.file, self._error)
            if hasattr(self.file, "seek"):
                self.file.seek(0)
            yield self.file

    def _error(
        self, message: str, row: int | None = None, column: str | None = None
    ) -> SourceError:
        return SourceError(message, source=self.name, row=row, column=column)

    def _text_encoding(self) -> str:
        return "utf-8-sig" if codecs.lookup(self.encoding).name == "utf-8" else self.encoding

    def _nul_is_a_character(self) -> bool:
        """In ASCII-compatible encodings a NUL byte is U+0000, which no text file holds."""
        try:
            return "\x00a\n".encode(self.encoding) == b"\x00a\n"
        except UnicodeError:
            return False

    # -- reading -------------------------------------------------------------------------
    def read(self) -> Iterator[dict[str, Any]]:
        reader = getattr(self, f"_read_{self.format}")
        self.row = self._blank = None
        with self._open() as handle:
            yield from reader(handle)

    def _decoded_lines(self, handle: IO[bytes]) -> Iterator[str]:
        """Decode line by line so a bad byte is reported at its line; each line read with a
        bound (MAX_LINE_SIZE) and the whole counted (MAX_FILE_SIZE)."""
        decoder = codecs.getincrementaldecoder(self._text_encoding())()
        line_limit, file_limit = settings.MAX_LINE_SIZE, settings.MAX_FILE_SIZE
        line_no = total = 0
        while raw := handle.readline(line_limit + 1):
            line_no += 1
            total += len(raw)
            if total > file_limit:
                raise self._error(f"the file is larger than {limit('MAX_FILE_SIZE')}")
            if len(raw) > line_limit:
                raise self._error(f"line longer than {limit('MAX_LINE_SIZE')}", row=line_no)
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

    def _header(self, cells: Sequence[Any], row: int = 1) -> list[str]:
        if len(cells) > settings.MAX_COLUMNS:
            raise self._error(
                f"the header has {len(cells):,} columns, more than {limit('MAX_COLUMNS')}",
                row=row,
            )
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

    # -- CSV and TSV ---------------------------------------------------------------------
    def read_rows(self) -> Iterator[list[Any]] | None:
        """CSV and TSV records as lists of text cells in :attr:`columns` order (the fast
        path reads them so); None for the other formats."""
        if self.format not in ("csv", "tsv"):
            return None
        return self._csv_rows()

    def _csv_rows(self) -> Iterator[list[str]]:
        self.row = self._blank = None
        with self._open() as handle:
            yield from self._csv_cells(handle)

    def _read_csv(self, handle: IO[bytes]) -> Iterator[dict[str, Any]]:
        header: list[str] = []
        for cells in self._csv_cells(handle):
            header = header or list(self.columns or ())
            yield dict(zip(header, cells, strict=True))

    _read_tsv = _read_csv

    def _progress(self) -> tuple[int | None, int | None]:
        return self.row, self._blank

    def _csv_cells(self, handle: IO[bytes]) -> Iterator[list[str]]:
        """Rows of exactly as many cells as the header has columns (the cells a short row
        lacks are :data:`MISSING`), blank lines skipped. Decoded by a TextIOWrapper at C
        speed over a :class:`~djsync.sources.CountedReader`, whose checks (file size,
        row length, NUL bytes) run once per 64 KiB chunk; a bad byte sends the file through
        :meth:`_decoded_lines` again to report its line."""
        counted = CountedReader(
            handle,
            self._error,
            progress=self._progress,
            line_limit=settings.MAX_LINE_SIZE,
            refuse_nul=self._nul_is_a_character(),
            on_nul=self._nul_error,
            watch_quotes=self._nul_is_a_character(),
        )
        # The stubs' buffer protocol asks for a ``name``, read only if someone asks the wrapper.
        text = io.TextIOWrapper(counted, encoding=self._text_encoding(), newline="")  # type: ignore[type-var]
        text._CHUNK_SIZE = CHUNK  # type: ignore[attr-defined]  # checks run per chunk
        # The csv module's field limit is process-wide: each read sets it to this setting.
        csv.field_size_limit(settings.MAX_CELL_SIZE)
        try:
            yield from self._parse_csv(text, counted)
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

    def _nul_error(self) -> SourceError:
        """The error naming the first line with a NUL byte: a binary file, not text."""
        line: int | None = 1
        try:
            with self._open() as handle:
                while chunk := handle.read(CHUNK):
                    at = chunk.find(b"\x00")
                    if at >= 0:
                        line += chunk.count(b"\n", 0, at)  # type: ignore[operator]
                        break
                    line += chunk.count(b"\n")  # type: ignore[operator]
        except (OSError, SourceError):
            line = None
        return self._error(
            f"{'line ' + str(line) if line else 'the file'} holds a NUL byte: not a "
            f"{self.format.upper()} text file (a binary file, or UTF-16 read as "
            f"{self.encoding}? then set the source's encoding option)",
            row=line,
        )

    def _parse_csv(self, lines: IO[str], counted: CountedReader) -> Iterator[list[Any]]:
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
                        self._blank = row
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
                        cells.extend([MISSING] * (width - len(cells)))
                self.row = row
                # An export's '=… reads back as =…; looked for once a chunk holds one.
                yield unneutralize_cells(cells) if counted.quoted else cells
        except csv.Error as exc:
            if "field larger than field limit" in str(exc):
                raise self._error(
                    f"a cell is longer than {limit('MAX_CELL_SIZE')}", row=row + 1
                ) from None
            raise self._error(f"malformed CSV: {exc}", row=row + 1) from None

    # -- JSON lines ----------------------------------------------------------------------
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
            except RecursionError:
                raise self._too_deep(row) from None
            if not isinstance(record, dict):
                raise self._error("each line must hold a JSON object", row=row)
            self._check_record(record, row)
            for key in record:
                if key not in columns:
                    columns[key] = None
                    self.columns.append(key)
                    if len(columns) > settings.MAX_COLUMNS:
                        raise self._too_many_keys(row)
            self.row = row
            yield record
        if empty:
            raise self._error("the file is empty")

    def _check_record(self, record: dict[str, Any], row: int) -> None:
        """A parsed record (JSON lines, YAML): cell sizes and nesting within their limits."""
        max_cell = settings.MAX_CELL_SIZE
        for key, value in record.items():
            if value.__class__ is str:
                if len(value) > max_cell:
                    raise self._cell_too_long(row, key)
            elif isinstance(value, (dict, list)):
                self._check_nested(value, row, key)
            if key.__class__ is str and len(key) > max_cell:
                raise self._cell_too_long(row, None)

    def _check_nested(self, value: Any, row: int, column: str) -> None:
        """Walk a nested value without recursion: depth (the record is level 1) and sizes."""
        max_depth, max_cell = settings.JSON_MAX_DEPTH, settings.MAX_CELL_SIZE
        stack = [(value, 2)]
        while stack:
            item, depth = stack.pop()
            if depth > max_depth:
                raise self._too_deep(row)
            children = item.values() if isinstance(item, dict) else item
            for child in children:
                if isinstance(child, (dict, list)):
                    stack.append((child, depth + 1))
                elif isinstance(child, str) and len(child) > max_cell:
                    raise self._cell_too_long(row, column)

    def _too_deep(self, row: int | None = None) -> SourceError:
        return self._error(f"values nest deeper than {limit('JSON_MAX_DEPTH')}", row=row)

    def _cell_too_long(self, row: int | None, column: str | None) -> SourceError:
        return self._error(
            f"a value is longer than {limit('MAX_CELL_SIZE')}", row=row, column=column
        )

    def _too_many_keys(self, row: int | None) -> SourceError:
        return self._error(
            f"the records have more than {limit('MAX_COLUMNS')} distinct keys", row=row
        )

    # -- JSON ----------------------------------------------------------------------------
    def _read_json(self, handle: IO[bytes]) -> Iterator[dict[str, Any]]:
        """Streamed twice with ijson: once for the columns (the union of the records'
        keys, known before the first record) and the shape, once for the records."""
        handle = seekable_copy(handle, self._error)
        start = handle.tell()
        columns: dict[str, None] = {}
        where = self._json_walk(self._json_events(handle), columns=columns)
        self.columns = list(columns)
        handle.seek(start)
        yield from self._json_walk(self._json_events(handle), where=where)

    def _json_events(self, handle: IO[bytes]) -> Iterator[tuple[str, Any]]:
        """ijson's events, fed by chunks, with nesting and value size checked as they come
        and the file counted; bytes that yield no event for long are one huge value."""
        import ijson

        max_depth, max_cell, max_file = (
            settings.JSON_MAX_DEPTH,
            settings.MAX_CELL_SIZE,
            settings.MAX_FILE_SIZE,
        )
        max_gap = 12 * max_cell + 2 * CHUNK  # a character is at most 12 bytes (\ud83d\ude00)
        events = ijson.sendable_list()
        parser = ijson.basic_parse_coro(events, use_float=True)
        decoder = None
        if codecs.lookup(self.encoding).name != "utf-8":
            decoder = codecs.getincrementaldecoder(self.encoding)()
        total = gap = depth = 0
        first = blank = True
        try:
            while True:
                chunk = handle.read(CHUNK)
                total += len(chunk)
                if total > max_file:
                    raise self._error(f"the file is larger than {limit('MAX_FILE_SIZE')}")
                if first and decoder is None:
                    if chunk.startswith(codecs.BOM_UTF8):
                        chunk = chunk[3:]
                    elif chunk.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
                        raise self._error(
                            f"the file starts with a UTF-16 or UTF-32 byte order mark, not "
                            f"{self.encoding}: set the source's encoding option (e.g. utf-16)"
                        )
                first = False
                if decoder is not None:
                    chunk = decoder.decode(chunk, final=not chunk).encode()
                blank = blank and not chunk.strip()
                if not chunk:
                    parser.close()
                else:
                    parser.send(chunk)
                if events:
                    gap = 0
                else:
                    gap += len(chunk)
                    if gap > max_gap:
                        raise self._cell_too_long(None, None)
                for event, value in events:
                    if event in _STARTS:
                        depth += 1
                        if depth > max_depth:
                            raise self._too_deep()
                    elif event in _ENDS:
                        depth -= 1
                    elif (event == "string" or event == "map_key") and len(value) > max_cell:
                        raise self._cell_too_long(self.row, None)
                    yield event, value
                del events[:]
                if not chunk:
                    return
        except (ijson.JSONError, ValueError) as exc:
            if blank:
                raise self._error("the file is empty") from None
            raise self._json_error(handle, exc) from None
        except UnicodeDecodeError as exc:
            raise self._error(
                f"the file is not valid {self.encoding} ({exc.reason}); set the source's "
                "encoding option"
            ) from None

    def _json_error(self, handle: IO[bytes], exc: Exception) -> SourceError:
        """Malformed JSON, said in one line: where, when json can tell on a small file."""
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        try:
            handle.seek(0)
            data = read_whole(handle, self._error, fmt="JSON")
            json.loads(data.decode(self.encoding).lstrip("\ufeff"))
        except json.JSONDecodeError as precise:
            return self._error(
                f"malformed JSON: {precise.msg} at line {precise.lineno}, character {precise.colno}"
            )
        except (SourceError, RecursionError, UnicodeError, OSError, ValueError):
            pass
        return self._error(f"malformed JSON: {first}")

    def _json_walk(
        self,
        events: Iterator[tuple[str, Any]],
        *,
        columns: dict[str, None] | None = None,
        where: int | None = None,
    ) -> Any:
        """Find the records: the top-level list, or the one list inside the top-level
        object. With ``columns``, a first pass: collect the keys, check the shape and
        return where the list is (None: top level; n: the object's n-th entry). Else
        a generator of the records at ``where``."""
        scanning = columns is not None
        event, value = next(events, ("", None))
        if not event:
            raise self._error("the file is empty")
        if event == "start_array":
            if scanning:
                for _ in self._json_items(events, columns):
                    pass
                return None
            return self._json_items(events, None)
        if event != "start_map":
            raise self._error(
                "expected a list of objects (or an object holding one list), got "
                f"{_json_type(event, value)}"
            )
        index = -1
        lists: list[int] = []
        for event, _ in events:
            if event == "end_map":
                break
            index += 1  # a map_key; its value comes next
            event, value = next(events)
            if event == "start_array":
                lists.append(index)
                if len(lists) > 1:
                    break
                if index == where and not scanning:
                    return self._json_items(events, None)
                for _ in self._json_items(events, columns if scanning else {}):
                    pass
            elif event == "start_map":
                _skip(events)
        if len(lists) != 1:
            raise self._error("expected a list of objects (or an object holding one list)")
        return lists[0]

    def _json_items(
        self, events: Iterator[tuple[str, Any]], columns: dict[str, None] | None
    ) -> Iterator[dict[str, Any]]:
        """The objects of a list, up to its end: keys into ``columns`` (a first pass), or
        built into records (``columns`` None)."""
        max_columns = settings.MAX_COLUMNS
        row = 0
        for event, value in events:
            if event == "end_array":
                return
            row += 1
            if event != "start_map":
                raise self._error(f"expected an object, got {_json_type(event, value)}", row=row)
            if columns is None:
                self.row = row
                yield _build_object(events)
                continue
            level = 1
            for event, value in events:
                if level == 1 and event == "map_key":
                    if value not in columns:
                        columns[value] = None
                        if len(columns) > max_columns:
                            raise self._too_many_keys(row)
                elif event in _STARTS:
                    level += 1
                elif event in _ENDS:
                    level -= 1
                    if not level:
                        break

    # -- YAML ----------------------------------------------------------------------------
    def _read_yaml(self, handle: IO[bytes]) -> Iterator[dict[str, Any]]:
        import yaml

        data = read_whole(handle, self._error, fmt="YAML")
        try:
            text = data.decode(self._text_encoding())
        except UnicodeDecodeError:
            raise self._decoding_error() from None
        if len(data) > settings.MAX_YAML_SIZE:
            raise self._error(
                f"YAML files are parsed slowly (about a second per 100 KiB) and this one has "
                f"{size(len(data))}, more than {limit('MAX_YAML_SIZE')}; convert it to "
                "JSON lines or CSV, which stream"
            )
        fast = getattr(yaml, "CSafeLoader", None)
        try:
            if fast is not None:
                # libyaml's events are cheap: aliases and depth are refused on them first,
                # then its loader builds the data (PyYAML's own scanner is ten times slower).
                _yaml_prescan(yaml.parse(text, Loader=fast))
                parsed = yaml.load(text, Loader=fast)  # noqa: S506 - CSafeLoader is safe
            else:
                loader = _yaml_loader()(text)
                try:
                    parsed = loader.get_single_data()
                finally:
                    loader.dispose()
        except _YamlRefused as exc:
            raise self._error(str(exc)) from None
        except RecursionError:
            raise self._too_deep() from None
        except yaml.YAMLError as exc:
            if "maximum nesting depth" in str(getattr(exc, "problem", "")):  # libyaml's 1,000
                raise self._too_deep() from None
            raise self._error(_yaml_problem(exc)) from None
        if parsed is None:
            raise self._error("the file is empty")
        yield from self._records(parsed)

    def _records(self, data: Any) -> Iterator[dict[str, Any]]:
        if isinstance(data, dict):
            lists = [v for v in data.values() if isinstance(v, list)]
            if len(lists) != 1:
                raise self._error("expected a list of objects (or an object holding one list)")
            data = lists[0]
        if not isinstance(data, list):
            raise self._error("expected a list of objects")
        columns: dict[str, None] = {}
        for row, record in enumerate(data, start=1):
            if isinstance(record, dict):
                columns.update(dict.fromkeys(record))
                if len(columns) > settings.MAX_COLUMNS:
                    raise self._too_many_keys(row)
                self._check_record(record, row)
        self.columns = [str(c) for c in columns]
        for row, record in enumerate(data, start=1):
            if not isinstance(record, dict):
                raise self._error(f"expected an object, got {type(record).__name__}", row=row)
            self.row = row
            yield record

    # -- workbooks -----------------------------------------------------------------------
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
            raise self._error(f"not a readable XLSX workbook ({_one_line(exc)})") from None
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
                raise self._error(f"not a readable XLSX workbook ({_one_line(exc)})") from None
            if not paths:
                raise self._error("the workbook has no sheet")
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
                            f"the sheet goes on past {limit('MAX_SHEET_ROWS')}", row=number
                        )
                    if not cells:
                        continue  # blank
                    width = max(c["column"] for c in cells)
                    if width > max_columns:
                        raise self._error(
                            f"the sheet has a cell in column {width:,}, past "
                            f"{limit('MAX_COLUMNS')}",
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
                    f"not a readable XLSX workbook ({_one_line(exc)})", row=number + 1
                ) from None

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
            raise self._error("the sheet is empty: no header row", row=1)
        self.columns = header = self._header(first[1], row=first[0])
        width = len(header)
        for row, cells in rows:
            if row > max_rows:
                raise self._error(f"the sheet goes on past {limit('MAX_SHEET_ROWS')}", row=row)
            if len(cells) > max_columns:
                raise self._error(
                    f"the row has {len(cells):,} cells, more than {limit('MAX_COLUMNS')}",
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
                raise self._error("a value stands right of the last header column", row=row)
            record = dict(zip(header, unneutralize_cells(list(cells)), strict=False))
            for name in header[len(cells) :]:
                record[name] = None
            self.row = row
            yield record

    def _read_xls(self, handle: IO[bytes]) -> Iterator[dict[str, Any]]:
        data = read_whole(handle, self._error, fmt="XLS")
        yield from self._read_tablib(io.BytesIO(data), "xls")

    def _read_ods(self, handle: IO[bytes]) -> Iterator[dict[str, Any]]:
        handle = seekable_copy(handle, self._error)
        check_zip(handle, self._error, kind="ODS", whole_limit="MAX_IN_MEMORY_FILE_SIZE")
        from odf import opendocument

        try:
            sheets = [
                s for s in opendocument.load(handle).spreadsheet.childNodes if s.qname[1] == "table"
            ]
        except Exception as exc:  # noqa: BLE001 - odfpy raises anything on a bad file
            raise self._error(f"not a readable ODS file ({_one_line(exc)})") from None
        if not sheets:
            raise self._error("the workbook has no sheet")
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
                            f"the sheet has a cell in column {len(cells) + blanks + repeat:,}, "
                            f"past {limit('MAX_COLUMNS')}",
                            row=number + 1,
                        )
                    cells.extend([""] * blanks + [value] * repeat)
                    blanks = 0
            except SourceError:
                raise
            except Exception as exc:  # noqa: BLE001 - a bad cell in a bad file
                raise self._error(
                    f"not a readable ODS file ({_one_line(exc)})", row=number + 1
                ) from None
            if not cells:
                number += times
                continue
            if number + times > max_rows:
                raise self._error(
                    f"the sheet goes on past {limit('MAX_SHEET_ROWS')}", row=max_rows + 1
                )
            for _ in range(times):
                number += 1
                yield number, cells

    def _read_tablib(self, handle: IO[bytes], fmt: str) -> Iterator[dict[str, Any]]:
        import tablib

        try:
            book = tablib.Databook().load(handle, format=fmt)
        except Exception as exc:  # noqa: BLE001 - tablib's readers raise anything
            raise self._error(f"not a readable {fmt.upper()} file ({_one_line(exc)})") from None
        sheets = book.sheets()
        if not sheets:
            raise self._error("the workbook has no sheet")
        names = [s.title for s in sheets]
        sheet = self._pick_sheet(names, {s.title: s for s in sheets})
        header = sheet.headers or []
        rows = _chain([tuple(header)], (tuple(r) for r in sheet))
        yield from self._sheet_rows(enumerate(rows, start=1))


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


def _json_type(event: str, value: Any) -> str:
    """The Python type name a JSON value would have (as json.loads gives it)."""
    if event == "number":
        return type(value).__name__
    return _JSON_TYPES.get(event, "dict")


def _skip(events: Iterator[tuple[str, Any]]) -> None:
    """Consume events up to the end of the object or list just started."""
    level = 1
    for event, _ in events:
        if event in _STARTS:
            level += 1
        elif event in _ENDS:
            level -= 1
            if not level:
                return


def _build_object(events: Iterator[tuple[str, Any]]) -> dict[str, Any]:
    """The object just started, built from its events without recursion."""
    record: dict[str, Any] = {}
    stack: list[Any] = [record]
    keys: list[Any] = [None]
    for event, value in events:
        if event == "map_key":
            keys[-1] = value
            continue
        if event in _ENDS:
            stack.pop()
            keys.pop()
            if not stack:
                return record
            continue
        if event in _STARTS:
            value = {} if event == "start_map" else []
        top = stack[-1]
        if top.__class__ is dict:
            top[keys[-1]] = value
        else:
            top.append(value)
        if event in _STARTS:
            stack.append(value)
            keys.append(None)
    return record


class _YamlRefused(Exception):
    pass


def _yaml_prescan(events: Iterable[Any]) -> None:
    """Refuse aliases and nesting beyond JSON_MAX_DEPTH from a YAML document's events, as
    :func:`_yaml_loader`'s composer does, before anything is built."""
    import yaml

    depth, max_depth = 0, settings.JSON_MAX_DEPTH
    starts = (yaml.MappingStartEvent, yaml.SequenceStartEvent)
    ends = (yaml.MappingEndEvent, yaml.SequenceEndEvent)
    for event in events:
        if isinstance(event, starts):
            depth += 1
            if depth > max_depth:
                raise _YamlRefused(f"values nest deeper than {limit('JSON_MAX_DEPTH')}")
        elif isinstance(event, ends):
            depth -= 1
        elif isinstance(event, yaml.AliasEvent):
            line = event.start_mark.line + 1 if event.start_mark else "?"
            raise _YamlRefused(
                f"line {line}: YAML aliases (*name) are refused: a "
                "document that repeats a value by alias can expand without bound (billion "
                "laughs)"
            )


def _yaml_loader() -> type:
    """PyYAML's safe loader without aliases (a billion-laughs document expands them) and
    with JSON_MAX_DEPTH on nesting, checked while composing."""
    import yaml

    class Loader(yaml.SafeLoader):
        depth = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                mark = self.peek_event().start_mark
                raise _YamlRefused(
                    f"line {mark.line + 1}: YAML aliases (*name) are refused: a document "
                    "that repeats a value by alias can expand without bound (billion laughs)"
                )
            self.depth += 1
            if self.depth > settings.JSON_MAX_DEPTH:
                raise _YamlRefused(f"values nest deeper than {limit('JSON_MAX_DEPTH')}")
            try:
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

    return Loader


def _yaml_problem(exc: Exception) -> str:
    """PyYAML's error in one line: its problem and where (its own text spans five lines
    and quotes the document)."""
    problem = getattr(exc, "problem", None) or getattr(exc, "context", None)
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    if not problem:
        return f"malformed YAML: {_one_line(exc)}"
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    if "constructor for the tag" in problem:
        problem += " (only plain YAML is read: no tags naming Python objects)"
    return f"malformed YAML: {where}{_one_line(Exception(problem))}"


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] or type(exc).__name__


def _chain(first: Iterable[Any], rest: Iterable[Any]) -> Iterator[Any]:
    yield from first
    yield from rest
