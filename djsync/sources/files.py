"""File sources: every tablib format plus JSON lines, from a path or an uploaded file.

CSV, TSV, JSON lines, JSON and XLSX stream record by record; xls and yaml are parsed
whole, as their file structure requires, and so is ods (by tablib). Every reader has a
bounded cost, each limit a setting (djsync/sources/bounds.py, docs/security.md).
"""

from __future__ import annotations

import codecs
import csv
import io
import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from django.utils.translation import gettext

from djsync.conf import settings
from djsync.exceptions import SourceError
from djsync.exports.files import unneutralize_cells
from djsync.runs.progress import Extent
from djsync.sources.base import MISSING, Source
from djsync.sources.bounds import (
    CHUNK,
    CountedReader,
    check_open_file,
    limit,
    open_regular,
)
from djsync.sources.structured import StructuredReading
from djsync.sources.workbooks import WorkbookReading

FORMATS = ("csv", "tsv", "jsonl", "json", "xlsx", "xls", "ods", "yaml")
#: Formats read from the start of the file to its end as their rows come: how far through
#: the file the read is tells how far through the rows it is.
STREAMED_FORMATS = ("csv", "tsv", "jsonl", "json")
_ALIASES = {"ndjson": "jsonl", "yml": "yaml", "txt": "csv"}


def format_from_name(name: str) -> str | None:
    suffix = Path(name).suffix.lower().lstrip(".")
    suffix = _ALIASES.get(suffix, suffix)
    return suffix if suffix in FORMATS else None


class FileSource(StructuredReading, WorkbookReading, Source):
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
            raise SourceError(gettext("give a file source either a path or an open file"))
        self.path = Path(path) if path is not None else None
        self.file = file
        self.name = name or (str(path) if path is not None else getattr(file, "name", "upload"))
        fmt = (format or "").lower().lstrip(".") or format_from_name(self.name)
        fmt = _ALIASES.get(fmt, fmt) if fmt is not None else None
        if fmt not in FORMATS:
            raise SourceError(
                gettext(
                    "cannot tell the file format from the name; pass format= one of %(formats)s"
                )
                % {"formats": ", ".join(FORMATS)},
                source=self.name,
            )
        self.format = fmt
        self.encoding = encoding or settings.ENCODING
        try:
            codecs.lookup(self.encoding)
        except LookupError:
            raise SourceError(
                gettext("unknown encoding %(encoding)r") % {"encoding": self.encoding},
                source=self.name,
            ) from None
        self.delimiter = delimiter or ("\t" if fmt == "tsv" else ",")
        self.sheet = sheet
        self.first_row = 1 if fmt in ("json", "jsonl", "yaml") else 2
        self.columns = None
        self.row: int | None = None
        #: Row number of the last blank line skipped: progress the length check sees.
        self._blank: int | None = None
        #: The file being read and its size in bytes, for :meth:`extent`.
        self._reading: tuple[IO[bytes], int] | None = None

    # -- opening -------------------------------------------------------------------------
    @contextmanager
    def _open(self) -> Iterator[IO[bytes]]:
        if self.path is not None:
            follow = not getattr(self, "checked_path", False)
            with open_regular(self.path, self._error, follow=follow) as handle:
                with self._measured(handle):
                    yield handle
        else:
            assert self.file is not None
            check_open_file(self.file, self._error)
            if hasattr(self.file, "seek"):
                self.file.seek(0)
            with self._measured(self.file):
                yield self.file

    @contextmanager
    def _measured(self, handle: IO[bytes]) -> Iterator[None]:
        """Keep the handle and its size while it is read, for :meth:`extent`: formats read
        front to back only (a workbook's zip directory is at its end; xls, yaml and ods are
        parsed whole before their first row)."""
        size = _size(handle) if self.format in STREAMED_FORMATS else None
        self._reading = (handle, size) if size else None
        try:
            yield
        finally:
            self._reading = None

    def extent(self) -> Extent | None:
        """Bytes read of the file's size (what was read ahead of the rows counts as read)."""
        if self._reading is None:
            return None
        handle, size = self._reading
        try:
            done = handle.tell()
        except (OSError, ValueError, AttributeError):
            return None
        return Extent(done=min(done, size), total=size, unit="bytes")

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
                raise self._error(
                    gettext("the file is larger than %(limit)s") % {"limit": limit("MAX_FILE_SIZE")}
                )
            if len(raw) > line_limit:
                raise self._error(
                    gettext("line longer than %(limit)s") % {"limit": limit("MAX_LINE_SIZE")},
                    row=line_no,
                )
            try:
                yield decoder.decode(raw)
            except UnicodeDecodeError as exc:
                raise self._error(
                    gettext(
                        "line %(line_no)s is not valid %(encoding)s (byte %(object)r); set the "
                        'source\'s encoding option (e.g. "latin-1" or "cp1252")'
                    )
                    % {
                        "line_no": line_no,
                        "encoding": self.encoding,
                        "object": exc.object[exc.start : exc.end],
                    },
                    row=line_no,
                ) from None
        try:
            tail = decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise self._error(
                gettext("the file ends inside a %(encoding)s character")
                % {"encoding": self.encoding},
                row=line_no,
            ) from None
        if tail:
            yield tail

    def _header(self, cells: Sequence[Any], row: int = 1) -> list[str]:
        if len(cells) > settings.MAX_COLUMNS:
            raise self._error(
                gettext("the header has %(cells)s columns, more than %(limit)s")
                % {"cells": format(len(cells), ","), "limit": limit("MAX_COLUMNS")},
                row=row,
            )
        header = ["" if c is None else str(c).strip() for c in cells]
        while header and header[-1] == "":
            header.pop()
        if not header:
            raise self._error(gettext("the file is empty: no header row"), row=row)
        for i, name in enumerate(header):
            if not name:
                raise self._error(
                    gettext("the header's cell %(i)s is empty") % {"i": i + 1}, row=row
                )
        seen: set[str] = set()
        for name in header:
            if name in seen:
                raise self._error(
                    gettext("the header names column %(name)r twice") % {"name": name}, row=row
                )
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
        return self._error(
            gettext("the file is not valid %(encoding)s") % {"encoding": self.encoding}
        )

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
            gettext(
                "%(value)s holds a NUL byte: not a %(upper)s text file (a binary file, or UTF-16 "
                "read as %(encoding)s? then set the source's encoding option)"
            )
            % {
                "value": "line " + str(line) if line else "the file",
                "upper": self.format.upper(),
                "encoding": self.encoding,
            },
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
        row = self.first_row - 1  # the header's (a range of a file: its first row's, less 1)
        try:
            first_cells = next(reader, None)
            if first_cells is None:
                raise self._error(gettext("the file is empty: no header row"), row=1)
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
                                gettext(
                                    "%(cells)s cells but the header has %(width)s columns (is the "
                                    "delimiter %(delimiter)r right, or a quote unclosed?)"
                                )
                                % {"cells": len(cells), "width": width, "delimiter": delimiter},
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
                    gettext("a cell is longer than %(limit)s") % {"limit": limit("MAX_CELL_SIZE")},
                    row=row + 1,
                ) from None
            raise self._error(
                gettext("malformed CSV: %(exc)s") % {"exc": exc}, row=row + 1
            ) from None

    # -- JSON lines ----------------------------------------------------------------------

    # -- JSON ----------------------------------------------------------------------------

    # -- YAML ----------------------------------------------------------------------------

    # -- workbooks -----------------------------------------------------------------------


def _size(handle: IO[bytes]) -> int | None:
    """A file's size in bytes without reading it: from its descriptor, an upload's ``size``,
    or a seek to its end and back; None when none of these can tell."""
    try:
        return os.fstat(handle.fileno()).st_size
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        pass
    size = getattr(handle, "size", None)
    if isinstance(size, int):
        return size
    try:
        here = handle.tell()
        end = handle.seek(0, io.SEEK_END)
        handle.seek(here)
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return None
    return end


def _chain(first: Iterable[Any], rest: Iterable[Any]) -> Iterator[Any]:
    yield from first
    yield from rest
