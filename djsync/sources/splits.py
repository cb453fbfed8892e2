"""A CSV file cut into byte ranges that start and end on record boundaries, for partitions.

A partitioned run (djsync.runs.partitions) gives each Celery task one range of the file.
Where to cut is found by one scan of the file at C speed that tracks the quote parity: a
line end outside quotes ends a record, so a range starts just after such a line end, and
the row number of its first record is counted the same way (a quoted line break does not
start a record). That parity is exact for files quoted as RFC 4180 writes them (a quote
only around a whole field, doubled inside it); each partition checks its own range against
that grammar (:class:`Grammar`) while it reads, and a range that does not match makes the
run read the whole file in one partition instead: a file whose quoting makes safe cutting
impossible falls back to one partition, never to wrong rows. Because the grammar parses a
text one way only, ranges that each match it from their start are the file's own records.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

#: Bytes read per step of the scan and of a range's check.
CHUNK = 1024 * 1024

#: A quoted segment, from an opening quote to its closing one (``""`` is two segments).
_QUOTED = re.compile(rb'"[^"]*"')


@dataclass(frozen=True)
class Range:
    """Bytes ``start``–``end`` of a file (the first range from the header on), the row
    number of its first record (as the file source numbers rows: the header is row 1), and
    its place in the file."""

    part: int
    start: int
    end: int
    first_row: int
    last: bool


def header_size(path: str | Path) -> int:
    """Bytes of the header line (a header with a quoted line break: the first record)."""
    with open(path, "rb") as handle:
        head = b""
        inside = False
        while chunk := handle.read(CHUNK):
            at, inside = _record_end(chunk, 0, inside)
            if at is not None:
                return len(head) + at
            head += chunk
            if len(head) > 16 * CHUNK:
                break
    return len(head)


def split(path: str | Path, parts: int, *, min_size: int = 1) -> list[Range]:
    """Cut the file at ``path`` into at most ``parts`` ranges of about equal size, each
    starting just after a line end outside quotes; fewer when a range would be smaller
    than ``min_size`` bytes."""
    size = Path(path).stat().st_size
    start = header_size(path)
    body = size - start
    parts = max(1, min(parts, body // max(min_size, 1)))
    targets = [start + body * k // parts for k in range(1, parts)]
    cuts: list[tuple[int, int]] = [(0, 2)]  # (byte, row number of the record there)
    records = 1  # the next record's row number, once the header's line end is counted
    inside = False
    position = 0
    with open(path, "rb") as handle:
        handle.seek(0)
        while targets and (chunk := handle.read(CHUNK)):
            offset = 0
            while targets and targets[0] < position + len(chunk):
                begin = max(targets[0] - position, 0, cuts[-1][0] - position, start - position)
                if begin > offset:
                    n, inside = _count(chunk[offset:begin], inside)
                    records += n
                    offset = begin
                at, inside_after = _record_end(chunk, offset, inside)
                if at is None:
                    break  # the record goes on in the next chunk: look there
                n, inside = _count(chunk[offset:at], inside)
                records += n  # the line end at ``at - 1`` included
                offset = at
                if position + at < size:
                    cuts.append((position + at, records))
                targets.pop(0)
            n, inside = _count(chunk[offset:], inside)
            records += n
            position += len(chunk)
            if targets and targets[0] < position:  # moved past: look from here on
                targets[0] = position
    ends = [c[0] for c in cuts[1:]] + [size]
    return [
        Range(part=i, start=s, end=e, first_row=row, last=i == len(cuts) - 1)
        for i, ((s, row), e) in enumerate(zip(cuts, ends, strict=True))
        if e > s or i == 0
    ]


def _count(data: bytes, inside: bool) -> tuple[int, bool]:
    """Line ends outside quotes in ``data`` (read with the quote state ``inside`` at its
    start), and the state at its end."""
    if inside:
        close = data.find(b'"')
        if close < 0:
            return 0, True
        data = data[close + 1 :]
    if data.count(b'"') % 2:
        last = data.rfind(b'"')
        return _QUOTED.sub(b"", data[:last]).count(b"\n"), True
    return _QUOTED.sub(b"", data).count(b"\n"), False


def _record_end(data: bytes, offset: int, inside: bool) -> tuple[int | None, bool]:
    """The position just after the first line end outside quotes from ``offset`` (None:
    not in ``data``), and the quote state there."""
    at = offset
    while True:
        if inside:
            close = data.find(b'"', at)
            if close < 0:
                return None, True
            at, inside = close + 1, False
        newline = data.find(b"\n", at)
        quote = data.find(b'"', at)
        if newline < 0 and quote < 0:
            return None, False
        if newline >= 0 and (quote < 0 or newline < quote):
            return newline + 1, False
        at, inside = quote + 1, True


# -- a range's check -------------------------------------------------------------------------
class Grammar:
    """Checks a range, chunk by chunk, against RFC 4180 records (fields unquoted without
    quotes or line breaks, or wholly quoted with inner quotes doubled; ``\\n`` or ``\\r\\n``
    line ends). :attr:`refused` says why it does not match (then the cut is not safe)."""

    def __init__(self, delimiter: str, *, last: bool, carry_limit: int) -> None:
        d = re.escape(delimiter.encode())
        field = rb'(?:[^"' + d + rb'\r\n]*|"[^"]*(?:""[^"]*)*")'
        row = field + rb"(?:" + d + field + rb")*"
        self.rows = re.compile(rb"(?:" + row + rb"\r?\n)*")
        self.last_row = re.compile(row)
        self.last = last
        self.carry = b""
        self.carry_limit = carry_limit
        self.refused = ""

    def feed(self, chunk: bytes) -> None:
        if self.refused:
            return
        data = self.carry + chunk
        end = self.rows.match(data).end()  # type: ignore[union-attr]  # * matches always
        self.carry = data[end:]
        if len(self.carry) > self.carry_limit:
            self.refused = "a record longer than the check holds, or a quote left open"

    def finish(self) -> str:
        """Why the range is not safe to read on its own ("" when it is)."""
        if not self.refused and self.carry:
            if not (self.last and self.last_row.fullmatch(self.carry)):
                self.refused = "a record the RFC 4180 grammar does not read the same way"
        return self.refused


class Window(io.RawIOBase):
    """A file read as its header followed by one range of its bytes (the first range
    starts at the header itself), with the checks of :class:`Grammar` on the range."""

    def __init__(self, path: str | Path, header: int, cut: Range, delimiter: str) -> None:
        super().__init__()
        self.path = Path(path)
        self.header = header
        self.cut = cut
        self.delimiter = delimiter
        self.grammar = Grammar(delimiter, last=cut.last, carry_limit=4 * CHUNK)
        self.name = str(path)
        self._handle: IO[bytes] | None = None
        self._head = b""
        self._left = 0
        self.seek(0)

    #: The size a source measures its progress against (there is no descriptor to stat).
    @property
    def size(self) -> int:
        return self._prefix + self.cut.end - self.cut.start

    @property
    def _prefix(self) -> int:
        return 0 if self.cut.start == 0 else self.header

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        if offset != 0 or whence != 0:
            raise io.UnsupportedOperation("a range is read from its start only")
        if self._handle is None:
            self._handle = open(self.path, "rb")  # noqa: SIM115 - closed by close()
        self._handle.seek(0)
        self._head = self._handle.read(self.header) if self._prefix else b""
        self._handle.seek(self.cut.start)
        self._left = self.cut.end - self.cut.start
        self._done = 0
        self.grammar = Grammar(self.delimiter, last=self.cut.last, carry_limit=4 * CHUNK)
        return 0

    def tell(self) -> int:
        return self._done

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer)
        if self._head:
            n = min(len(view), len(self._head))
            view[:n] = self._head[:n]
            self._head = self._head[n:]
            self._done += n
            return n
        if self._left <= 0 or self._handle is None:
            return 0
        data = self._handle.read(min(len(view), self._left))
        self._left -= len(data)
        self.grammar.feed(data)
        view[: len(data)] = data
        self._done += len(data)
        return len(data)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        super().close()


def window(path: str | Path, header: int, cut: Range, delimiter: str) -> io.BufferedReader[Any]:
    """The range ``cut`` of the file as a binary file (its :class:`Window` at ``.raw``)."""
    raw = Window(path, header, cut, delimiter)
    reader = io.BufferedReader(raw, buffer_size=CHUNK)
    reader.size = raw.size  # type: ignore[attr-defined]
    return reader


__all__ = ["CHUNK", "Grammar", "Range", "Window", "header_size", "split", "window"]
