"""What one read of an HTTP source may cost: deadlines, body size, decompression, JSON nesting.

- :class:`Clock` holds the two deadlines (``HTTP_DEADLINE`` for the whole read,
  ``HTTP_RESPONSE_DEADLINE`` for one response), which
  :class:`djsync.sources.http_transport.DeadlineTransport` makes every socket operation
  wait for at most, so a server that sends one byte every few seconds (headers or body) is
  stopped on time, not after the per-read timeout.
- :func:`body_chunks` streams a body: Content-Length checked first, then raw and decoded
  bytes counted against ``HTTP_MAX_BODY``, gzip/deflate inflated in bounded pieces (a gzip
  bomb, nested encodings included, never inflates past the limit).
- :class:`PageDecoder` turns those bytes into records with ijson as they arrive, refusing
  nesting deeper than ``JSON_MAX_DEPTH``; everything around the records (``meta``, ``next``)
  is kept for pagination.
"""

from __future__ import annotations

import math
import ssl
import time
import zlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import ijson
from django.utils.translation import gettext

from djsync.extras import lazy, require

if TYPE_CHECKING:
    import httpx
else:
    httpx = lazy("httpx", "an HTTP source or target")

#: Bytes one inflate step may produce: a bomb is read a piece at a time, never whole.
PIECE = 64 * 1024
#: Content encodings read (Accept-Encoding says so); any other is refused.
ENCODINGS = ("gzip", "x-gzip", "deflate")
#: Most Content-Encoding layers one response may stack ("gzip, gzip" is legal, and a bomb).
MAX_ENCODINGS = 2


class DeadlineExceeded(Exception):
    """A deadline passed; ``setting`` names it (HTTP_DEADLINE or HTTP_RESPONSE_DEADLINE)."""

    def __init__(self, setting: str, seconds: float) -> None:
        super().__init__(f'DJSYNC["{setting}"] ({seconds:g} s)')
        self.setting = setting
        self.seconds = seconds


class Clock:
    """The deadlines of one read. Time the run spends on records between two pieces of a
    page is given back (:meth:`extend`): the deadlines bound the server, not the importer."""

    def __init__(self, total: float, per_response: float) -> None:
        self.total = float(total)
        self.per_response = float(per_response)
        self.run_ends = time.monotonic() + self.total
        self.response_ends = math.inf

    def begin_response(self) -> None:
        self.response_ends = time.monotonic() + self.per_response

    def end_response(self) -> None:
        self.response_ends = math.inf

    def extend(self, seconds: float) -> None:
        self.run_ends += seconds
        self.response_ends += seconds

    def run_left(self) -> float:
        return self.run_ends - time.monotonic()

    def check(self) -> None:
        """Raise :class:`DeadlineExceeded` when a deadline has passed."""
        now = time.monotonic() + 0.001  # a socket timeout set to the deadline ends at it
        if now >= self.run_ends:
            raise DeadlineExceeded("HTTP_DEADLINE", self.total)
        if now >= self.response_ends:
            raise DeadlineExceeded("HTTP_RESPONSE_DEADLINE", self.per_response)

    def cap(self, timeout: float | None) -> float:
        """``timeout`` shortened to the time left before the nearer deadline."""
        self.check()
        left = min(self.run_ends, self.response_ends) - time.monotonic()
        return left if timeout is None else max(0.0, min(timeout, left))


def ssl_context() -> ssl.SSLContext:
    """The process's one TLS context (djsync.sources.http_transport, imported with httpx)."""
    require("httpx", "an HTTP source or target")
    from djsync.sources.http_transport import ssl_context as context

    return context()


def deadline_transport(clock: Clock) -> httpx.BaseTransport:
    """httpx's transport bound to ``clock``'s deadlines (djsync.sources.http_transport)."""
    require("httpx", "an HTTP source")
    from djsync.sources.http_transport import DeadlineTransport

    return DeadlineTransport(clock)


class BodyTooLarge(ValueError):
    """The body passed ``HTTP_MAX_BODY``; the message says how it was found."""


class BadEncoding(ValueError):
    """The body's Content-Encoding is not one djsync reads, or its bytes are corrupt."""


def body_chunks(
    response: httpx.Response, *, limit: int, clock: Clock | None = None, truncate: bool = False
) -> Iterator[bytes]:
    """The decoded bytes of ``response``, at most ``limit`` of them.

    Past the limit: :class:`BodyTooLarge`, or with ``truncate`` simply the end (for the
    snippet of an error page). Content-Length is checked before anything is read."""
    length = response.headers.get("content-length", "").strip()
    if not truncate and length.isdigit() and int(length) > limit:
        raise BodyTooLarge(
            gettext("its Content-Length is %(length)s") % {"length": format(int(length), ",")}
        )
    encodings = [
        e.strip().lower()
        for e in response.headers.get("content-encoding", "").split(",")
        if e.strip() and e.strip().lower() != "identity"
    ]
    for encoding in encodings:
        if encoding not in ENCODINGS:
            raise BadEncoding(
                gettext("it is encoded with %(encoding)r; djsync reads gzip or deflate")
                % {"encoding": encoding[:40]}
            )
    if len(encodings) > MAX_ENCODINGS:
        raise BadEncoding(
            gettext("it stacks %(encodings)s content encodings") % {"encodings": len(encodings)}
        )
    stream: Iterator[bytes] = _raw(response, limit=limit, clock=clock, truncate=truncate)
    for encoding in reversed(encodings):
        stream = _inflate(stream, encoding)
    total = 0
    for piece in stream:
        total += len(piece)
        if total > limit:
            if truncate:
                yield piece[: limit - total]
                return
            raise BodyTooLarge(
                gettext("once decompressed (%(encodings)s)") % {"encodings": ", ".join(encodings)}
            )
        if clock is not None:
            clock.check()
        yield piece


def _raw(
    response: httpx.Response, *, limit: int, clock: Clock | None, truncate: bool
) -> Iterator[bytes]:
    total = 0
    for chunk in response.iter_raw():
        total += len(chunk)
        if total > limit:
            if truncate:
                yield chunk[: limit - total]
                return
            raise BodyTooLarge(gettext("as sent"))
        if clock is not None:
            clock.check()
        if chunk:
            yield chunk


def _inflate(chunks: Iterator[bytes], encoding: str) -> Iterator[bytes]:
    """Inflate gzip (several members allowed) or deflate (zlib-wrapped or raw), at most
    :data:`PIECE` bytes per step whatever the ratio."""
    decompressor = None
    wbits = 16 + zlib.MAX_WBITS
    try:
        for chunk in chunks:
            data = chunk
            while data:
                if decompressor is None:
                    if encoding == "deflate":
                        zlib_header = (
                            len(data) > 1
                            and data[0] & 0x0F == 8
                            and ((data[0] << 8) + data[1]) % 31 == 0
                        )
                        wbits = zlib.MAX_WBITS if zlib_header else -zlib.MAX_WBITS
                    decompressor = zlib.decompressobj(wbits)
                out = decompressor.decompress(data, PIECE)
                if out:
                    yield out
                data = decompressor.unconsumed_tail
                if decompressor.eof:
                    data = decompressor.unused_data  # the next gzip member, if any
                    decompressor = None
    except zlib.error as exc:
        raise BadEncoding(
            gettext("its %(encoding)s bytes are corrupt (%(exc)s)")
            % {"encoding": encoding, "exc": exc}
        ) from None


class NotJSON(ValueError):
    """The bytes are not JSON; the message is the parser's (first line)."""


class PageProblem(ValueError):
    """The page is JSON, but not records where they were expected, or too deep."""


class StreamedList(list):
    """Where the records were in a page: they were handed out as they came, so the list
    stays empty; the first and last ones and the count are kept for pagination paths
    (a cursor read from ``results.-1.id``)."""

    count = 0  # type: ignore[assignment]  # the records handed out; hides list.count
    first: Any = None
    last: Any = None


#: Frame modes of :class:`PageDecoder`: off the records path, the records list, the top
#: object of a page without a records path (its one list is the records).
_OFF, _RECORDS, _AUTO = -1, -2, -3
_STRUCTURE = frozenset({"start_map", "end_map", "start_array", "end_array"})


class PageDecoder:
    """Decode one page, fed chunk by chunk; :meth:`feed` and :meth:`finish` return the
    records completed so far. ``records`` is the dotted path of the records list (None:
    the page itself, or the one list in its top object), as for :func:`dig`."""

    def __init__(self, records: str | None, *, max_depth: int, page: int) -> None:
        self.steps = records.split(".") if records else None
        self.max_depth = max_depth
        self.page = page
        self.events = ijson.sendable_list()
        self.parser = ijson.basic_parse_coro(self.events, use_float=True)
        #: Open containers: [container, mode, key in its parent].
        self.stack: list[list[Any]] = []
        self.key: Any = None
        self.document: Any = None
        self.records: StreamedList | None = None
        #: What stood at the records path when it was no list: (type name,) or None.
        self.found: tuple[str] | None = None
        self.out: list[dict[str, Any]] = []
        self.started = False
        #: Bytes waiting to be fed, and how many were fed since the parser last said something.
        self.pending: list[bytes] = []
        self.pending_size = 0
        self.quiet = 0

    # -- feeding -------------------------------------------------------------------------
    def feed(self, chunk: bytes) -> list[dict[str, Any]]:
        if not self.started:
            self.started = True
            if chunk.startswith(b"\xef\xbb\xbf"):
                chunk = chunk[3:]
        # yajl lexes a token that spans several chunks again from its start each time: one
        # long string fed 64 KB at a time costs its length squared. So while nothing comes
        # out, bytes wait until there are as many as were fed since the last event: each
        # feed at least doubles, and a long token costs a few times its length.
        self.pending.append(chunk)
        self.pending_size += len(chunk)
        if self.pending_size < self.quiet:
            return []
        return self._send(b"".join(self.pending) if len(self.pending) > 1 else chunk)

    def _send(self, data: bytes) -> list[dict[str, Any]]:
        self.pending.clear()
        self.pending_size = 0
        try:
            self.parser.send(data)
        except (ijson.JSONError, ValueError) as exc:
            raise NotJSON(_first_line(exc)) from None
        self.quiet = 0 if self.events else self.quiet + len(data)
        return self._drain()

    def finish(self) -> list[dict[str, Any]]:
        out = self._send(b"".join(self.pending)) if self.pending else []
        try:
            self.parser.close()
        except (ijson.JSONError, ValueError) as exc:
            self._drain()
            raise NotJSON(_first_line(exc)) from None
        out += self._drain()
        self._check_records()
        return out

    def _drain(self) -> list[dict[str, Any]]:
        stack = self.stack
        # The hot path: a plain value inside a record (or anything off the records path).
        top = stack[-1] if stack else None
        for event, value in self.events:
            if event == "map_key":
                self.key = value
            elif event in _STRUCTURE:
                if event == "start_map" or event == "start_array":
                    self._open(event == "start_array")
                else:
                    container, _, key = stack.pop()
                    self._add(container, key)
                top = stack[-1] if stack else None
            elif top is not None and top[1] == _OFF:
                container = top[0]
                if type(container) is dict:
                    container[self.key] = value
                else:
                    container.append(value)
            else:
                _, key = self._place(False, value)
                self._add(value, key)
        del self.events[:]
        out, self.out = self.out, []
        return out

    # -- building ------------------------------------------------------------------------
    def _place(self, is_list: bool, value: Any = None) -> tuple[int, Any]:
        """Mode of a new value and its key in its parent, noting the records' place."""
        stack = self.stack
        if not stack:
            if self.steps is None:
                return (_RECORDS if is_list else _AUTO), None
            return 0, None
        parent, mode, _ = stack[-1]
        if mode == _OFF or mode == _RECORDS:
            return _OFF, self.key  # the key matters in a dict only
        key = self.key if isinstance(parent, dict) else len(parent)
        if mode == _AUTO:
            if is_list and self.records is None:
                return _RECORDS, key
            return _OFF, key
        step = self.steps[mode]  # type: ignore[index]
        if step != (key if isinstance(key, str) else str(key)):
            return _OFF, key
        if mode + 1 < len(self.steps):  # type: ignore[arg-type]
            return mode + 1, key
        if is_list:
            return _RECORDS, key
        self.found = (type(value).__name__ if value is not _CONTAINER else "dict",)
        return _OFF, key

    def _open(self, is_list: bool) -> None:
        if len(self.stack) >= self.max_depth:
            raise PageProblem(
                gettext(
                    'page %(page)s nests deeper than DJSYNC["JSON_MAX_DEPTH"] (%(max_depth)s '
                    "levels)"
                )
                % {"page": self.page, "max_depth": self.max_depth}
            )
        mode, key = self._place(is_list, None if is_list else _CONTAINER)
        if mode == _RECORDS:
            container: Any = StreamedList()
            self.records = container
        else:
            container = [] if is_list else {}
        self.stack.append([container, mode, key])

    def _add(self, value: Any, key: Any) -> None:
        if not self.stack:
            self.document = value
            return
        parent, mode, _ = self.stack[-1]
        if mode == _RECORDS:
            records = parent
            records.count += 1
            if not isinstance(value, dict):
                raise PageProblem(
                    gettext("page %(page)s, record %(count)s: expected an object, got %(name)s")
                    % {"page": self.page, "count": records.count, "name": type(value).__name__}
                )
            if records.first is None:
                records.first = value
            records.last = value
            self.out.append(value)
        elif isinstance(parent, dict):
            parent[key] = value
        else:
            parent.append(value)

    def _check_records(self) -> None:
        page, doc = self.page, self.document
        if self.steps is not None:
            if self.records is not None or self.found == ("NoneType",):
                return
            if self.found:
                raise PageProblem(
                    gettext("page %(page)s: expected a list of objects, got %(found)s")
                    % {"page": page, "found": self.found[0]}
                )
            raise PageProblem(
                gettext("page %(page)s has no %(steps)r (the records path)")
                % {"page": page, "steps": ".".join(self.steps)}
            )
        if doc is None or isinstance(doc, StreamedList):
            return
        if isinstance(doc, dict):
            lists = [v for v in doc.values() if isinstance(v, list)]
            if len(lists) != 1:
                raise PageProblem(
                    gettext(
                        "page %(page)s: expected a list of objects; set the source's records path "
                        "(keys here: %(value)s)"
                    )
                    % {"page": page, "value": ", ".join(map(str, doc)) or "none"}
                )
            return
        raise PageProblem(
            gettext("page %(page)s: expected a list of objects, got %(name)s")
            % {"page": page, "name": type(doc).__name__}
        )


#: Stands for "a container" in :meth:`PageDecoder._place` (its type name is dict or list).
_CONTAINER = object()


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return line.removeprefix("parse error: ")[:200]
