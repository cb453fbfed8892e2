"""What each partition of a split run reads: a small tagged spec, and the source it rebuilds.

A spec goes through Celery, so it is JSON: ``kind`` says how the run's source was cut —
``bytes`` (a CSV file's byte range, djsync.sources.splits), ``keys`` (a range of a SQL or
queryset source's partition column, djsync.sources.ranges) or ``pages`` (a range of an HTTP
source's pages, djsync.sources.page_ranges) — ``part`` its place, ``first_row`` the number
of its first record in the whole source (row errors name the record one process would),
and ``total`` its size for progress, in ``unit``. A partition rebuilds the run's source as
one process does (from code, settings and the job) and narrows it with :func:`narrow`: a
spec holds bounds and positions, never a query, a URL or a path a job could not name.
"""

from __future__ import annotations

import copy
from dataclasses import asdict
from pathlib import Path
from typing import Any

from django.core.exceptions import FieldDoesNotExist
from django.db import connections
from django.db.models import F
from django.utils.translation import gettext as _

from djsync.conf import settings
from djsync.exceptions import ConfigurationError
from djsync.sources import (
    FileSource,
    HttpSource,
    QuerySetSource,
    Source,
    SqlSource,
    page_ranges,
    ranges,
)
from djsync.sources.splits import Range, header_size, split, window

#: Specs of the partitions, and the source's columns; or why it is read in one process.
Cut = tuple[list[dict[str, Any]], list[str]]


def unsplittable(source: Source) -> str | None:
    """Why ``source`` itself cannot be split (None: it can), whatever its job."""
    if getattr(source, "incremental", None):
        return _("an incremental read is not split")
    if type(source) is FileSource:
        return _file_problem(source)
    if type(source) in (SqlSource, QuerySetSource):
        if not source.partition:  # type: ignore[attr-defined]
            return _('no partition column is declared (the source option "partition")')
        return None
    if type(source) is HttpSource:
        return page_ranges.unsplittable(source)
    return _(
        "only a CSV or TSV file, a SQL or queryset source with a partition column, or a "
        "paged HTTP source is split"
    )


def _file_problem(source: FileSource) -> str | None:
    if source.format not in ("csv", "tsv"):
        return _("only a CSV or TSV file is split")
    if source.path is None and not local_path(source):
        return _("the file is not on a local path the workers share")
    if source.delimiter == "auto" or len(source.delimiter) != 1:
        return _("the delimiter must be given (not sniffed)")
    if source.encoding.lower().replace("_", "-") not in ("utf-8", "utf8", "ascii"):
        return _("only a UTF-8 file is split")
    return None


def local_path(source: FileSource) -> str | None:
    name = getattr(source.file, "name", None)
    return name if name and Path(str(name)).is_file() else None


def cut(source: Source, parts: int) -> Cut | str:
    """Cut ``source`` (which :func:`unsplittable` accepted) into at most ``parts`` specs."""
    if isinstance(source, FileSource):
        return _cut_file(source, parts)
    if isinstance(source, HttpSource):
        return _cut_pages(source, parts)
    assert isinstance(source, SqlSource | QuerySetSource)
    return _cut_keys(source, parts)


def _cut_pages(source: HttpSource, parts: int) -> Cut | str:
    found = page_ranges.cut(source, parts)
    if isinstance(found, str):
        return found
    pages, columns = found
    specs: list[dict[str, Any]] = [
        {
            "kind": "pages",
            "first": r.first,
            "pages": r.pages,
            "first_row": r.first_row,
            "total": r.records,
            "unit": "records",
        }
        for r in pages
    ]
    return _numbered(specs), columns


def _cut_keys(source: SqlSource | QuerySetSource, parts: int) -> Cut | str:
    using, inner, params, columns = _keyed(source)
    found = ranges.cut(using, inner, params, str(source.partition), parts)
    if len(found) < 2:
        return _("the partition column has fewer than 2 distinct values")
    specs: list[dict[str, Any]] = []
    row = 1
    for key_range, rows in found:
        specs.append(
            {
                "kind": "keys",
                "range": key_range.as_json(),
                "first_row": row,
                "total": rows,
                "unit": "records",
            }
        )
        row += rows
    return _numbered(specs), columns


def _numbered(specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**spec, "part": i, "parts": len(specs)} for i, spec in enumerate(specs)]


def _keyed(source: SqlSource | QuerySetSource) -> tuple[str, str, list[Any], list[str]]:
    """The source's database, a query of its partition column's values (as ``djsync_p``),
    its parameters, and the source's columns; the column checked against what it reads."""
    column = source.partition
    if isinstance(source, SqlSource):
        columns = ranges.columns_of(source.using, source.query, source.params)
        if column not in columns:
            raise ConfigurationError(
                _(
                    "%(name)s: the partition column %(column)s is not one the query returns "
                    "(%(columns)s)"
                )
                % {"name": source.name, "column": column, "columns": ", ".join(columns)}
            )
        quoted = connections[source.using].ops.quote_name(column)
        inner = f"SELECT djsync_q.{quoted} AS djsync_p FROM ({source.query}) djsync_q"
        return source.using, inner, list(source.params), columns
    qs = source.get_queryset()
    try:
        field = qs.model._meta.get_field(str(column))
    except FieldDoesNotExist:  # said below
        field = None
    if not isinstance(field, ranges.FIELD_TYPES):
        raise ConfigurationError(
            _(
                "%(name)s: the partition field %(column)s is not a whole-number, date or time "
                "field of %(model)s"
            )
            % {"name": source.name, "column": column, "model": qs.model._meta.label}
        )
    values = qs.order_by().annotate(djsync_p=F(field.attname)).values("djsync_p")
    inner, params = values.query.sql_with_params()
    return qs.db, inner, list(params), source._values(qs)[1]


def _cut_file(source: FileSource, parts: int) -> Cut | str:
    path = str(source.path or local_path(source))
    if Path(path).stat().st_size > settings.MAX_FILE_SIZE:
        return _("the file is larger than MAX_FILE_SIZE")
    cuts = split(path, parts, min_size=int(settings.PARTITION_MIN_SIZE))
    if len(cuts) < 2:
        return _("the file is too small to split")
    rows = source.read_rows()
    assert rows is not None  # a CSV file
    try:
        next(rows, None)  # the header: the columns
    finally:
        getattr(rows, "close", lambda: None)()
    header = header_size(path)
    specs = [
        {
            "kind": "bytes",
            "range": asdict(c),
            "path": path,
            "header": header,
            "first_row": c.first_row,
            "total": c.end - c.start,
            "unit": "bytes",
        }
        for c in cuts
    ]
    return _numbered(specs), list(source.columns or [])


def narrow(source: Source, spec: dict[str, Any]) -> Source:
    """The run's source (as one process builds it) reading only the partition ``spec``;
    close it with :func:`close`."""
    kind = spec.get("kind", "bytes")
    if kind == "pages":
        assert isinstance(source, HttpSource)
        return page_ranges.narrow(
            source,
            page_ranges.PageRange(spec["first"], spec["pages"], spec["first_row"], 0),
        )
    ranged = copy.copy(source)
    ranged.first_row = spec["first_row"]
    if kind == "keys":
        ranged.key_range = ranges.KeyRange.from_json(spec["range"])  # type: ignore[attr-defined]
        return ranged
    assert isinstance(ranged, FileSource)
    ranged.path = None
    ranged.file = window(spec["path"], spec["header"], Range(**spec["range"]), ranged.delimiter)
    return ranged


def close(source: Source) -> None:
    """Close what :func:`narrow` opened (a file's range)."""
    handle = getattr(source, "file", None) if isinstance(source, FileSource) else None
    if handle is not None:
        handle.close()


__all__ = ["cut", "local_path", "narrow", "close", "unsplittable"]
