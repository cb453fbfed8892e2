"""SQL source: the rows of a query on another configured Django database, streamed.

On PostgreSQL the query runs in a server-side cursor (Django's ``chunked_cursor``), so rows
arrive ``chunk_size`` at a time and a large table never sits in this process whole.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from django.db import DatabaseError, connections

from ..conf import settings
from ..exceptions import ConfigurationError, SourceError
from .base import Source


def check_alias(using: str, what: str) -> None:
    if using not in connections.settings:
        known = ", ".join(connections.settings) or "none"
        raise ConfigurationError(
            f"{what}: no database {using!r} in DATABASES (configured: {known})"
        )


class SqlSource(Source):
    """Reads the rows of ``query`` on the database alias ``using``.

    Options: ``query`` (a SELECT; name the columns as the importer expects them, e.g.
    ``SELECT code AS sku, …``), ``params`` (a list for ``%s`` placeholders), ``using`` (an
    alias of ``DATABASES``), ``chunk_size`` (rows per fetch, default BATCH_SIZE),
    ``incremental`` (``{"column": "updated_at"}``: only rows past the saved cursor, see
    docs/sources.md).
    """

    first_row = 1

    def __init__(
        self,
        query: str,
        *,
        using: str = "default",
        params: Sequence[Any] | None = None,
        chunk_size: int | None = None,
        incremental: dict[str, Any] | None = None,
        name: str | None = None,
    ) -> None:
        if not isinstance(query, str) or not query.strip():
            raise ConfigurationError("a SQL source needs a query")
        self.query = query.strip().rstrip(";")
        self.using = using
        self.name = name or f"query on database {using!r}"
        check_alias(using, self.name)
        self.params = list(params or [])
        self.chunk_size = int(chunk_size or settings.BATCH_SIZE)
        self.columns = None
        self.setup_incremental(incremental)

    def statement(self) -> tuple[str, list[Any]]:
        """The SQL to run: the query, narrowed to rows past the cursor when incremental."""
        if not self.incremental or self.cursor in (None, ""):
            return self.query, self.params
        qn = connections[self.using].ops.quote_name
        column = qn(self.incremental["column"])
        sql = f"SELECT * FROM ({self.query}) djsync_q WHERE djsync_q.{column} >= %s"
        return sql, [*self.params, self.cursor]

    def read(self) -> Iterator[dict[str, Any]]:
        yield from self.track(self._rows())

    def _rows(self) -> Iterator[dict[str, Any]]:
        sql, params = self.statement()
        connection = connections[self.using]
        try:
            cursor = connection.chunked_cursor()
        except DatabaseError as exc:
            raise SourceError(f"cannot connect: {exc}", source=self.name) from None
        try:
            try:
                cursor.execute(sql, params)
            except DatabaseError as exc:
                raise SourceError(f"the query failed: {exc}".strip(), source=self.name) from None
            if cursor.description is None:
                raise SourceError("the query returns no rows (is it a SELECT?)", source=self.name)
            self.columns = columns = [col[0] for col in cursor.description]
            if len(set(columns)) != len(columns):
                twice = sorted({c for c in columns if columns.count(c) > 1})
                raise SourceError(
                    f"the query names column {', '.join(map(repr, twice))} twice; use AS",
                    source=self.name,
                )
            while True:
                try:
                    rows = cursor.fetchmany(self.chunk_size)
                except DatabaseError as exc:
                    raise SourceError(f"reading the rows failed: {exc}", source=self.name) from None
                if not rows:
                    break
                for row in rows:
                    yield dict(zip(columns, row, strict=True))
        finally:
            cursor.close()
