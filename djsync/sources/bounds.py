"""Bounded reading for file sources: counted streams, zip containers checked before inflating.

Every limit names its ``DJSYNC`` setting in the message (docs/security.md, "Files"). The
checks here cost O(1) per chunk read, never per row, so the CSV fast path keeps its speed.
"""

from __future__ import annotations

import errno
import io
import os
import re
import stat
import struct
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from typing import IO, Any
from xml.parsers import expat

from django.utils.translation import gettext as _

from djsync.conf import settings

#: Bytes a text reader asks for at a time (TextIOWrapper's chunk): checks run once per chunk.
CHUNK = 64 * 1024
#: Members of a zip container smaller than this are not held to the compression ratio
#: (tiny XML parts compress far better than big ones; Apache POI's "grace" size).
RATIO_GRACE = 1024 * 1024
#: Bytes of the zip central directory allowed per member it lists (name, extra fields).
DIRECTORY_BYTES_PER_MEMBER = 1024

Fail = Callable[..., Exception]

#: A ' before a formula character: what an export puts before a cell a spreadsheet would
#: run (djsync.exports.files.neutralize), which a file source takes off again.
_QUOTED_FORMULA = re.compile(rb"'[=+\-@\t\r]")
_FORMULA_BYTES = frozenset(b"=+-@\t\r")


def limit(name: str) -> str:
    """How a message names a setting: ``DJSYNC["MAX_CELL_SIZE"] (1,000,000 characters)``."""
    value = getattr(settings, name)
    unit = UNITS.get(name, "")
    if unit == "bytes":
        shown = _bytes(value)
    else:
        shown = f"{value:,}{' ' + unit if unit else ''}"
    return f'DJSYNC["{name}"] ({shown})'


UNITS = {
    "MAX_FILE_SIZE": "bytes",
    "MAX_IN_MEMORY_FILE_SIZE": "bytes",
    "MAX_YAML_SIZE": "bytes",
    "MAX_LINE_SIZE": "bytes",
    "MAX_WORKBOOK_SIZE": "bytes",
    "MAX_WORKBOOK_PART_SIZE": "bytes",
    "MAX_CELL_SIZE": "characters",
    "MAX_COLUMNS": "columns",
    "MAX_SHEET_ROWS": "rows",
    "MAX_WORKBOOK_MEMBERS": "members",
    "MAX_COMPRESSION_RATIO": "to 1",
    "JSON_MAX_DEPTH": "levels",
}


def _bytes(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:,.0f} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}".replace(".0 ", " ")
        n /= 1024
    return f"{n} bytes"  # pragma: no cover


def size(n: float) -> str:
    """A byte count as people read it (``2.5 GiB``)."""
    return _bytes(n)


# -- opening ---------------------------------------------------------------------------
def open_regular(
    path: str | os.PathLike[str], fail: Fail, *, follow: bool = True, dir_fd: int | None = None
) -> IO[bytes]:
    """Open a regular file for reading; refuse devices, FIFOs and sockets up front.

    ``follow=False`` for a job's path, checked as a real path under DJSYNC["FILE_ROOTS"]:
    a symlink swapped in since the check is not followed (O_NOFOLLOW).

    Opened non-blocking first, so a FIFO without a writer does not hang the run, then
    checked with fstat on the open descriptor (no race with a path swapped in between).
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)
    if not follow:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, dir_fd=dir_fd)  # dir_fd: relative to an open folder
    except FileNotFoundError:
        raise fail(_("file not found")) from None
    except IsADirectoryError:
        raise fail(_("is a directory, not a file")) from None
    except OSError as exc:
        if not follow and exc.errno == errno.ELOOP:
            raise fail(_("became a symlink after its path was checked; not followed")) from None
        raise fail(_("cannot open the file: %(strerror)s") % {"strerror": exc.strerror}) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise fail(
                _("is %(kind)s, not a regular file: djsync reads regular files only")
                % {"kind": _kind(info.st_mode)}
            )
        if info.st_size > settings.MAX_FILE_SIZE:
            raise fail(
                _("the file has %(st_size)s, more than %(limit)s")
                % {"st_size": size(info.st_size), "limit": limit("MAX_FILE_SIZE")}
            )
        if hasattr(os, "O_NONBLOCK"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def check_open_file(handle: Any, fail: Fail) -> None:
    """An open file handed in (``file=``): refuse a device or a pipe when it has a descriptor."""
    try:
        mode = os.fstat(handle.fileno()).st_mode
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return  # an in-memory upload
    if not stat.S_ISREG(mode):
        raise fail(
            _("is %(kind)s, not a regular file: djsync reads regular files only")
            % {"kind": _kind(mode)}
        )


def _kind(mode: int) -> str:
    if stat.S_ISCHR(mode):
        return _("a character device")
    if stat.S_ISBLK(mode):
        return _("a block device")
    if stat.S_ISFIFO(mode):
        return _("a FIFO (named pipe)")
    if stat.S_ISSOCK(mode):
        return _("a socket")
    if stat.S_ISDIR(mode):
        return _("a directory")
    return _("not a regular file")


def seekable_copy(handle: IO[bytes], fail: Fail) -> IO[bytes]:
    """The handle itself when it can seek; else a copy in a spooled temporary file, counted
    against MAX_FILE_SIZE (formats that read twice or jump around need to seek)."""
    if getattr(handle, "seekable", lambda: False)():
        return handle
    copy = tempfile.SpooledTemporaryFile(max_size=16 * 1024 * 1024)  # noqa: SIM115
    total = 0
    while chunk := handle.read(CHUNK):
        total += len(chunk)
        if total > settings.MAX_FILE_SIZE:
            copy.close()
            raise fail(_("the file is larger than %(limit)s") % {"limit": limit("MAX_FILE_SIZE")})
        copy.write(chunk)
    copy.seek(0)
    return copy


def read_whole(handle: IO[bytes], fail: Fail, *, fmt: str) -> bytes:
    """All the bytes of a file whose format is parsed whole, at most MAX_IN_MEMORY_FILE_SIZE."""
    cap = settings.MAX_IN_MEMORY_FILE_SIZE
    data = handle.read(cap + 1)
    if len(data) > cap:
        raise fail(
            _(
                "%(fmt)s files are parsed whole in memory and this one is larger than %(limit)s; "
                "convert it to CSV or XLSX, which stream"
            )
            % {"fmt": fmt, "limit": limit("MAX_IN_MEMORY_FILE_SIZE")}
        )
    return data


# -- counted stream --------------------------------------------------------------------
class CountedReader(io.BufferedIOBase):
    """A binary stream under a text reader that counts what passes, once per chunk.

    - MAX_FILE_SIZE: the bytes read so far (an endless device or a growing file stops).
    - MAX_LINE_SIZE: ``progress()`` says how far the reader above has got (rows seen);
      when it stands still while more than MAX_LINE_SIZE bytes pass, one row (quoted
      line breaks included) or one line is too long, and it stops before holding it.
    - NUL bytes, in encodings where a NUL byte is the character U+0000: a binary file.
    """

    def __init__(
        self,
        raw: IO[bytes],
        fail: Fail,
        *,
        progress: Callable[[], Any] | None = None,
        line_limit: int | None = None,
        refuse_nul: bool = False,
        on_nul: Callable[[], Exception] | None = None,
        watch_quotes: bool = False,
    ) -> None:
        super().__init__()
        self.raw = raw
        self._read = getattr(raw, "read1", None) or raw.read
        self.fail = fail
        self.count = 0
        self.max_size = settings.MAX_FILE_SIZE
        self.progress = progress
        self.line_limit = line_limit
        self._seen: Any = object()
        self._mark = 0
        self.refuse_nul = refuse_nul
        self.on_nul = on_nul
        #: Whether the reader above must look for quoted formulas in its rows: set once a
        #: chunk holds one (watched at byte level, per chunk), so a file without any costs
        #: no row a look. Without ``watch_quotes`` (the encoding is not ASCII-based) always.
        self.quoted = not watch_quotes
        self._quote_tail = False

    def readable(self) -> bool:
        return True

    def read1(self, n: int = -1) -> bytes:
        data = self._read(CHUNK if n is None or n < 0 else n)
        self._account(data)
        return data

    def read(self, n: int | None = -1) -> bytes:
        if n is None or n < 0:
            parts = []
            while chunk := self.read1(CHUNK):
                parts.append(chunk)
            return b"".join(parts)
        data = self.raw.read(n)
        self._account(data)
        return data

    def _account(self, data: bytes) -> None:
        before = self.count
        self.count += len(data)
        if self.count > self.max_size:
            raise self.fail(
                _("the file is larger than %(limit)s") % {"limit": limit("MAX_FILE_SIZE")}
            )
        if self.progress is not None:
            now = self.progress()
            if now != self._seen:
                self._seen, self._mark = now, before
            elif self.count - self._mark > self.line_limit + 2 * CHUNK:  # type: ignore[operator]
                row = _next_row(now)
                raise self.fail(
                    _(
                        "one row runs over more than %(limit)s (a line without an end, or a quote "
                        "left open)"
                    )
                    % {"limit": limit("MAX_LINE_SIZE")},
                    row=row,
                )
        if not self.quoted and data:
            if (self._quote_tail and data[0] in _FORMULA_BYTES) or _QUOTED_FORMULA.search(data):
                self.quoted = True
            self._quote_tail = data.endswith(b"'")
        if self.refuse_nul and b"\x00" in data:
            raise self.on_nul() if self.on_nul else self.fail(_("the file holds a NUL byte"))


def _next_row(progress: Any) -> int | None:
    """The row being read, from the reader's progress: one past the last one seen."""
    numbers = [p for p in (progress if isinstance(progress, tuple) else (progress,)) if p]
    return max(numbers) + 1 if numbers else 1


# -- zip containers (XLSX, ODS) --------------------------------------------------------
_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")


def check_zip(handle: IO[bytes], fail: Fail, *, kind: str, whole_limit: str | None = None) -> None:
    """Check a workbook's zip container before anything inflates it.

    From the zip directory: how many members, their total uncompressed size and the
    compression ratio (each member and overall). Then every member is inflated once here,
    in small steps and counted, so a directory that lies about sizes is caught before a
    library trusts it; XML members are scanned on the way (:class:`XmlScan`): no DTD (so no
    entity bombs), no text run or tag longer than a cell may be. ``whole_limit`` names the
    setting that bounds the whole uncompressed size when the format is parsed whole.
    Parts loaded whole by the reader (everything of an XLSX but its sheets) are held to
    MAX_WORKBOOK_PART_SIZE.
    """
    members = settings.MAX_WORKBOOK_MEMBERS
    end = _end_record(handle)
    if end is not None:
        entries, directory_size = end
        if entries > members or directory_size > members * DIRECTORY_BYTES_PER_MEMBER:
            raise fail(
                _("the %(kind)s container lists %(entries)s members, more than %(limit)s")
                % {
                    "kind": kind,
                    "entries": format(entries, ","),
                    "limit": limit("MAX_WORKBOOK_MEMBERS"),
                }
            )
    try:
        archive = zipfile.ZipFile(handle)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise fail(f"{_unreadable(kind)} ({exc})") from None
    with archive:
        infos = archive.infolist()
        if len(infos) > members:
            raise fail(
                _("the %(kind)s container has %(infos)s members, more than %(limit)s")
                % {
                    "kind": kind,
                    "infos": format(len(infos), ","),
                    "limit": limit("MAX_WORKBOOK_MEMBERS"),
                }
            )
        _check_directory(infos, fail, kind=kind, whole_limit=whole_limit)
        for info in infos:
            _inflate_member(handle, info, fail, kind=kind)
    handle.seek(0)


def _check_directory(
    infos: list[zipfile.ZipInfo], fail: Fail, *, kind: str, whole_limit: str | None
) -> None:
    ratio = settings.MAX_COMPRESSION_RATIO
    total = sum(i.file_size for i in infos)
    packed = sum(i.compress_size for i in infos)
    for info in infos:
        if info.flag_bits & 0x1:
            raise fail(
                _("the %(kind)s member %(filename)r is encrypted")
                % {"kind": kind, "filename": info.filename}
            )
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise fail(
                _(
                    "the %(kind)s member %(filename)r uses compression method %(compress_type)s, "
                    "not one a workbook uses"
                )
                % {"kind": kind, "filename": info.filename, "compress_type": info.compress_type}
            )
        if info.file_size > RATIO_GRACE and info.file_size > ratio * max(info.compress_size, 1):
            raise fail(
                _(
                    "the %(kind)s member %(filename)r inflates %(compress_size)s to "
                    "%(file_size)s, a ratio above %(limit)s (a zip bomb?)"
                )
                % {
                    "kind": kind,
                    "filename": info.filename,
                    "compress_size": size(info.compress_size),
                    "file_size": size(info.file_size),
                    "limit": limit("MAX_COMPRESSION_RATIO"),
                }
            )
        if whole_limit is None and not _streamed_part(info.filename):
            part_limit = settings.MAX_WORKBOOK_PART_SIZE
            if info.file_size > part_limit:
                raise fail(
                    _(
                        "the %(kind)s part %(filename)r is loaded whole and inflates to "
                        "%(file_size)s, more than %(limit)s"
                    )
                    % {
                        "kind": kind,
                        "filename": info.filename,
                        "file_size": size(info.file_size),
                        "limit": limit("MAX_WORKBOOK_PART_SIZE"),
                    }
                )
    if total > RATIO_GRACE and total > ratio * max(packed, 1):
        raise fail(
            _(
                "the %(kind)s workbook inflates %(packed)s to %(total)s, a ratio above %(limit)s "
                "(a zip bomb?)"
            )
            % {
                "kind": kind,
                "packed": size(packed),
                "total": size(total),
                "limit": limit("MAX_COMPRESSION_RATIO"),
            }
        )

    if total > settings.MAX_WORKBOOK_SIZE:
        raise fail(
            _("the %(kind)s workbook inflates to %(total)s, more than %(limit)s")
            % {"kind": kind, "total": size(total), "limit": limit("MAX_WORKBOOK_SIZE")}
        )
    if whole_limit and total > getattr(settings, whole_limit):
        raise fail(
            _(
                "%(kind)s workbooks are parsed whole in memory and this one inflates to "
                "%(total)s, more than %(limit)s; convert it to XLSX or CSV"
            )
            % {"kind": kind, "total": size(total), "limit": limit(whole_limit)}
        )


def _streamed_part(name: str) -> bool:
    """XLSX sheets are read as a stream; every other part is loaded whole."""
    return name.lower().startswith("xl/worksheets/") and name.lower().endswith(".xml")


def _end_record(handle: IO[bytes]) -> tuple[int, int] | None:
    """(members listed, directory size) from the end of the zip, before zipfile reads its
    whole directory into memory; None when there is none (zipfile then says so)."""
    try:
        record = zipfile._EndRecData(handle)  # type: ignore[attr-defined]  # noqa: SLF001
    except (OSError, struct.error, ValueError):
        return None
    finally:
        handle.seek(0)
    if not record:
        return None
    return int(record[4]), int(record[5])  # _ECD_ENTRIES_TOTAL, _ECD_SIZE


def _inflate_member(handle: IO[bytes], info: zipfile.ZipInfo, fail: Fail, *, kind: str) -> None:
    """Inflate one member in small steps from its raw bytes: never more than the directory
    says (a lying directory fails here), with the CRC checked; scan it if it is XML."""
    handle.seek(info.header_offset)
    header = handle.read(_LOCAL_HEADER.size)
    if len(header) != _LOCAL_HEADER.size or header[:4] != b"PK\x03\x04":
        raise fail(
            _("%(unreadable)s (bad local header of %(filename)r)")
            % {"unreadable": _unreadable(kind), "filename": info.filename}
        )
    fields = _LOCAL_HEADER.unpack(header)
    handle.seek(fields[10] + fields[11], io.SEEK_CUR)  # name and extra field
    deflated = info.compress_type == zipfile.ZIP_DEFLATED
    inflater = zlib.decompressobj(-15) if deflated else None
    left = info.compress_size
    produced = 0
    crc = 0
    scan: XmlScan | None = None
    first = True
    lied = _(
        "the zip directory of this %(kind)s workbook lies: member %(filename)r inflates to more "
        "than the %(file_size)s it declares"
    ) % {"kind": kind, "filename": info.filename, "file_size": size(info.file_size)}
    while True:
        try:
            if inflater is not None and inflater.unconsumed_tail:
                data = inflater.decompress(inflater.unconsumed_tail, CHUNK)
            elif left > 0:
                raw = handle.read(min(CHUNK, left))
                if not raw:
                    raise fail(
                        _("%(unreadable)s (member %(filename)r is cut)")
                        % {"unreadable": _unreadable(kind), "filename": info.filename}
                    )
                left -= len(raw)
                data = inflater.decompress(raw, CHUNK) if inflater is not None else raw
            elif inflater is not None and not inflater.eof:
                data = inflater.flush()
                if not data:
                    raise fail(
                        _("%(unreadable)s (member %(filename)r is cut)")
                        % {"unreadable": _unreadable(kind), "filename": info.filename}
                    )
            else:
                break
        except zlib.error:  # a flipped bit in the deflated data
            raise fail(
                _("%(unreadable)s (member %(filename)r is corrupt)")
                % {"unreadable": _unreadable(kind), "filename": info.filename}
            ) from None
        if not data:
            continue
        produced += len(data)
        if produced > info.file_size:
            raise fail(lied)
        crc = zlib.crc32(data, crc)
        if first:
            first = False
            if data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"<":
                scan = XmlScan(fail, kind=kind, member=info.filename)
        if scan is not None:
            scan.feed(data)
    if produced != info.file_size or crc != info.CRC:
        raise fail(
            _("%(unreadable)s (member %(filename)r is corrupt)")
            % {"unreadable": _unreadable(kind), "filename": info.filename}
        )
    if scan is not None:
        scan.close()


def _unreadable(kind: str) -> str:
    """The words the file source has always used for a broken workbook of this kind."""
    return _("not a readable %(kind)s %(value)s") % {
        "kind": kind,
        "value": "workbook" if kind == "XLSX" else "file",
    }


class XmlScan:
    """One fast pass of expat over an XML member, before a library parses it.

    Refuses a DTD (entity bombs, external entities), and any text run (comments and CDATA
    sections do not end one, as parsers join the text around them) or tag longer than
    MAX_CELL_SIZE allows, counted in bytes at four per character: what a parser would
    hold in memory for one value stays small.
    """

    def __init__(self, fail: Fail, *, kind: str, member: str) -> None:
        self.fail = fail
        self.kind = kind
        self.member = member
        self.max_run = 4 * max(settings.MAX_CELL_SIZE, CHUNK) + 4
        self.since_lt = 0
        self.run = 0
        self.joined = False
        #: Text may go on across the chunks fed: the first run after a chunk is not reset.
        self.continued = False
        parser = expat.ParserCreate()
        parser.buffer_text = True
        parser.buffer_size = min(self.max_run + 1, 2**31 - 1)
        # Text runs are bounded by the '<' check in feed() until a comment, CDATA section or
        # processing instruction shows up (parsers join the text around them): only then
        # is each run counted, so a plain sheet costs no Python call per value.
        parser.CommentHandler = self._join
        parser.StartCdataSectionHandler = self._join0
        parser.EndCdataSectionHandler = self._join0
        parser.ProcessingInstructionHandler = self._join2
        parser.StartDoctypeDeclHandler = self._doctype
        self.parser = parser

    def _too_long(self) -> Exception:
        return self.fail(
            _("the %(kind)s part %(member)r holds a value longer than %(limit)s")
            % {"kind": self.kind, "member": self.member, "limit": limit("MAX_CELL_SIZE")}
        )

    def _data(self, text: str) -> None:
        self.run = self.run + len(text) if self.joined or self.continued else len(text)
        self.joined = self.continued = False
        if self.run > self.max_run:
            raise self._too_long()

    def _join(self, _text: str | None = None) -> None:
        if self.parser.CharacterDataHandler is None:
            self.parser.CharacterDataHandler = self._data
            self.run = 0
        self.joined = True

    def _join0(self) -> None:
        self._join()

    def _join2(self, _target: str, _data: str) -> None:
        self._join()

    def _doctype(self, *args: Any) -> None:
        raise self.fail(
            _(
                "the %(kind)s part %(member)r declares a DTD: XML entities and DTDs are refused "
                "(an XML entity bomb?)"
            )
            % {"kind": self.kind, "member": self.member}
        )

    def feed(self, data: bytes) -> None:
        first = data.find(b"<")
        if first < 0:
            self.since_lt += len(data)
            stretch = self.since_lt
        else:
            stretch = self.since_lt + first
            self.since_lt = len(data) - data.rfind(b"<") - 1
        if stretch > self.max_run:
            raise self._too_long()
        self.continued = True
        self._parse(data, False)

    def close(self) -> None:
        self._parse(b"", True)

    def _parse(self, data: bytes, final: bool) -> None:
        try:
            self.parser.Parse(data, final)
        except expat.ExpatError as exc:
            raise self.fail(
                _("%(unreadable)s (malformed XML in %(member)r: %(exc)s)")
                % {"unreadable": _unreadable(self.kind), "member": self.member, "exc": exc}
            ) from None
