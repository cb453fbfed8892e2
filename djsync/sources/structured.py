"""Reading structured text files: JSON (streamed with ijson), JSON lines and YAML, each with
its nesting, key count and cell size bounded as it is read (djsync.sources.bounds)."""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterable, Iterator
from typing import IO, TYPE_CHECKING, Any

from django.utils.translation import gettext

from djsync.conf import settings
from djsync.exceptions import SourceError
from djsync.sources.base import Source
from djsync.sources.bounds import (
    CHUNK,
    limit,
    read_whole,
    seekable_copy,
    size,
)

_STARTS = frozenset({"start_map", "start_array"})
_ENDS = frozenset({"end_map", "end_array"})
_JSON_TYPES = {"string": "str", "boolean": "bool", "null": "NoneType", "start_array": "list"}


class StructuredReading(Source):
    """The JSON, JSON lines and YAML readers of :class:`djsync.sources.files.FileSource`."""

    if TYPE_CHECKING:  # given by FileSource, which this reading mixes into
        encoding: str

        def _error(
            self, message: str, row: int | None = None, column: str | None = None
        ) -> SourceError: ...
        def _text_encoding(self) -> str: ...
        def _decoded_lines(self, handle: IO[bytes]) -> Iterator[str]: ...
        def _decoding_error(self) -> SourceError: ...

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
                    gettext("malformed JSON: %(msg)s at character %(colno)s")
                    % {"msg": exc.msg, "colno": exc.colno},
                    row=row,
                ) from None
            except RecursionError:
                raise self._too_deep(row) from None
            if not isinstance(record, dict):
                raise self._error(gettext("each line must hold a JSON object"), row=row)
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
            raise self._error(gettext("the file is empty"))

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
        return self._error(
            gettext("values nest deeper than %(limit)s") % {"limit": limit("JSON_MAX_DEPTH")},
            row=row,
        )

    def _cell_too_long(self, row: int | None, column: str | None) -> SourceError:
        return self._error(
            gettext("a value is longer than %(limit)s") % {"limit": limit("MAX_CELL_SIZE")},
            row=row,
            column=column,
        )

    def _too_many_keys(self, row: int | None) -> SourceError:
        return self._error(
            gettext("the records have more than %(limit)s distinct keys")
            % {"limit": limit("MAX_COLUMNS")},
            row=row,
        )

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
                    raise self._error(
                        gettext("the file is larger than %(limit)s")
                        % {"limit": limit("MAX_FILE_SIZE")}
                    )
                if first and decoder is None:
                    if chunk.startswith(codecs.BOM_UTF8):
                        chunk = chunk[3:]
                    elif chunk.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
                        raise self._error(
                            gettext(
                                "the file starts with a UTF-16 or UTF-32 byte order mark, not "
                                "%(encoding)s: set the source's encoding option (e.g. utf-16)"
                            )
                            % {"encoding": self.encoding}
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
                raise self._error(gettext("the file is empty")) from None
            raise self._json_error(handle, exc) from None
        except UnicodeDecodeError as exc:
            raise self._error(
                gettext(
                    "the file is not valid %(encoding)s (%(reason)s); set the source's encoding "
                    "option"
                )
                % {"encoding": self.encoding, "reason": exc.reason}
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
                gettext("malformed JSON: %(msg)s at line %(lineno)s, character %(colno)s")
                % {"msg": precise.msg, "lineno": precise.lineno, "colno": precise.colno}
            )
        except (SourceError, RecursionError, UnicodeError, OSError, ValueError):
            pass
        return self._error(gettext("malformed JSON: %(first)s") % {"first": first})

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
            raise self._error(gettext("the file is empty"))
        if event == "start_array":
            if scanning:
                for _ in self._json_items(events, columns):
                    pass
                return None
            return self._json_items(events, None)
        if event != "start_map":
            raise self._error(
                gettext(
                    "expected a list of objects (or an object holding one list), got %(json_type)s"
                )
                % {"json_type": _json_type(event, value)}
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
            raise self._error(gettext("expected a list of objects (or an object holding one list)"))
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
                raise self._error(
                    gettext("expected an object, got %(json_type)s")
                    % {"json_type": _json_type(event, value)},
                    row=row,
                )
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

    def _read_yaml(self, handle: IO[bytes]) -> Iterator[dict[str, Any]]:
        import yaml

        data = read_whole(handle, self._error, fmt="YAML")
        try:
            text = data.decode(self._text_encoding())
        except UnicodeDecodeError:
            raise self._decoding_error() from None
        if len(data) > settings.MAX_YAML_SIZE:
            raise self._error(
                gettext(
                    "YAML files are parsed slowly (about a second per 100 KiB) and this one has "
                    "%(data)s, more than %(limit)s; convert it to JSON lines or CSV, which stream"
                )
                % {"data": size(len(data)), "limit": limit("MAX_YAML_SIZE")}
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
            raise self._error(gettext("the file is empty"))
        yield from self._records(parsed)

    def _records(self, data: Any) -> Iterator[dict[str, Any]]:
        if isinstance(data, dict):
            lists = [v for v in data.values() if isinstance(v, list)]
            if len(lists) != 1:
                raise self._error(
                    gettext("expected a list of objects (or an object holding one list)")
                )
            data = lists[0]
        if not isinstance(data, list):
            raise self._error(gettext("expected a list of objects"))
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
                raise self._error(
                    gettext("expected an object, got %(name)s") % {"name": type(record).__name__},
                    row=row,
                )
            self.row = row
            yield record


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
                raise _YamlRefused(
                    gettext("values nest deeper than %(limit)s")
                    % {"limit": limit("JSON_MAX_DEPTH")}
                )
        elif isinstance(event, ends):
            depth -= 1
        elif isinstance(event, yaml.AliasEvent):
            line = event.start_mark.line + 1 if event.start_mark else "?"
            raise _YamlRefused(
                gettext(
                    "line %(line)s: YAML aliases (*name) are refused: a document that repeats a "
                    "value by alias can expand without bound (billion laughs)"
                )
                % {"line": line}
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
                    gettext(
                        "line %(line)s: YAML aliases (*name) are refused: a document that repeats "
                        "a value by alias can expand without bound (billion laughs)"
                    )
                    % {"line": mark.line + 1}
                )
            self.depth += 1
            if self.depth > settings.JSON_MAX_DEPTH:
                raise _YamlRefused(
                    gettext("values nest deeper than %(limit)s")
                    % {"limit": limit("JSON_MAX_DEPTH")}
                )
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
        return gettext("malformed YAML: %(one_line)s") % {"one_line": _one_line(exc)}
    where = (
        gettext("line %(line)s, column %(column)s: ")
        % {"line": mark.line + 1, "column": mark.column + 1}
        if mark is not None
        else ""
    )
    if "constructor for the tag" in problem:
        problem += gettext(" (only plain YAML is read: no tags naming Python objects)")
    return gettext("malformed YAML: %(where)s%(one_line)s") % {
        "where": where,
        "one_line": _one_line(Exception(problem)),
    }


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] or type(exc).__name__
